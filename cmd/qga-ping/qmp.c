#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"

enum { Q_IDLE, Q_SEND, Q_RECV, Q_DONE };

#define QMP_REPLY_MAX (1024 * 1024)

static void qmp_finish(struct qmp_call *c, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
qmp_finish(struct qmp_call *c, int ok, const char *fmt, ...)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = Q_DONE;
	c->ok = ok;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->detail, sizeof c->detail, fmt, ap);
		va_end(ap);
	}
	buf_free(&c->in);
	buf_free(&c->out);
}

void
qmp_call_start(struct qmp_call *c, const char *path, int timeout_ms, int64_t now_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);

	memset(c, 0, sizeof *c);
	c->fd = -1;
	c->deadline_ms = now_ms + timeout_ms;
	if (n >= sizeof sa.sun_path) {
		qmp_finish(c, 0, "%s: socket path too long", path);
		return;
	}
	memcpy(sa.sun_path, path, n + 1);
	buf_puts(&c->out, "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\"}\n");
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		/* EAGAIN: pvestatd or qm holds the monitor; no time to wait here */
		qmp_finish(c, 0, "%s: %s", path, strerror(errno));
		return;
	}
	c->state = Q_SEND;
}

int
qmp_call_fd(const struct qmp_call *c)
{
	return c->state == Q_SEND || c->state == Q_RECV ? c->fd : -1;
}

short
qmp_call_events(const struct qmp_call *c)
{
	return c->state == Q_SEND ? POLLOUT : POLLIN;
}

int64_t
qmp_call_deadline(const struct qmp_call *c)
{
	return c->deadline_ms;
}

int
qmp_call_done(const struct qmp_call *c)
{
	return c->state == Q_DONE;
}

/* One reply line: the greeting and events are skipped; the second "return"
 * is query-status's. */
static void
qmp_line(struct qmp_call *c, const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, 0, NULL), *ret;

	if (!json_is_object(j)) {
		json_decref(j);
		qmp_finish(c, 0, "monitor: unreadable reply");
		return;
	}
	if (json_object_get(j, "QMP") || json_object_get(j, "event")) {
		json_decref(j);
		return;
	}
	if ((ret = json_object_get(j, "return")) && ++c->returns == 2) {
		const char *st = json_string_value(json_object_get(ret, "status"));
		if (st)
			snprintf(c->status, sizeof c->status, "%s", st);
		json_decref(j);
		if (st)
			qmp_finish(c, 1, NULL);
		else
			qmp_finish(c, 0, "monitor: query-status without a status");
		return;
	}
	if (json_object_get(j, "error")) {
		const char *desc =
		    json_string_value(json_object_get(json_object_get(j, "error"), "desc"));
		qmp_finish(c, 0, "monitor error: %s", desc ? desc : "(no description)");
	}
	json_decref(j);
}

static void
qmp_recv(struct qmp_call *c)
{
	char chunk[4096];
	ssize_t n;

	while ((n = read(c->fd, chunk, sizeof chunk)) > 0) {
		buf_append(&c->in, chunk, n);
		if (c->in.len > QMP_REPLY_MAX) {
			qmp_finish(c, 0, "monitor: reply too large");
			return;
		}
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		qmp_finish(c, 0, "monitor: read: %s", strerror(errno));
		return;
	}
	for (char *nl;
	     c->state != Q_DONE && c->in.len && (nl = memchr(c->in.data, '\n', c->in.len));) {
		size_t len = nl - c->in.data;
		qmp_line(c, c->in.data, len);
		if (c->state != Q_DONE)
			buf_consume(&c->in, len + 1);
	}
	if (n == 0 && c->state != Q_DONE)
		qmp_finish(c, 0, "monitor closed the connection");
}

void
qmp_call_step(struct qmp_call *c, short revents, int64_t now_ms)
{
	if (c->state == Q_SEND && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		while (c->out_off < c->out.len) {
			ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
			                 MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) {
				qmp_finish(c, 0, "monitor: write: %s", strerror(errno));
				return;
			}
			c->out_off += n;
		}
		if (c->out_off == c->out.len)
			c->state = Q_RECV;
	} else if (c->state == Q_RECV && (revents & (POLLIN | POLLERR | POLLHUP))) {
		qmp_recv(c);
	}
	if (c->state != Q_DONE && now_ms >= c->deadline_ms)
		qmp_finish(c, 0, "monitor: no answer before the deadline");
}

void
qmp_call_cleanup(struct qmp_call *c)
{
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}
