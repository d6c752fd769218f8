/* tcpcheck --watch: acting on a guest that stays down, through lib/action.
 * try_act asks its questions (may it act now, is it over its limit), then
 * starts the action; action_finished takes the result. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "log.h"
#include "util.h"
#include "watch.h"

static void held(struct watcher *w, struct guest *g, int scheduled, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
held(struct watcher *w, struct guest *g, int scheduled, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (scheduled)
		log_info("guest %u (%s): scheduled restart skipped: %s", g->vmid, gname(g), why);
	else
		transition(w, g, GS_HELD, "%s", why);
}

/* May it act now? 0 yes (sid set when HA manages it), 1 no with the reason
 * in why, -1 when it stopped or restarted meanwhile (evaluate it anew). */
static int
may_act(struct watcher *w, struct guest *g, int scheduled, char *sid, size_t sidlen, char *why,
        size_t whylen)
{
	if (in_maintenance(w, g, why, whylen))
		return 1;
	if (!scheduled && g->conf.fail_threshold <= 0) {
		snprintf(why, whylen, "fail_threshold=0: never acting");
		return 1;
	}
	if (action_locked(w->o->pve_dir, w->o->node, g->type, g->vmid, why, whylen) != 0)
		return 1;
	if (current_instance(w, g) != g->instance || !g->instance)
		return -1;
	return ha_decide(&w->ha, g->type, g->vmid, sid, sidlen, why, whylen);
}

/* Is it over its limit, max_actions within action_window? Said once, as
 * the state gave-up, until it is healthy again. */
static int
over_limit(struct watcher *w, struct guest *g, int64_t now)
{
	size_t n = action_window_count(&g->acts, now, (int64_t)(g->conf.action_window * 1000));

	if (n < g->conf.max_actions)
		return 0;
	if (g->state != GS_GAVE_UP) {
		char d[32];
		fmt_duration(g->conf.action_window, d, sizeof d);
		transition(w, g, GS_GAVE_UP, "%zu actions within %s (max_actions=%u)", n, d,
		           g->conf.max_actions);
		log_err("guest %u (%s): giving up after %zu actions within %s; no more actions "
		        "until it is healthy again",
		        g->vmid, gname(g), n, d);
	}
	return 1;
}

static void
start_action(struct watcher *w, struct guest *g, const char *why, int scheduled, const char *sid)
{
	struct action_req r = {
		.who = "tcpcheck",
		.evidence = "the port checks",
		.vmid = g->vmid,
		.type = g->type,
		.name = gname(g),
		.node = w->o->node,
		.ip = g->conf.ip,
		.reason = scheduled ? "scheduled" : "failed",
		.run_dir = w->o->run_dir,
		.lxc_dir = w->o->lxc_dir,
		.action = g->conf.action,
		.ha_sid = sid,
		.wait_interval = g->conf.wait_interval,
		.timeout = watchconf_action_timeout(&g->conf),
		.systemd_run = w->o->systemd_run,
		/* A guest that powered itself off: Proxmox starts QEMU with
		 * -no-shutdown, and qmeventd (or a backup) has it in hand. */
		.shutdown_hands_off = 1,
	};
	struct epoll_event ev = { .events = EPOLLIN };
	char desc[300];

	action_describe(&r, desc, sizeof desc);
	if (w->o->dry_run) {
		held(w, g, scheduled, "dry run: would run %s", desc);
		return;
	}
	if (action_start(&g->act, &r) < 0) {
		held(w, g, scheduled, "cannot start the action: %s", strerror(errno));
		return;
	}
	ev.data.ptr = &g->act_output;
	epoll_ctl(w->epfd, EPOLL_CTL_ADD, g->act.proc.out, &ev);
	ev.data.ptr = &g->act_done;
	epoll_ctl(w->epfd, EPOLL_CTL_ADD, g->act.proc.fd, &ev);
	g->acting = 1;
	g->act_scheduled = scheduled;
	if (!scheduled)
		action_window_add(&g->acts, mono_ms());
	w->nacting++;
	cancel_check(w, g);
	unschedule(w, g);
	transition(w, g, GS_ACTING, "%s; %s", why, desc);
	log_info("guest %u (%s): %s; running %s", g->vmid, gname(g), why, desc);
	notify_status(w);
}

