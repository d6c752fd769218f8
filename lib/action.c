#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "action.h"
#include "alloc.h"
#include "clock.h"
#include "guest.h"
#include "power.h"
#include "qmp.h"
#include "sdrun.h"
#include "vmlist.h"

#define QMP_TIMEOUT_MS 3000

/* Whole seconds, rounded up, at least 1 (qm's --timeout is an integer). */
static long
whole_secs(double s)
{
	long w = (long)s;

	w += (double)w < s;
	return w < 1 ? 1 : w;
}

static int
guest_running(const struct action_req *r)
{
	struct lxc_running *v;
	size_t n;
	uint64_t ino;

	if (r->type == GUEST_QEMU)
		return qemu_running_pid(r->run_dir, r->vmid) != 0;
	if (lxc_running_scan(r->lxc_dir, &v, &n) < 0)
		return 1; /* unknown: assume it still runs, so we never start twice */
	ino = lxc_running_find(v, n, r->vmid);
	free(v);
	return ino != 0;
}

static void
wait_stopped(const struct action_req *r, double secs)
{
	int64_t until = mono_ms() + (int64_t)(secs * 1000);

	while (guest_running(r) && mono_ms() < until)
		sleep_ms(200);
}

/* ---- the action child */

/* Runs one command (PATH searched) to its end, its output on ours, at most
 * left_secs; with systemd_run in a transient unit of PID 1. Its exit code as
 * a shell reports it. */
static int
run_cmd(const struct action_req *r, const char *const argv[], double left_secs)
{
	char **sd = NULL, *unit = NULL, *desc = NULL;
	char *const *args = (char *const *)argv;
	struct proc_status st;
	struct proc_spec s = {
		.search_path = 1,
		.fd_in = PROC_INHERIT,
		.fd_out = PROC_INHERIT,
		.fd_err = PROC_INHERIT,
		.group = PROC_NEW_GROUP,
		.timeout_ms = (int64_t)(left_secs * 1000),
		.kill_after_ms = ACTION_KILL_AFTER_MS,
	};
	int rc;

	if (s.timeout_ms < 1)
		s.timeout_ms = 1;
	if (r->systemd_run) {
		/* A transient unit started by PID 1 (lib/sdrun): the guest that
		 * qm starts must not inherit this service's sandbox. */
		struct sdrun_spec sp = {
			.runtime_max_ms = (int64_t)(whole_secs(left_secs) * 1000),
			.umask = -1,
			.env_prefix = "PVEKIT_",
		};
		sp.unit = unit = sdrun_unit_name("action", r->vmid, NULL);
		sp.description = desc =
		    xasprintf("pvekit %s action for guest %u", r->who ? r->who : "pvekit", r->vmid);
		args = sd = sdrun_argv(&sp, (char *const *)argv);
		/* systemd-run's own deadline is the unit's, and a little more. */
		s.timeout_ms += 15000;
	}
	s.path = args[0];
	s.argv = args;

	printf("running:");
	for (size_t i = 0; args[i]; i++)
		printf(" %s", args[i]);
	printf("\n");
	fflush(stdout);

	if (proc_run(&s, &st) < 0) {
		printf("%s: %s\n", args[0], strerror(errno));
		rc = 71;
	} else {
		if (st.exec_errno)
			printf("%s: %s\n", args[0], strerror(st.exec_errno));
		else if (st.timed_out)
			printf("%s: still running at the action's deadline: stopped\n", args[0]);
		rc = proc_exit_code(&st);
	}
	fflush(stdout);
	sdrun_free(sd);
	free(unit);
	free(desc);
	return rc;
}

static int
report(const char *what, int rc)
{
	if (rc != 0)
		printf("%s exited with status %d\n", what, rc);
	fflush(stdout);
	return rc;
}

