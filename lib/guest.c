#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "guest.h"
#include "parse.h"
#include "procfs.h"

#define CGROUP_WALK_DEPTH 4 /* the CT's init is in lxc/VMID/ns or just below */

pid_t
qemu_running_pid(const char *run_dir, uint32_t vmid)
{
	char *pidfile = xasprintf("%s/%u.pid", run_dir, vmid);
	struct buf b = { 0 };
	unsigned long v;
	pid_t pid = 0;

	if (read_file(pidfile, 64, &b) == 0) {
		b.data[strcspn(b.data, "\n")] = '\0';
		struct proc_stat ps;
		if (parse_ulong(b.data, 4194304, &v) == 0 && v > 0 &&
		    proc_stat_read((pid_t)v, &ps) == 0 &&
		    proc_cmdline_has((pid_t)v, "-pidfile", pidfile))
			pid = (pid_t)v;
	}
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