/* g failed long enough (or its scheduled restart is due): act, unless one
 * of the questions says no. */
void
try_act(struct watcher *w, struct guest *g, const char *why, int scheduled)
{
	char sid[32], hold[256];
	int rc = may_act(w, g, scheduled, sid, sizeof sid, hold, sizeof hold);

	if (rc < 0)
		evaluate(w, g, mono_ms()); /* stopped or restarted meanwhile */
	else if (rc > 0)
		held(w, g, scheduled, "%s", hold);
	else if (scheduled || !over_limit(w, g, mono_ms()))
		start_action(w, g, why, scheduled, sid[0] ? sid : NULL);
}

static void
log_action_line(void *ctx, const char *line, size_t len)
{
	const struct guest *g = ctx;
	char prefix[32];

	snprintf(prefix, sizeof prefix, "guest %u", g->vmid);
	if (len)
		log_info_bytes(prefix, line, len);
}

void
relay_output(struct guest *g)
{
	action_output(&g->act, 0, log_action_line, g);
}

void
action_finished(struct watcher *w, struct guest *g)
{
	struct action_result res;
	int64_t now;

	epoll_ctl(w->epfd, EPOLL_CTL_DEL, g->act.proc.fd, NULL);
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, g->act.proc.out, NULL);
	action_finish(&g->act, &res, log_action_line, g);
	now = mono_ms();
	g->acting = 0;
	w->nacting--;

	if (g->gone) {
		size_t pos;
		if (find_guest(w, g->vmid, &pos) == g)
			remove_guest(w, pos);
		return;
	}
	if (res.skipped) {
		/* It decided not to act: not counted, and a scheduled restart
		 * leaves a healthy guest healthy. */
		if (g->act_scheduled)
			g->state = GS_HEALTHY;
		else
			action_window_drop_last(&g->acts);
		held(w, g, g->act_scheduled, "%s", res.text);
	} else {
		if (res.ok)
			log_info("guest %u (%s): %s", g->vmid, gname(g), res.text);
		else
			log_err("guest %u (%s): %s", g->vmid, gname(g), res.text);
		g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
		g->fail_since = 0;
		g->state = GS_GRACE;
		snprintf(g->reason, sizeof g->reason, "%s", res.text);
		print_transition(w, g);
		g->since = now;
		/* The new instance is ours: no "restarted" line for it. */
		if (g->type == GUEST_LXC) {
			free(w->lxc);
			w->lxc = NULL;
			w->nlxc = 0;
			lxc_running_scan(w->o->lxc_dir, &w->lxc, &w->nlxc);
		}
		g->instance = current_instance(w, g);
	}
	evaluate(w, g, now);
	if (g->state != GS_IDLE && !w->quitting)
		schedule(w, g, now + (int64_t)(watchconf_fail_interval(&g->conf) * 1000));
	notify_status(w);
}

/* An action past its deadline is stopped with everything it started
 * (lib/action: SIGTERM, SIGKILL ACTION_KILL_AFTER_MS later). */
void
enforce_action_deadlines(struct watcher *w, int64_t now)
{
	for (size_t i = 0; i < w->n && w->nacting; i++) {
		struct guest *g = w->g[i];
		if (g->acting && action_expire(&g->act, now))
			log_err("guest %u (%s): action still running after %gs: terminating it",
			        g->vmid, gname(g), watchconf_action_timeout(&g->conf));
	}
}

int64_t
next_action_deadline(const struct watcher *w)
{
	int64_t d = INT64_MAX;

	for (size_t i = 0; i < w->n && w->nacting; i++) {
		const struct guest *g = w->g[i];
		if (g->acting && !g->act.timed_out && g->act.deadline < d)
			d = g->act.deadline;
	}
	return d;
}
