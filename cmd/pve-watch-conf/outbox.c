/* The outbox: every event gets a number and stays in the saved state from
 * before it is written until the reader has confirmed it. The state is
 * saved (synced) before the lines are written, so a crash at any point
 * leaves each event either in the outbox (printed again on the next start)
 * or not yet in the map (found again by the next diff): none is lost.
 *
 * Confirmed means: with --seq, run-hooks --events wrote a number at least
 * the event's to its confirmation file (lib/seqfile), after journaling the
 * event. Without --seq: a line written to a file or a terminal is
 * confirmed; into a pipe, a line is confirmed once the reader has taken
 * all of it from the pipe, and the next line is written only then (a
 * reader takes whatever the pipe holds: head -n 1 would read three lines
 * and print one). What a reader does with a line it took is its own
 * affair. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "seqfile.h"
#include "watch.h"

/* Say so once when this many written events wait for a confirmation. */
#define UNCONFIRMED_WARN 1000

/* How long one call waits for a pipe's reader to take a line, without --seq. */
#define PACE_MS 20

static char *
event_conf(struct watcher *w, const struct event *e)
{
	char *conf;

	switch (e->kind) {
	case GUEST_MIGRATE_OUT:
		return guest_conf_path(w->o.pve_dir, e->peer, e->type, e->vmid);
	case GUEST_DESTROY:
		conf = store_retire_copy(&w->st, e->type, e->vmid);
		if (!conf)
			log_warn("guest %u: no copy of its config was kept; its destroy has none",
			         e->vmid);
		return conf;
	default:
		return guest_conf_path(w->o.pve_dir, w->o.node, e->type, e->vmid);
	}
}

void
outbox_queue(struct watcher *w, const struct event *ev, size_t n)
{
	int64_t now = real_ns() / 1000000;

	w->box = xreallocarray(w->box, w->nbox + n, sizeof *w->box);
	for (size_t i = 0; i < n; i++) {
		struct pending *p = &w->box[w->nbox++];

		p->seq = ++w->seq;
		p->time_ms = now;
		p->ev = ev[i];
		p->conf = event_conf(w, &ev[i]);
	}
	w->dirty = 1;
}

/* Waits up to PACE_MS for the reader to take every byte from the pipe:
 * 1 taken, 0 not yet, -1 the reader went away or a stop signal came. */
static int
wait_taken(struct watcher *w)
{
	int64_t end = mono_ms() + PACE_MS;
	long ns = 50 * 1000;

	while (output_unread(&w->out) > 0) {
		struct pollfd p = { w->out.fd, 0, 0 };
		struct timespec ts = { 0, ns };

		if (*w->out.stop || mono_ms() >= end)
			return *w->out.stop ? -1 : 0;
		if (ppoll(&p, 1, &ts, &w->run_mask) > 0 && (p.revents & (POLLERR | POLLHUP)))
			return output_unread(&w->out) > 0 ? -1 : 1;
		if (ns < 4 * 1000 * 1000)
			ns *= 2;
	}
	return 1;
}

static void drop(struct watcher *w, size_t n);

void
outbox_emit(struct watcher *w)
{
	/* Without --seq a pipe holds one line at a time: what the reader took
	 * is confirmed, and a line it never took is still ours. */
	int pace = !w->o.seq && w->out.fifo;

	w->pace_wake = 0;
	if (w->printed == w->nbox || w->reader_gone || w->out_errno)
		return;
	sigprocmask(SIG_SETMASK, &w->run_mask, NULL); /* a blocked write must be stoppable */
	while (w->printed < w->nbox) {
		const struct pending *p;
		int r;

		if (pace && w->printed) {
			r = wait_taken(w);
			if (r <= 0) {
				if (r == 0)
					w->pace_wake = mono_ms() + PACE_MS; /* a slow reader */
				break;
			}
			drop(w, w->printed);
		}
		p = &w->box[w->printed];
		r = output_event(&w->out, p);
		if (r == -2)
			break;
		if (r == -1) {
			if (errno == EPIPE)
				w->reader_gone = 1;
			else
				w->out_errno = errno;
			break;
		}
		w->printed++;
		if (p->ev.kind == GUEST_MIGRATE_OUT)
			store_drop_copy(&w->st, p->ev.type, p->ev.vmid);
	}
	sigprocmask(SIG_BLOCK, &w->block_mask, NULL);
	if (w->o.seq && !w->unconfirmed_warned && w->printed >= UNCONFIRMED_WARN) {
		w->unconfirmed_warned = 1;
		log_warn("%zu events not confirmed in %s; is run-hooks --events reading them, "
		         "with this --state-dir? Until confirmed they are printed again on every "
		         "start",
		         w->printed, w->confirm_path);
	}
}

