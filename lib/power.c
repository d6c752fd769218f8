#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"
#include "power.h"
#include "qmp.h"
#include "util.h"

#define KILL_AFTER_MS 5000
#define QMP_TIMEOUT_MS 3000

const char *
power_tool(enum guest_type t)
{
	return t == GUEST_QEMU ? "qm" : "pct";
}

/* --- does "stop" take --overrule-shutdown? */

/* The file a tool name runs, found in PATH as execvp finds it: an upgrade
 * of qemu-server or pve-container replaces it (a new inode). */
struct tool_id {
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
};

static int
tool_identity(const char *tool, struct tool_id *id)
{
	const char *path = getenv("PATH");
	char *dirs = xstrdup(path ? path : "/bin:/usr/bin"), *save = NULL;
	int found = 0;

	memset(id, 0, sizeof *id);
	for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *file = xasprintf("%s/%s", d, tool);
		struct stat st;
		if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && access(file, X_OK) == 0) {
			id->dev = st.st_dev;
			id->ino = st.st_ino;
			id->mtime = st.st_mtim;
			found = 1;
		}
		free(file);
	}
	free(dirs);
	return found ? 0 : -1;
}

struct overrule_cache {
	int known, yes;
	struct tool_id id;
};
static struct overrule_cache overrule_cache[2]; /* qm, pct */

int
power_stop_overrule_cached(enum guest_type t)
{
	const struct overrule_cache *c = &overrule_cache[t == GUEST_QEMU ? 0 : 1];
	struct tool_id id;

	if (!c->known || tool_identity(power_tool(t), &id) < 0 || id.dev != c->id.dev ||
	    id.ino != c->id.ino || id.mtime.tv_sec != c->id.mtime.tv_sec ||
	    id.mtime.tv_nsec != c->id.mtime.tv_nsec)
		return -1;
	return c->yes;
}

void
power_stop_overrule_learn(enum guest_type t, int yes)
{
	struct overrule_cache *c = &overrule_cache[t == GUEST_QEMU ? 0 : 1];

	c->known = tool_identity(power_tool(t), &c->id) == 0;
	c->yes = yes;
}

/* Proxmox's CLI usage lists each option as "--NAME <type>". */
static int
usage_has_option(const char *text, const char *opt)
{
	size_t n = strlen(opt);

	for (const char *p = strstr(text, opt); p; p = strstr(p + 1, opt))
		if ((p == text || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '[') &&
		    (p[n] == ' ' || p[n] == '\n' || p[n] == '\0' || p[n] == ']'))
			return 1;
	return 0;
}

int
power_stop_overrule(enum guest_type t, double timeout_s)
{
	static const char *const help[] = { "help", "stop", NULL };
	struct power_cmd c;
	struct buf out = { 0 };
	int yes = power_stop_overrule_cached(t), keep;

	if (yes >= 0)
		return yes;
	if (power_cmd_spawn(&c, t, help, timeout_s) < 0)
		return 0;
	keep = fcntl(c.out, F_DUPFD_CLOEXEC, 3);
	power_cmd_collect(&c);
	if (keep < 0)
		return 0;
	if (c.rc == 0 && lseek(keep, 0, SEEK_SET) == 0 && read_fd(keep, 256 * 1024, &out) == 0) {
		yes = usage_has_option(out.data, "--overrule-shutdown");
		power_stop_overrule_learn(t, yes);
	}
	close(keep);
	buf_free(&out);
	return yes > 0;
}

int
power_cmd_spawn_path(struct power_cmd *c, const char *path, const char *const argv[],
                     double timeout_s)
{
	int rc;

	memset(c, 0, sizeof *c);
	c->proc.fd = -1;
	c->start_ms = mono_ms();
	c->out = memfd_create(argv[0], MFD_CLOEXEC);
	if (c->out < 0) {
		c->rc = 126;
		snprintf(c->last, sizeof c->last, "memfd_create: %s", strerror(errno));
		return -1;
	}
	struct proc_spec s = {
		.path = path,
		.search_path = 1,
		.argv = (char *const *)argv,
		.fd_in = PROC_DEVNULL,
		.fd_out = c->out,
		.fd_err = c->out,
		.group = PROC_NEW_GROUP,
		.timeout_ms = (int64_t)(timeout_s * 1000),
		.kill_after_ms = KILL_AFTER_MS,
	};
	rc = proc_spawn(&c->proc, &s);
	if (rc < 0) {
		c->rc = 126;
		snprintf(c->last, sizeof c->last, "%s: %s", path, strerror(errno));
		close(c->out);
		c->out = -1;
	}
	return rc;
}

