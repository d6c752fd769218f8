/* qga-ping --watch: the heartbeat of one guest. Pings on its own timer (a
 * random phase, then every --interval with a little jitter), at most one in
 * flight; --threshold misses in a row, with QEMU running the guest (its
 * monitor says so), make a failure; an answer after one, a recovery. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "util.h"
#include "watch.h"

static uint64_t
rnd(struct watcher *w)
{
	/* xorshift64: jitter only, nothing to guess */
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

/* A uniform integer in [0, n). */
int64_t
rnd_below(struct watcher *w, int64_t n)
{
	return n > 0 ? (int64_t)(rnd(w) % (uint64_t)n) : 0;
}

void
start_pings(struct watcher *w, int64_t now)
{
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (!g->watched || g->in_flight || now < g->next_ping)
			continue;
		/* +-5% jitter keeps the guests from falling into step again */
		g->next_ping +=
		    w->interval_ms - w->interval_ms / 20 + rnd_below(w, w->interval_ms / 10 + 1);
		if (g->next_ping <= now)
			g->next_ping = now + w->interval_ms;
		g->in_flight = 1;
		qga_call_start(&g->call, now);
		if (qga_call_done(&g->call))
			on_result(w, g, now);
	}
}

/* Failed, and in this QEMU: the failure of the instance a restart
 * replaced stays open until an answer, but must not hide one of the new. */
static int
failed_now(const struct guest *g)
{
	return g->failed && g->failed_pid == g->pid;
}

static void
declare_failed(struct watcher *w, struct guest *g)
{
	g->failed = 1;
	g->failed_pid = g->pid;
	log_err("%u: guest agent failed %u times in a row (QEMU %s): %s", g->vmid, g->misses,
	        g->qemu_status, g->call.detail);
	emit(w, g->vmid, "failed", qga_result_name(g->last_result),
	     json_pack("{s:s, s:i, s:s, s:s, s:s}", "reason", qga_result_name(g->last_result),
	               "misses", (int)g->misses, "qemu_status", g->qemu_status, "detail",
	               g->call.detail, "uuid", g->uuid));
	queue_event(w, g, EV_FAILED, 0);
	if (w->o->restart)
		restart_failed(w, g);
	update_status(w);
}

static void
on_answer(struct watcher *w, struct guest *g, int64_t now)
{
	double gap = g->last_ok ? (now - g->last_ok) / 1000.0 : 0;
	char s[32];

	if (g->failed) {
		double down = (now - g->miss_since) / 1000.0;
		g->failed = 0;
		snprintf(s, sizeof s, "%.1f", down);
		log_info("%u: guest agent answers again after %.1f s", g->vmid, down);
		emit(w, g->vmid, "recovered", s, json_pack("{s:f}", "downtime", down));
		queue_event(w, g, EV_RECOVERED, down);
		update_status(w);
	}
	if (g->last_ok && w->o->timesync_gap_s > 0 && gap >= w->o->timesync_gap_s) {
		snprintf(s, sizeof s, "%.1f", gap);
		emit(w, g->vmid, "timesync", s, json_pack("{s:f}", "gap", gap));
		run_timesync(w, g);
	}
	g->last_ok = now;
	g->misses = 0;
	g->grace_until = 0;
	g->pause_logged = 0;
}

/* The monitor answered (or not): a paused guest is no failure; a running
 * one, a panicked one, or a QEMU whose monitor is silent too, is. */
void
on_qmp(struct watcher *w, struct guest *g)
{
	const char *st = g->qmp.result == QMP_OK ? qmp_run_state(g->qmp.ret) : NULL;

	g->checking = 0;
	if (!g->watched || failed_now(g))
		return;
	if (st && qemu_status_hands_off(st, 1)) {
		if (!g->pause_logged)
			log_info("%u: agent silent, QEMU reports '%s': not a failure", g->vmid, st);
		g->pause_logged = 1;
		g->misses = 0;
		return;
	}
	snprintf(g->qemu_status, sizeof g->qemu_status, "%s", st ? st : "unknown");
	if (!st)
		log_debug("%u: %s", g->vmid,
		          g->qmp.result == QMP_OK ? "monitor: query-status without a status"
		                                  : g->qmp.detail);
	declare_failed(w, g);
}

void
on_result(struct watcher *w, struct guest *g, int64_t now)
{
	enum qga_result r = g->call.result;

	g->in_flight = 0;
	if (g->first_round) {
		g->first_round = 0;
		w->first_pending--;
	}
	if (!g->watched)
		return;
	if (r == QGA_OK) {
		on_answer(w, g, now);
		return;
	}
	if (r == QGA_NOSOCKET) {
		/* QEMU makes the socket at start and keeps it: this instance has
		 * no agent device (agent enabled after it started). Not a miss. */
		if (!g->nosock_warned)
			log_warn("%u: agent enabled, but QEMU runs without %s: skipped until it "
			         "restarts",
			         g->vmid, g->call.path);
		g->nosock_warned = 1;
		return;
	}
	if (now < g->grace_until) {
		log_debug("%u: %s in the grace period", g->vmid, qga_result_name(r));
		return;
	}
	if (g->lock[0]) {
		log_debug("%u: %s while locked (%s): not counted", g->vmid, qga_result_name(r),
		          g->lock);
		g->misses = 0;
		return;
	}
	g->last_result = r;
	if (g->misses++ == 0)
		g->miss_since = g->call.start_ms;
	log_debug("%u: miss %u: %s", g->vmid, g->misses, g->call.detail);
	if (g->misses < w->o->threshold || failed_now(g) || g->checking)
		return;
	/* Stopped since the last scan? That is not a failure. */
	if (running_pid(w, g) == 0) {
		stop_watch(w, g, "stopped");
		return;
	}
	g->checking = 1;
	qmp_call_start(&g->qmp, now);
	if (qmp_call_done(&g->qmp))
		on_qmp(w, g);
}
