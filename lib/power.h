/* Guest power through Proxmox's own commands: qm (QEMU) and pct
 * (containers) run as children with a deadline (lib/proc), their output
 * kept, and the power state of a guest of this node. What pve-start-plan
 * and vm-power share.
 *
 * qm and pct are looked up in PATH, as a shell would (lib/proc). */
#ifndef PVEKIT_POWER_H
#define PVEKIT_POWER_H

#include <stdint.h>

#include "guestconf.h"
#include "proc.h"
#include "vmlist.h"

/* "qm" for QEMU, "pct" for containers. */
const char *power_tool(enum guest_type t);

/* Does this node's qm (pct) take "stop VMID --overrule-shutdown 1", which
 * aborts a running shutdown task (and so frees the config lock it holds)
 * before the stop? qemu-server 8.1.2 and pve-container 5.0.10 (PVE 8.2)
 * added it; older ones refuse the unknown option. Asked once with
 * "TOOL help stop" (deadline timeout_s) and kept while the tool's file in
 * PATH stays the same (an upgrade replaces it). 1 yes, 0 no or unknown
 * (the plain stop is always there). */
int power_stop_overrule(enum guest_type t, double timeout_s);
/* The kept answer only: 1, 0, or -1 when it would have to ask. */
int power_stop_overrule_cached(enum guest_type t);
/* Keeps an answer learned elsewhere (say, by a child process). */
void power_stop_overrule_learn(enum guest_type t, int yes);

/* One qm or pct command. */
struct power_cmd {
	struct proc proc; /* proc.fd: readable when it has ended */
	int out;          /* its stdout and stderr (a memfd) */
	int64_t start_ms;
	/* results, after power_cmd_collect */
	int rc;             /* the exit code as a shell reports it (lib/proc) */
	int timed_out;      /* the deadline passed */
	int64_t ms;         /* how long it ran */
	char last[256];     /* the last line it printed, or proc_describe's */
	char output[1024];  /* the start of what it printed */
};

/* Starts TOOL ARG... (args without the tool's name), stdin /dev/null, in a
 * process group of its own, ended (TERM, KILL 5 s later) after timeout_s.
 * 0, or -1 with the reason in c->last. */
int power_cmd_spawn(struct power_cmd *c, enum guest_type t, const char *const args[],
                    double timeout_s);
/* The same for any program, argv[0] included; a path without a '/' is
 * looked up in PATH. */
int power_cmd_spawn_path(struct power_cmd *c, const char *path, const char *const argv[],
                         double timeout_s);
/* Waits for the end (at once once proc.fd polled readable) and fills the
 * results. */
void power_cmd_collect(struct power_cmd *c);
/* Both. Returns c->rc (127 when it could not start). */
int power_cmd_run(struct power_cmd *c, enum guest_type t, const char *const args[],
                  double timeout_s);

/* A guest of this node: the vmlist places it on node, and its live config
 * was read. 0; -1 with errno ENOENT when it is not this node's (or no
 * guest at all), or the error of reading its config. */
struct local_guest {
	uint32_t vmid;
	enum guest_type type;
	struct guest_conf conf;
};
int local_guest_load(const char *pve_dir, const char *node, const struct vmlist *l,
                     uint32_t vmid, struct local_guest *g);
void local_guest_free(struct local_guest *g);

/* Its power state into state: "running", "stopped", "hibernated" (QEMU:
 * stopped with lock: suspended, its RAM saved by qm suspend --todisk), or
 * for a QEMU guest whose monitor says so, QEMU's run state ("paused",
 * "prelaunch", "inmigrate", ...); a QEMU guest whose monitor does not
 * answer counts as "running". Checked as Proxmox does, without forking
 * qm or pct (lib/guest): QEMU by its pid file and the monitor in RUN_DIR,
 * a container by LXC's command socket under LXC_DIR. 0, or -1 with the
 * reason in why. */
int power_state(const char *run_dir, const char *lxc_dir, const struct local_guest *g,
                char *state, size_t len, char *why, size_t wlen);

/* A quick yes/no: is it running (in any QEMU run state)? -1 when unknown. */
int power_running(const char *run_dir, const char *lxc_dir, const struct local_guest *g,
                  char *why, size_t wlen);

#endif