static int
restart_ha(const struct action_req *r, const char *wait, int64_t end)
{
	const char *stop[] = { "ha-manager", "crm-command", "stop", r->ha_sid, wait, NULL };
	const char *start[] = { "ha-manager", "set", r->ha_sid, "--state", "started", NULL };
	int rc, stopped;

	/* HA shuts the guest down (hard stop after WAIT) and records the
	 * requested state "stopped", so it does not recover it behind our back;
	 * "set --state started" hands it back to HA, which starts it. */
	rc = report("ha-manager crm-command stop", run_cmd(r, stop, (end - mono_ms()) / 1000.0));
	if (rc != 0)
		return rc;
	/* The CRM picks commands up on its own cycle (about 10 s). */
	wait_stopped(r, r->wait_interval + 60);
	stopped = !guest_running(r);
	if (!stopped)
		printf("guest still running %.0f s after the HA stop request\n",
		       r->wait_interval + 60);
	fflush(stdout);
	rc =
	    report("ha-manager set --state started", run_cmd(r, start, (end - mono_ms()) / 1000.0));
	return rc ? rc : !stopped;
}

static void verdict(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Does this node's qm/pct stop take --overrule-shutdown (lib/power)? An
 * answer the child had to ask for goes to the watcher on the status pipe
 * (a line "overrule-shutdown 0|1"), which keeps it for the next actions. */
static int
stop_overrules(const struct action_req *r, int status_fd, int64_t end)
{
	int known = power_stop_overrule_cached(r->type) >= 0;
	double left = (end - mono_ms()) / 1000.0;
	int yes = power_stop_overrule(r->type, left < 0.1 ? 0.1 : left < 30 ? left : 30);

	if (!known && power_stop_overrule_cached(r->type) >= 0)
		verdict(status_fd, "overrule-shutdown %d", yes);
	if (!yes)
		printf("%s stop has no --overrule-shutdown here (before PVE 8.2): a plain stop\n",
		       power_tool(r->type));
	return yes;
}

static int
restart_plain(const struct action_req *r, const char *wait, int64_t end, int status_fd)
{
	char vmid[16];
	const char *tool = r->type == GUEST_QEMU ? "qm" : "pct";

	snprintf(vmid, sizeof vmid, "%u", r->vmid);
	const char *shutdown[] = { tool, "shutdown", vmid, "--timeout", wait, NULL };
	const char *start[] = { tool, "start", vmid, NULL };

	report("shutdown", run_cmd(r, shutdown, (end - mono_ms()) / 1000.0));
	if (guest_running(r)) {
		/* A shutdown task still running (ours, timed out, or anyone's)
		 * holds the config lock the stop needs: where qm/pct can, the
		 * stop aborts it first. */
		const char *over = stop_overrules(r, status_fd, end) ? "--overrule-shutdown" : NULL;
		const char *stop[] = { tool, "stop", vmid, over, "1", NULL };
		report("stop", run_cmd(r, stop, (end - mono_ms()) / 1000.0));
		wait_stopped(r, 5);
	}
	if (guest_running(r)) {
		printf("guest still running after %s stop: not starting it\n", tool);
		fflush(stdout);
		return 1;
	}
	return report("start", run_cmd(r, start, (end - mono_ms()) / 1000.0));
}

static void
verdict(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	dprintf(fd, "%s\n", line);
}

static void
set_env(const struct action_req *r)
{
	char num[32];

	snprintf(num, sizeof num, "%u", r->vmid);
	setenv("PVEKIT_VMID", num, 1);
	setenv("PVEKIT_TYPE", guest_type_name(r->type), 1);
	setenv("PVEKIT_NAME", r->name ? r->name : "", 1);
	setenv("PVEKIT_NODE", r->node, 1);
	setenv("PVEKIT_IP", r->ip ? r->ip : "", 1);
	setenv("PVEKIT_REASON", r->reason, 1);
	snprintf(num, sizeof num, "%g", r->wait_interval);
	setenv("PVEKIT_WAIT", num, 1);
	if (r->ha_sid)
		setenv("PVEKIT_HA_SID", r->ha_sid, 1);
	else
		unsetenv("PVEKIT_HA_SID");
}

struct child_arg {
	const struct action_req *r;
	int status_fd;
};

/* The action child (run by lib/proc): returns its exit status. */
static int
child_main(void *arg)
{
	const struct action_req *r = ((struct child_arg *)arg)->r;
	int status_fd = ((struct child_arg *)arg)->status_fd;
	int64_t end = mono_ms() + (int64_t)(r->timeout * 1000);
	char wait[32];
	int rc;

	set_env(r);
	if (!guest_running(r)) {
		verdict(status_fd, "skip not running any more");
		return 0;
	}
	if (r->type == GUEST_QEMU) {
		char *qmp = xasprintf("%s/%u.qmp", r->run_dir, r->vmid), st[64], why[300];
		enum qmp_result qr =
		    qmp_query_status(qmp, QMP_TIMEOUT_MS, st, sizeof st, why, sizeof why);

		free(qmp);
		if (qr == QMP_OK) {
			if (qemu_status_hands_off(st, r->shutdown_hands_off)) {
				verdict(status_fd, "skip guest is %s", st);
				return 0;
			}
			printf("QEMU status: %s\n", st);
		} else {
			printf("QEMU status unknown (%s): acting on %s alone\n", why,
			       r->evidence ? r->evidence : "the checks");
		}
		fflush(stdout);
	}
	if (r->action) {
		const char *sh[] = { "/bin/sh", "-c", r->action, NULL };
		rc = report("action", run_cmd(r, sh, r->timeout));
		return rc > 255 ? 255 : rc;
	}
	/* qm's --timeout takes whole seconds. */
	snprintf(wait, sizeof wait, "%ld", whole_secs(r->wait_interval));
	rc = r->ha_sid ? restart_ha(r, wait, end) : restart_plain(r, wait, end, status_fd);
	fflush(stdout);
	return rc > 255 ? 255 : rc;
}

void
action_describe(const struct action_req *r, char *out, size_t outlen)
{
	long w = whole_secs(r->wait_interval);
	const char *tool = r->type == GUEST_QEMU ? "qm" : "pct";

	if (r->action)
		snprintf(out, outlen, "action: %s", r->action);
	else if (r->ha_sid)
		snprintf(out, outlen,
		         "ha-manager crm-command stop %s %ld, then set %s --state started",
		         r->ha_sid, w, r->ha_sid);
	else
		snprintf(out, outlen,
		         "%s shutdown %u --timeout %ld, %s stop if still running, %s start", tool,
		         r->vmid, w, tool, tool);
}

int
action_locked(const char *pve_dir, const char *node, enum guest_type type, uint32_t vmid,
              char *why, size_t whylen)
{
	char *path = guest_conf_path(pve_dir, node, type, vmid);
	struct guest_conf gc;
	const char *lock;
	int rc = guest_conf_load(path, type, &gc), e = errno;

	free(path);
	if (rc < 0) {
		snprintf(why, whylen, "guest config unreadable: %s", strerror(e));
		return -1;
	}
	lock = guest_conf_lock(&gc);
	if (lock)
		snprintf(why, whylen, "lock: %s", lock);
	guest_conf_free(&gc);
	return lock ? 1 : 0;
}

/* ---- the rate limit */

size_t
action_window_count(struct action_window *w, int64_t now, int64_t window_ms)
{
	size_t k = 0;

	for (size_t i = 0; i < w->n; i++)
		if (now - w->t[i] < window_ms)
			w->t[k++] = w->t[i];
	w->n = k;
	return k;
}

void
action_window_add(struct action_window *w, int64_t now)
{
	w->t = xreallocarray(w->t, w->n + 1, sizeof *w->t);
	w->t[w->n++] = now;
}

void
action_window_drop_last(struct action_window *w)
{
	if (w->n)
		w->n--;
}

void
action_window_free(struct action_window *w)
{
	free(w->t);
	w->t = NULL;
	w->n = 0;
}

/* ---- a running action */

int
action_start(struct action_run *a, const struct action_req *r)
{
	int st[2];
	struct child_arg arg = { r, -1 };
	struct proc_spec s = {
		.fn = child_main,
		.arg = &arg,
		.fd_in = PROC_DEVNULL,
		.fd_out = PROC_PIPE,
		.fd_err = PROC_TO_OUT,
		.group = PROC_NEW_GROUP,
		.kill_after_ms = ACTION_KILL_AFTER_MS,
	};

	memset(a, 0, sizeof *a);
	a->status_fd = -1;
	if (pipe2(st, O_CLOEXEC) < 0)
		return -1;
	arg.status_fd = s.fd_keep = st[1];
	if (proc_spawn(&a->proc, &s) < 0) {
		int e = errno;
		close(st[0]);
		close(st[1]);
		errno = e;
		return -1;
	}
	close(st[1]);
	fcntl(st[0], F_SETFL, O_NONBLOCK);
	a->status_fd = st[0];
	a->deadline = mono_ms() + (int64_t)(r->timeout * 1000);
	a->type = r->type;
	return 0;
}

void
action_output(struct action_run *a, int final, void (*fn)(void *ctx, const char *line, size_t len),
              void *ctx)
{
	char chunk[4096];
	ssize_t n;

	while (a->proc.out >= 0 && (n = read(a->proc.out, chunk, sizeof chunk)) > 0)
		buf_append(&a->out, chunk, n);
	buf_take_lines(&a->out, sizeof chunk, final, fn, ctx);
}

int
action_expire(struct action_run *a, int64_t now)
{
	if (a->timed_out || now < a->deadline)
		return 0;
	proc_abort(&a->proc);
	a->timed_out = 1;
	return 1;
}

void
action_abort(struct action_run *a)
{
	proc_abort(&a->proc);
}

void
action_finish(struct action_run *a, struct action_result *res,
              void (*fn)(void *ctx, const char *line, size_t len), void *ctx)
{
	char verdict_line[256] = "";
	struct proc_status st;
	ssize_t n;

	memset(res, 0, sizeof *res);
	proc_collect(&a->proc, &st);
	action_output(a, 1, fn, ctx);
	close(a->proc.out);
	a->proc.out = -1;
	buf_free(&a->out);
	n = read(a->status_fd, verdict_line, sizeof verdict_line - 1);
	verdict_line[n > 0 ? n : 0] = '\0';
	/* A line "overrule-shutdown 0|1" is what the child learned about qm
	 * or pct (lib/power), kept here for the next actions; "skip ..." its
	 * verdict. */
	if (strncmp(verdict_line, "overrule-shutdown ", 18) == 0) {
		size_t len = strcspn(verdict_line, "\n");
		power_stop_overrule_learn(a->type, verdict_line[18] == '1');
		len += verdict_line[len] == '\n';
		memmove(verdict_line, verdict_line + len, strlen(verdict_line + len) + 1);
	}
	verdict_line[strcspn(verdict_line, "\n")] = '\0';
	close(a->status_fd);
	a->status_fd = -1;
	if (strncmp(verdict_line, "skip ", 5) == 0) {
		res->skipped = 1;
		snprintf(res->text, sizeof res->text, "%s", verdict_line + 5);
		return;
	}
	res->timed_out = a->timed_out;
	res->ok = !a->timed_out && WIFEXITED(st.wstatus) && WEXITSTATUS(st.wstatus) == 0;
	if (a->timed_out)
		snprintf(res->text, sizeof res->text, "action timed out");
	else if (WIFSIGNALED(st.wstatus))
		snprintf(res->text, sizeof res->text, "action killed by signal %d",
		         WTERMSIG(st.wstatus));
	else
		snprintf(res->text, sizeof res->text, "action exited %d", WEXITSTATUS(st.wstatus));
}
