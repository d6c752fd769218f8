/* tcpcheck --watch: which guests are watched. Each scan (every --interval,
 * or at once on SIGHUP) re-reads what may have changed: the maintenance
 * flag file, the defaults, the per-guest files (by their stamps), PVE's
 * guest list (lib/vmlist), the HA resources, and whether each guest runs
 * here. A guest is watched when its file is valid and enabled, this node
 * owns it and it runs. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "watch.h"

static void
load_defaults(struct watcher *w)
{
	char err[400];
	int ok = 1;

	watchconf_free(&w->defaults);
	watchconf_defaults(&w->defaults, w->o->timeout_ms);
	if (watchconf_load(&w->defaults, w->mvmm_path, err, sizeof err) < 0 ||
	    watchconf_load(&w->defaults, w->defaults_path, err, sizeof err) < 0) {
		log_err("%s; no guest is watched until this is fixed", err);
		ok = 0;
	}
	w->defaults_ok = ok;
	w->defaults_changed = 1;
}

static void
read_pve_name(struct watcher *w, struct guest *g)
{
	char *path = guest_conf_path(w->o->pve_dir, w->o->node, g->type, g->vmid);
	struct guest_conf gc;

	g->pve_name[0] = '\0';
	if (guest_conf_load(path, g->type, &gc) == 0) {
		const char *name = guest_conf_get(&gc, g->type == GUEST_QEMU ? "name" : "hostname");
		if (name)
			snprintf(g->pve_name, sizeof g->pve_name, "%s", name);
		guest_conf_free(&gc);
	}
	free(path);
}

struct guest *
find_guest(struct watcher *w, uint32_t vmid, size_t *pos)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->g[mid]->vmid < vmid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < w->n && w->g[lo]->vmid == vmid ? w->g[lo] : NULL;
}

static struct guest *
add_guest(struct watcher *w, uint32_t vmid, size_t pos)
{
	struct guest *g = xcalloc(1, sizeof *g);

	g->w = w;
	g->vmid = vmid;
	g->path = xasprintf("%s/%u.conf", w->o->config_dir, vmid);
	g->heap_slot = HEAP_NONE;
	g->act.status_fd = g->act.proc.fd = g->act.proc.out = g->act.proc.err = -1;
	g->act_output = (struct evsrc){ EV_ACTION_OUTPUT, g };
	g->act_done = (struct evsrc){ EV_ACTION_DONE, g };
	g->state = GS_IDLE;
	w->g = xreallocarray(w->g, w->n + 1, sizeof *w->g);
	memmove(&w->g[pos + 1], &w->g[pos], (w->n - pos) * sizeof *w->g);
	w->g[pos] = g;
	w->n++;
	return g;
}

static void
free_guest(struct watcher *w, struct guest *g)
{
	cancel_check(w, g);
	unschedule(w, g);
	watchconf_free(&g->conf);
	free(g->probes);
	action_window_free(&g->acts);
	free(g->path);
	free(g);
}

void
remove_guest(struct watcher *w, size_t pos)
{
	free_guest(w, w->g[pos]);
	memmove(&w->g[pos], &w->g[pos + 1], (w->n - pos - 1) * sizeof *w->g);
	w->n--;
}

static void
reload_conf(struct watcher *w, struct guest *g)
{
	struct watch_conf c;
	char err[400];
	int rc;

	watchconf_copy(&c, &w->defaults);
	if (!w->defaults_ok) {
		g->conf_ok = 0;
	} else if ((rc = watchconf_load(&c, g->path, err, sizeof err)) < 0) {
		log_err("%s; guest %u is not watched", err, g->vmid);
		g->conf_ok = 0;
	} else if (rc == 0 && watchconf_validate(&c, err, sizeof err) < 0) {
		log_err("%s: %s; guest %u is not watched", g->path, err, g->vmid);
		g->conf_ok = 0;
	} else {
		g->conf_ok = 1;
		if (c.nall + c.nany == 0 && c.restart_at < 0 && c.restart_after <= 0)
			log_warn("%s: no portsall or portsany: guest %u is always healthy", g->path,
			         g->vmid);
	}
	watchconf_free(&g->conf);
	g->conf = c;
	/* New ports or addresses: the check in flight is moot. */
	if (g->checking) {
		cancel_check(w, g);
		schedule(w, g, mono_ms());
	}
	if (g->nprobes != g->conf.nall + g->conf.nany) {
		free(g->probes);
		g->nprobes = g->conf.nall + g->conf.nany;
		g->probes = g->nprobes ? xcalloc(g->nprobes, sizeof *g->probes) : NULL;
	}
}

