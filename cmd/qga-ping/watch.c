/* qga-ping --watch: the guest-agent heartbeat of every guest this node runs.
 *
 * One poll loop: each guest has its own ping timer (a random phase, then
 * every --interval with a little jitter) and at most one exchange in flight
 * (lib/qga's step API), so a hung agent only ever costs its own --timeout.
 * Every --interval the loop rescans the node: .vmlist (reloaded when its
 * counter moves), each guest's live config (reparsed when it changes) and
 * its pid file, so starts, stops and migrations are followed.
 * Commands (--exec, qga-timesync) run as children with a deadline; the loop
 * never waits for them. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filestamp.h"
#include "guest.h"
#include "guestconf.h"
#include "log.h"
#include "notify.h"
#include "procfs.h"
#include "qga-ping.h"
#include "qga.h"
#include "qmp.h"
#include "sdrun.h"
#include "util.h"
#include "vmlist.h"

#define PING_COMMAND "{\"execute\":\"guest-ping\"}"
#define QUEUE_MAX 8
#define KILL_GRACE_MS 5000
#define TIMESYNC_TIMEOUT_MS 30000

enum ev_kind { EV_FAILED, EV_RECOVERED };

struct event {
	enum ev_kind kind;
	char reason[16];
	char detail[256];
	char qemu_status[32];
	char time[40];
	double downtime_s;
	unsigned misses;
};

struct guest {
	uint32_t vmid;
	char *conf_path, *pid_path;
	/* from the live config, reread when it changes */
	struct filestamp conf_st;
	int have_conf_st, agent;
	char lock[32], uuid[37];
	/* the QEMU process */
	pid_t pid;
	unsigned long long pstart;
	struct filestamp pid_st;
	int64_t arrived; /* when it came to this node (0: there at our start) */
	/* heartbeat */
	int watched, in_flight, first_round, failed, nosock_warned;
	unsigned misses;
	int64_t grace_until, next_ping, last_ok, miss_since;
	enum qga_result last_result;
	struct qga_call call;
	/* before declaring a failure: is QEMU running the guest at all? */
	struct qmp_call qmp;
	int checking, pause_logged;
	char qemu_status[32];
	/* --exec events, run one at a time and in order */
	pid_t exec_pid;
	struct event queue[QUEUE_MAX];
	size_t nqueue;
	int seen;
};

struct child {
	pid_t pid;
	uint32_t vmid;
	int is_exec, termed;
	int64_t deadline, started;
	char *unit; /* --systemd-run: the --exec command's transient unit */
};

struct watcher {
	const struct watch_opts *o;
	int64_t interval_ms;
	struct guest **g; /* sorted by vmid */
	size_t ng;
	struct child *ch;
	size_t nch;
	struct vmlist_current vl;
	unsigned scans;
	int64_t next_scan;
	size_t first_pending;
	int ready, sfd, stop;
	uint64_t rng;
	struct pollfd *pfd;
	struct guest **pfd_guest;
	char *pfd_qmp;
	size_t pfd_cap;
};

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
static int64_t
rnd_below(struct watcher *w, int64_t n)
{
	return n > 0 ? (int64_t)(rnd(w) % (uint64_t)n) : 0;
}

static void
emit(struct watcher *w, uint32_t vmid, const char *event, const char *arg, json_t *extra)
{
	if (w->o->json) {
		char ts[40];
		utc_time_now(ts, sizeof ts, EVENT_TIME_DIGITS);
		json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "time", ts, "node", w->o->node,
		                      "vmid", (json_int_t)vmid, "event", event);
		if (extra)
			json_object_update(j, extra);
		char *s =
		    json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
		puts(s);
		free(s);
		json_decref(j);
	} else {
		printf("%u %s %s\n", vmid, event, arg);
	}
	json_decref(extra);
	fflush(stdout);
}

static void
update_status(struct watcher *w)
{
	size_t watched = 0, failed = 0;

	for (size_t i = 0; i < w->ng; i++) {
		watched += w->g[i]->watched;
		failed += w->g[i]->watched && w->g[i]->failed;
	}
	sd_notifyf("STATUS=watching %zu guests, %zu failed", watched, failed);
}

/* --- guests ------------------------------------------------------------ */

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

static struct guest *
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

