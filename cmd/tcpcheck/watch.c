/* --watch: one process, one epoll loop, every guest of this node.
 *
 * Each scan (every --interval, or at once on SIGHUP) re-reads what may have
 * changed: the maintenance flag file, the defaults, the per-guest files (by
 * stat), PVE's .vmlist (gated by the .version counter), the HA resources,
 * and whether each guest runs here. A guest is watched when its file is
 * valid and enabled, this node owns it and it runs. Watched guests are
 * checked on their own cadence (a timer heap); a check connects to all of
 * its ports at once. State changes are printed on stdout, one line each:
 *   VMID STATE REASON
 * with STATE one of idle grace healthy failing acting held gave-up. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filestamp.h"
#include "guest.h"
#include "log.h"
#include "notify.h"
#include "procfs.h"
#include "tcpcheck.h"
#include "util.h"

enum gstate { GS_IDLE, GS_GRACE, GS_HEALTHY, GS_FAILING, GS_ACTING, GS_HELD, GS_GAVE_UP };

static const char *const state_names[] = { "idle",   "grace", "healthy", "failing",
	                                   "acting", "held",  "gave-up" };

enum { EV_PROBER = 1, EV_SIGNAL, EV_ACTION_OUTPUT, EV_ACTION_DONE };

struct evsrc {
	int kind;
	struct guest *g;
};

struct guest {
	uint32_t vmid;
	char *path;
	struct filestamp stamp;
	int seen, gone;
	int conf_ok;
	struct gconf conf;
	/* what the last scan saw */
	int scanned;
	enum guest_type type;
	char last_owner[NODE_NAME_MAX];
	uint64_t instance; /* QEMU pid, or the container's command socket inode */
	char pve_name[64];
	int64_t last_disabled_log;
	/* state */
	enum gstate state;
	char reason[256];
	int64_t since, grace_until, fail_since, next_check, last_log;
	size_t heap_slot;
	time_t last_slot; /* restart_at: the last slot considered */
	int warned_lxc_uptime;
	/* the check in flight */
	struct probe *probes;
	size_t nprobes, pending;
	int checking;
	int64_t check_start;
	/* the action child */
	int acting;
	struct proc aproc;
	int astatus, atimed_out, ascheduled;
	int64_t adeadline;
	struct evsrc aev_out, aev_done;
	struct buf aline;
	int64_t *acts; /* mono ms of the actions in the window */
	size_t nacts;
};

struct watcher {
	const struct watch_opts *o;
	struct guest **g;
	size_t n;
	char *mvmm_path, *defaults_path, *maint_path, *ha_path;
	struct filestamp st_mvmm, st_defaults, st_ha;
	struct gconf defaults;
	int defaults_ok, defaults_changed;
	struct vmlist_current vl;
	char dir_err[512], ha_err[512];
	struct ha_res *ha;
	size_t nha;
	struct lxc_running *lxc;
	size_t nlxc;
	int cluster_maint, node_maint;
	int epfd, sigfd;
	struct evsrc ev_prober, ev_signal;
	struct prober pr;
	struct heap due;
	int64_t next_scan;
	int force_scan, quitting, nacting;
	char last_status[256];
	unsigned seed;
};

static struct watcher W;

static int64_t
guest_key(const void *e)
{
	return ((const struct guest *)e)->next_check;
}

static size_t *
guest_slot(void *e)
{
	return &((struct guest *)e)->heap_slot;
}

static const char *
gname(const struct guest *g)
{
	if (g->conf.name)
		return g->conf.name;
	return g->pve_name[0] ? g->pve_name : "-";
}

/* ---- output */

/* json_string refuses text that is not UTF-8 (a name or a path from a file). */
static json_t *
json_text(const char *s)
{
	json_t *v = json_string(s);

	return v ? v : json_string("?");
}

static void
print_transition(const struct guest *g)
{
	if (W.o->json) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		json_t *j = json_object();
		json_object_set_new(j, "vmid", json_integer(g->vmid));
		json_object_set_new(j, "state", json_string(state_names[g->state]));
		json_object_set_new(j, "reason", json_text(g->reason));
		json_object_set_new(j, "name", json_text(gname(g)));
		json_object_set_new(j, "type", json_string(guest_type_name(g->type)));
		json_object_set_new(j, "node", json_string(W.o->node));
		json_object_set_new(j, "time", json_real(ts.tv_sec + ts.tv_nsec / 1e9));
		char *s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(j);
	} else {
		printf("%u %s %s\n", g->vmid, state_names[g->state], g->reason);
	}
	fflush(stdout);
}

