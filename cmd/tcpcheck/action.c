/* The action child: decides at the last moment whether acting is still
 * right (running? paused on purpose?), then restarts the guest through qm or
 * pct, or through ha-manager for HA resources, or runs the admin's action=
 * command. It runs in its own process group so the watcher can time it out,
 * and never blocks the checks of other guests. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"
#include "log.h"
#include "proc.h"
#include "qmp.h"
#include "sdrun.h"
#include "tcpcheck.h"
#include "util.h"

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

/* QEMU run states where the guest is stopped on purpose or in transit: a
 * restart would destroy what the admin (or a migration) is doing. The others
 * (running, guest-panicked, internal-error, io-error, shutdown, watchdog)
 * are a hung or broken guest, which is what the action is for. */
static int
status_hands_off(const char *st)
{
	static const char *const off[] = { "paused",      "suspended",  "inmigrate",
		                           "postmigrate", "prelaunch",  "finish-migrate",
		                           "save-vm",     "restore-vm", "debug",
		                           "colo" };
	for (size_t i = 0; i < ARRAY_LEN(off); i++)
		if (strcmp(st, off[i]) == 0)
			return 1;
	return 0;
}

/* ---- running commands */

static int
run_cmd(const struct action_req *r, const char *const argv[], double left_secs)
{
	const char *args[64];
	char **sd = NULL, *unit = NULL, *desc = NULL;
	size_t na = 0;
	pid_t pid;
	int st;

	if (r->systemd_run) {
		/* A transient unit started by PID 1 (lib/sdrun): the guest that
		 * qm starts must not inherit this service's sandbox. */
		struct sdrun_spec sp = {
			.runtime_max_ms = (int64_t)(whole_secs(left_secs) * 1000),
			.umask = -1,
			.env_prefix = "PVEKIT_",
		};
		sp.unit = unit = sdrun_unit_name("action", r->vmid, NULL);
		sp.description = desc = xasprintf("pvekit tcpcheck action for guest %u", r->vmid);
		sd = sdrun_argv(&sp, (char *const *)argv);
		for (size_t i = 0; sd[i] && na < ARRAY_LEN(args) - 1; i++)
			args[na++] = sd[i];
	} else {
		for (size_t i = 0; argv[i] && na < ARRAY_LEN(args) - 1; i++)
			args[na++] = argv[i];
	}
	args[na] = NULL;

	printf("running:");
	for (size_t i = 0; args[i]; i++)
		printf(" %s", args[i]);
	printf("\n");
	fflush(stdout);

	pid = fork();
	if (pid < 0) {
		printf("fork: %s\n", strerror(errno));
		st = 71 << 8;
	} else if (pid == 0) {
		execvp(args[0], (char *const *)args);
		printf("%s: %s\n", args[0], strerror(errno));
		fflush(stdout);
		_exit(127);
	} else {
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	sdrun_free(sd);
	free(unit);
	free(desc);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
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

static int
restart_plain(const struct action_req *r, const char *wait, int64_t end)
{
	char vmid[16];
	const char *tool = r->type == GUEST_QEMU ? "qm" : "pct";

	snprintf(vmid, sizeof vmid, "%u", r->vmid);
	const char *shutdown[] = { tool, "shutdown", vmid, "--timeout", wait, NULL };
	const char *start[] = { tool, "start", vmid, NULL };

	report("shutdown", run_cmd(r, shutdown, (end - mono_ms()) / 1000.0));
	if (guest_running(r)) {
		const char *stop[] = { tool, "stop", vmid, NULL };
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

static void verdict(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
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
			if (status_hands_off(st)) {
				verdict(status_fd, "skip guest is %s", st);
				return 0;
			}
			printf("QEMU status: %s\n", st);
		} else {
			printf("QEMU status unknown (%s): acting on the port checks alone\n", why);
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
	rc = r->ha_sid ? restart_ha(r, wait, end) : restart_plain(r, wait, end);
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
action_spawn(const struct action_req *r, struct proc *p, int *status)
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

	if (pipe2(st, O_CLOEXEC) < 0)
		return -1;
	arg.status_fd = s.fd_keep = st[1];
	if (proc_spawn(p, &s) < 0) {
		int e = errno;
		close(st[0]);
		close(st[1]);
		errno = e;
		return -1;
	}
	close(st[1]);
	fcntl(st[0], F_SETFL, O_NONBLOCK);
	*status = st[0];
	return 0;
}
