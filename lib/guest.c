#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "guest.h"
#include "log.h"
#include "parse.h"
#include "procfs.h"

#define CGROUP_WALK_DEPTH 4 /* the CT's init is in lxc/VMID/ns or just below */

/* Is PATH, as process pid names it (relative to its working directory),
 * the file st? */
static int
same_file_as(pid_t pid, const char *path, const struct stat *st)
{
	struct stat other;
	char *at = path[0] == '/' ? xstrdup(path) : xasprintf("/proc/%ld/cwd/%s", (long)pid, path);
	int same =
	    stat(at, &other) == 0 && other.st_dev == st->st_dev && other.st_ino == st->st_ino;

	free(at);
	return same;
}

/* A pid file naming a QEMU that was started with another pid file is said
 * once per guest and pid, not on every scan of a watcher. */
static void
warn_other_pidfile(uint32_t vmid, pid_t pid, const char *pidfile, const char *arg)
{
	static struct {
		uint32_t vmid;
		pid_t pid;
	} said[256];
	size_t slot = vmid % ARRAY_LEN(said);

	if (said[slot].vmid == vmid && said[slot].pid == pid)
		return;
	said[slot].vmid = vmid;
	said[slot].pid = pid;
	log_warn("%s: pid %ld runs with -pidfile %s, another file: not taken as running", pidfile,
	         (long)pid, arg);
}

pid_t
qemu_running_pid(const char *run_dir, uint32_t vmid)
{
	char *pidfile = xasprintf("%s/%u.pid", run_dir, vmid), *arg = NULL;
	struct buf b = { 0 };
	struct proc_stat ps;
	struct stat st;
	unsigned long v;
	pid_t pid = 0;
	int fd;

	/* The pid file as it is read: the same open file for its content and
	 * its identity, so a rename in between cannot mix two files. */
	if ((fd = open(pidfile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
		goto out;
	if (fstat(fd, &st) < 0 || read_fd(fd, 64, &b) < 0)
		goto out;
	b.data[strcspn(b.data, "\n")] = '\0';
	if (parse_ulong(b.data, 4194304, &v) < 0 || v == 0 || proc_stat_read((pid_t)v, &ps) < 0)
		goto out;
	/* qemu-server compares the -pidfile argument with its own spelling of
	 * the path; ours (RUN_DIR) may differ: /run for /var/run, a trailing
	 * slash. The same file is what counts. */
	if (!(arg = proc_cmdline_value((pid_t)v, "pidfile")))
		goto out; /* a reused pid: no QEMU */
	if (strcmp(arg, pidfile) == 0 || same_file_as((pid_t)v, arg, &st))
		pid = (pid_t)v;
	else
		warn_other_pidfile(vmid, (pid_t)v, pidfile, arg);
out:
	if (fd >= 0)
		close(fd);
	free(arg);
	buf_free(&b);
	free(pidfile);
	return pid;
}

char *
qga_socket_path(const char *run_dir, uint32_t vmid)
{
	return xasprintf("%s/%u.qga", run_dir, vmid);
}

static int
lxc_cmp(const void *a, const void *b)
{
	const struct lxc_running *x = a, *y = b;
	return x->vmid < y->vmid ? -1 : x->vmid > y->vmid;
}

/* /proc/net/unix: "Num RefCount Protocol Flags Type St Inode Path"; a running
 * container has LXC's command socket "@LXC_DIR/VMID/command" (PVE's
 * list_active_containers reads the same). */
int
lxc_running_scan(const char *lxc_dir, struct lxc_running **out, size_t *n)
{
	struct buf b = { 0 };
	struct lxc_running *v = NULL;
	size_t nv = 0, dlen = strlen(lxc_dir);
	char *save = NULL, *line;

	*out = NULL;
	*n = 0;
	if (read_file("/proc/net/unix", 256 * 1024 * 1024, &b) < 0)
		return -1;
	for (line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long inode;
		char path[512], tail[16];
		uint32_t vmid;
		char *id, *slash;

		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %llu %511s", &inode, path) != 2)
			continue;
		if (path[0] != '@' || strncmp(path + 1, lxc_dir, dlen) != 0 ||
		    path[1 + dlen] != '/')
			continue;
		id = path + 2 + dlen;
		slash = strchr(id, '/');
		if (!slash || strcmp(slash, "/command") != 0)
			continue;
		snprintf(tail, sizeof tail, "%.*s", (int)(slash - id), id);
		if (parse_vmid(tail, &vmid) < 0)
			continue;
		v = xreallocarray(v, nv + 1, sizeof *v);
		v[nv].vmid = vmid;
		v[nv].inode = inode ? inode : 1;
		nv++;
	}
	buf_free(&b);
	if (nv)
		qsort(v, nv, sizeof *v, lxc_cmp);
	*out = v;
	*n = nv;
	return 0;
}

uint64_t
lxc_running_find(const struct lxc_running *v, size_t n, uint32_t vmid)
{
	struct lxc_running key = { .vmid = vmid }, *hit;

	hit = n ? bsearch(&key, v, n, sizeof *v, lxc_cmp) : NULL;
	return hit ? hit->inode : 0;
}

/* Looks for the CT's init in DIR/cgroup.procs, then in the cgroups below
 * (a systemd container moves its init to DIR/init.scope). *first gets the
 * first live process seen: the fallback for a CT without a pid namespace. */
static pid_t
cgroup_find_init(const char *dir, int depth, pid_t *first)
{
	char *procs = xasprintf("%s/cgroup.procs", dir);
	struct buf b = { 0 };
	pid_t found = 0;
	DIR *d;
	struct dirent *de;

	if (read_file(procs, 16 * 1024 * 1024, &b) == 0) {
		for (char *p = b.data, *next; *p && !found; p = next) {
			unsigned long pid;
			next = p + strcspn(p, "\n");
			if (*next)
				*next++ = '\0';
			if (parse_ulong(p, 4194304, &pid) < 0 || !pid)
				continue;
			if (!*first && kill((pid_t)pid, 0) == 0)
				*first = (pid_t)pid;
			if (proc_is_child_ns_init((pid_t)pid))
				found = (pid_t)pid;
		}
	}
	buf_free(&b);
	free(procs);
	if (found || depth >= CGROUP_WALK_DEPTH || !(d = opendir(dir)))
		return found;
	while (!found && (de = readdir(d))) {
		if ((de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) || de->d_name[0] == '.')
			continue;
		char *sub = xasprintf("%s/%s", dir, de->d_name);
		found = cgroup_find_init(sub, depth + 1, first);
		free(sub);
	}
	closedir(d);
	return found;
}

/* The CT's init process, as "lxc-info -n VMID -p" reports it: the process
 * that is pid 1 in the container. Proxmox (cgroup v2) keeps the container
 * in lxc/VMID, its payload in lxc/VMID/ns. */
pid_t
lxc_init_pid(const char *cgroup_dir, uint32_t vmid)
{
	char *dirs[] = { xasprintf("%s/lxc/%u/ns", cgroup_dir, vmid),
		         xasprintf("%s/lxc/%u", cgroup_dir, vmid) };
	pid_t pid = 0, first = 0;

	for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
		if (!pid && !first)
			pid = cgroup_find_init(dirs[i], 0, &first);
		free(dirs[i]);
	}
	return pid ? pid : first;
}