/* Prints a line when the state changes, or when the reason of an idle or
 * held guest changes (why it is not acting is the news there). */
static void transition(struct guest *g, enum gstate st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
transition(struct guest *g, enum gstate st, const char *fmt, ...)
{
	char reason[sizeof g->reason];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	if (st == g->state && (strcmp(reason, g->reason) == 0 || (st != GS_IDLE && st != GS_HELD)))
		return;
	if (st != g->state)
		g->since = mono_ms();
	g->state = st;
	snprintf(g->reason, sizeof g->reason, "%s", reason);
	print_transition(g);
}

static void
fmt_duration(double s, char *out, size_t len)
{
	long t = (long)(s + 0.5);

	if (s < 60)
		snprintf(out, len, "%.1fs", s);
	else if (t < 3600)
		snprintf(out, len, "%ldm%lds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(out, len, "%ldh%ldm", t / 3600, t % 3600 / 60);
	else
		snprintf(out, len, "%ldd%ldh", t / 86400, t % 86400 / 3600);
}

/* ---- files */

static void
log_once(char *last, size_t len, const char *msg)
{
	if (strcmp(last, msg) != 0) {
		if (*msg)
			log_err("%s", msg);
		snprintf(last, len, "%s", msg);
	}
}

static void
load_defaults(void)
{
	char err[400];
	int ok = 1;

	gconf_free(&W.defaults);
	gconf_defaults(&W.defaults, W.o->timeout_ms);
	if (gconf_load(&W.defaults, W.mvmm_path, err, sizeof err) < 0 ||
	    gconf_load(&W.defaults, W.defaults_path, err, sizeof err) < 0) {
		log_err("%s; no guest is watched until this is fixed", err);
		ok = 0;
	}
	W.defaults_ok = ok;
	W.defaults_changed = 1;
}

static void
load_ha(int force)
{
	struct ha_res *v;
	size_t n;
	char err[300];

	if (!filestamp_changed(W.ha_path, &W.st_ha) && !force)
		return;
	if (ha_resources_load(W.ha_path, &v, &n, err, sizeof err) < 0) {
		log_once(W.ha_err, sizeof W.ha_err, err);
		return;
	}
	log_once(W.ha_err, sizeof W.ha_err, "");
	free(W.ha);
	W.ha = v;
	W.nha = n;
}

static void
read_pve_name(struct guest *g)
{
	char *path = guest_conf_path(W.o->pve_dir, W.o->node, g->type, g->vmid);
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

/* ---- guests */

static struct guest *
find_guest(uint32_t vmid, size_t *pos)
{
	size_t lo = 0, hi = W.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (W.g[mid]->vmid < vmid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < W.n && W.g[lo]->vmid == vmid ? W.g[lo] : NULL;
}

static struct guest *
add_guest(uint32_t vmid, size_t pos)
{
	struct guest *g = xcalloc(1, sizeof *g);

	g->vmid = vmid;
	g->path = xasprintf("%s/%u.conf", W.o->config_dir, vmid);
	g->heap_slot = HEAP_NONE;
	g->astatus = -1;
	g->aev_out = (struct evsrc){ EV_ACTION_OUTPUT, g };
	g->aev_done = (struct evsrc){ EV_ACTION_DONE, g };
	g->state = GS_IDLE;
	W.g = xreallocarray(W.g, W.n + 1, sizeof *W.g);
	memmove(&W.g[pos + 1], &W.g[pos], (W.n - pos) * sizeof *W.g);
	W.g[pos] = g;
	W.n++;
	return g;
}

static void
cancel_check(struct guest *g)
{
	if (g->checking)
		for (size_t i = 0; i < g->nprobes; i++)
			prober_cancel(&W.pr, &g->probes[i]);
	g->checking = 0;
	g->pending = 0;
}

static void
unschedule(struct guest *g)
{
	heap_remove(&W.due, g);
}

static void
schedule(struct guest *g, int64_t when)
{
	g->next_check = when;
	if (g->heap_slot == HEAP_NONE)
		heap_push(&W.due, g);
	else
		heap_fix(&W.due, g);
}

static void
free_guest(struct guest *g)
{
	cancel_check(g);
	unschedule(g);
	gconf_free(&g->conf);
	buf_free(&g->aline);
	free(g->probes);
	free(g->acts);
	free(g->path);
	free(g);
}

static void
remove_guest(size_t pos)
{
	free_guest(W.g[pos]);
	memmove(&W.g[pos], &W.g[pos + 1], (W.n - pos - 1) * sizeof *W.g);
	W.n--;
}

static void
reload_conf(struct guest *g)
{
	struct gconf c;
	char err[400];
	int rc;

	gconf_copy(&c, &W.defaults);
	if (!W.defaults_ok) {
		g->conf_ok = 0;
	} else if ((rc = gconf_load(&c, g->path, err, sizeof err)) < 0) {
		log_err("%s; guest %u is not watched", err, g->vmid);
		g->conf_ok = 0;
	} else if (rc == 0 && gconf_validate(&c, err, sizeof err) < 0) {
		log_err("%s: %s; guest %u is not watched", g->path, err, g->vmid);
		g->conf_ok = 0;
	} else {
		g->conf_ok = 1;
		if (c.nall + c.nany == 0 && c.restart_at < 0 && c.restart_after <= 0)
			log_warn("%s: no portsall or portsany: guest %u is always healthy", g->path,
			         g->vmid);
	}
	gconf_free(&g->conf);
	g->conf = c;
	/* New ports or addresses: the check in flight is moot. */
	if (g->checking) {
		cancel_check(g);
		schedule(g, mono_ms());
	}
	if (g->nprobes != g->conf.nall + g->conf.nany) {
		free(g->probes);
		g->nprobes = g->conf.nall + g->conf.nany;
		g->probes = g->nprobes ? xcalloc(g->nprobes, sizeof *g->probes) : NULL;
	}
}

static int
in_maintenance(const struct guest *g, char *why, size_t len)
{
	if (W.cluster_maint)
		snprintf(why, len, "maintenance (cluster-wide: %s)", W.maint_path);
	else if (W.node_maint)
		snprintf(why, len, "maintenance (node-local, SIGUSR2)");
	else if (g->conf.maintenance)
		snprintf(why, len, "maintenance (maintenance=1)");
	else
		return 0;
	return 1;
}

static uint64_t
current_instance(const struct guest *g)
{
	if (g->type == GUEST_QEMU)
		return (uint64_t)qemu_running_pid(W.o->run_dir, g->vmid);
	return lxc_running_find(W.lxc, W.nlxc, g->vmid);
}

static void
start_watching(struct guest *g, const char *why)
{
	int64_t now = mono_ms();
	double jitter = (double)rand_r(&W.seed) / RAND_MAX;
	double spread = g->conf.check_interval < 1 ? g->conf.check_interval : 1;

	read_pve_name(g);
	g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
	g->fail_since = 0;
	g->last_log = now;
	g->last_slot = time(NULL);
	transition(g, GS_GRACE, "%s", why);
	/* Spread the first checks so a node full of guests does not connect
	 * to all of them in the same millisecond. */
	schedule(g, now + (int64_t)(jitter * spread * 1000));
}

static void
go_idle(struct guest *g, const char *why)
{
	cancel_check(g);
	unschedule(g);
	transition(g, GS_IDLE, "%s", why);
}

/* Decides whether g is watched, from its config and what PVE shows now. */
static void
evaluate(struct guest *g, int64_t now)
{
	const struct vm_owner *own = W.vl.have_map ? vmlist_find(&W.vl.map, g->vmid) : NULL;
	char why[160] = "";
	uint64_t inst = 0;
	int owned = own && strcmp(own->node, W.o->node) == 0;

	if (own)
		g->type = own->type;
	if (owned)
		inst = current_instance(g);
	if (g->state == GS_ACTING)
		return; /* decided when the action ends */

	if (!g->conf_ok)
		snprintf(why, sizeof why, "config error");
	else if (!g->conf.enabled)
		snprintf(why, sizeof why, "disabled (enabled=0)");
	else if (!W.vl.have_map)
		snprintf(why, sizeof why, "no guest list from %s", W.o->pve_dir);
	else if (!own)
		snprintf(why, sizeof why, "no such guest in the cluster");
	else if (!owned)
		snprintf(why, sizeof why, "%s %s",
		         g->state != GS_IDLE && strcmp(g->last_owner, W.o->node) == 0
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
		go_idle(g, why);
	} else if (g->state == GS_IDLE) {
		if (g->scanned && g->last_owner[0] && strcmp(g->last_owner, W.o->node) != 0)
			snprintf(why, sizeof why, "migrated from %s", g->last_owner);
		else if (g->scanned && owned && strcmp(g->last_owner, W.o->node) == 0 &&
		         !g->instance)
			snprintf(why, sizeof why, "started");
		else
			snprintf(why, sizeof why, "watching %s", g->conf.ip[0] ? g->conf.ip : "-");
		start_watching(g, why);
	} else if (inst != g->instance && g->instance) {
		/* Restarted behind our back (or by the admin): a fresh boot. */
		g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
		g->fail_since = 0;
		g->state = GS_IDLE; /* force the line even when already in grace */
		transition(g, GS_GRACE, "restarted (%s %llu)",
		           g->type == GUEST_QEMU ? "pid" : "socket", (unsigned long long)inst);
		if (g->heap_slot == HEAP_NONE && !g->checking)
			schedule(g, now);
	}
	snprintf(g->last_owner, sizeof g->last_owner, "%s", own ? own->node : "");
	g->instance = owned ? inst : 0;
	g->scanned = 1;
}

static void
scan_config_dir(void)
{
	DIR *d = opendir(W.o->config_dir);
	struct dirent *de;
	size_t pos;

	if (!d) {
		char msg[300];
		snprintf(msg, sizeof msg, "%s: %s%s", W.o->config_dir, strerror(errno),
		         errno == ENOENT ? ": no guest to watch" : "");
		if (errno == ENOENT) {
			if (strcmp(W.dir_err, msg) != 0)
				log_info("%s", msg);
			snprintf(W.dir_err, sizeof W.dir_err, "%s", msg);
		} else {
			log_once(W.dir_err, sizeof W.dir_err, msg);
		}
		return;
	}
	W.dir_err[0] = '\0';
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
		if (!(g = find_guest(vmid, &pos)))
			g = add_guest(vmid, pos);
		g->seen = 1;
	}
	closedir(d);
}

static void
notify_status(void)
{
	char status[256];
	int watched = 0, failing = 0;

	for (size_t i = 0; i < W.n; i++) {
		watched += W.g[i]->state != GS_IDLE;
		failing += W.g[i]->state == GS_FAILING || W.g[i]->state == GS_HELD ||
		           W.g[i]->state == GS_GAVE_UP;
	}
	snprintf(status, sizeof status, "STATUS=watching %d of %zu guests, %d failing, %d acting%s",
	         watched, W.n, failing, W.nacting,
	         W.cluster_maint || W.node_maint ? ", maintenance" : "");
	if (strcmp(status, W.last_status) != 0) {
		sd_notify_msg(status);
		snprintf(W.last_status, sizeof W.last_status, "%s", status);
	}
}

static void
scan(int force)
{
	int64_t now = mono_ms();
	int maint, any_lxc = 0;

	maint = access(W.maint_path, F_OK) == 0;
	if (maint != W.cluster_maint)
		log_info("cluster-wide maintenance %s (%s)", maint ? "on" : "off", W.maint_path);
	W.cluster_maint = maint;

	if (filestamp_changed(W.mvmm_path, &W.st_mvmm) +
	        filestamp_changed(W.defaults_path, &W.st_defaults) ||
	    force)
		load_defaults();
	vmlist_refresh(&W.vl, force);
	load_ha(force);

	for (size_t i = 0; i < W.n; i++)
		W.g[i]->seen = 0;
	scan_config_dir();

	for (size_t i = 0; i < W.n; i++) {
		const struct vm_owner *own = vmlist_find(&W.vl.map, W.g[i]->vmid);
		any_lxc |= own && own->type == GUEST_LXC;
	}
	free(W.lxc);
	W.lxc = NULL;
	W.nlxc = 0;
	if (any_lxc && lxc_running_scan(W.o->lxc_dir, &W.lxc, &W.nlxc) < 0)
		log_err("/proc/net/unix: %s", strerror(errno));

	for (size_t i = 0; i < W.n;) {
		struct guest *g = W.g[i];
		if (!g->seen || g->gone) {
			if (g->state == GS_ACTING) {
				g->gone = 1; /* freed when its action ends */
				i++;
				continue;
			}
			if (g->state != GS_IDLE)
				go_idle(g, "config file removed");
			remove_guest(i);
			continue;
		}
		if (filestamp_changed(g->path, &g->stamp) || W.defaults_changed || force)
			reload_conf(g);
		evaluate(g, now);
		i++;
	}
	W.defaults_changed = 0;
	notify_status();
}

/* ---- checks */

static void check_done(struct guest *g);

static void
on_probe(struct probe *p)
{
	struct guest *g = p->user;

	if (!g->checking || g->pending == 0)
		return;
	if (--g->pending == 0)
		check_done(g);
}

static void
start_check(struct guest *g, int64_t now)
{
	int64_t deadline = now + (int64_t)(g->conf.timeout * 1000);
	size_t n = g->conf.nall + g->conf.nany;

	g->checking = 1;
	g->check_start = now;
	g->pending = n;
	if (n == 0) {
		check_done(g);
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
		prober_start(&W.pr, &g->probes[i]);
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

static void try_act(struct guest *g, const char *why, int scheduled);

static void
maybe_scheduled_restart(struct guest *g)
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
			try_act(g, why, 1);
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
			try_act(g, why, 1);
			return;
		}
	} else if (g->conf.restart_after > 0 && !g->warned_lxc_uptime) {
		log_warn("%s: restart_after is ignored for container %u (no uptime to read)",
		         g->path, g->vmid);
		g->warned_lxc_uptime = 1;
	}
}

static void
check_done(struct guest *g)
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
			transition(g, GS_HEALTHY, "up");
			break;
		case GS_FAILING:
		case GS_HELD:
			fmt_duration((now - g->fail_since) / 1000.0, d, sizeof d);
			transition(g, GS_HEALTHY, "recovered after %s", d);
			break;
		case GS_GAVE_UP:
			transition(g, GS_HEALTHY, "recovered; actions re-armed");
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
		maybe_scheduled_restart(g);
	} else {
		next = g->check_start + (int64_t)(gconf_fail_interval(&g->conf) * 1000);
		if (g->state == GS_GRACE && now < g->grace_until) {
			log_debug("guest %u in grace: %s", g->vmid, fail);
		} else {
			if (g->state == GS_GRACE || g->state == GS_HEALTHY) {
				g->fail_since = g->check_start;
				g->last_log = now;
				transition(g, GS_FAILING, "%s", fail);
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
				try_act(g, why, 0);
			}
		}
	}
	if (g->state != GS_ACTING && g->state != GS_IDLE && !W.quitting)
		schedule(g, next > now ? next : now);
}

