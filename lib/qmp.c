#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"

enum { S_IDLE, S_RETRY, S_CONNECTING, S_OPEN, S_DONE };
/* What the next line from QEMU answers. */
enum { P_GREETING, P_CAPABILITIES, P_COMMAND };

#define QMP_LINE_MAX (4 * 1024 * 1024)
#define QMP_RETRY_MS 50 /* listen backlog full: other clients hold the monitor */
#define QMP_READ_CHUNK 16384
#define QMP_READS_PER_STEP 64 /* an event storm must not keep a step from its deadline */

static const char capabilities[] = "{\"execute\":\"qmp_capabilities\"}\n";

const char *
qmp_result_name(enum qmp_result r)
{
	switch (r) {
	case QMP_OK:
		return "ok";
	case QMP_NOSOCKET:
		return "no-socket";
	case QMP_REFUSED:
		return "refused";
	case QMP_TIMEOUT:
		return "timeout";
	case QMP_GARBAGE:
		return "garbage";
	case QMP_ERROR:
		return "error";
	case QMP_IOERR:
		return "io-error";
	case QMP_PENDING:
		break;
	}
	return "pending";
}

void
qmp_call_init(struct qmp_call *c, const char *path, const char *command, int timeout_ms)
{
	json_t *j = json_loads(command, 0, NULL);
	const char *name = json_string_value(json_object_get(j, "execute"));

	memset(c, 0, sizeof *c);
	c->path = xstrdup(path);
	c->command = xstrdup(command);
	c->timeout_ms = timeout_ms;
	c->fd = -1;
	c->result = QMP_PENDING;
	snprintf(c->name, sizeof c->name, "%s", name ? name : "the command");
	json_decref(j);
}

static void finish(struct qmp_call *c, enum qmp_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
finish(struct qmp_call *c, enum qmp_result r, const char *fmt, ...)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = S_DONE;
	c->result = r;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->detail, sizeof c->detail, fmt, ap);
		va_end(ap);
	}
	buf_free(&c->in);
	buf_free(&c->out);
}

static void
fail_errno(struct qmp_call *c, int err, const char *what)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		finish(c, QMP_NOSOCKET, "%s: no such socket", c->path);
		break;
	case ECONNREFUSED:
		finish(c, QMP_REFUSED, "%s: connection refused", c->path);
		break;
	default:
		finish(c, QMP_IOERR, "%s: %s: %s", c->path, what, strerror(err));
	}
}

/* Ends a call that got no full answer: the deadline passed or QEMU hung up. */
static void
finish_unanswered(struct qmp_call *c, int closed)
{
	if (closed)
		finish(c, QMP_IOERR, "%s: QEMU closed the connection before its %s", c->path,
		       c->phase == P_GREETING ? "greeting" : "reply");
	else if (c->state == S_RETRY)
		finish(c, QMP_TIMEOUT, "%s: monitor busy (other clients) for %d ms", c->path,
		       c->timeout_ms);
	else if (c->phase == P_GREETING)
		finish(c, QMP_TIMEOUT,
		       "%s: no greeting in %d ms (QEMU hangs, or another client holds the monitor)",
		       c->path, c->timeout_ms);
	else
		finish(c, QMP_TIMEOUT, "%s: no answer to %s in %d ms", c->path,
		       c->phase == P_CAPABILITIES ? "qmp_capabilities" : c->name, c->timeout_ms);
}

/* Resets the results and the protocol for a new exchange. */
static void
begin(struct qmp_call *c, int64_t now)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	json_decref(c->ret);
	c->ret = NULL;
	c->result = QMP_PENDING;
	c->detail[0] = '\0';
	c->phase = P_GREETING;
	c->out_off = 0;
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->deadline_ms = now + c->timeout_ms;
	c->state = S_OPEN;
}

/* One line from QEMU (without its "\r\n"), in the light of what it answers. */
static void
on_line(struct qmp_call *c, const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, 0, NULL), *ret, *err;

	if (!json_is_object(j)) {
		finish(c, QMP_GARBAGE, "%s: %s", c->path,
		       c->phase == P_GREETING ? "not a QMP greeting" : "unreadable reply");
	} else if (c->phase == P_GREETING) {
		if (json_is_object(json_object_get(j, "QMP"))) {
			c->phase = P_CAPABILITIES;
			buf_puts(&c->out, capabilities);
		} else {
			finish(c, QMP_GARBAGE, "%s: not a QMP greeting", c->path);
		}
	} else if (json_object_get(j, "event")) {
		/* asynchronous: RESUME, STOP, ... say nothing about our command */
	} else if ((ret = json_object_get(j, "return"))) {
		if (c->phase == P_CAPABILITIES) {
			c->phase = P_COMMAND;
			buf_printf(&c->out, "%s\n", c->command);
		} else {
			c->ret = json_incref(ret);
			finish(c, QMP_OK, NULL);
		}
	} else if (json_is_object(err = json_object_get(j, "error"))) {
		const char *desc = json_string_value(json_object_get(err, "desc"));
		const char *cls = json_string_value(json_object_get(err, "class"));
		finish(c, QMP_ERROR, "%s: QEMU refused %s: %s%s%s%s", c->path,
		       c->phase == P_CAPABILITIES ? "qmp_capabilities" : c->name,
		       desc ? desc : "(no description)", cls ? " (" : "", cls ? cls : "",
		       cls ? ")" : "");
	} else {
		finish(c, QMP_GARBAGE, "%s: unreadable reply", c->path);
	}
	json_decref(j);
}

