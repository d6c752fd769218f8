/* qga-ping --watch: which guests are watched. Every --interval the node is
 * scanned: the guest list (lib/vmlist), each guest's live config (read
 * again when it changed) and its QEMU (pid file and process), so starts,
 * stops and migrations are followed. */
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

static size_t
guest_index(const struct watcher *w, uint32_t vmid, int *found)
{
	size_t lo = 0, hi = w->ng;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->g[mid]->vmid < vmid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < w->ng && w->g[lo]->vmid == vmid;
	return lo;
}

struct guest *
guest_find(const struct watcher *w, uint32_t vmid)
{
	int found;
	size_t i = guest_index(w, vmid, &found);

	return found ? w->g[i] : NULL;
}

static struct guest *
guest_add(struct watcher *w, uint32_t vmid)
{
	int found;
	size_t i = guest_index(w, vmid, &found);
	struct guest *g = xcalloc(1, sizeof *g);
	char *sock = qga_socket_path(w->o->qga_dir, vmid);

	g->vmid = vmid;
	g->conf_path = guest_conf_path(w->o->pve_dir, w->o->node, GUEST_QEMU, vmid);
	g->pid_path = xasprintf("%s/%u.pid", w->o->qga_dir, vmid);
	qga_call_init(&g->call, sock, PING_COMMAND, w->o->timeout_ms);
	free(sock);
	sock = xasprintf("%s/%u.qmp", w->o->qga_dir, vmid);
	qmp_call_init(&g->qmp, sock, QMP_QUERY_STATUS, w->o->timeout_ms);
	free(sock);
	w->g = xreallocarray(w->g, w->ng + 1, sizeof *w->g);
	memmove(w->g + i + 1, w->g + i, (w->ng - i) * sizeof *w->g);
	w->g[i] = g;
	w->ng++;
	return g;
}

void
guest_remove(struct watcher *w, size_t i)
{
	struct guest *g = w->g[i];

	if (g->nqueue)
		log_warn("%u: left this node with %zu --exec events not run", g->vmid, g->nqueue);
	if (g->first_round)
		w->first_pending--;
	restart_stop(w, g);
	action_window_free(&g->restarts);
	qga_call_cleanup(&g->call);
	qmp_call_cleanup(&g->qmp);
	free(g->conf_path);
	free(g->pid_path);
	free(g);
	memmove(w->g + i, w->g + i + 1, (w->ng - i - 1) * sizeof *w->g);
	w->ng--;
}

/* Rereads the live config when it changed. -1 when it is gone. */
static int
reload_conf(struct guest *g)
{
	struct guest_conf c;
	struct filestamp st;
	const char *lock;

	if (!filestamp_take(g->conf_path, &st))
		return -1;
	if (g->have_conf_st && filestamp_same(&st, &g->conf_st))
		return 0;
	if (guest_conf_load(g->conf_path, GUEST_QEMU, &c) < 0) {
		if (errno == ENOENT)
			return -1;
		log_err("%s: %s", g->conf_path, strerror(errno));
		return 0; /* keep what we knew */
	}
	if (c.nbad)
		log_warn("%s:%u: malformed line skipped", g->conf_path, c.first_bad);
	g->conf_st = st;
	g->have_conf_st = 1;
	g->agent = guest_conf_agent_enabled(&c);
	lock = guest_conf_lock(&c);
	snprintf(g->lock, sizeof g->lock, "%s", lock ? lock : "");
	if (guest_conf_smbios_uuid(&c, g->uuid) < 0)
		g->uuid[0] = '\0';
	snprintf(g->name, sizeof g->name, "%s",
	         guest_conf_get(&c, "name") ? guest_conf_get(&c, "name") : "");
	guest_conf_free(&c);
	return 0;
}

/* When the process started (clock ticks after boot); 0 when it is gone or
 * a zombie, so a killed QEMU stops counting as running at once. */
