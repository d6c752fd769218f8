/* qga-ping --watch, its parts (one watcher, passed as a pointer):
 *
 *   watch.c      setup, the poll loop, signals
 *   guests.c     which guests are watched (the guest list, configs, QEMU)
 *   heartbeat.c  pinging each guest, failures and recoveries
 *   children.c   --exec commands and qga-timesync under lib/proc
 *   restart.c    --restart: restarting a failed guest (lib/action)
 *   report.c     event lines, STATUS=, the SIGUSR1 table */
#ifndef QGA_PING_WATCH_H
#define QGA_PING_WATCH_H

#include <jansson.h>
#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

#include "action.h"
#include "childenv.h"
#include "filestamp.h"
#include "guest.h"
#include "guestconf.h"
#include "hares.h"
#include "proc.h"
#include "procfs.h"
#include "qga-ping.h"
#include "qga.h"
#include "qmp.h"
#include "vmlist.h"

#define PING_COMMAND "{\"execute\":\"guest-ping\"}"
#define QUEUE_MAX 8
#define KILL_GRACE_MS 5000
#define TIMESYNC_TIMEOUT_MS 30000

enum ev_kind { EV_FAILED, EV_RECOVERED };

struct event {
	enum ev_kind kind;
	char reason[16];
	char detail[256];
	char qemu_status[32];
	char time[40];
	double downtime_s;
	unsigned misses;
};

struct guest {
	uint32_t vmid;
	char *conf_path, *pid_path;
	/* from the live config, reread when it changes */
	struct filestamp conf_st;
	int have_conf_st, agent;
	char lock[32], uuid[37];
	/* the QEMU process */
	pid_t pid;
	unsigned long long pstart;
	struct filestamp pid_st;
	int64_t arrived; /* when it came to this node (0: there at our start) */
	/* heartbeat */
	int watched, in_flight, first_round, failed, nosock_warned;
	pid_t failed_pid; /* the QEMU that failed: a new one may fail anew */
	unsigned misses;
	int64_t grace_until, next_ping, last_ok, miss_since;
	enum qga_result last_result;
	struct qga_call call;
	/* before declaring a failure: is QEMU running the guest at all? */
	struct qmp_call qmp;
	int checking, pause_logged;
	char qemu_status[32];
	char name[64]; /* name: from the live config (PVEKIT_NAME) */
	/* --restart */
	int restarting;
	struct action_run act;
	struct action_window restarts;
	/* --exec events, run one at a time and in order */
	int exec_running;
	struct event queue[QUEUE_MAX];
	size_t nqueue;
	int seen;
};

struct child {
	struct proc p;
	uint32_t vmid;
	int is_exec, termed;
	int64_t deadline, started;
	char *unit; /* --systemd-run: the --exec command's transient unit */
};

enum pfd_kind { PFD_SIGNAL, PFD_CHILD, PFD_QGA, PFD_QMP, PFD_RESTART_OUT, PFD_RESTART_DONE };

struct watcher {
	const struct watch_opts *o;
	int64_t interval_ms;
	struct guest **g; /* sorted by vmid */
	size_t ng;
	struct child *ch;
	size_t nch;
	struct vmlist_current vl;
	struct ha_resources ha; /* --restart */
	unsigned scans;
	int64_t next_scan;
	size_t first_pending;
	int ready, sfd, stop;
	uint64_t rng;
	/* what poll(2) waits for: pfd[k] is about pfd_guest[k] or pfd_child[k] */
	struct pollfd *pfd;
	enum pfd_kind *pfd_kind;
	struct guest **pfd_guest;
	pid_t *pfd_child;
	size_t pfd_cap;
};

/* guests.c */
int scan(struct watcher *w, int64_t now);
struct guest *guest_find(const struct watcher *w, uint32_t vmid);
void guest_remove(struct watcher *w, size_t i);
pid_t running_pid(const struct watcher *w, struct guest *g);
void stop_watch(struct watcher *w, struct guest *g, const char *why);

/* heartbeat.c */
int64_t rnd_below(struct watcher *w, int64_t n);
void start_pings(struct watcher *w, int64_t now);
void on_result(struct watcher *w, struct guest *g, int64_t now);
void on_qmp(struct watcher *w, struct guest *g);

/* children.c */
void queue_event(struct watcher *w, struct guest *g, enum ev_kind kind, double downtime_s);
void run_timesync(struct watcher *w, struct guest *g);
void child_ended(struct watcher *w, size_t i);
void expire_children(struct watcher *w, int64_t now);
/* At our stop: every command and what it started ends with us. */
void stop_children(struct watcher *w);

/* restart.c */
void restart_failed(struct watcher *w, struct guest *g);
void restart_output(struct guest *g);
void restart_finished(struct watcher *w, struct guest *g);
void restart_expire(struct watcher *w, int64_t now);
int64_t restart_next_deadline(const struct watcher *w);
/* Stops a running restart now and waits for it (the guest left, or we stop). */
void restart_stop(struct watcher *w, struct guest *g);

/* report.c */
void emit(struct watcher *w, uint32_t vmid, const char *event, const char *arg, json_t *extra);
void update_status(struct watcher *w);
void log_table(const struct watcher *w, int64_t now);

#endif