/* ---- actions */

static void held(struct guest *g, int scheduled, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
held(struct guest *g, int scheduled, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (scheduled)
		log_info("guest %u (%s): scheduled restart skipped: %s", g->vmid, gname(g), why);
	else
		transition(g, GS_HELD, "%s", why);
}

static void
try_act(struct guest *g, const char *why, int scheduled)
{
	struct action_req r = { 0 };
	char reason[256], sid[32], desc[300];
	struct guest_conf gc;
	const struct ha_res *ha;
	const char *lock;
	char *path;
	int64_t now = mono_ms();
	int rc;

	if (in_maintenance(g, reason, sizeof reason)) {
		held(g, scheduled, "%s", reason);
		return;
	}
	if (!scheduled && g->conf.fail_threshold <= 0) {
		held(g, 0, "fail_threshold=0: never acting");
		return;
	}
	path = guest_conf_path(W.o->pve_dir, W.o->node, g->type, g->vmid);
	rc = guest_conf_load(path, g->type, &gc);
	free(path);
	if (rc < 0) {
		held(g, scheduled, "guest config unreadable: %s", strerror(errno));
		return;
	}
	lock = guest_conf_lock(&gc);
	snprintf(reason, sizeof reason, "%s", lock ? lock : "");
	guest_conf_free(&gc);
	if (reason[0]) {
		held(g, scheduled, "lock: %s", reason);
		return;
	}
	if (current_instance(g) != g->instance || !g->instance) {
		evaluate(g, now); /* stopped or restarted meanwhile */
		return;
	}
	ha = ha_find(W.ha, W.nha, g->vmid);
	if (ha && strcmp(ha->state, "ignored") == 0)
		ha = NULL;
	if (ha && strcmp(ha->state, "started") != 0) {
		held(g, scheduled, "HA requests state %s", ha->state);
		return;
	}
	snprintf(sid, sizeof sid, "%s:%u", g->type == GUEST_QEMU ? "vm" : "ct", g->vmid);

	if (!scheduled) {
		size_t k = 0;
		int64_t window = (int64_t)(g->conf.action_window * 1000);
		for (size_t i = 0; i < g->nacts; i++)
			if (now - g->acts[i] < window)
				g->acts[k++] = g->acts[i];
		g->nacts = k;
		if (g->nacts >= g->conf.max_actions) {
			if (g->state != GS_GAVE_UP) {
				char d[32];
				fmt_duration(g->conf.action_window, d, sizeof d);
				transition(g, GS_GAVE_UP, "%zu actions within %s (max_actions=%u)",
				           g->nacts, d, g->conf.max_actions);
				log_err("guest %u (%s): giving up after %zu actions within %s; no "
				        "more actions until it is healthy again",
				        g->vmid, gname(g), g->nacts, d);
			}
			return;
		}
	}

	r.vmid = g->vmid;
	r.type = g->type;
	r.name = gname(g);
	r.node = W.o->node;
	r.ip = g->conf.ip;
	r.reason = scheduled ? "scheduled" : "failed";
	r.run_dir = W.o->run_dir;
	r.lxc_dir = W.o->lxc_dir;
	r.action = g->conf.action;
	r.ha_sid = ha ? sid : NULL;
	r.wait_interval = g->conf.wait_interval;
	r.timeout = gconf_action_timeout(&g->conf);
	r.systemd_run = W.o->systemd_run;
	action_describe(&r, desc, sizeof desc);

	if (W.o->dry_run) {
		held(g, scheduled, "dry run: would run %s", desc);
		return;
	}
	if (action_spawn(&r, &g->aproc, &g->astatus) < 0) {
		held(g, scheduled, "cannot start the action: %s", strerror(errno));
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &g->aev_out };
	epoll_ctl(W.epfd, EPOLL_CTL_ADD, g->aproc.out, &ev);
	ev.data.ptr = &g->aev_done;
	epoll_ctl(W.epfd, EPOLL_CTL_ADD, g->aproc.fd, &ev);
	g->acting = 1;
	g->atimed_out = 0;
	g->ascheduled = scheduled;
	g->adeadline = now + (int64_t)(r.timeout * 1000);
	if (!scheduled) {
		g->acts = xreallocarray(g->acts, g->nacts + 1, sizeof *g->acts);
		g->acts[g->nacts++] = now;
	}
	W.nacting++;
	cancel_check(g);
	unschedule(g);
	transition(g, GS_ACTING, "%s; %s", why, desc);
	log_info("guest %u (%s): %s; running %s", g->vmid, gname(g), why, desc);
	notify_status();
}

static void
log_action_line(void *ctx, const char *line, size_t len)
{
	const struct guest *g = ctx;

	if (len)
		log_info("guest %u: %.*s", g->vmid, (int)len, line);
}

static void
relay_output(struct guest *g, int final)
{
	char chunk[4096];
	ssize_t n;

	while ((n = read(g->aproc.out, chunk, sizeof chunk)) > 0)
		buf_append(&g->aline, chunk, n);
	buf_take_lines(&g->aline, sizeof chunk, final, log_action_line, g);
}

static void
action_finished(struct guest *g)
{
	char verdict[256] = "";
	int64_t now = mono_ms();
	struct proc_status st;
	int status;
	ssize_t n;

	epoll_ctl(W.epfd, EPOLL_CTL_DEL, g->aproc.fd, NULL);
	proc_collect(&g->aproc, &st);
	status = st.wstatus;
	relay_output(g, 1);
	epoll_ctl(W.epfd, EPOLL_CTL_DEL, g->aproc.out, NULL);
	close(g->aproc.out);
	n = read(g->astatus, verdict, sizeof verdict - 1);
	verdict[n > 0 ? n : 0] = '\0';
	verdict[strcspn(verdict, "\n")] = '\0';
	close(g->astatus);
	g->aproc.out = g->astatus = -1;
	g->acting = 0;
	W.nacting--;

	if (g->gone) {
		size_t pos;
		if (find_guest(g->vmid, &pos) == g)
			remove_guest(pos);
		return;
	}
	if (strncmp(verdict, "skip ", 5) == 0) {
		/* It decided not to act: not counted, and a scheduled restart
		 * leaves a healthy guest healthy. */
		if (g->ascheduled)
			g->state = GS_HEALTHY;
		else if (g->nacts)
			g->nacts--;
		held(g, g->ascheduled, "%s", verdict + 5);
	} else {
		char res[64];
		if (g->atimed_out)
			snprintf(res, sizeof res, "action timed out");
		else if (WIFSIGNALED(status))
			snprintf(res, sizeof res, "action killed by signal %d", WTERMSIG(status));
		else
			snprintf(res, sizeof res, "action exited %d", WEXITSTATUS(status));
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			log_info("guest %u (%s): %s", g->vmid, gname(g), res);
		else
			log_err("guest %u (%s): %s", g->vmid, gname(g), res);
		g->grace_until = now + (int64_t)(g->conf.recovery_time * 1000);
		g->fail_since = 0;
		g->state = GS_GRACE;
		snprintf(g->reason, sizeof g->reason, "%s", res);
		print_transition(g);
		g->since = now;
		/* The new instance is ours: no "restarted" line for it. */
		if (g->type == GUEST_LXC) {
			free(W.lxc);
			W.lxc = NULL;
			W.nlxc = 0;
			lxc_running_scan(W.o->lxc_dir, &W.lxc, &W.nlxc);
		}
		g->instance = current_instance(g);
	}
	evaluate(g, now);
	if (g->state != GS_IDLE && !W.quitting)
		schedule(g, now + (int64_t)(gconf_fail_interval(&g->conf) * 1000));
	notify_status();
}

/* An action past its deadline is stopped with everything it started
 * (lib/proc: SIGTERM, SIGKILL ACTION_KILL_AFTER_MS later). */
static void
enforce_action_deadlines(int64_t now)
{
	for (size_t i = 0; i < W.n && W.nacting; i++) {
		struct guest *g = W.g[i];
		if (!g->acting || g->atimed_out || now < g->adeadline)
			continue;
		log_err("guest %u (%s): action still running after %gs: terminating it", g->vmid,
		        gname(g), gconf_action_timeout(&g->conf));
		proc_abort(&g->aproc);
		g->atimed_out = 1;
	}
}

static int64_t
next_action_deadline(void)
{
	int64_t d = INT64_MAX;

	for (size_t i = 0; i < W.n && W.nacting; i++) {
		const struct guest *g = W.g[i];
		if (g->acting && !g->atimed_out && g->adeadline < d)
			d = g->adeadline;
	}
	return d;
}

/* ---- signals */

static void
status_table(void)
{
	int64_t now = mono_ms();
	char d[32];

	log_info("status: %zu guests with a config, %d acting; maintenance: cluster-wide %s, "
	         "node-local %s",
	         W.n, W.nacting, W.cluster_maint ? "on" : "off", W.node_maint ? "on" : "off");
	for (size_t i = 0; i < W.n; i++) {
		const struct guest *g = W.g[i];
		fmt_duration((now - g->since) / 1000.0, d, sizeof d);
		log_info("status: %u %s %s; since %s; %zu/%u actions in window; name %s", g->vmid,
		         state_names[g->state], g->reason[0] ? g->reason : "-", d, g->nacts,
		         g->conf.max_actions, gname(g));
	}
}

static void
begin_quit(void)
{
	if (W.quitting) {
		for (size_t i = 0; i < W.n; i++)
			if (W.g[i]->acting)
				proc_abort(&W.g[i]->aproc);
		log_info("terminated %d running actions", W.nacting);
		/* Each is collected once it and all it started are gone. */
		return;
	}
	W.quitting = 1;
	for (size_t i = 0; i < W.n; i++) {
		cancel_check(W.g[i]);
		unschedule(W.g[i]);
	}
	if (W.nacting)
		log_info("exiting once %d running actions finish (signal again to terminate them)",
		         W.nacting);
}

static void
handle_signals(void)
{
	struct signalfd_siginfo si;

	while (read(W.sigfd, &si, sizeof si) == sizeof si) {
		switch (si.ssi_signo) {
		case SIGHUP:
			log_info("SIGHUP: re-reading everything");
			W.force_scan = 1;
			break;
		case SIGUSR1:
			status_table();
			break;
		case SIGUSR2:
			W.node_maint = !W.node_maint;
			log_info("node-local maintenance %s (SIGUSR2)",
			         W.node_maint ? "on" : "off");
			notify_status();
			break;
		case SIGTERM:
		case SIGINT:
			begin_quit();
			break;
		}
	}
}

/* ---- main loop */

static int
setup(const struct watch_opts *o)
{
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;

	memset(&W, 0, sizeof W);
	W.o = o;
	W.epfd = W.sigfd = -1;
	W.due.key = guest_key;
	W.due.slot = guest_slot;
	W.seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	vmlist_current_init(&W.vl, o->pve_dir, NULL);
	W.mvmm_path = xasprintf("%s/mvmm.conf", o->config_dir);
	W.defaults_path = xasprintf("%s/defaults.conf", o->config_dir);
	W.maint_path = xasprintf("%s/maintenance", o->config_dir);
	W.ha_path = xasprintf("%s/ha/resources.cfg", o->pve_dir);
	gconf_defaults(&W.defaults, o->timeout_ms);

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	W.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	W.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (W.sigfd < 0 || W.epfd < 0 ||
	    prober_init(&W.pr, open_files_budget(PROBE_FD_RESERVE)) < 0)
		return -1;
	W.ev_signal.kind = EV_SIGNAL;
	W.ev_prober.kind = EV_PROBER;
	ev.data.ptr = &W.ev_signal;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, W.sigfd, &ev) < 0)
		return -1;
	ev.data.ptr = &W.ev_prober;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, prober_fd(&W.pr), &ev) < 0)
		return -1;
	return 0;
}

