#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "parse.h"
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

char *
proc_cmdline_value(pid_t pid, const char *option)
{
	char path[64], *value = NULL;
	struct buf b = { 0 };

	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	if (read_file(path, 1024 * 1024, &b) == 0) {
		for (size_t i = 0; i < b.len && !value; i += strlen(b.data + i) + 1) {
			const char *arg = b.data + i;
			size_t next = i + strlen(arg) + 1;
			if (arg[0] == '-' && arg[1] == '-')
				arg++;
			if (arg[0] == '-' && strcmp(arg + 1, option) == 0 && next < b.len)
				value = xstrdup(b.data + next);
		}
	}
	buf_free(&b);
	return value;
}

/* The NSpid line of /proc/PID/status: the pid in each pid namespace from
 * the one /proc belongs to down to the process's own ("NSpid:\t4711\t1"
 * for the init of a namespace one level down). *levels gets the number of
 * entries, *innermost the last one. 0, or -1 when there is no such line. */
static int
proc_nspid(const char *pid, int *levels, unsigned long *innermost)
{
	char path[64], *line, *tok, *save, *last = NULL;
	struct buf b = { 0 };
	int rc = -1;

	snprintf(path, sizeof path, "/proc/%s/status", pid);
	if (read_file(path, 64 * 1024, &b) == 0 && (line = strstr(b.data, "\nNSpid:"))) {
		int ntok = 0;
		line += strlen("\nNSpid:");
		line[strcspn(line, "\n")] = '\0';
		for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
			last = tok;
			ntok++;
		}
		if (ntok > 0 && parse_ulong(last, ULONG_MAX, innermost) == 0) {
			*levels = ntok;
			rc = 0;
		}
	}
	buf_free(&b);
	return rc;
}

int
proc_is_child_ns_init(pid_t pid)
{
	static int self_levels; /* ours: 1, unless /proc is another namespace's */
	unsigned long last, self_last;
	char id[24];
	int levels;

	if (!self_levels && proc_nspid("self", &self_levels, &self_last) < 0)
		self_levels = 1;
	snprintf(id, sizeof id, "%ld", (long)pid);
	return proc_nspid(id, &levels, &last) == 0 && levels == self_levels + 1 && last == 1;
}
