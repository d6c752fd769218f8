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
