/* qga-ping --watch: the commands it runs, --exec (in order, one at a time
 * per guest) and qga-timesync, under lib/proc: each with a deadline that
 * nothing it starts escapes, the loop never waiting for them. With
 * --systemd-run an --exec command runs as a transient unit of PID 1
 * instead (lib/sdrun), outside this service's sandbox, whose RuntimeMaxSec
 * is its deadline; a unit systemd-run left behind is stopped. */
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
#include "sdrun.h"
#include "util.h"
#include "watch.h"

/* The environment of an --exec command: ours and the event's PVEKIT_*. */
static void
event_env(struct watcher *w, const struct guest *g, const struct event *ev, struct child_env *env)
{
	child_env_init(env);
	child_env_set(env, "PVEKIT_EVENT", "%s", ev->kind == EV_FAILED ? "qga-failed" : "qga-recovered");
	child_env_set(env, "PVEKIT_VMID", "%u", g->vmid);
	child_env_set(env, "PVEKIT_TYPE", "qemu");
	child_env_set(env, "PVEKIT_NODE", "%s", w->o->node);
	child_env_set(env, "PVEKIT_REASON", "%s", ev->reason);
	child_env_set(env, "PVEKIT_DETAIL", "%s", ev->detail);
	child_env_set(env, "PVEKIT_CONFIG", "%s", g->conf_path);
	child_env_set(env, "PVEKIT_UUID", "%s", g->uuid);
	child_env_set(env, "PVEKIT_SOCKET", "%s", g->call.path);
	child_env_set(env, "PVEKIT_TIME", "%s", ev->time);
	child_env_set(env, "PVEKIT_MISSES", "%u", ev->misses);
	if (ev->kind == EV_FAILED)
		child_env_set(env, "PVEKIT_QEMU_STATUS", "%s", ev->qemu_status);
	if (ev->kind == EV_RECOVERED)
		child_env_set(env, "PVEKIT_DOWNTIME", "%.1f", ev->downtime_s);
}

/* systemd-run's own deadline beyond the command's: a backstop for a client
 * that hangs, never reached while PID 1 answers. */
#define SDRUN_SLACK_MS 15000

/* Starts a command under lib/proc, in its own process group, stdin from
 * /dev/null, stdout to our stderr (our stdout is the event stream). The
 * loop holds its deadline; at the deadline it is stopped with everything
 * it started. An --exec command with --systemd-run runs in a transient
 * unit (event: its PVEKIT_EVENT, for the unit's description). 0 or -1. */
static int
spawn(struct watcher *w, uint32_t vmid, int is_exec, int64_t timeout_ms, char *const argv[],
      char *const envp[], const char *event)
{
	struct proc_spec s = {
		.path = argv[0],
		.argv = argv,
		.envp = envp,
		.search_path = 1,
		.fd_in = PROC_DEVNULL,
		.fd_out = STDERR_FILENO,
		.fd_err = PROC_INHERIT,
		.group = PROC_NEW_GROUP,
		.kill_after_ms = KILL_GRACE_MS,
	};
	int64_t now = mono_ms();
	struct child c = { .vmid = vmid, .is_exec = is_exec, .deadline = now + timeout_ms,
		           .started = now };
	char **sd = NULL;
	int rc;

	if (is_exec && w->o->systemd_run) {
		char *desc = xasprintf("pvekit qga-ping --exec for VM %u %s", vmid, event);
		struct sdrun_spec sp = { .unit = c.unit = sdrun_unit_name("exec", vmid, NULL),
			                 .description = desc,
			                 .runtime_max_ms = timeout_ms,
			                 .stop_timeout_ms = KILL_GRACE_MS,
			                 .umask = -1,
			                 .env = envp,
			                 .env_prefix = "PVEKIT_" };
		sd = sdrun_argv(&sp, argv);
		free(desc);
		s.path = sd[0];
		s.argv = sd;
		c.deadline += KILL_GRACE_MS + SDRUN_SLACK_MS;
	}
	rc = proc_spawn(&c.p, &s);
	if (rc < 0)
		log_err("%u: cannot start %s: %s", vmid, s.path, strerror(errno));
	sdrun_free(sd);
	if (rc < 0) {
		free(c.unit);
		return -1;
	}
	w->ch = xreallocarray(w->ch, w->nch + 1, sizeof *w->ch);
	w->ch[w->nch++] = c;
	return 0;
}

