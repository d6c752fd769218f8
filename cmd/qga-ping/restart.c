/* qga-ping --watch --restart: a guest whose agent failed (--threshold
 * misses in a row while QEMU runs it) is restarted through lib/action, the
 * same safe path tcpcheck's actions take: not while its config is locked,
 * through ha-manager when HA manages it (not at all when HA asks for a
 * state other than started), at most --max-restarts in --restart-window,
 * and never a guest QEMU reports paused, suspended, migrating or shut down
 * (asked again at the last moment). One restart per failure; the guest's
 * recovery (its agent answering again) ends the failure. Lines on stdout:
 *   VMID restart start|ok|failed|timeout|skipped|held */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "watch.h"

static void
restart_line(void *ctx, const char *line, size_t len)
{
	const struct guest *g = ctx;
	char prefix[32];

	snprintf(prefix, sizeof prefix, "%u: restart", g->vmid);
	if (len)
		log_info_bytes(prefix, line, len);
}

static void
held(struct watcher *w, struct guest *g, const char *why)
{
	log_warn("%u: guest agent failed; not restarting it: %s", g->vmid, why);
	emit(w, g->vmid, "restart", "held",
	     json_pack("{s:s, s:s}", "result", "held", "detail", why));
}

/* May it be restarted now? 0 yes (sid set when HA manages it), else 1 with
 * the reason in why. */
static int
may_restart(struct watcher *w, struct guest *g, char *sid, size_t sidlen, char *why, size_t whylen)
{
	int64_t window = (int64_t)(w->o->restart_window_s * 1000);
	size_t n;

	if (action_locked(w->o->pve_dir, w->o->node, GUEST_QEMU, g->vmid, why, whylen) != 0)
		return 1;
	if (ha_decide(&w->ha, GUEST_QEMU, g->vmid, sid, sidlen, why, whylen))
		return 1;
	n = action_window_count(&g->restarts, mono_ms(), window);
	if (n >= w->o->max_restarts) {
		snprintf(why, whylen, "%zu restarts within %g s (--max-restarts %u)", n,
		         w->o->restart_window_s, w->o->max_restarts);
		return 1;
	}
	return 0;
}

void
restart_failed(struct watcher *w, struct guest *g)
{
	char why[256], sid[32], desc[300];
	struct action_req r = {
		.who = "qga-ping",
		.evidence = "the agent's silence",
		.vmid = g->vmid,
		.type = GUEST_QEMU,
		.name = g->name,
		.node = w->o->node,
		.reason = "qga-failed",
		.run_dir = w->o->qga_dir,
		.wait_interval = w->o->restart_wait_s,
		.timeout = w->o->restart_timeout_s,
		.systemd_run = w->o->systemd_run,
		.shutdown_hands_off = 1,
	};

	if (g->restarting)
		return;
	if (may_restart(w, g, sid, sizeof sid, why, sizeof why)) {
		held(w, g, why);
		return;
	}
	r.ha_sid = sid[0] ? sid : NULL;
	action_describe(&r, desc, sizeof desc);
	if (action_start(&g->act, &r) < 0) {
		snprintf(why, sizeof why, "cannot start the restart: %s", strerror(errno));
		held(w, g, why);
		return;
	}
	g->restarting = 1;
	action_window_add(&g->restarts, mono_ms());
	log_info("%u: guest agent failed: restarting the guest: %s", g->vmid, desc);
	emit(w, g->vmid, "restart", "start",
	     json_pack("{s:s, s:s}", "result", "start", "command", desc));
}

void
restart_output(struct guest *g)
{
	action_output(&g->act, 0, restart_line, g);
}

void
restart_finished(struct watcher *w, struct guest *g)
{
	struct action_result res;
	const char *word;

	action_finish(&g->act, &res, restart_line, g);
	g->restarting = 0;
	word = res.skipped ? "skipped" : res.timed_out ? "timeout" : res.ok ? "ok" : "failed";
	if (res.skipped) {
		/* It decided not to act: not counted. */
		action_window_drop_last(&g->restarts);
		log_info("%u: restart skipped: %s", g->vmid, res.text);
	} else if (res.ok) {
		log_info("%u: restart done: %s", g->vmid, res.text);
	} else {
		log_err("%u: restart failed: %s", g->vmid, res.text);
	}
	emit(w, g->vmid, "restart", word, json_pack("{s:s, s:s}", "result", word, "detail", res.text));
}

void
restart_expire(struct watcher *w, int64_t now)
{
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (g->restarting && action_expire(&g->act, now))
			log_err("%u: restart still running after %g s: terminating it", g->vmid,
			        w->o->restart_timeout_s);
	}
}

int64_t
restart_next_deadline(const struct watcher *w)
{
	int64_t d = INT64_MAX;

	for (size_t i = 0; i < w->ng; i++) {
		const struct guest *g = w->g[i];
		if (g->restarting && !g->act.timed_out && g->act.deadline < d)
			d = g->act.deadline;
	}
	return d;
}

void
restart_stop(struct watcher *w, struct guest *g)
{
	if (!g->restarting)
		return;
	action_abort(&g->act);
	restart_finished(w, g);
}
