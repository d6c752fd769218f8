/* libFuzzer harness for the guest-agent client's framing and reply parsing
 * (lib/qga.c), driven through qga_call_feed without a socket: the input is
 * what an agent sends. The seeds in seeds/qga/ are real qemu-ga answers to
 * 0xFF + guest-sync-delimited with id SYNC_ID + a command.
 *
 * Besides "never crash", it feeds the input twice, at once and in small
 * uneven chunks, and the two must end alike (lines split across reads are
 * the normal case on a socket). The client's request never changes: 0xFF,
 * the sync with our id, the command. Without a socket only the parser can
 * end the call: ok, garbage or an agent error, the last two naming the
 * socket; ok needs our sync reply and a reply line after it. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qga.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH "/run/qemu-server/100.qga"
#define SYNC_ID 424242
#define COMMAND "{\"execute\":\"guest-ping\"}"

static const char request[] =
    "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":424242}}\n" COMMAND "\n";

static void
check_pending(const struct qga_call *c)
{
	if (c->sock.out.len != strlen(request) || memcmp(c->sock.out.data, request, c->sock.out.len))
		abort();
	if (c->detail[0] || c->ret || c->result != QGA_PENDING)
		abort();
}

/* Does the input hold our sync reply's marker followed by two line ends? */
static int
could_answer(const uint8_t *data, size_t size)
{
	const uint8_t *ff = memchr(data, 0xff, size);
	size_t lines = 0;

	for (size_t i = ff ? (size_t)(ff - data) : size; i < size; i++)
		lines += data[i] == '\n';
	return lines >= 2;
}

static void
check_done(const struct qga_call *c, const uint8_t *data, size_t size)
{
	if (c->result != QGA_OK && c->result != QGA_GARBAGE && c->result != QGA_ERROR)
		abort();
	if ((c->result == QGA_OK) != (c->ret != NULL))
		abort();
	if (c->result != QGA_OK && strncmp(c->detail, PATH ": ", strlen(PATH ": ")) != 0)
		abort();
	if (c->result == QGA_OK && !could_answer(data, size))
		abort();
}

static void
feed_chunked(struct qga_call *c, const uint8_t *data, size_t size)
{
	size_t off = 0, n = 1;

	qga_call_feed(c, data, 0, 0); /* the exchange starts even on empty input */
	while (off < size && !qga_call_done(c)) {
		size_t len = size - off < n ? size - off : n;
		qga_call_feed(c, data + off, len, 0);
		if (!qga_call_done(c))
			check_pending(c);
		off += len;
		n = n % 7 + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qga_call whole, chunked;

	/* The reply size limit applies to what is buffered, which depends on
	 * how the input is split: keep far below it. */
	if (size > 1024 * 1024)
		return 0;
	qga_call_init(&whole, PATH, COMMAND, 1000);
	whole.id = SYNC_ID;
	qga_call_feed(&whole, data, size, 0);
	qga_call_init(&chunked, PATH, COMMAND, 1000);
	chunked.id = SYNC_ID;
	feed_chunked(&chunked, data, size);

	if (qga_call_done(&whole) != qga_call_done(&chunked))
		abort();
	if (qga_call_done(&whole)) {
		check_done(&whole, data, size);
		if (whole.result != chunked.result || strcmp(whole.detail, chunked.detail) != 0 ||
		    (whole.ret && !json_equal(whole.ret, chunked.ret)))
			abort();
	} else {
		check_pending(&whole);
		check_pending(&chunked);
	}
	qga_call_cleanup(&whole);
	qga_call_cleanup(&chunked);
	return 0;
}
