#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "clock.h"
#include "qmp.h"

enum { S_IDLE, S_OPEN, S_DONE };
/* What the next line from QEMU answers. */
enum { P_GREETING, P_CAPABILITIES, P_COMMAND };

#define QMP_LINE_MAX (4 * 1024 * 1024)

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
	c->result = QMP_PENDING;
	snprintf(c->name, sizeof c->name, "%s", name ? name : "the command");
	json_decref(j);
}

static void finish(struct qmp_call *c, enum qmp_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
finish(struct qmp_call *c, enum qmp_result r, const char *fmt, ...)
{
	va_list ap;

	usock_close(&c->sock);
	c->state = S_DONE;
	c->result = r;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof c->detail, fmt, ap);
	va_end(ap);
}

/* Ends the call on what the transport reports: a failure, QEMU hanging up
 * (USOCK_EOF) or the deadline (USOCK_BUSY, USOCK_TIMEOUT). */
static void
finish_transport(struct qmp_call *c, enum usock_status st)
{
	switch (st) {
	case USOCK_NOSOCKET:
		finish(c, QMP_NOSOCKET, "%s: %s", c->path, c->sock.why);
		break;
	case USOCK_REFUSED:
		finish(c, QMP_REFUSED, "%s: %s", c->path, c->sock.why);
		break;
	case USOCK_EOF:
		finish(c, QMP_IOERR, "%s: QEMU closed the connection before its %s", c->path,
		       c->phase == P_GREETING ? "greeting" : "reply");
		break;
	case USOCK_BUSY:
		if (usock_has_client(c->path) == 1)
			finish(c, QMP_TIMEOUT, "%s: monitor busy (other clients) for %d ms", c->path,
			       c->timeout_ms);
		else
			finish(c, QMP_TIMEOUT,
			       "%s: no answer in %d ms (nothing accepts connections on the socket)",
			       c->path, c->timeout_ms);
		break;
	case USOCK_TIMEOUT:
		if (c->phase == P_GREETING)
			finish(c, QMP_TIMEOUT,
			       "%s: no greeting in %d ms (QEMU hangs, or another client holds the monitor)",
			       c->path, c->timeout_ms);
		else
			finish(c, QMP_TIMEOUT, "%s: no answer to %s in %d ms", c->path,
			       c->phase == P_CAPABILITIES ? "qmp_capabilities" : c->name,
			       c->timeout_ms);
		break;
	default: /* USOCK_IOERR */
		finish(c, QMP_IOERR, "%s: %s", c->path, c->sock.why);
		break;
	}
}

/* Drops the previous results and resets the protocol: the start of an
 * exchange, with a socket or without (qmp_call_feed). */
static void
begin(struct qmp_call *c)
{
	usock_close(&c->sock);
	json_decref(c->ret);
	c->ret = NULL;
	c->result = QMP_PENDING;
	c->detail[0] = '\0';
	c->phase = P_GREETING;
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
			buf_puts(&c->sock.out, capabilities);
		} else {
			finish(c, QMP_GARBAGE, "%s: not a QMP greeting", c->path);
		}
	} else if (json_object_get(j, "event")) {
		/* asynchronous: RESUME, STOP, ... say nothing about our command */
	} else if ((ret = json_object_get(j, "return"))) {
		if (c->phase == P_CAPABILITIES) {
			c->phase = P_COMMAND;
			buf_printf(&c->sock.out, "%s\n", c->command);
		} else {
			c->ret = json_incref(ret);
			finish(c, QMP_OK, "%s", "");
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

static void
on_read(void *owner, int64_t now)
{
	struct qmp_call *c = owner;
	const char *line;
	size_t len;

	(void)now;
	while (c->state == S_OPEN && (line = usock_line(&c->sock, &len)))
		if (len)
			on_line(c, line, len);
	if (c->state == S_OPEN && (usock_unread(&c->sock, &len), len > QMP_LINE_MAX))
		finish(c, QMP_GARBAGE, "%s: a reply line longer than %d bytes", c->path,
		       QMP_LINE_MAX);
}

void
qmp_call_feed(struct qmp_call *c, const void *data, size_t len, int64_t now_ms)
{
	if (c->state == S_IDLE)
		begin(c);
	if (c->state != S_OPEN)
		return;
	usock_input(&c->sock, data, len);
	on_read(c, now_ms);
}

void
qmp_call_start(struct qmp_call *c, int64_t now_ms)
{
	enum usock_status st;

	begin(c);
	st = usock_start(&c->sock, c->path, now_ms, now_ms + c->timeout_ms);
	if (st != USOCK_PENDING)
		finish_transport(c, st);
}

int
qmp_call_fd(const struct qmp_call *c)
{
	return usock_fd(&c->sock);
}

short
qmp_call_events(const struct qmp_call *c)
{
	return usock_events(&c->sock);
}

int64_t
qmp_call_wakeup(const struct qmp_call *c)
{
	return usock_wakeup(&c->sock);
}

void
qmp_call_step(struct qmp_call *c, short revents, int64_t now_ms)
{
	enum usock_status st;

	if (c->state != S_OPEN)
		return;
	st = usock_step(&c->sock, revents, now_ms, on_read, c);
	if (st != USOCK_PENDING)
		finish_transport(c, st);
}

int
qmp_call_done(const struct qmp_call *c)
{
	return c->state == S_DONE;
}

void
qmp_call_cleanup(struct qmp_call *c)
{
	usock_close(&c->sock);
	json_decref(c->ret);
	free(c->path);
	free(c->command);
	memset(c, 0, sizeof *c);
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
			finish(c, QMP_IOERR, "%s: poll: %s", c->path, strerror(errno));
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

int
qemu_status_hands_off(const char *status, int shutdown_too)
{
	static const char *const off[] = { "paused",      "suspended",  "inmigrate",
		                           "postmigrate", "prelaunch",  "finish-migrate",
		                           "save-vm",     "restore-vm", "debug",
		                           "colo" };

	for (size_t i = 0; i < ARRAY_LEN(off); i++)
		if (strcmp(status, off[i]) == 0)
			return 1;
	return shutdown_too && strcmp(status, "shutdown") == 0;
}
