/* The admin's own code (run-hooks' hooks, qga-ping's --exec, tcpcheck's
 * actions) as a transient service of PID 1, started with systemd-run, so
 * that it runs as root with the node's normal view of the system: none of
 * the calling unit's sandbox (read-only file system, private /tmp,
 * capability bounding set, system call filter, address families) applies
 * to it, and it gets a cgroup of its own that PID 1 stops as a whole.
 *
 * sdrun_argv() builds "systemd-run --wait --pipe --collect ... -- COMMAND";
 * the caller runs it (lib/proc) and waits. systemd-run returns once the
 * unit has stopped and every process in it is gone, with the command's exit
 * code, 255 for a signal, 1 when PID 1 stopped it at runtime_max_ms (or it
 * could not be started; systemd-run says why on stderr). The command gets
 * systemd-run's stdin, stdout and stderr (--pipe), the manager's default
 * environment plus the caller's variables that start with env_prefix, and
 * "/" as its working directory.
 *
 * A killed systemd-run leaves its unit running: systemd 252's --wait does
 * not stop it on SIGTERM (src/run/run.c handles SIGTERM only with --pty).
 * A caller that gives up on a command (stop, deadline) stops its unit
 * (sdrun_stop*) and waits for that too: it returns when the unit's
 * processes are gone (SIGTERM, SIGKILL after stop_timeout_ms).
 *
 * What the caller needs: to be uid 0 and to reach the system bus
 * (dbus-daemon, which every Proxmox node runs: systemd-run --wait uses it to
 * follow the unit). PID 1 grants a root sender of StartTransientUnit without
 * asking polkit, and needs none of its capabilities: a caller with an empty
 * CapabilityBoundingSet=, ProtectSystem=strict, PrivateNetwork=yes and
 * RestrictAddressFamilies=AF_UNIX starts units (tests/system shows it). */
#ifndef PVEKIT_SDRUN_H
#define PVEKIT_SDRUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sdrun_spec {
	const char *unit;        /* from sdrun_unit_name(); NULL: PID 1 picks run-uN */
	const char *description; /* shown by systemctl status */
	int64_t runtime_max_ms;  /* RuntimeMaxSec=; 0: none */
	int64_t stop_timeout_ms; /* TimeoutStopSec= (SIGKILL after SIGTERM); 0: PID 1's */
	int umask;               /* UMask=; -1: PID 1's (0022) */
	char *const *env;        /* NAME=VALUE entries; NULL: our environment */
	const char *env_prefix;  /* only entries starting with this are passed */
};

/* "pvekit-KIND[-VMID][-TAG]-PID-N.service": unique on this node while we
 * run (N counts per process); characters a unit name cannot hold become
 * '_'. vmid 0 or tag NULL leave that part out. */
char *sdrun_unit_name(const char *kind, uint32_t vmid, const char *tag);

/* The command line (NULL-terminated; argv[0] is systemd-run's path, found
 * on PATH) that runs argv as described above. Each '$' of the command is
 * passed as "$$": PID 1 expands $NAME in ExecStart, the shell of an --exec
 * or action= command must see what the admin wrote. Free with sdrun_free(). */
char **sdrun_argv(const struct sdrun_spec *s, char *const argv[]);

/* Stopping a unit: "systemctl stop UNIT" (found on PATH) as a child of
 * ours that ignores SIGTERM and SIGHUP, its stdio on /dev/null. A stop of
 * the caller's own unit sends SIGTERM to every process in it, and again to
 * each one that appears while it does: a plain child started in reaction to
 * that SIGTERM may be killed with the rest, leaving the unit it was to stop
 * running. systemctl returns when the unit's processes are gone.
 *
 * sdrun_stop_start() returns a pidfd, readable once the child has ended
 * (for a poll loop), and its pid; -1 with errno. sdrun_stop_end() reaps it:
 * 0 when the unit is stopped (or was gone), -1 with the reason in err.
 * sdrun_stop() does both, waiting at most timeout_ms (then SIGKILL). */
int sdrun_stop_start(const char *unit, pid_t *pid);
int sdrun_stop_end(int pidfd, pid_t pid, const char *unit, char *err, size_t errlen);
int sdrun_stop(const char *unit, int64_t timeout_ms, char *err, size_t errlen);

void sdrun_free(char **argv);

#endif