static void
guest_remove(struct watcher *w, size_t i)
{
	struct guest *g = w->g[i];

	if (g->nqueue)
		log_warn("%u: left this node with %zu --exec events not run", g->vmid, g->nqueue);
	if (g->first_round)
		w->first_pending--;
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
static pid_t
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

static void
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

/* --- children ---------------------------------------------------------- */

static void
setenv_u(const char *name, unsigned long long v)
{
	char s[32];

	snprintf(s, sizeof s, "%llu", v);
	setenv(name, s, 1);
}

/* systemd-run's own deadline beyond the command's: a backstop for a client
 * that hangs, never reached while PID 1 answers. */
#define SDRUN_SLACK_MS 15000

/* Forks a command in its own process group, stdin from /dev/null, stdout to
 * our stderr (our stdout is the event stream). With --systemd-run an --exec
 * command runs as a transient unit of PID 1 instead (lib/sdrun), whose
 * RuntimeMaxSec is the deadline. */
static pid_t
spawn(struct watcher *w, uint32_t vmid, int is_exec, int64_t timeout_ms, char *const argv[],
      const struct guest *g, const struct event *ev)
{
	char *unit = is_exec && w->o->systemd_run ? sdrun_unit_name("exec", vmid, NULL) : NULL;
	pid_t pid = fork();

	if (pid < 0) {
		log_err("%u: fork: %s", vmid, strerror(errno));
		free(unit);
		return -1;
	}
	if (pid == 0) {
		sigset_t all;
		int fd = open("/dev/null", O_RDONLY);
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		setpgid(0, 0);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		if (ev) {
			char *sock = qga_socket_path(w->o->qga_dir, vmid);
			setenv("PVEKIT_EVENT",
			       ev->kind == EV_FAILED ? "qga-failed" : "qga-recovered", 1);
			setenv_u("PVEKIT_VMID", vmid);
			setenv("PVEKIT_TYPE", "qemu", 1);
			setenv("PVEKIT_NODE", w->o->node, 1);
			setenv("PVEKIT_REASON", ev->reason, 1);
			setenv("PVEKIT_DETAIL", ev->detail, 1);
			setenv("PVEKIT_CONFIG", g->conf_path, 1);
			setenv("PVEKIT_UUID", g->uuid, 1);
			setenv("PVEKIT_SOCKET", sock, 1);
			setenv("PVEKIT_TIME", ev->time, 1);
			setenv_u("PVEKIT_MISSES", ev->misses);
			if (ev->kind == EV_FAILED)
				setenv("PVEKIT_QEMU_STATUS", ev->qemu_status, 1);
			if (ev->kind == EV_RECOVERED) {
				char s[32];
				snprintf(s, sizeof s, "%.1f", ev->downtime_s);
				setenv("PVEKIT_DOWNTIME", s, 1);
			}
		}
		if (unit) {
			char *desc = xasprintf("pvekit qga-ping --exec for VM %u %s", vmid,
			                       getenv("PVEKIT_EVENT"));
			struct sdrun_spec sp = { .unit = unit,
				                 .description = desc,
				                 .runtime_max_ms = timeout_ms,
				                 .stop_timeout_ms = KILL_GRACE_MS,
				                 .umask = -1,
				                 .env_prefix = "PVEKIT_" };
			argv = sdrun_argv(&sp, argv);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "%s: %s: %s\n", log_prog, argv[0], strerror(errno));
		_exit(127);
	}
	w->ch = xreallocarray(w->ch, w->nch + 1, sizeof *w->ch);
	w->ch[w->nch++] =
	    (struct child){ pid,
		            vmid,
		            is_exec,
		            0,
		            mono_ms() + timeout_ms + (unit ? KILL_GRACE_MS + SDRUN_SLACK_MS : 0),
		            mono_ms(),
		            unit };
	return pid;
}

/* Starts the next queued --exec event of g when none is running. */
static void
pump_exec(struct watcher *w, struct guest *g)
{
	char *argv[] = { "/bin/sh", "-c", (char *)w->o->exec_cmd, NULL };

	if (g->exec_pid || !g->nqueue)
		return;
	g->exec_pid =
	    spawn(w, g->vmid, 1, (int64_t)(w->o->exec_timeout_s * 1000), argv, g, &g->queue[0]);
	if (g->exec_pid < 0)
		g->exec_pid = 0;
	memmove(g->queue, g->queue + 1, (g->nqueue - 1) * sizeof *g->queue);
	g->nqueue--;
}

static void
queue_event(struct watcher *w, struct guest *g, enum ev_kind kind, double downtime_s)
{
	struct event *ev;

	if (!w->o->exec_cmd)
		return;
	if (g->nqueue == QUEUE_MAX) {
		log_err("%u: %zu --exec events waiting; dropping the new one", g->vmid, g->nqueue);
		return;
	}
	ev = &g->queue[g->nqueue++];
	memset(ev, 0, sizeof *ev);
	ev->kind = kind;
	snprintf(ev->reason, sizeof ev->reason, "%s",
	         kind == EV_FAILED ? qga_result_name(g->last_result) : "ok");
	snprintf(ev->detail, sizeof ev->detail, "%s", kind == EV_FAILED ? g->call.detail : "");
	snprintf(ev->qemu_status, sizeof ev->qemu_status, "%s", g->qemu_status);
	utc_time_now(ev->time, sizeof ev->time, EVENT_TIME_DIGITS);
	ev->downtime_s = downtime_s;
	ev->misses = g->misses;
	pump_exec(w, g);
}

static void
run_timesync(struct watcher *w, struct guest *g)
{
	char vmid[16];
	char *argv[] = { (char *)w->o->timesync_cmd, "--qga-dir", (char *)w->o->qga_dir, vmid,
		         NULL };

	snprintf(vmid, sizeof vmid, "%u", g->vmid);
	spawn(w, g->vmid, 0, TIMESYNC_TIMEOUT_MS, argv, g, NULL);
}

/* How a --exec unit ended, as systemd-run reports it: the command's exit
 * code, 255 for a signal, 1 when PID 1 stopped it at its RuntimeMaxSec. */
static void
exec_unit_ended(struct watcher *w, struct child *c, int status)
{
	int64_t ran = mono_ms() - c->started;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

	if (code && ran >= (int64_t)(w->o->exec_timeout_s * 1000))
		log_warn("%u: --exec (%s) timed out after %g s", c->vmid, c->unit,
		         w->o->exec_timeout_s);
	else if (code)
		log_warn("%u: --exec (%s) exited with status %d", c->vmid, c->unit, code);
	free(c->unit);
	c->unit = NULL;
}

static void
reap_children(struct watcher *w)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		size_t i;
		for (i = 0; i < w->nch && w->ch[i].pid != pid; i++)
			;
		if (i == w->nch)
			continue;
		struct child c = w->ch[i];
		w->ch[i] = w->ch[--w->nch];
		const char *what = c.is_exec ? "--exec" : w->o->timesync_cmd;
		if (c.unit)
			exec_unit_ended(w, &c, status);
		else if (WIFSIGNALED(status))
			log_warn("%u: %s killed by signal %d%s", c.vmid, what, WTERMSIG(status),
			         c.termed ? " (timed out)" : "");
		else if (WEXITSTATUS(status))
			log_warn("%u: %s exited with status %d", c.vmid, what, WEXITSTATUS(status));
		if (c.is_exec) {
			struct guest *g = guest_find(w, c.vmid);
			if (g && g->exec_pid == pid) {
				g->exec_pid = 0;
				pump_exec(w, g);
			}
		}
	}
}

