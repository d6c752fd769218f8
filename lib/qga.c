#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "qga.h"

enum { S_IDLE, S_RUNNING, S_DONE };

#define QGA_JUNK_MAX (64 * 1024) /* bytes before a sync marker we put up with */

const char *
qga_result_name(enum qga_result r)
{
	switch (r) {
	case QGA_OK: return "ok";
	case QGA_NOSOCKET: return "no-socket";
	case QGA_REFUSED: return "refused";
	case QGA_TIMEOUT: return "timeout";
	case QGA_GARBAGE: return "garbage";
	case QGA_WRONGID: return "wrong-id";
	case QGA_ERROR: return "error";
	case QGA_IOERR: return "io-error";
	case QGA_PENDING: break;
	}
	return "pending";
}

void
qga_call_init(struct qga_call *c, const char *path, const char *command, int timeout_ms)
{
	memset(c, 0, sizeof *c);
	c->path = xstrdup(path);
	c->command = xstrdup(command);
	c->timeout_ms = timeout_ms;
	c->result = QGA_PENDING;
}

static void
finish(struct qga_call *c, enum qga_result r, int64_t now, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
finish(struct qga_call *c, enum qga_result r, int64_t now, const char *fmt, ...)
{
	va_list ap;

	usock_close(&c->sock);
	c->state = S_DONE;
	c->result = r;
	c->elapsed_ms = now - c->start_ms;
	c->elapsed_us = mono_us() - c->start_us;
	if (c->elapsed_us < 0)
		c->elapsed_us = 0;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof c->detail, fmt, ap);
	va_end(ap);
}

static uint32_t
random_id(void)
{
	uint32_t id;

	if (getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id)
		id = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16 ^ (uint32_t)mono_ms();
	id &= 0x7fffffff;
	return id ? id : 1;
}

/* Drops the previous results and queues the request: the start of an
 * exchange, with a socket or without (qga_call_feed). */
static void
begin(struct qga_call *c, int64_t now, uint32_t id)
{
	usock_close(&c->sock);
	json_decref(c->ret);
	c->ret = NULL;
	c->result = QGA_PENDING;
	c->detail[0] = '\0';
	c->elapsed_ms = c->elapsed_us = 0;
	c->saw_sync = c->stale = c->junk_bad = 0;
	c->start_ms = now;
	c->start_us = mono_us();
	c->start_real_ns = real_ns();
	c->id = id;
	/* The leading 0xFF makes the agent drop any half-parsed input a previous
	 * client left behind; it answers it with an error we skip. */
	buf_printf(&c->sock.out,
		   "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%u}}\n%s\n",
		   c->id, c->command);
	c->state = S_RUNNING;
}

/* Is every line of p[0..n) empty or a JSON object? What the agent sends
 * before our sync reply (its answer to our 0xFF, replies meant for an
 * earlier client) is; anything else means the peer does not speak the
 * protocol. */
static int
junk_is_protocol(const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl ? (size_t)(nl - p) : n, m = len;
		while (m && (p[m - 1] == '\r' || p[m - 1] == ' '))
			m--;
		if (m && (unsigned char)p[0] != 0xff) {
			json_t *j = json_loadb(p, m, 0, NULL);
			int ok = json_is_object(j);
			json_decref(j);
			if (!ok)
				return 0;
		}
		p += len + (nl != NULL);
		n -= len + (nl != NULL);
	}
	return 1;
}

/* Ends the call on what the transport reports: a failure, the agent
 * hanging up (USOCK_EOF) or the deadline (USOCK_BUSY, USOCK_TIMEOUT). */