static unsigned long long
proc_starttime(pid_t pid)
{
	struct proc_stat ps;

	return proc_stat_read(pid, &ps) == 0 ? ps.starttime : 0;
}

/* The pid of the guest's QEMU, checked as qemu-server does; the full check
 * runs only when the pid file or the process changed. */
pid_t
running_pid(const struct watcher *w, struct guest *g)
{
	struct filestamp st;

	if (!filestamp_take(g->pid_path, &st)) {
		g->pid = 0;
		return 0;
	}
	if (g->pid && filestamp_same(&st, &g->pid_st) && proc_starttime(g->pid) == g->pstart)
		return g->pid;
	g->pid_st = st;
	g->pid = qemu_running_pid(w->o->qga_dir, g->vmid);
	g->pstart = g->pid ? proc_starttime(g->pid) : 0;
	return g->pid;
}

static void
start_watch(struct watcher *w, struct guest *g, const char *why, int64_t now)
{
	int64_t grace_ms = (int64_t)(w->o->grace_s * 1000);
	int64_t left = grace_ms - proc_age_ms(g->pstart);

	g->watched = 1;
	g->misses = 0;
	g->last_ok = 0;
	g->nosock_warned = 0;
	g->grace_until = now + (left > 0 ? left : 0);
	if (g->arrived && g->arrived + grace_ms > g->grace_until)
		g->grace_until = g->arrived + grace_ms;
	/* A random phase spreads the pings of many guests over the interval. */
	g->next_ping = now + rnd_below(w, w->scans ? w->interval_ms : w->interval_ms / 4 + 1);
	if (!w->ready && !g->first_round) {
		g->first_round = 1;
		w->first_pending++;
	}
	emit(w, g->vmid, "watch", why,
	     json_pack("{s:s, s:f}", "reason", why, "grace",
	               (double)(g->grace_until - now) / 1000.0));
}

void
stop_watch(struct watcher *w, struct guest *g, const char *why)
{
	if (!g->watched)
		return;
	g->watched = 0;
	g->misses = 0;
	g->last_ok = 0;
	/* An exchange still in flight ends by its deadline; its result is ignored. */
	emit(w, g->vmid, "unwatch", why, json_pack("{s:s}", "reason", why));
}

int
scan(struct watcher *w, int64_t now)
{
	if (vmlist_refresh(&w->vl, 0) < 0)
		return -1;
	if (w->o->restart)
		ha_resources_refresh(&w->ha, 0);
	for (size_t i = 0; i < w->ng; i++)
		w->g[i]->seen = 0;
	for (size_t i = 0; i < w->vl.map.n; i++) {
		const struct vm_owner *o = &w->vl.map.e[i];
		struct guest *g;
		const char *why = "running";

		if (o->type != GUEST_QEMU || strcmp(o->node, w->o->node) != 0)
			continue;
		if (!(g = guest_find(w, o->vmid))) {
			g = guest_add(w, o->vmid);
			g->arrived = w->scans ? now : 0;
		}
		g->seen = 1;
		/* Listed as ours without a config: a rename in flight; the next
		 * scan knows better. */
		if (reload_conf(g) < 0)
			continue;
		pid_t was = g->watched ? g->pid : 0;
		pid_t pid = g->agent ? running_pid(w, g) : 0;
		if (w->scans)
			why = g->arrived == now ? "migrate-in" : "start";
		if (was && pid != was)
			stop_watch(w, g, g->agent ? "stopped" : "agent-off");
		if (pid && !g->watched)
			start_watch(w, g, why, now);
	}
	for (size_t i = w->ng; i-- > 0;) {
		struct guest *g = w->g[i];
		if (g->seen)
			continue;
		const struct vm_owner *o = vmlist_find(&w->vl.map, g->vmid);
		stop_watch(w, g, o && strcmp(o->node, w->o->node) != 0 ? "migrated" : "destroyed");
		guest_remove(w, i);
	}
	w->scans++;
	update_status(w);
	return 0;
}