/* A child past its deadline gets SIGTERM (its whole process group), then
 * SIGKILL KILL_GRACE_MS later. A systemd-run past its backstop is given up
 * and its unit stopped. */
static void
expire_children(struct watcher *w, int64_t now)
{
	for (size_t i = 0; i < w->nch; i++) {
		struct child *c = &w->ch[i];
		if (now < c->deadline)
			continue;
		if (c->unit && !c->termed) {
			char err[300];
			log_warn("%u: --exec: systemd-run still waiting for %s; stopping it",
			         c->vmid, c->unit);
			kill(-c->pid, SIGTERM);
			if (sdrun_stop(c->unit, KILL_GRACE_MS + SDRUN_SLACK_MS, err, sizeof err) <
			    0)
				log_err("%u: %s", c->vmid, err);
			c->termed = 1;
			c->deadline = mono_ms() + KILL_GRACE_MS;
			continue;
		}
		if (!c->termed)
			log_warn("%u: %s still running after its timeout, terminating it", c->vmid,
			         c->is_exec ? "--exec" : w->o->timesync_cmd);
		kill(-c->pid, c->termed ? SIGKILL : SIGTERM);
		c->termed = 1;
		c->deadline = now + KILL_GRACE_MS;
	}
}

/* --- the heartbeat ------------------------------------------------------ */