static void
finish_transport(struct qga_call *c, enum usock_status st, int64_t now)
{
	const char *why = st == USOCK_EOF ? "then the connection closed" : "before the deadline";
	size_t len;
	const char *junk = usock_unread(&c->sock, &len);

	if (st == USOCK_NOSOCKET)
		finish(c, QGA_NOSOCKET, now, "%s: %s", c->path, c->sock.why);
	else if (st == USOCK_REFUSED)
		finish(c, QGA_REFUSED, now, "%s: %s", c->path, c->sock.why);
	else if (st == USOCK_IOERR)
		finish(c, QGA_IOERR, now, "%s: %s", c->path, c->sock.why);
	else if (st == USOCK_BUSY && usock_has_client(c->path) == 1)
		finish(c, QGA_TIMEOUT, now, "%s: agent busy (another client) for %d ms", c->path,
		       c->timeout_ms);
	else if (st == USOCK_BUSY)
		finish(c, QGA_TIMEOUT, now,
		       "%s: no answer in %d ms (nothing accepts connections on the socket)", c->path,
		       c->timeout_ms);
	else if (c->stale && !c->saw_sync)
		finish(c, QGA_WRONGID, now, "%s: %d sync replies, none with our id, %s", c->path,
		       c->stale, why);
	else if (!c->saw_sync && (c->junk_bad || !junk_is_protocol(junk, len)))
		finish(c, QGA_GARBAGE, now,
		       "%s: bytes that are not the agent protocol and no sync reply, %s", c->path,
		       why);
	else if (st == USOCK_EOF)
		finish(c, QGA_IOERR, now, "%s: agent closed the connection%s", c->path,
		       c->saw_sync ? " before its reply" : "");
	else
		finish(c, QGA_TIMEOUT, now, "%s: no %s in %d ms", c->path,
		       c->saw_sync ? "reply after the sync" : "reply", c->timeout_ms);
}

void
qga_call_start(struct qga_call *c, int64_t now_ms)
{
	enum usock_status st;

	begin(c, now_ms, random_id());
	st = usock_start(&c->sock, c->path, now_ms, now_ms + c->timeout_ms);
	if (st != USOCK_PENDING)
		finish_transport(c, st, now_ms);
}

int
qga_call_fd(const struct qga_call *c)
{
	return usock_fd(&c->sock);
}

short
qga_call_events(const struct qga_call *c)
{
	return usock_events(&c->sock);
}

int64_t
qga_call_wakeup(const struct qga_call *c)
{
	return usock_wakeup(&c->sock);
}

/* Moves past what the agent sent before the next 0xFF (the start of a sync
 * reply): 1 once that is the next byte, 0 while none has come or when the
 * call ended, as too much came without one. */
static int
skip_to_marker(struct qga_call *c, int64_t now)
{
	size_t len;
	const char *p = usock_unread(&c->sock, &len);
	const char *ff = len ? memchr(p, 0xff, len) : NULL;
	size_t junk = ff ? (size_t)(ff - p) : len;

	if (junk > QGA_JUNK_MAX) {
		finish(c, QGA_GARBAGE, now, "%s: more than %d bytes without a sync reply", c->path,
		       QGA_JUNK_MAX);
		return 0;
	}
	if (!ff)
		return 0;
	if (!junk_is_protocol(p, junk))
		c->junk_bad = 1;
	usock_skip(&c->sock, junk);
	return 1;
}

/* Finishes the call with the agent's reply to the command: one line. */
static void
on_reply(struct qga_call *c, const char *line, size_t len, int64_t now)
{
	json_t *j = json_loadb(line, len, 0, NULL), *ret, *err;

	if ((ret = json_object_get(j, "return"))) {
		c->ret = json_incref(ret);
		finish(c, QGA_OK, now, "%s", "");
	} else if (json_is_object(err = json_object_get(j, "error"))) {
		const char *desc = json_string_value(json_object_get(err, "desc"));
		const char *cls = json_string_value(json_object_get(err, "class"));
		finish(c, QGA_ERROR, now, "%s: agent error: %s%s%s%s", c->path,
		       desc ? desc : "(no description)", cls ? " (" : "", cls ? cls : "",
		       cls ? ")" : "");
	} else {
		finish(c, QGA_GARBAGE, now, "%s: unreadable reply", c->path);
	}
	json_decref(j);
}