static void
teardown(void)
{
	while (W.n)
		remove_guest(W.n - 1);
	free(W.g);
	heap_free(&W.due);
	prober_free(&W.pr);
	gconf_free(&W.defaults);
	vmlist_current_free(&W.vl);
	free(W.ha);
	free(W.lxc);
	free(W.mvmm_path);
	free(W.defaults_path);
	free(W.maint_path);
	free(W.ha_path);
	if (W.sigfd >= 0)
		close(W.sigfd);
	if (W.epfd >= 0)
		close(W.epfd);
}

static void
run_due(int64_t now)
{
	struct guest *g;

	while ((g = heap_top(&W.due)) && g->next_check <= now) {
		unschedule(g);
		if (!g->checking && g->state != GS_IDLE && g->state != GS_ACTING)
			start_check(g, now);
	}
}

int
watch_main(const struct watch_opts *o)
{
	struct epoll_event ev[64];

	if (setup(o) < 0) {
		log_err("setup: %s", strerror(errno));
		teardown();
		return EXIT_OSERR;
	}
	log_info("watching the guests of node %s (configs in %s)%s", o->node, o->config_dir,
	         o->dry_run ? ", dry run: no actions" : "");
	scan(1);
	W.next_scan = mono_ms() + (int64_t)(o->interval * 1000);
	sd_notify_msg("READY=1");

	while (!W.quitting || W.nacting) {
		int64_t now = mono_ms(), wake;
		int n;

		if (!W.quitting) {
			if (now >= W.next_scan || W.force_scan) {
				scan(W.force_scan);
				W.force_scan = 0;
				W.next_scan = now + (int64_t)(o->interval * 1000);
			}
			run_due(now);
		}
		enforce_action_deadlines(now);

		wake = W.quitting ? now + 1000 : W.next_scan;
		struct guest *top = heap_top(&W.due);
		if (top && top->next_check < wake)
			wake = top->next_check;
		if (prober_next_deadline(&W.pr) < wake)
			wake = prober_next_deadline(&W.pr);
		if (next_action_deadline() < wake)
			wake = next_action_deadline();
		wake -= mono_ms();
		n = epoll_wait(W.epfd, ev, (int)ARRAY_LEN(ev),
		               wake < 0       ? 0
		               : wake > 60000 ? 60000
		                              : (int)wake);
		for (int i = 0; i < n; i++) {
			struct evsrc *src = ev[i].data.ptr;
			if (src->kind == EV_SIGNAL)
				handle_signals();
			else if (src->kind == EV_ACTION_OUTPUT && src->g->acting)
				relay_output(src->g, 0);
		}
		/* Last: a finished action may free its guest (gone meanwhile). */
		for (int i = 0; i < n; i++) {
			struct evsrc *src = ev[i].data.ptr;
			if (src->kind == EV_ACTION_DONE && src->g->acting)
				action_finished(src->g);
		}
		prober_poll(&W.pr, 0);
	}
	log_info("exiting");
	teardown();
	return 0;
}
