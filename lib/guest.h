/* Is a guest running on this node? Checked the way qemu-server does it,
 * without forking qm. */
#ifndef PVEKIT_GUEST_H
#define PVEKIT_GUEST_H

#include <stdint.h>
#include <sys/types.h>

#define RUN_DIR_DEFAULT "/var/run/qemu-server"

/* Reads RUN_DIR/VMID.pid and checks that the process lives and was started
 * with "-pidfile RUN_DIR/VMID.pid" (a stale or reused pid does not count).
 * Returns the pid, or 0 when the guest is not running. */
pid_t qemu_running_pid(const char *run_dir, uint32_t vmid);

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

/* RUN_DIR/VMID.qga (caller frees). */
char *qga_socket_path(const char *run_dir, uint32_t vmid);

#endif