/* Consumes what has arrived; finishes the call once the reply is complete. */
static void
parse_input(struct qga_call *c, int64_t now)
{
	const char *line;
	size_t len;

	/* The sync replies: "\xff{"return": ID}", ours or an earlier client's. */
	while (!c->saw_sync) {
		json_t *j, *id;

		if (!skip_to_marker(c, now) || !(line = usock_line(&c->sock, &len)))
			return;
		j = json_loadb(line + 1, len - 1, 0, NULL);
		id = json_object_get(j, "return");
		if (!json_is_integer(id)) {
			json_decref(j);
			finish(c, QGA_GARBAGE, now, "%s: unreadable sync reply", c->path);
			return;
		}
		/* Another id is a reply meant for an earlier client: skip it. */
		if (json_integer_value(id) == (json_int_t)c->id)
			c->saw_sync = 1;
		else
			c->stale++;
		json_decref(j);
	}
	while ((line = usock_line(&c->sock, &len)))
		if (len) {
			on_reply(c, line, len, now);
			return;
		}
}

static void
on_read(void *owner, int64_t now)
{
	struct qga_call *c = owner;
	size_t len;

	usock_unread(&c->sock, &len);
	if (len > QGA_REPLY_MAX)
		finish(c, QGA_GARBAGE, now, "%s: reply larger than %d bytes", c->path,
		       QGA_REPLY_MAX);
	else
		parse_input(c, now);
}

void
qga_call_feed(struct qga_call *c, const void *data, size_t len, int64_t now_ms)
{
	if (c->state == S_IDLE)
		begin(c, now_ms, c->id ? c->id : random_id());
	if (c->state != S_RUNNING)
		return;
	usock_input(&c->sock, data, len);
	on_read(c, now_ms);
}

void
qga_call_step(struct qga_call *c, short revents, int64_t now_ms)
{
	enum usock_status st;

	if (c->state != S_RUNNING)
		return;
	st = usock_step(&c->sock, revents, now_ms, on_read, c);
	if (st != USOCK_PENDING)
		finish_transport(c, st, now_ms);
}

int
qga_call_done(const struct qga_call *c)
{
	return c->state == S_DONE;
}

void
qga_call_cleanup(struct qga_call *c)
{
	usock_close(&c->sock);
	json_decref(c->ret);
	free(c->path);
	free(c->command);
	memset(c, 0, sizeof *c);
}

void
qga_run(struct qga_call *calls, size_t n, size_t max_parallel)
{
	struct pollfd *pfd = xcalloc(n, sizeof *pfd);
	size_t *idx = xcalloc(n, sizeof *idx);
	size_t next = 0, active = 0, done = 0;

	if (!max_parallel)
		max_parallel = n;
	while (done < n) {
		int64_t now = mono_ms(), wake = INT64_MAX;
		size_t np = 0;

		while (next < n && active < max_parallel) {
			qga_call_start(&calls[next], now);
			if (qga_call_done(&calls[next]))
				done++;
			else
				active++;
			next++;
		}
		for (size_t i = 0; i < next; i++) {
			struct qga_call *c = &calls[i];
			if (qga_call_done(c))
				continue;
			if (qga_call_wakeup(c) < wake)
				wake = qga_call_wakeup(c);
			if (qga_call_fd(c) >= 0) {
				pfd[np] = (struct pollfd){ qga_call_fd(c), qga_call_events(c), 0 };
				idx[np++] = i;
			}
		}
		if (!active)
			continue;
		int64_t wait = wake == INT64_MAX ? 1000 : wake - now;
		if (wait < 0)
			wait = 0;
		if (poll(pfd, np, (int)wait) < 0 && errno != EINTR) {
			int err = errno;
			for (size_t i = 0; i < n; i++)
				if (!qga_call_done(&calls[i]))
					finish(&calls[i], QGA_IOERR, mono_ms(), "%s: poll: %s",
					       calls[i].path, strerror(err));
			break;
		}
		now = mono_ms();
		for (size_t k = 0; k < np; k++)
			if (pfd[k].revents)
				qga_call_step(&calls[idx[k]], pfd[k].revents, now);
		for (size_t i = 0; i < next; i++) {
			struct qga_call *c = &calls[i];
			if (!qga_call_done(c) && qga_call_wakeup(c) <= now)
				qga_call_step(c, 0, now);
		}
		active = done = 0;
		for (size_t i = 0; i < next; i++)
			qga_call_done(&calls[i]) ? done++ : active++;
	}
	free(pfd);
	free(idx);
}