int
in_maintenance(struct watcher *w, const struct guest *g, char *why, size_t len)
{
	if (w->cluster_maint)
		snprintf(why, len, "maintenance (cluster-wide: %s)", w->maint_path);
	else if (w->node_maint)
		snprintf(why, len, "maintenance (node-local, SIGUSR2)");
	else if (g->conf.maintenance)
		snprintf(why, len, "maintenance (maintenance=1)");
	else
		return 0;
	return 1;
}

uint64_t
current_instance(struct watcher *w, const struct guest *g)
{
	if (g->type == GUEST_QEMU)
		return (uint64_t)qemu_running_pid(w->o->run_dir, g->vmid);
	return lxc_running_find(w->lxc, w->nlxc, g->vmid);
}

static void
start_watching(struct watcher *w, struct guest *g, const char *why)
{
	int64_t now = mono_ms();
	double jitter = (double)rand_r(&w->seed) / RAND_MAX;
	double spread = g->conf.check_interval < 1 ? g->conf.check_interval : 1;

	read_pve_name(w, g);
	g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
	g->fail_since = 0;
	g->last_log = now;
	g->last_slot = time(NULL);
	transition(w, g, GS_GRACE, "%s", why);
	/* Spread the first checks so a node full of guests does not connect
	 * to all of them in the same millisecond. */
	schedule(w, g, now + (int64_t)(jitter * spread * 1000));
}

static void
go_idle(struct watcher *w, struct guest *g, const char *why)
{
	cancel_check(w, g);
	unschedule(w, g);
	transition(w, g, GS_IDLE, "%s", why);
}

/* Decides whether g is watched, from its config and what PVE shows now. */
void
evaluate(struct watcher *w, struct guest *g, int64_t now)
{
	const struct vm_owner *own = w->vl.have_map ? vmlist_find(&w->vl.map, g->vmid) : NULL;
	char why[160] = "";
	uint64_t inst = 0;
	int owned = own && strcmp(own->node, w->o->node) == 0;

	if (own)
		g->type = own->type;
	if (owned)
		inst = current_instance(w, g);
	if (g->state == GS_ACTING)
		return; /* decided when the action ends */

	if (!g->conf_ok)
		snprintf(why, sizeof why, "config error");
	else if (!g->conf.enabled)
		snprintf(why, sizeof why, "disabled (enabled=0)");
	else if (!w->vl.have_map)
		snprintf(why, sizeof why, "no guest list from %s", w->o->pve_dir);
	else if (!own)
		snprintf(why, sizeof why, "no such guest in the cluster");
	else if (!owned)
		snprintf(why, sizeof why, "%s %s",
		         g->state != GS_IDLE && strcmp(g->last_owner, w->o->node) == 0
		             ? "migrated to"
		             : "on node",
		         own->node);
	else if (!inst)
		snprintf(why, sizeof why, "not running");

	if (why[0]) {
		if (g->conf_ok && !g->conf.enabled && owned && inst &&
		    now - g->last_disabled_log >= g->conf.disabled_log_interval * 1000) {
			log_info("guest %u (%s) runs here but is not watched: enabled=0", g->vmid,
			         gname(g));
			g->last_disabled_log = now;
		}
		go_idle(w, g, why);
	} else if (g->state == GS_IDLE) {
		if (g->scanned && g->last_owner[0] && strcmp(g->last_owner, w->o->node) != 0)
			snprintf(why, sizeof why, "migrated from %s", g->last_owner);
		else if (g->scanned && owned && strcmp(g->last_owner, w->o->node) == 0 &&
		         !g->instance)
			snprintf(why, sizeof why, "started");
		else
			snprintf(why, sizeof why, "watching %s", g->conf.ip[0] ? g->conf.ip : "-");
		start_watching(w, g, why);
	} else if (inst != g->instance && g->instance) {
		/* Restarted behind our back (or by the admin): a fresh boot. */
		g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
		g->fail_since = 0;
		g->state = GS_IDLE; /* force the line even when already in grace */
		transition(w, g, GS_GRACE, "restarted (%s %llu)",
		           g->type == GUEST_QEMU ? "pid" : "socket", (unsigned long long)inst);
		if (g->heap_slot == HEAP_NONE && !g->checking)
			schedule(w, g, now);
	}
	snprintf(g->last_owner, sizeof g->last_owner, "%s", own ? own->node : "");
	g->instance = owned ? inst : 0;
	g->scanned = 1;
}