int
power_cmd_spawn(struct power_cmd *c, enum guest_type t, const char *const args[],
                double timeout_s)
{
	const char *argv[16];
	size_t n = 0;

	argv[n++] = power_tool(t);
	for (size_t i = 0; args[i] && n < ARRAY_LEN(argv) - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return power_cmd_spawn_path(c, argv[0], argv, timeout_s);
}

/* The last non-empty line of text, cut to fit. */
static void
last_line(const char *text, char *out, size_t len)
{
	const char *end = text + strlen(text), *start;

	while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

void
power_cmd_collect(struct power_cmd *c)
{
	struct proc_status st;
	char text[8192];
	ssize_t n;

	if (c->proc.fd < 0)
		return; /* never started: the results are set */
	proc_collect(&c->proc, &st);
	c->rc = proc_exit_code(&st);
	c->timed_out = st.timed_out;
	c->ms = mono_ms() - c->start_ms;
	/* Its end, where qm and pct say what went wrong, and its start. */
	off_t size = lseek(c->out, 0, SEEK_END);
	off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
	n = pread(c->out, text, sizeof text - 1, from);
	text[n > 0 ? n : 0] = '\0';
	last_line(text, c->last, sizeof c->last);
	n = pread(c->out, c->output, sizeof c->output - 1, 0);
	c->output[n > 0 ? n : 0] = '\0';
	close(c->out);
	c->out = -1;
	if (!c->last[0] || st.timed_out || st.exec_errno) {
		char how[128];
		snprintf(c->last, sizeof c->last, "%s%s",
		         st.timed_out ? "no result before the deadline, stopped: " : "",
		         proc_describe(&st, how, sizeof how));
	}
}

int
power_cmd_run(struct power_cmd *c, enum guest_type t, const char *const args[], double timeout_s)
{
	if (power_cmd_spawn(c, t, args, timeout_s) == 0)
		power_cmd_collect(c);
	return c->rc;
}

int
local_guest_load(const char *pve_dir, const char *node, const struct vmlist *l, uint32_t vmid,
                 struct local_guest *g)
{
	const struct vm_owner *o = vmlist_find(l, vmid);
	char *path;
	int rc;

	memset(g, 0, sizeof *g);
	if (!o || strcmp(o->node, node) != 0) {
		errno = ENOENT;
		return -1;
	}
	g->vmid = vmid;
	g->type = o->type;
	path = guest_conf_path(pve_dir, node, o->type, vmid);
	rc = guest_conf_load(path, o->type, &g->conf);
	free(path);
	return rc;
}

void
local_guest_free(struct local_guest *g)
{
	guest_conf_free(&g->conf);
	memset(g, 0, sizeof *g);
}

/* A container runs when LXC's command socket is listed. 1, 0, or -1. */
static int
lxc_running(const char *lxc_dir, uint32_t vmid, char *why, size_t wlen)
{
	struct lxc_running *v;
	size_t n;
	int rc;

	if (lxc_running_scan(lxc_dir, &v, &n) < 0) {
		snprintf(why, wlen, "/proc/net/unix: %s", strerror(errno));
		return -1;
	}
	rc = lxc_running_find(v, n, vmid) != 0;
	free(v);
	return rc;
}

int
power_state(const char *run_dir, const char *lxc_dir, const struct local_guest *g, char *state,
            size_t len, char *why, size_t wlen)
{
	const char *lock;

	why[0] = '\0';
	if (g->type == GUEST_LXC) {
		int rc = lxc_running(lxc_dir, g->vmid, why, wlen);
		if (rc < 0)
			return -1;
		snprintf(state, len, "%s", rc ? "running" : "stopped");
		return 0;
	}
	if (qemu_running_pid(run_dir, g->vmid)) {
		char *qmp = xasprintf("%s/%u.qmp", run_dir, g->vmid);
		if (qmp_query_status(qmp, QMP_TIMEOUT_MS, state, len, why, wlen) != QMP_OK)
			snprintf(state, len, "running");
		free(qmp);
		return 0;
	}
	lock = guest_conf_lock(&g->conf);
	snprintf(state, len, "%s", lock && strcmp(lock, "suspended") == 0 ? "hibernated" : "stopped");
	return 0;
}

int
power_running(const char *run_dir, const char *lxc_dir, const struct local_guest *g, char *why,
              size_t wlen)
{
	why[0] = '\0';
	if (g->type == GUEST_QEMU)
		return qemu_running_pid(run_dir, g->vmid) != 0;
	return lxc_running(lxc_dir, g->vmid, why, wlen);
}