static void
declare_failed(struct watcher *w, struct guest *g)
{
	g->failed = 1;
	log_err("%u: guest agent failed %u times in a row (QEMU %s): %s", g->vmid, g->misses,
	        g->qemu_status, g->call.detail);
	emit(w, g->vmid, "failed", qga_result_name(g->last_result),
	     json_pack("{s:s, s:i, s:s, s:s, s:s}", "reason", qga_result_name(g->last_result),
	               "misses", (int)g->misses, "qemu_status", g->qemu_status, "detail",
	               g->call.detail, "uuid", g->uuid));
	queue_event(w, g, EV_FAILED, 0);
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

/* QEMU run states in which a silent agent is expected: someone paused the
 * guest (qm suspend), a migration or snapshot holds it, or it shut down. */
static int
paused_state(const char *status)
{
	static const char *const states[] = { "paused",    "inmigrate",      "postmigrate",
		                              "prelaunch", "finish-migrate", "restore-vm",
		                              "save-vm",   "suspended",      "shutdown",
		                              "debug" };

	for (size_t i = 0; i < ARRAY_LEN(states); i++)
		if (strcmp(status, states[i]) == 0)
			return 1;
	return 0;
}

/* The monitor answered (or not): a paused guest is no failure; a running
 * one, a panicked one, or a QEMU whose monitor is silent too, is. */
static void
on_qmp(struct watcher *w, struct guest *g)
{
	const char *st = g->qmp.result == QMP_OK ? qmp_run_state(g->qmp.ret) : NULL;

	g->checking = 0;
	if (!g->watched || g->failed)
		return;
	if (st && paused_state(st)) {
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

static void
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
	if (g->misses < w->o->threshold || g->failed || g->checking)
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

/* --- scanning the node -------------------------------------------------- */

static int
scan(struct watcher *w, int64_t now)
{
	if (vmlist_refresh(&w->vl, 0) < 0)
		return -1;
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

static void
log_table(const struct watcher *w, int64_t now)
{
	log_info("%zu guests of %s, %zu children running", w->ng, w->o->node, w->nch);
	for (size_t i = 0; i < w->ng; i++) {
		const struct guest *g = w->g[i];
		char ago[32] = "never";
		if (g->last_ok)
			snprintf(ago, sizeof ago, "%.1fs-ago", (now - g->last_ok) / 1000.0);
		log_info("%u: %s%s misses=%u last_answer=%s lock=%s pid=%ld", g->vmid,
		         !g->agent     ? "agent-off"
		         : !g->watched ? "stopped"
		         : g->failed   ? "failed"
		                       : "ok",
		         g->watched && now < g->grace_until ? " (grace)" : "", g->misses, ago,
		         g->lock[0] ? g->lock : "-", (long)g->pid);
	}
}

/* --- the loop ----------------------------------------------------------- */

static int
setup(struct watcher *w, const struct watch_opts *o)
{
	sigset_t set;

	memset(w, 0, sizeof *w);
	w->o = o;
	vmlist_current_init(&w->vl, o->pve_dir, NULL);
	w->interval_ms = (int64_t)(o->interval_s * 1000);
	if (getrandom(&w->rng, sizeof w->rng, GRND_NONBLOCK) != sizeof w->rng)
		w->rng = (uint64_t)mono_ms() ^ (uint64_t)getpid() << 32;
	w->rng |= 1;
	raise_nofile_limit();
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	w->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		return EXIT_OSERR;
	}
	return 0;
}

static void
read_signals(struct watcher *w, int64_t now)
{
	struct signalfd_siginfo si;

	while (read(w->sfd, &si, sizeof si) == sizeof si) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			w->stop = 1;
			break;
		case SIGCHLD:
			reap_children(w);
			break;
		case SIGUSR1:
			log_table(w, now);
			break;
		case SIGHUP:
			w->next_scan = now;
			break;
		}
	}
}

static void
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

static int64_t
next_wakeup(const struct watcher *w)
{
	int64_t wake = w->next_scan;

	for (size_t i = 0; i < w->ng; i++) {
		const struct guest *g = w->g[i];
		int64_t t = g->in_flight ? qga_call_wakeup(&g->call)
		            : g->watched ? g->next_ping
		                         : INT64_MAX;
		if (t < wake)
			wake = t;
		if (g->checking && qmp_call_wakeup(&g->qmp) < wake)
			wake = qmp_call_wakeup(&g->qmp);
	}
	for (size_t i = 0; i < w->nch; i++)
		if (w->ch[i].deadline < wake)
			wake = w->ch[i].deadline;
	return wake;
}

static size_t
fill_pollfds(struct watcher *w)
{
	size_t n = 1;

	if (w->pfd_cap < 2 * w->ng + 1) {
		w->pfd_cap = 2 * w->ng + 1;
		w->pfd = xreallocarray(w->pfd, w->pfd_cap, sizeof *w->pfd);
		w->pfd_guest = xreallocarray(w->pfd_guest, w->pfd_cap, sizeof *w->pfd_guest);
		w->pfd_qmp = xreallocarray(w->pfd_qmp, w->pfd_cap, sizeof *w->pfd_qmp);
	}
	w->pfd[0] = (struct pollfd){ w->sfd, POLLIN, 0 };
	w->pfd_guest[0] = NULL;
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (g->in_flight && qga_call_fd(&g->call) >= 0) {
			w->pfd[n] =
			    (struct pollfd){ qga_call_fd(&g->call), qga_call_events(&g->call), 0 };
			w->pfd_qmp[n] = 0;
			w->pfd_guest[n++] = g;
		}
		if (g->checking && qmp_call_fd(&g->qmp) >= 0) {
			w->pfd[n] =
			    (struct pollfd){ qmp_call_fd(&g->qmp), qmp_call_events(&g->qmp), 0 };
			w->pfd_qmp[n] = 1;
			w->pfd_guest[n++] = g;
		}
	}
	return n;
}

