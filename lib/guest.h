/* Is a guest running on this node? Checked the way Proxmox does it, without
 * forking qm or pct: a VM by its pid file and QEMU's command line, a
 * container by LXC's command socket. */
#ifndef PVEKIT_GUEST_H
#define PVEKIT_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RUN_DIR_DEFAULT "/var/run/qemu-server"
#define LXC_DIR_DEFAULT "/var/lib/lxc"
#define CGROUP_DIR_DEFAULT "/sys/fs/cgroup"

/* Reads RUN_DIR/VMID.pid and checks that the process lives and was started
 * with that pid file as "-pidfile" (a stale or reused pid does not count).
 * The two are compared as files (device and inode), so RUN_DIR may be
 * spelled otherwise than qemu-server's /var/run/qemu-server (/run, a
 * trailing slash); a pid file naming a QEMU started with another pid file
 * is said in one warning (once per guest and pid). Returns the pid, or 0
 * when the guest is not running. */
pid_t qemu_running_pid(const char *run_dir, uint32_t vmid);

/* RUN_DIR/VMID.qga (caller frees). */
char *qga_socket_path(const char *run_dir, uint32_t vmid);

/* The running containers, as PVE's list_active_containers finds them: LXC's
 * abstract command socket "@LXC_DIR/VMID/command" is listed in
 * /proc/net/unix. A sorted table of vmid -> socket inode (the instance: a
 * restarted container has a new one); 0, or -1 with errno. */
struct lxc_running {
	uint32_t vmid;
	uint64_t inode;
};
int lxc_running_scan(const char *lxc_dir, struct lxc_running **out, size_t *n);
/* The inode of VMID's socket in the table, 0 when it is not running. */
uint64_t lxc_running_find(const struct lxc_running *v, size_t n, uint32_t vmid);

/* The container's init process (pid 1 inside it), as "lxc-info -p" reports
 * it, found in its cgroup CGROUP_DIR/lxc/VMID (and below): the pid 1 of a
 * pid namespace one level below ours, never that of a container nested in
 * it (Docker in a CT), which is two levels down; 0 when there is none. */
pid_t lxc_init_pid(const char *cgroup_dir, uint32_t vmid);

#endif
