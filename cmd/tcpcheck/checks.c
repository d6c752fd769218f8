/* tcpcheck --watch: checking the watched guests. Each is checked on its own
 * cadence (a timer heap); a check connects to all of its ports at once,
 * and its result moves the guest between healthy, failing and acting. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "procfs.h"
#include "util.h"
#include "watch.h"

static void check_done(struct watcher *w, struct guest *g);

int64_t
guest_due_key(const void *e)
{
	return ((const struct guest *)e)->next_check;
}

size_t *
guest_due_slot(void *e)
{
	return &((struct guest *)e)->heap_slot;
}

void
cancel_check(struct watcher *w, struct guest *g)
{
	if (g->checking)
		for (size_t i = 0; i < g->nprobes; i++)
			prober_cancel(&w->pr, &g->probes[i]);
	g->checking = 0;
	g->pending = 0;
}

void
unschedule(struct watcher *w, struct guest *g)
{
	heap_remove(&w->due, g);
}

void
schedule(struct watcher *w, struct guest *g, int64_t when)
{
	g->next_check = when;
	if (g->heap_slot == HEAP_NONE)
		heap_push(&w->due, g);
	else
		heap_fix(&w->due, g);
}

static void
on_probe(struct probe *p)
{
	struct guest *g = p->user;

	if (!g->checking || g->pending == 0)
		return;
	if (--g->pending == 0)
		check_done(g->w, g);
}

static void
start_check(struct watcher *w, struct guest *g, int64_t now)
{
	int64_t deadline = now + (int64_t)(g->conf.timeout * 1000);
	size_t n = g->conf.nall + g->conf.nany;

	g->checking = 1;
	g->check_start = now;
	g->pending = n;
	if (n == 0) {
		check_done(w, g);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct probe *p = &g->probes[i];
		p->addrlen = ipaddr_to_sockaddr(&g->conf.addr,
		                                i < g->conf.nall ? g->conf.portsall[i]
		                                                 : g->conf.portsany[i - g->conf.nall],
		                                &p->addr);
		p->deadline_ms = deadline;
		p->done = on_probe;
		p->user = g;
		p->state = PROBE_IDLE;
	}
	for (size_t i = 0; i < n && g->checking; i++)
		prober_start(&w->pr, &g->probes[i]);
}

static void
describe_failure(const struct guest *g, char *out, size_t len)
{
	size_t off = 0;
	int any_open = 0;

	out[0] = '\0';
	for (size_t i = 0; i < g->conf.nall + g->conf.nany; i++) {
		const struct probe *p = &g->probes[i];
		if (i >= g->conf.nall && p->state == PROBE_OPEN)
			any_open = 1;
	}
	for (size_t i = 0; i < g->conf.nall + g->conf.nany && off < len; i++) {
		const struct probe *p = &g->probes[i];
		int bad = i < g->conf.nall ? p->state != PROBE_OPEN : !any_open;
		if (!bad)
			continue;
		unsigned port =
		    i < g->conf.nall ? g->conf.portsall[i] : g->conf.portsany[i - g->conf.nall];
		off +=
		    snprintf(out + off, len - off, "%s%s%s%s:%u %s", off ? ", " : "",
		             strchr(g->conf.ip, ':') ? "[" : "", g->conf.ip,
		             strchr(g->conf.ip, ':') ? "]" : "", port, probe_state_name(p->state));
	}
}

static void
maybe_scheduled_restart(struct watcher *w, struct guest *g)
{
	char why[128];

	if (g->conf.restart_at >= 0) {
		time_t now = time(NULL), slot;
		struct tm tm;
		localtime_r(&now, &tm);
		tm.tm_hour = g->conf.restart_at / 60;
		tm.tm_min = g->conf.restart_at % 60;
		tm.tm_sec = 0;
		tm.tm_isdst = -1;
		slot = mktime(&tm);
		if (slot > g->last_slot && now >= slot) {
			g->last_slot = slot;
			snprintf(why, sizeof why, "scheduled restart at %02d:%02d",
			         g->conf.restart_at / 60, g->conf.restart_at % 60);
			try_act(w, g, why, 1);
			return;
		}
	}
	if (g->conf.restart_after > 0 && g->type == GUEST_QEMU) {
		struct proc_stat st;
		double up;

		if (proc_stat_read((pid_t)g->instance, &st) == 0 &&
		    (up = proc_age_ms(st.starttime) / 1000.0) >= g->conf.restart_after) {
			char d[32];
			fmt_duration(up, d, sizeof d);
			snprintf(why, sizeof why, "uptime %s reached restart_after", d);
			try_act(w, g, why, 1);
			return;
		}
	} else if (g->conf.restart_after > 0 && !g->warned_lxc_uptime) {
		log_warn("%s: restart_after is ignored for container %u (no uptime to read)",
		         g->path, g->vmid);
		g->warned_lxc_uptime = 1;
	}
}

static void
check_done(struct watcher *w, struct guest *g)
{
	int64_t now = mono_ms(), next;
	char fail[200], d[32];
	int healthy;

	g->checking = 0;
	describe_failure(g, fail, sizeof fail);
	healthy = fail[0] == '\0';
	if (healthy) {
		switch (g->state) {
		case GS_GRACE:
			transition(w, g, GS_HEALTHY, "up");
			break;
		case GS_FAILING:
		case GS_HELD:
			fmt_duration((now - g->fail_since) / 1000.0, d, sizeof d);
			transition(w, g, GS_HEALTHY, "recovered after %s", d);
			break;
		case GS_GAVE_UP:
			transition(w, g, GS_HEALTHY, "recovered; actions re-armed");
			log_info("guest %u (%s) is healthy again: actions re-armed", g->vmid,
			         gname(g));
			break;
		default:
			break;
		}
		g->fail_since = 0;
		g->grace_until = 0;
		if (now - g->last_log >= g->conf.log_interval * 1000) {
			fmt_duration((now - g->since) / 1000.0, d, sizeof d);
			log_info("guest %u (%s) still healthy, for %s", g->vmid, gname(g), d);
			g->last_log = now;
		}
		next = g->check_start + (int64_t)(g->conf.check_interval * 1000);
		maybe_scheduled_restart(w, g);
	} else {
		next = g->check_start + (int64_t)(watchconf_fail_interval(&g->conf) * 1000);
		if (g->state == GS_GRACE && now < g->grace_until) {
			log_debug("guest %u in grace: %s", g->vmid, fail);
		} else {
			if (g->state == GS_GRACE || g->state == GS_HEALTHY) {
				g->fail_since = g->check_start;
				g->last_log = now;
				transition(w, g, GS_FAILING, "%s", fail);
			} else if (now - g->last_log >= g->conf.log_interval * 1000) {
				fmt_duration((now - g->fail_since) / 1000.0, d, sizeof d);
				log_warn("guest %u (%s) still failing after %s: %s", g->vmid,
				         gname(g), d, fail);
				g->last_log = now;
			}
			if ((g->state == GS_FAILING || g->state == GS_HELD) &&
			    now - g->fail_since >= (int64_t)(g->conf.fail_threshold * 1000)) {
				fmt_duration((now - g->fail_since) / 1000.0, d, sizeof d);
				char why[300];
				snprintf(why, sizeof why, "failing for %s: %s", d, fail);
				try_act(w, g, why, 0);
			}
		}
	}
	if (g->state != GS_ACTING && g->state != GS_IDLE && !w->quitting)
		schedule(w, g, next > now ? next : now);
}

void
run_due(struct watcher *w, int64_t now)
{
	struct guest *g;

	while ((g = heap_top(&w->due)) && g->next_check <= now) {
		unschedule(w, g);
		if (!g->checking && g->state != GS_IDLE && g->state != GS_ACTING)
			start_check(w, g, now);
	}
}