void
qmp_call_feed(struct qmp_call *c, const void *data, size_t len, int64_t now_ms)
{
	size_t off = 0;

	if (c->state == S_IDLE)
		begin(c, now_ms);
	if (c->state != S_OPEN)
		return;
	buf_append(&c->in, data, len);
	while (c->state == S_OPEN) {
		char *p = c->in.data + off;
		char *nl = memchr(p, '\n', c->in.len - off);
		size_t n;

		if (!nl)
			break;
		n = nl - p;
		off += n + 1;
		while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n)
			on_line(c, p, n);
	}
	if (c->state != S_OPEN)
		return;
	buf_consume(&c->in, off);
	if (c->in.len > QMP_LINE_MAX)
		finish(c, QMP_GARBAGE, "%s: a reply line longer than %d bytes", c->path,
		       QMP_LINE_MAX);
}

static void
try_connect(struct qmp_call *c, int64_t now)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(c->path);

	if (n >= sizeof sa.sun_path) {
		finish(c, QMP_IOERR, "%s: socket path too long", c->path);
		return;
	}
	memcpy(sa.sun_path, c->path, n + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fail_errno(c, errno, "socket");
		return;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		c->state = S_OPEN;
	} else if (errno == EINPROGRESS) {
		c->state = S_CONNECTING;
	} else if (errno == EAGAIN) {
		/* QEMU's backlog is full: pvestatd or qm are at the monitor. */
		close(c->fd);
		c->fd = -1;
		c->state = S_RETRY;
		c->retry_ms = now + QMP_RETRY_MS;
	} else {
		fail_errno(c, errno, "connect");
	}
}

void
qmp_call_start(struct qmp_call *c, int64_t now_ms)
{
	begin(c, now_ms);
	try_connect(c, now_ms);
}

int
qmp_call_fd(const struct qmp_call *c)
{
	return c->state == S_CONNECTING || c->state == S_OPEN ? c->fd : -1;
}

short
qmp_call_events(const struct qmp_call *c)
{
	if (c->state == S_CONNECTING || (c->state == S_OPEN && c->out_off < c->out.len))
		return POLLOUT;
	return c->state == S_OPEN ? POLLIN : 0;
}

int64_t
qmp_call_wakeup(const struct qmp_call *c)
{
	if (c->state == S_RETRY && c->retry_ms < c->deadline_ms)
		return c->retry_ms;
	return c->deadline_ms;
}

int
qmp_call_done(const struct qmp_call *c)
{
	return c->state == S_DONE;
}

static void
do_send(struct qmp_call *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n =
		    send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			fail_errno(c, errno, "write");
			return;
		}
		c->out_off += n;
	}
	buf_reset(&c->out);
	c->out_off = 0;
}

static void
do_recv(struct qmp_call *c, int64_t now)
{
	char chunk[QMP_READ_CHUNK];

	for (int reads = 0; reads < QMP_READS_PER_STEP && c->state == S_OPEN; reads++) {
		ssize_t n = read(c->fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			fail_errno(c, errno, "read");
			return;
		}
		if (n == 0) {
			finish_unanswered(c, 1);
			return;
		}
		qmp_call_feed(c, chunk, n, now);
	}
}

void
qmp_call_step(struct qmp_call *c, short revents, int64_t now_ms)
{
	int err = 0;
	socklen_t len = sizeof err;

	switch (c->state) {
	case S_RETRY:
		if (now_ms >= c->retry_ms && now_ms < c->deadline_ms)
			try_connect(c, now_ms);
		break;
	case S_CONNECTING:
		if (!revents)
			break;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			fail_errno(c, err, "connect");
			return;
		}
		c->state = S_OPEN;
		break;
	case S_OPEN:
		if (revents & (POLLIN | POLLERR | POLLHUP))
			do_recv(c, now_ms);
		/* what the reply just read asks for goes out at once */
		if (c->state == S_OPEN && c->out_off < c->out.len)
			do_send(c);
		break;
	default:
		return;
	}
	if (c->state != S_DONE && now_ms >= c->deadline_ms)
		finish_unanswered(c, 0);
}

void
qmp_call_cleanup(struct qmp_call *c)
{
	if (c->fd >= 0)
		close(c->fd);
	json_decref(c->ret);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->path);
	free(c->command);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

void
qmp_call_run(struct qmp_call *c)
{
	qmp_call_start(c, mono_ms());
	while (!qmp_call_done(c)) {
		struct pollfd p = { qmp_call_fd(c), qmp_call_events(c), 0 };
		int64_t wait = qmp_call_wakeup(c) - mono_ms();
		int n = 0;

		/* a negative fd makes poll a plain wait (a connect retry) */
		if (wait > 0)
			n = poll(&p, 1, wait > INT_MAX ? INT_MAX : (int)wait);
		if (n < 0 && errno != EINTR) {
			fail_errno(c, errno, "poll");
			return;
		}
		qmp_call_step(c, n > 0 ? p.revents : 0, mono_ms());
	}
}

const char *
qmp_run_state(const json_t *ret)
{
	const char *st = json_string_value(json_object_get(ret, "status"));

	return st && *st ? st : NULL;
}

enum qmp_result
qmp_query_status(const char *path, int timeout_ms, char *status, size_t len, char *why, size_t wlen)
{
	struct qmp_call c;
	enum qmp_result r;
	const char *st = NULL;

	qmp_call_init(&c, path, QMP_QUERY_STATUS, timeout_ms);
	qmp_call_run(&c);
	r = c.result;
	if (r == QMP_OK && !(st = qmp_run_state(c.ret))) {
		r = QMP_GARBAGE;
		snprintf(c.detail, sizeof c.detail, "%s: query-status without a status", path);
	}
	if (r == QMP_OK)
		snprintf(status, len, "%s", st);
	else
		snprintf(why, wlen, "%s", c.detail);
	qmp_call_cleanup(&c);
	return r;
}
