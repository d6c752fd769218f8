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

/* RUN_DIR/VMID.qga (caller frees). */
char *qga_socket_path(const char *run_dir, uint32_t vmid);

#endif
