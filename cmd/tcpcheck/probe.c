/* The connect engine: every probe is a non-blocking connect(2) on one epoll
 * set, with its own deadline. Probes beyond the socket budget wait in a
 * queue (still under their deadline) until a slot frees up; one whose
 * deadline comes first was never tried (PROBE_UNTRIED), not timed out. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "tcpcheck.h"
#include "util.h"

static int64_t
probe_key(const void *e)
{
	return ((const struct probe *)e)->deadline_ms;
}

static size_t *
probe_slot(void *e)
{
	return &((struct probe *)e)->heap_slot;
}

int
prober_init(struct prober *pr, size_t max_inflight)
{
	memset(pr, 0, sizeof *pr);
	pr->heap.key = probe_key;
	pr->heap.slot = probe_slot;
	pr->max_inflight = max_inflight ? max_inflight : 1;
	pr->epfd = epoll_create1(EPOLL_CLOEXEC);
	return pr->epfd < 0 ? -1 : 0;
}

void
prober_free(struct prober *pr)
{
	if (pr->epfd >= 0)
		close(pr->epfd);
	heap_free(&pr->heap);
	pr->epfd = -1;
}

const char *
probe_state_name(enum probe_state s)
{
	switch (s) {
	case PROBE_OPEN:
		return "open";
	case PROBE_CLOSED:
		return "closed";
	case PROBE_TIMEOUT:
		return "timeout";
	case PROBE_UNTRIED:
		return "untried";
	default:
		return "pending";
	}
}

/* An answered check is closed with a reset, as load balancers close their
 * health checks: thousands of checks leave no TIME_WAIT on either side,
 * which on a busy checker would use up the ephemeral ports. */
static void
close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

/* Bookkeeping first, the callback last: it may start or cancel probes. */
static void
finish(struct prober *pr, struct probe *p, enum probe_state st, int err)
{
	if (p->fd >= 0) {
		close_reset(p->fd); /* also leaves the epoll set */
		p->fd = -1;
		heap_remove(&pr->heap, p);
		pr->inflight--;
	}
	p->state = st;
	p->err = err;
	p->elapsed_us = mono_us() - p->start_us;
	if (p->done)
		p->done(p);
}

static void
connect_now(struct prober *pr, struct probe *p)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = p };
	int fd, rc;

	p->fd = -1;
	if (mono_ms() >= p->deadline_ms) {
		finish(pr, p, PROBE_UNTRIED, 0);
		return;
	}
	fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		finish(pr, p, PROBE_CLOSED, errno);
		return;
	}
	rc = connect(fd, (struct sockaddr *)&p->addr, p->addrlen);
	if (rc == 0 || errno != EINPROGRESS) {
		int e = rc == 0 ? 0 : errno;
		close_reset(fd);
		finish(pr, p, e ? PROBE_CLOSED : PROBE_OPEN, e);
		return;
	}
	if (epoll_ctl(pr->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		close(fd);
		finish(pr, p, PROBE_CLOSED, e);
		return;
	}
	p->fd = fd;
	p->state = PROBE_CONNECTING;
	pr->inflight++;
	heap_push(&pr->heap, p);
}

static void
pump_queue(struct prober *pr)
{
	while (pr->qhead && pr->inflight < pr->max_inflight) {
		struct probe *p = pr->qhead;
		pr->qhead = p->qnext;
		if (!pr->qhead)
			pr->qtail = NULL;
		p->qnext = NULL;
		pr->nqueued--;
		connect_now(pr, p);
	}
}

void
prober_start(struct prober *pr, struct probe *p)
{
	p->fd = -1;
	p->err = 0;
	p->elapsed_us = 0;
	p->heap_slot = HEAP_NONE;
	p->qnext = NULL;
	p->start_us = mono_us();
	if (pr->inflight < pr->max_inflight && !pr->qhead) {
		connect_now(pr, p);
		return;
	}
	p->state = PROBE_QUEUED;
	if (pr->qtail)
		pr->qtail->qnext = p;
	else
		pr->qhead = p;
	pr->qtail = p;
	pr->nqueued++;
}

void
prober_cancel(struct prober *pr, struct probe *p)
{
	if (p->state == PROBE_CONNECTING) {
		close(p->fd);
		p->fd = -1;
		heap_remove(&pr->heap, p);
		pr->inflight--;
	} else if (p->state == PROBE_QUEUED) {
		struct probe **pp = &pr->qhead, *prev = NULL;
		while (*pp && *pp != p) {
			prev = *pp;
			pp = &(*pp)->qnext;
		}
		if (*pp) {
			*pp = p->qnext;
			if (pr->qtail == p)
				pr->qtail = prev;
			pr->nqueued--;
		}
		p->qnext = NULL;
	}
	p->state = PROBE_IDLE;
}

int64_t
prober_next_deadline(const struct prober *pr)
{
	const struct probe *top = heap_top(&pr->heap);
	int64_t d = top ? top->deadline_ms : INT64_MAX;

	for (const struct probe *q = pr->qhead; q; q = q->qnext)
		if (q->deadline_ms < d)
			d = q->deadline_ms;
	return d;
}

int
prober_fd(const struct prober *pr)
{
	return pr->epfd;
}

static void
expire(struct prober *pr, int64_t now)
{
	struct probe *p;

	while ((p = heap_top(&pr->heap)) && p->deadline_ms <= now)
		finish(pr, p, PROBE_TIMEOUT, ETIMEDOUT);
	for (struct probe *q = pr->qhead, *next; q; q = next) {
		next = q->qnext;
		if (q->deadline_ms <= now) {
			prober_cancel(pr, q);
			finish(pr, q, PROBE_UNTRIED, 0);
			next = pr->qhead; /* the list may have changed in the callback */
		}
	}
}

void
prober_poll(struct prober *pr, int timeout_ms)
{
	struct epoll_event ev[256];
	int n;

	/* Every answer already in is taken before deadlines are judged: one
	 * that waited behind the first 256 is no timeout. */
	do {
		n = epoll_wait(pr->epfd, ev, (int)ARRAY_LEN(ev), timeout_ms);
		for (int i = 0; i < n; i++) {
			struct probe *p = ev[i].data.ptr;
			int err = 0;
			socklen_t len = sizeof err;

			if (p->state != PROBE_CONNECTING)
				continue;
			if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			finish(pr, p, err ? PROBE_CLOSED : PROBE_OPEN, err);
		}
		timeout_ms = 0;
	} while (n == (int)ARRAY_LEN(ev));
	expire(pr, mono_ms());
	pump_queue(pr);
}
