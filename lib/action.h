/* The guest action engine: restarting a guest that a watcher found broken
 * (tcpcheck's ports, qga-ping's agent), the same safe way for both.
 *
 * Deciding (in the watcher, cheap): the guest config's lock holds it
 * (action_locked), so does an HA state other than started or an HA stack
 * disarmed in mode freeze (lib/hares), and
 * so does the rate limit (struct action_window: at most max actions in a
 * window). Acting (in a child under lib/proc, so nothing it starts outlives
 * its deadline or the watcher's stop): at the last moment it checks that
 * the guest still runs and what QEMU says (a paused, suspended or migrating
 * guest, or one that powered itself off, is left alone: "skip"), then
 * restarts it: through ha-manager for an HA resource (crm-command stop,
 * then set --state started), else qm or pct (shutdown, stop if still
 * running, with --overrule-shutdown where qm/pct take it: lib/power,
 * start), or runs the admin's own command
 * with /bin/sh -c. With systemd_run each command runs as a transient unit
 * of PID 1 (lib/sdrun), outside the watcher's sandbox. */
#ifndef PVEKIT_ACTION_H
#define PVEKIT_ACTION_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "guestconf.h"
#include "proc.h"

/* SIGKILL this long after SIGTERM, to an action given up. */
#define ACTION_KILL_AFTER_MS 5000

struct action_req {
	const char *who;      /* the watcher, for unit descriptions: "tcpcheck" */
	const char *evidence; /* what the decision rests on: "the port checks" */
	uint32_t vmid;
	enum guest_type type;
	const char *name, *node, *ip, *reason; /* PVEKIT_NAME, ... for the command */
	const char *run_dir;
	const char *lxc_dir;
	const char *action; /* NULL: the built-in restart */
	const char *ha_sid; /* "vm:101" when HA-managed, else NULL */
	double wait_interval; /* the shutdown's grace, seconds */
	double timeout;       /* the whole action, seconds */
	int systemd_run;      /* each command in a transient unit of PID 1 */
	int shutdown_hands_off; /* QEMU status "shutdown" is left alone too */
};

/* A one-line description of what the action runs, for messages. */
void action_describe(const struct action_req *r, char *out, size_t outlen);

/* Is the guest's live config locked (backup, migrate, snapshot, ...)? 1 with
 * "lock: NAME" in why; 0 not locked; -1 unreadable, the reason in why. */
int action_locked(const char *pve_dir, const char *node, enum guest_type type, uint32_t vmid,
                  char *why, size_t whylen);

/* The times of the actions taken, for "at most max in window". */
struct action_window {
	int64_t *t; /* mono_ms */
	size_t n;
};
/* Forgets actions older than window_ms; returns how many are left. */
size_t action_window_count(struct action_window *w, int64_t now, int64_t window_ms);
void action_window_add(struct action_window *w, int64_t now);
void action_window_drop_last(struct action_window *w); /* a skipped action */
void action_window_free(struct action_window *w);

/* A running action. */
struct action_run {
	struct proc proc; /* proc.fd readable once it has ended; proc.out its output */
	int status_fd;    /* its verdict ("skip REASON") */
	int64_t deadline; /* mono_ms */
	int timed_out;
	enum guest_type type;
	struct buf out; /* output not yet a whole line */
};

/* How it ended. */
struct action_result {
	int skipped;      /* it decided not to act; why in text */
	int ok;           /* exited 0 */
	int timed_out;
	char text[256];   /* "action exited 3", "action timed out", or the skip reason */
};

/* Starts it; 0, or -1 with errno. */
int action_start(struct action_run *a, const struct action_req *r);
/* Reads its output and hands each whole line to fn (final: the rest too). */
void action_output(struct action_run *a, int final, void (*fn)(void *ctx, const char *line, size_t len),
                   void *ctx);
/* At its deadline: stops it and everything it started (once); 1 then. */
int action_expire(struct action_run *a, int64_t now);
/* Once proc.fd polled readable: collects it (the output to fn). */
void action_finish(struct action_run *a, struct action_result *res,
                   void (*fn)(void *ctx, const char *line, size_t len), void *ctx);
/* Stops it now (the watcher is stopping); action_finish follows. */
void action_abort(struct action_run *a);

#endif
