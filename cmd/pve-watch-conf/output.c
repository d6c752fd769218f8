/* The map diff and the event lines on stdout. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "watch.h"

struct events {
	struct event *e;
	size_t n, cap;
};

static void
add(struct events *ev, enum guest_event k, const struct vm_owner *o, const char *peer)
{
	struct event *e;

	if (ev->n == ev->cap) {
		ev->cap = ev->cap ? ev->cap * 2 : 16;
		ev->e = xreallocarray(ev->e, ev->cap, sizeof *ev->e);
	}
	e = &ev->e[ev->n++];
	memset(e, 0, sizeof *e);
	e->kind = k;
	e->vmid = o->vmid;
	e->type = o->type;
	if (peer)
		snprintf(e->peer, sizeof e->peer, "%s", peer);
}

/* One guest, before and after (either may be NULL). A guest that never
 * touches this node makes no event; a new type under the same VMID is a
 * different guest: destroy, then create. */
static void
diff_one(struct events *ev, const struct vm_owner *a, const struct vm_owner *b, const char *node)
{
	int a_here = a && strcmp(a->node, node) == 0, b_here = b && strcmp(b->node, node) == 0;

	if (a && b && a->type != b->type) {
		if (a_here)
			add(ev, GUEST_DESTROY, a, NULL);
		if (b_here)
			add(ev, GUEST_CREATE, b, NULL);
	} else if (!a) {
		if (b_here)
			add(ev, GUEST_CREATE, b, NULL);
	} else if (!b) {
		if (a_here)
			add(ev, GUEST_DESTROY, a, NULL);
	} else if (strcmp(a->node, b->node) != 0) {
		if (b_here)
			add(ev, GUEST_MIGRATE_IN, b, a->node);
		else if (a_here)
			add(ev, GUEST_MIGRATE_OUT, b, b->node);
	}
}

size_t
events_diff(const struct vmlist *old, const struct vmlist *new, const char *node,
            struct event **out)
{
	struct events ev = { 0 };
	size_t i = 0, j = 0;

	while (i < old->n || j < new->n) {
		if (j == new->n || (i < old->n && old->e[i].vmid < new->e[j].vmid)) {
			diff_one(&ev, &old->e[i++], NULL, node);
		} else if (i == old->n || new->e[j].vmid < old->e[i].vmid) {
			diff_one(&ev, NULL, &new->e[j++], node);
		} else {
			diff_one(&ev, &old->e[i], &new->e[j], node);
			i++;
			j++;
		}
	}
	*out = ev.e;
	return ev.n;
}

size_t
events_initial(const struct vmlist *m, const char *node, struct event **out)
{
	struct events ev = { 0 };

	for (size_t i = 0; i < m->n; i++)
		diff_one(&ev, NULL, &m->e[i], node);
	*out = ev.e;
	return ev.n;
}

void
output_init(struct output *o, int fd, int json, int seq, const char *node,
            volatile sig_atomic_t *stop)
{
	struct stat st;

	memset(o, 0, sizeof *o);
	o->fd = fd;
	o->json = json;
	o->seq = seq;
	o->node = node;
	o->stop = stop;
	o->fifo = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

void
output_free(struct output *o)
{
	buf_free(&o->line);
}

static void
json_string(struct buf *b, const char *s)
{
	buf_puts(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			buf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			buf_printf(b, "\\u%04x", c);
		else
			buf_append(b, s, 1);
	}
	buf_puts(b, "\"");
}

/* RFC 3339, UTC, milliseconds: 2024-05-01T12:00:00.123Z */
static void
json_time(struct buf *b, int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char s[40];

	gmtime_r(&secs, &tm);
	strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
	buf_printf(b, "\"%s.%03dZ\"", s, (int)(ms % 1000));
}

static void
format(struct output *o, const struct pending *p)
{
	const struct event *e = &p->ev;
	struct buf *b = &o->line;

	buf_reset(b);
	if (!o->json) {
		if (o->seq)
			buf_printf(b, "%" PRIu64 " ", p->seq);
		buf_printf(b, "%s %u %s %s %s\n", guest_event_name(e->kind), e->vmid,
		           guest_type_name(e->type), e->peer[0] ? e->peer : "-",
		           p->conf ? p->conf : "-");
		return;
	}
	buf_puts(b, "{");
	if (o->seq)
		buf_printf(b, "\"seq\":%" PRIu64 ",", p->seq);
	buf_printf(b, "\"event\":\"%s\",\"vmid\":%u,\"type\":\"%s\",\"node\":",
	           guest_event_name(e->kind), e->vmid, guest_type_name(e->type));
	json_string(b, o->node);
	buf_puts(b, ",\"peer\":");
	if (e->peer[0])
		json_string(b, e->peer);
	else
		buf_puts(b, "null");
	buf_puts(b, ",\"config\":");
	if (p->conf)
		json_string(b, p->conf);
	else
		buf_puts(b, "null");
	buf_puts(b, ",\"time\":");
	json_time(b, p->time_ms);
	buf_puts(b, "}\n");
}

int
output_event(struct output *o, const struct pending *p)
{
	size_t off = 0;

	format(o, p);
	while (off < o->line.len) {
		ssize_t n = write(o->fd, o->line.data + off, o->line.len - off);

		if (n < 0 && errno == EINTR) {
			/* Half a line is finished; a whole one is not started. */
			if (off == 0 && *o->stop)
				return -2;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* A non-blocking pipe that is full: wait for room (signals
			 * are deliverable here, so a stop still gets through). */
			struct pollfd pf = { o->fd, POLLOUT, 0 };

			if (poll(&pf, 1, -1) < 0 && errno == EINTR && off == 0 && *o->stop)
				return -2;
			continue;
		}
		if (n < 0)
			return -1;
		off += n;
	}
	return 0;
}

size_t
output_unread(const struct output *o)
{
	int n = 0;

	if (!o->fifo || ioctl(o->fd, FIONREAD, &n) < 0 || n < 0)
		return 0;
	return (size_t)n;
}
