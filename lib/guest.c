#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"
#include "util.h"

int
proc_stat_read(pid_t pid, struct proc_stat *st)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and parentheses;
	 * starttime is field 22. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
			 "%*s %*s %*s %llu", &st->state, &st->ppid, &st->starttime) != 3)
		return -1;
	return st->state == 'Z' || st->state == 'X' ? -1 : 0;
}

int64_t
proc_age_ms(unsigned long long starttime)
{
	struct timespec boot;
	long hz = sysconf(_SC_CLK_TCK);

	if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &boot) < 0)
		return 0;
	return (int64_t)boot.tv_sec * 1000 + boot.tv_nsec / 1000000 -
	       (int64_t)(starttime * 1000 / (unsigned long long)hz);
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
		struct proc_stat ps;
		if (parse_ulong(b.data, 4194304, &v) == 0 && v > 0 && proc_stat_read((pid_t)v, &ps) == 0 &&
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