/* Starts the next queued --exec event of g when none is running. */
static void
pump_exec(struct watcher *w, struct guest *g)
{
	char *argv[] = { "/bin/sh", "-c", (char *)w->o->exec_cmd, NULL };
	struct child_env env;

	if (g->exec_running || !g->nqueue)
		return;
	event_env(w, g, &g->queue[0], &env);
	g->exec_running = spawn(w, g->vmid, 1, (int64_t)(w->o->exec_timeout_s * 1000), argv, env.v,
	                        g->queue[0].kind == EV_FAILED ? "qga-failed" : "qga-recovered") == 0;
	child_env_free(&env);
	memmove(g->queue, g->queue + 1, (g->nqueue - 1) * sizeof *g->queue);
	g->nqueue--;
}

void
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

void
run_timesync(struct watcher *w, struct guest *g)
{
	char vmid[16];
	char *argv[] = { (char *)w->o->timesync_cmd, "--qga-dir", (char *)w->o->qga_dir, vmid,
		         NULL };

	snprintf(vmid, sizeof vmid, "%u", g->vmid);
	spawn(w, g->vmid, 0, TIMESYNC_TIMEOUT_MS, argv, NULL, NULL);
}

/* How a --exec unit ended, as systemd-run reports it: the command's exit
 * code, 255 for a signal, 1 when PID 1 stopped it at its RuntimeMaxSec. */
static void
exec_unit_ended(struct watcher *w, const struct child *c, const struct proc_status *st)
{
	int64_t ran = mono_ms() - c->started;
	int code = proc_exit_code(st);

	if (code && ran >= (int64_t)(w->o->exec_timeout_s * 1000))
		log_warn("%u: --exec (%s) timed out after %g s", c->vmid, c->unit,
		         w->o->exec_timeout_s);
	else if (code)
		log_warn("%u: --exec (%s) exited with status %d", c->vmid, c->unit, code);
}

/* A child has ended (its proc.fd polled readable): report and forget it. */
void
child_ended(struct watcher *w, size_t i)
{
	struct child c = w->ch[i];
	const char *what = c.is_exec ? "--exec" : w->o->timesync_cmd;
	struct proc_status st;

	w->ch[i] = w->ch[--w->nch];
	proc_collect(&c.p, &st);
	if (st.exec_errno)
		log_warn("%u: %s: %s", c.vmid, what, strerror(st.exec_errno));
	else if (c.unit)
		exec_unit_ended(w, &c, &st);
	else if (WIFSIGNALED(st.wstatus))
		log_warn("%u: %s killed by signal %d%s", c.vmid, what, WTERMSIG(st.wstatus),
		         c.termed ? " (timed out)" : "");
	else if (WEXITSTATUS(st.wstatus))
		log_warn("%u: %s exited with status %d", c.vmid, what, WEXITSTATUS(st.wstatus));
	free(c.unit);
	if (c.is_exec) {
		struct guest *g = guest_find(w, c.vmid);
		if (g && g->exec_running) {
			g->exec_running = 0;
			if (!w->stop)
				pump_exec(w, g);
		}
	}
}

/* systemd-run was given up (its backstop passed, or we stop): its unit may
 * still run, so stop that too. */
static void
stop_unit(const struct child *c)
{
	char err[300];

	if (c->unit && sdrun_stop(c->unit, KILL_GRACE_MS + SDRUN_SLACK_MS, err, sizeof err) < 0)
		log_err("%u: %s", c->vmid, err);
}

/* A child past its deadline is stopped with everything it started
 * (lib/proc: SIGTERM, SIGKILL KILL_GRACE_MS later). */
void
expire_children(struct watcher *w, int64_t now)
{
	for (size_t i = 0; i < w->nch; i++) {
		struct child *c = &w->ch[i];
		if (c->termed || now < c->deadline)
			continue;
		if (c->unit)
			log_warn("%u: --exec: systemd-run still waiting for %s; stopping it",
			         c->vmid, c->unit);
		else
			log_warn("%u: %s still running after its timeout, terminating it",
			         c->vmid, c->is_exec ? "--exec" : w->o->timesync_cmd);
		proc_abort(&c->p);
		stop_unit(c);
		c->termed = 1;
	}
}

void
stop_children(struct watcher *w)
{
	for (size_t i = 0; i < w->nch; i++)
		proc_abort(&w->ch[i].p);
	/* A killed systemd-run leaves its unit running: stop those too. */
	for (size_t i = 0; i < w->nch; i++)
		stop_unit(&w->ch[i]);
	while (w->nch)
		child_ended(w, w->nch - 1);
}
