/* libFuzzer harness for the QMP client's protocol and reply parsing
 * (lib/qmp.c), driven through qmp_call_feed without a socket: the input is
 * what a monitor sends.
 *
 * Besides "never crash", it feeds the input twice, at once and in small
 * uneven chunks, and the two must end alike (lines split across reads are
 * the normal case on a socket). While the exchange is pending, what the
 * client would have sent must be exactly the QMP conversation so far:
 * nothing before the greeting, then qmp_capabilities, then the command. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH "/run/qemu-server/100.qmp"

#define CAPABILITIES "{\"execute\":\"qmp_capabilities\"}\n"
static const char conversation[] = CAPABILITIES QMP_QUERY_STATUS "\n";

static void
check_pending(const struct qmp_call *c)
{
	/* the client speaks only after QEMU has: at most the two commands */
	if (c->sock.out.len > strlen(conversation) ||
	    (c->sock.out.len && memcmp(c->sock.out.data, conversation, c->sock.out.len) != 0))
		abort();
	if (c->sock.out.len != 0 && c->sock.out.len != strlen(CAPABILITIES) &&
	    c->sock.out.len != strlen(conversation))
		abort();
	if (c->detail[0] || c->ret)
		abort();
}

static void
check_done(const struct qmp_call *c, size_t newlines)
{
	if (c->result < QMP_OK || c->result > QMP_IOERR)
		abort();
	if ((c->result == QMP_OK) != (c->ret != NULL))
		abort();
	/* every failure says why, naming the socket */
	if (c->result != QMP_OK && strncmp(c->detail, PATH ": ", strlen(PATH ": ")) != 0)
		abort();
	/* greeting, capabilities' return, the command's: three lines at least */
	if (c->result == QMP_OK && newlines < 3)
		abort();
	if (c->result == QMP_OK) {
		const char *st = qmp_run_state(c->ret);
		if (st && !*st)
			abort();
	}
}

static void
feed_chunked(struct qmp_call *c, const uint8_t *data, size_t size)
{
	size_t off = 0, n = 1;

	while (off < size && !qmp_call_done(c)) {
		size_t len = size - off < n ? size - off : n;
		qmp_call_feed(c, data + off, len, 0);
		if (!qmp_call_done(c))
			check_pending(c);
		off += len;
		n = n % 7 + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_call whole, chunked;
	size_t newlines = 0;

	for (size_t i = 0; i < size; i++)
		newlines += data[i] == '\n';

	qmp_call_init(&whole, PATH, QMP_QUERY_STATUS, 1000);
	qmp_call_feed(&whole, data, size, 0);
	qmp_call_init(&chunked, PATH, QMP_QUERY_STATUS, 1000);
	feed_chunked(&chunked, data, size);

	if (qmp_call_done(&whole) != qmp_call_done(&chunked))
		abort();
	if (qmp_call_done(&whole)) {
		check_done(&whole, newlines);
		if (whole.result != chunked.result || strcmp(whole.detail, chunked.detail) != 0 ||
		    (whole.ret && !json_equal(whole.ret, chunked.ret)))
			abort();
	} else {
		check_pending(&whole);
		check_pending(&chunked);
		if (whole.sock.out.len != chunked.sock.out.len)
			abort();
	}
	qmp_call_cleanup(&whole);
	qmp_call_cleanup(&chunked);
	return 0;
}
