#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "util.h"

static int
proc_alive(pid_t pid)
{
	char path[64];
	struct buf b = { 0 };
	const char *p;
	int alive = 0;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if (read_file(path, 4096, &b) == 0 && (p = strrchr(b.data, ')')))
		alive = p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	buf_free(&b);
	return alive;
}

static int
cmdline_has_pidfile(pid_t pid, const char *pidfile)
{
	char path[64];
	struct buf b = { 0 };
	int found = 0;

	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	if (read_file(path, 1024 * 1024, &b) == 0) {
		for (size_t i = 0; i < b.len && !found; i += strlen(b.data + i) + 1) {
			const char *arg = b.data + i;
			size_t next = i + strlen(arg) + 1;
			if (strcmp(arg, "-pidfile") == 0 && next < b.len)
				found = strcmp(b.data + next, pidfile) == 0;
		}
	}
	buf_free(&b);
	return found;
}

pid_t
qemu_running_pid(const char *run_dir, uint32_t vmid)
{
	char *pidfile = xasprintf("%s/%u.pid", run_dir, vmid);
	struct buf b = { 0 };
	unsigned long v;
	pid_t pid = 0;

	if (read_file(pidfile, 64, &b) == 0) {
		b.data[strcspn(b.data, "\n")] = '\0';
		if (parse_ulong(b.data, 4194304, &v) == 0 && v > 0 && proc_alive((pid_t)v) &&
		    cmdline_has_pidfile((pid_t)v, pidfile))
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
