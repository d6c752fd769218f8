#include <stdio.h>
#include <sys/resource.h>

#include "fdbudget.h"

void
raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The kernel's ceiling for RLIMIT_NOFILE. */
static rlim_t
nr_open(void)
{
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	unsigned long long v = 0;

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v ? (rlim_t)v : 1048576;
}

void
raise_nofile_limit_to(size_t want)
{
	struct rlimit rl;

	raise_nofile_limit();
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= want)
		return;
	/* Past the hard limit: only with CAP_SYS_RESOURCE, else it stays. */
	rl.rlim_cur = rl.rlim_max = want < nr_open() ? (rlim_t)want : nr_open();
	setrlimit(RLIMIT_NOFILE, &rl);
}

size_t
open_files_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 100000000 ? 100000000
	                                                               : (size_t)rl.rlim_cur;
}

size_t
open_files_budget(size_t reserve)
{
	struct rlimit rl;

	raise_nofile_limit();
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur - reserve > 1000000)
		return 1000000;
	return rl.rlim_cur > reserve + 32 ? (size_t)rl.rlim_cur - reserve : 16;
}
