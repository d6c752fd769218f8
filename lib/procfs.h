/* What /proc says about a process. */
#ifndef PVEKIT_PROCFS_H
#define PVEKIT_PROCFS_H

#include <stdint.h>
#include <sys/types.h>

/* Fields of /proc/PID/stat. state is the kernel's letter (R, S, D, Z...). */
struct proc_stat {
	char state;
	pid_t ppid;
	unsigned long long starttime; /* clock ticks after boot */
};

/* Reads /proc/PID/stat without allocating. 0, or -1 when the process is
 * gone. A zombie (Z) or dead (X) process counts as gone. */
int proc_stat_read(pid_t pid, struct proc_stat *st);

/* Milliseconds since a process with this starttime started. */
int64_t proc_age_ms(unsigned long long starttime);

/* Does /proc/PID/cmdline hold the argument pair "OPTION VALUE"? */
int proc_cmdline_has(pid_t pid, const char *option, const char *value);

/* The value after "-OPTION" or "--OPTION" in /proc/PID/cmdline (QEMU takes
 * both spellings), NULL when there is none (caller frees). */
char *proc_cmdline_value(pid_t pid, const char *option);

/* Is pid the init (pid 1) of a pid namespace exactly one level below ours,
 * as a container's init is? The init of a container nested in that one
 * (Docker in a CT) is two levels down and does not count. */
int proc_is_child_ns_init(pid_t pid);

#endif