static void
scan_config_dir(struct watcher *w)
{
	DIR *d = opendir(w->o->config_dir);
	struct dirent *de;
	size_t pos;

	if (!d) {
		char msg[300];
		snprintf(msg, sizeof msg, "%s: %s%s", w->o->config_dir, strerror(errno),
		         errno == ENOENT ? ": no guest to watch" : "");
		if (errno == ENOENT) {
			if (strcmp(w->dir_err, msg) != 0)
				log_info("%s", msg);
			snprintf(w->dir_err, sizeof w->dir_err, "%s", msg);
		} else {
			log_once(w->dir_err, sizeof w->dir_err, msg);
		}
		return;
	}
	w->dir_err[0] = '\0';
	while ((de = readdir(d))) {
		char id[16];
		uint32_t vmid;
		size_t len = strlen(de->d_name);
		struct guest *g;

		if (len < 6 || len > 14 || strcmp(de->d_name + len - 5, ".conf") != 0)
			continue;
		snprintf(id, sizeof id, "%.*s", (int)(len - 5), de->d_name);
		if (parse_vmid(id, &vmid) < 0)
			continue;
		if (!(g = find_guest(w, vmid, &pos)))
			g = add_guest(w, vmid, pos);
		g->seen = 1;
	}
	closedir(d);
}

void
scan(struct watcher *w, int force)
{
	int64_t now = mono_ms();
	int maint, any_lxc = 0;

	maint = access(w->maint_path, F_OK) == 0;
	if (maint != w->cluster_maint)
		log_info("cluster-wide maintenance %s (%s)", maint ? "on" : "off", w->maint_path);
	w->cluster_maint = maint;

	if (filestamp_changed(w->mvmm_path, &w->st_mvmm) +
	        filestamp_changed(w->defaults_path, &w->st_defaults) ||
	    force)
		load_defaults(w);
	vmlist_refresh(&w->vl, force);
	ha_resources_refresh(&w->ha, force);

	for (size_t i = 0; i < w->n; i++)
		w->g[i]->seen = 0;
	scan_config_dir(w);

	for (size_t i = 0; i < w->n; i++) {
		const struct vm_owner *own = vmlist_find(&w->vl.map, w->g[i]->vmid);
		any_lxc |= own && own->type == GUEST_LXC;
	}
	free(w->lxc);
	w->lxc = NULL;
	w->nlxc = 0;
	if (any_lxc && lxc_running_scan(w->o->lxc_dir, &w->lxc, &w->nlxc) < 0)
		log_err("/proc/net/unix: %s", strerror(errno));

	for (size_t i = 0; i < w->n;) {
		struct guest *g = w->g[i];
		if (!g->seen || g->gone) {
			if (g->state == GS_ACTING) {
				g->gone = 1; /* freed when its action ends */
				i++;
				continue;
			}
			if (g->state != GS_IDLE)
				go_idle(w, g, "config file removed");
			remove_guest(w, i);
			continue;
		}
		if (filestamp_changed(g->path, &g->stamp) || w->defaults_changed || force)
			reload_conf(w, g);
		evaluate(w, g, now);
		i++;
	}
	w->defaults_changed = 0;
	notify_status(w);
}