/* Forgets the first n entries. */
static void
drop(struct watcher *w, size_t n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n; i++)
		pending_free(&w->box[i]);
	memmove(w->box, w->box + n, (w->nbox - n) * sizeof *w->box);
	w->nbox -= n;
	w->printed = w->printed > n ? w->printed - n : 0;
	if (w->printed < UNCONFIRMED_WARN)
		w->unconfirmed_warned = 0;
	w->dirty = 1;
}

/* --seq: the number in run-hooks' confirmation file, read when it changed.
 * 1 and *seq, or 0 (none, or unchanged since the last read). */
static int
read_confirmation(struct watcher *w, uint64_t *seq)
{
	struct stat st;
	uint64_t sig;
	int r;

	if (stat(w->confirm_path, &st) < 0) {
		w->confirm_sig = 0;
		return 0;
	}
	sig = (((uint64_t)st.st_ino * 2654435761u) ^ (uint64_t)st.st_mtim.tv_nsec ^
	       ((uint64_t)st.st_mtim.tv_sec << 20) ^ (uint64_t)st.st_size) |
	      1;
	if (sig == w->confirm_sig)
		return 0;
	r = seqfile_read(w->confirm_path, seq);
	if (r < 0) {
		if (!w->confirm_warned++)
			log_warn("%s: %s; waiting for a good one", w->confirm_path,
			         errno == EINVAL ? "not a sequence number" : strerror(errno));
		return 0;
	}
	w->confirm_warned = 0;
	w->confirm_sig = sig;
	return r;
}

void
outbox_confirm(struct watcher *w)
{
	uint64_t seq;
	size_t n = 0;

	if (!w->o.seq) {
		/* Everything written has left the pipe (or stdout is no pipe). */
		if (w->printed && output_unread(&w->out) == 0)
			drop(w, w->printed);
		return;
	}
	if (read_confirmation(w, &seq) <= 0)
		return;
	/* Numbers go on from the confirmed one, even when our state was lost
	 * or is older: a number is never given to two events. */
	if (seq > w->seq) {
		w->seq = seq;
		w->dirty = 1;
	}
	while (n < w->nbox && w->box[n].seq <= seq)
		n++;
	drop(w, n);
}

int
outbox_save(struct watcher *w)
{
	struct saved sv = {
		.map = w->cur,
		.seq = w->seq,
		.box = w->box,
		.nbox = w->nbox,
		.held = w->held,
		.nheld = w->nheld,
	};

	if (store_save(&w->st, &sv) < 0) {
		if (!w->save_failed++)
			log_warn("%s: %s; retrying", w->st.owners, strerror(errno));
		w->save_at = mono_ms() + w->o.interval_ms;
		return -1;
	}
	if (w->save_failed)
		log_info("%s: saved again", w->st.owners);
	w->save_failed = 0;
	w->save_at = 0;
	w->dirty = 0;
	return 0;
}

/* Until deadline (-1: none) or a stop signal (only without a deadline):
 * 0 once done(w), -1 when time ran out or the reader went away. */
static int
wait_for(struct watcher *w, int64_t ms, int (*done)(struct watcher *))
{
	int64_t end = ms < 0 ? -1 : mono_ms() + ms;

	for (;;) {
		struct pollfd p = { STDOUT_FILENO, 0, 0 };
		struct timespec ts = { 0, 10 * 1000000 };

		if (done(w))
			return 0;
		if ((end >= 0 && mono_ms() >= end) || (end < 0 && *w->out.stop))
			return -1;
		if (ppoll(&p, 1, &ts, &w->run_mask) > 0 && (p.revents & (POLLERR | POLLHUP)))
			return done(w) ? 0 : -1;
	}
}

/* Without --seq: every line written and taken from the pipe. */
static int
drained(struct watcher *w)
{
	if (!w->o.seq) {
		outbox_emit(w);
		outbox_confirm(w);
		if (w->printed < w->nbox && !w->reader_gone && !w->out_errno)
			return 0;
	}
	return output_unread(&w->out) == 0;
}

static int
confirmed(struct watcher *w)
{
	outbox_confirm(w);
	return w->printed == 0;
}

int
outbox_wait(struct watcher *w, int64_t drain_ms, int64_t confirm_ms)
{
	if (wait_for(w, drain_ms, drained) < 0)
		return confirmed(w) ? 0 : -1;
	return wait_for(w, confirm_ms, confirmed);
}

void
outbox_free(struct watcher *w)
{
	for (size_t i = 0; i < w->nbox; i++)
		pending_free(&w->box[i]);
	free(w->box);
	w->box = NULL;
	w->nbox = w->printed = 0;
	free(w->confirm_path);
	w->confirm_path = NULL;
}