static void
step_calls(struct watcher *w, size_t npfd, int64_t now)
{
	for (size_t k = 1; k < npfd; k++) {
		if (!w->pfd[k].revents)
			continue;
		if (w->pfd_qmp[k])
			qmp_call_step(&w->pfd_guest[k]->qmp, w->pfd[k].revents, now);
		else
			qga_call_step(&w->pfd_guest[k]->call, w->pfd[k].revents, now);
	}
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (g->checking) {
			if (!qmp_call_done(&g->qmp) && qmp_call_wakeup(&g->qmp) <= now)
				qmp_call_step(&g->qmp, 0, now);
			if (qmp_call_done(&g->qmp))
				on_qmp(w, g);
		}
		if (!g->in_flight)
			continue;
		if (!qga_call_done(&g->call) && qga_call_wakeup(&g->call) <= now)
			qga_call_step(&g->call, 0, now);
		if (qga_call_done(&g->call))
			on_result(w, g, now);
	}
}

static void
teardown(struct watcher *w)
{
	for (size_t i = 0; i < w->nch; i++)
		kill(-w->ch[i].pid, SIGTERM);
	/* A killed systemd-run leaves its unit running: stop those too. */
	for (size_t i = 0; i < w->nch; i++) {
		char err[300];
		if (w->ch[i].unit &&
		    sdrun_stop(w->ch[i].unit, KILL_GRACE_MS + SDRUN_SLACK_MS, err, sizeof err) < 0)
			log_err("%u: %s", w->ch[i].vmid, err);
		free(w->ch[i].unit);
	}
	while (w->ng)
		guest_remove(w, w->ng - 1);
	free(w->g);
	free(w->ch);
	free(w->pfd);
	free(w->pfd_guest);
	free(w->pfd_qmp);
	vmlist_current_free(&w->vl);
	close(w->sfd);
}

int
watch_run(const struct watch_opts *o)
{
	struct watcher w;
	int rc;

	if ((rc = setup(&w, o)))
		return rc;
	if (scan(&w, mono_ms()) < 0) {
		teardown(&w);
		return EXIT_UNAVAILABLE;
	}
	w.next_scan = mono_ms() + w.interval_ms;
	if (o->exec_cmd && !o->systemd_run && getenv("INVOCATION_ID"))
		log_warn("--exec without --systemd-run: the command runs inside this service's "
		         "sandbox (see qga-ping(8), The command)");
	log_info("watching the guest agents of node %s every %g s (timeout %d ms, threshold %u)",
	         o->node, o->interval_s, o->timeout_ms, o->threshold);
	while (!w.stop) {
		int64_t now = mono_ms();
		if (now >= w.next_scan) {
			scan(&w, now);
			w.next_scan = now + w.interval_ms;
		}
		start_pings(&w, now);
		if (!w.ready && w.first_pending == 0) {
			w.ready = 1;
			sd_notify_msg("READY=1");
		}
		size_t npfd = fill_pollfds(&w);
		int64_t wait = next_wakeup(&w) - now;
		if (poll(w.pfd, npfd,
		         wait < 0       ? 0
		         : wait > 60000 ? 60000
		                        : (int)wait) < 0 &&
		    errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			teardown(&w);
			return EXIT_OSERR;
		}
		now = mono_ms();
		if (w.pfd[0].revents)
			read_signals(&w, now);
		step_calls(&w, npfd, now);
		expire_children(&w, now);
	}
	sd_notify_msg("STOPPING=1");
	teardown(&w);
	return 0;
}
