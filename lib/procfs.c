#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "file.h"
#include "procfs.h"

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
	if (!p || sscanf(p + 1,
	                 " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
	                 "%*s %*s %*s %llu",
	                 &st->state, &st->ppid, &st->starttime) != 3)
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

int
proc_cmdline_has(pid_t pid, const char *option, const char *value)
{
	char path[64];
	struct buf b = { 0 };
	int found = 0;

	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	if (read_file(path, 1024 * 1024, &b) == 0) {
		for (size_t i = 0; i < b.len && !found; i += strlen(b.data + i) + 1) {
			const char *arg = b.data + i;
			size_t next = i + strlen(arg) + 1;
			if (strcmp(arg, option) == 0 && next < b.len)
				found = strcmp(b.data + next, value) == 0;
		}
	}
	buf_free(&b);
	return found;
}

/* Its NSpid line in /proc/PID/status then ends with 1 ("NSpid:\t4711\t1"). */
int
proc_is_ns_init(pid_t pid)
{
	char path[64], *line, *tok, *save, *last = NULL;
	struct buf b = { 0 };
	int ntok = 0;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	if (read_file(path, 64 * 1024, &b) == 0 && (line = strstr(b.data, "\nNSpid:"))) {
		line += strlen("\nNSpid:");
		line[strcspn(line, "\n")] = '\0';
		for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
			last = tok;
			ntok++;
		}
	}
	int init = ntok >= 2 && strcmp(last, "1") == 0;
	buf_free(&b);
	return init;
}
