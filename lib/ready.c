#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qga.h"
#include "ready.h"
#include "util.h"

#define PING "{\"execute\":\"guest-ping\"}"

void
ready_agent(struct ready *t, const char *path)
{
	memset(t, 0, sizeof *t);
	t->agent = path;
	t->fd = -1;
	t->result = QGA_PENDING;
}

void
ready_port(struct ready *t, const struct sockaddr *sa, socklen_t len)
{
	memset(t, 0, sizeof *t);
	if (len > sizeof t->addr)
		len = sizeof t->addr;
	memcpy(&t->addr, sa, len);
	t->addrlen = len;
	t->fd = -1;
	t->result = QGA_PENDING;
}

static void
try_end(struct ready *t, int ok, int64_t now, int64_t t0)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->busy = 0;
	t->timed_out = !ok && now >= t->try_end;
	if (ok) {
		t->ok = 1;
		t->ms = now - t0;
		t->rtt_us = t->agent ? t->call.elapsed_us : (mono_us() - t->try_start_us);
		t->why[0] = '\0';
	}
	/* At once after a try that used its time, else retry_ms after its start. */
	if (t->next_try < now)
		t->next_try = now;
}

static void
agent_done(struct ready *t, int64_t now, int64_t t0)
{
	snprintf(t->why, sizeof t->why, "%s", t->call.detail);
	t->result = t->call.result;
	try_end(t, t->call.result == QGA_OK, now, t0);
	if (t->call.result == QGA_TIMEOUT)
		t->timed_out = 1;
}

static void
port_failed(struct ready *t, int err, int64_t now, int64_t t0)
{
	snprintf(t->why, sizeof t->why, "%s", strerror(err));
	try_end(t, 0, now, t0);
}

static void
try_start(struct ready *t, int64_t now, int64_t end, int try_ms, int retry_ms, int64_t t0)
{
	t->tries++;
	t->busy = 1;
	t->try_start = now;
	t->try_start_us = mono_us();
	t->try_end = now + try_ms < end ? now + try_ms : end;
	t->next_try = now + retry_ms;
	if (t->agent) {
		if (!t->call.path)
			qga_call_init(&t->call, t->agent, PING, try_ms);
		t->call.timeout_ms = (int)(t->try_end - now);
		qga_call_start(&t->call, now);
		if (qga_call_done(&t->call))
			agent_done(t, now, t0);
		return;
	}
	t->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->fd < 0) {
		port_failed(t, errno, now, t0);
		return;
	}
	if (connect(t->fd, (struct sockaddr *)&t->addr, t->addrlen) == 0)
		try_end(t, 1, now, t0);
	else if (errno != EINPROGRESS)
		port_failed(t, errno, now, t0);
}

static int
try_fd(const struct ready *t)
{
	return t->agent ? qga_call_fd(&t->call) : t->fd;
}

static int64_t
try_wakeup(const struct ready *t)
{
	if (!t->busy)
		return t->next_try;
	if (t->agent && qga_call_wakeup(&t->call) < t->try_end)
		return qga_call_wakeup(&t->call);
	return t->try_end;
}

/* Advances a try on revents (0: a timer). */
static void
try_step(struct ready *t, short revents, int64_t now, int64_t t0)
{
	if (t->agent) {
		if (revents || qga_call_wakeup(&t->call) <= now)
			qga_call_step(&t->call, revents, now);
		if (qga_call_done(&t->call)) {
			agent_done(t, now, t0);
		} else if (now >= t->try_end) {
			usock_close(&t->call.sock);
			snprintf(t->why, sizeof t->why, "%s: no reply in %lld ms", t->agent,
			         (long long)(now - t->try_start));
			t->result = QGA_TIMEOUT;
			try_end(t, 0, now, t0);
		}
		return;
	}
	if (revents) {
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			port_failed(t, err, now, t0);
		else
			try_end(t, 1, now, t0);
	} else if (now >= t->try_end) {
		snprintf(t->why, sizeof t->why, "no answer in %lld ms",
		         (long long)(now - t->try_start));
		try_end(t, 0, now, t0);
	}
}

/* A target of a group that is ready makes the others ready, their tries
 * dropped. */
static void
group_done(struct ready *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!t[i].ok || !t[i].group)
			continue;
		for (size_t k = 0; k < n; k++) {
			if (t[k].ok || t[k].group != t[i].group)
				continue;
			if (t[k].fd >= 0)
				close(t[k].fd);
			t[k].fd = -1;
			if (t[k].agent)
				usock_close(&t[k].call.sock);
			t[k].busy = 0;
			t[k].ok = 1;
			t[k].ms = t[i].ms;
			t[k].rtt_us = t[i].rtt_us;
			t[k].why[0] = '\0';
		}
	}
}

size_t
ready_wait(struct ready *t, size_t n, int64_t wait_ms, int try_ms, int retry_ms)
{
	int64_t t0 = mono_ms(), end = t0 + wait_ms;
	size_t budget = open_files_budget(QGA_FD_RESERVE), left = n;
	struct pollfd *pfd = xcalloc(n ? n : 1, sizeof *pfd);
	size_t *idx = xcalloc(n ? n : 1, sizeof *idx);

	for (size_t i = 0; i < n; i++) {
		t[i].next_try = t0;
		if (t[i].ok)
			left--;
	}
	for (int64_t now = t0; left && now < end; now = mono_ms()) {
		int64_t wake = end;
		size_t np = 0, busy = 0;

		for (size_t i = 0; i < n; i++)
			busy += t[i].busy;
		for (size_t i = 0; i < n && busy < budget; i++)
			if (!t[i].ok && !t[i].busy && t[i].next_try <= now) {
				try_start(&t[i], now, end, try_ms, retry_ms, t0);
				busy += t[i].busy;
			}
		for (size_t i = 0; i < n; i++) {
			if (t[i].ok)
				continue;
			if (try_wakeup(&t[i]) < wake)
				wake = try_wakeup(&t[i]);
			if (t[i].busy && try_fd(&t[i]) >= 0) {
				pfd[np] = (struct pollfd){ try_fd(&t[i]),
					                   t[i].agent ? qga_call_events(&t[i].call)
					                              : POLLOUT,
					                   0 };
				idx[np++] = i;
			}
		}
		if (wake < now)
			wake = now;
		if (poll(pfd, np, (int)(wake - now)) < 0 && errno != EINTR)
			break; /* cannot happen with valid fds; the deadline ends it */
		now = mono_ms();
		for (size_t k = 0; k < np; k++)
			if (pfd[k].revents)
				try_step(&t[idx[k]], pfd[k].revents, now, t0);
		for (size_t i = 0; i < n; i++)
			if (t[i].busy && try_wakeup(&t[i]) <= now)
				try_step(&t[i], 0, now, t0);
		group_done(t, n);
		left = 0;
		for (size_t i = 0; i < n; i++)
			left += !t[i].ok;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i].busy) {
			snprintf(t[i].why, sizeof t[i].why, "%s%sno answer before the deadline",
			         t[i].agent ? t[i].agent : "", t[i].agent ? ": " : "");
			t[i].busy = 0;
			t[i].timed_out = 1;
			if (t[i].agent)
				t[i].result = QGA_TIMEOUT;
		} else if (!t[i].ok && !t[i].why[0]) {
			snprintf(t[i].why, sizeof t[i].why, "no time for a try");
		}
		if (t[i].fd >= 0)
			close(t[i].fd);
		t[i].fd = -1;
		if (t[i].agent)
			qga_call_cleanup(&t[i].call);
	}
	free(pfd);
	free(idx);
	return left;
}
