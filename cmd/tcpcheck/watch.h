/* tcpcheck --watch, its parts (one watcher, passed as a pointer):
 *
 *   watch.c    setup, the epoll loop, signals
 *   guests.c   which guests are watched: the config folder, PVE's guest
 *              list, HA resources, whether each guest runs here
 *   checks.c   checking a watched guest's ports on its own cadence
 *   act.c      acting on a guest that stays down (lib/action)
 *   report.c   state lines on stdout, the status table, sd_notify STATUS= */
#ifndef TCPCHECK_WATCH_H
#define TCPCHECK_WATCH_H

#include <stdint.h>
#include <time.h>

#include "action.h"
#include "filestamp.h"
#include "guest.h"
#include "hares.h"
#include "tcpcheck.h"
#include "vmlist.h"

enum gstate { GS_IDLE, GS_GRACE, GS_HEALTHY, GS_FAILING, GS_ACTING, GS_HELD, GS_GAVE_UP };

/* What an epoll event is about. */
enum { EV_PROBER = 1, EV_SIGNAL, EV_ACTION_OUTPUT, EV_ACTION_DONE };

struct evsrc {
	int kind;
	struct guest *g;
};

struct watcher;

struct guest {
	struct watcher *w;
	uint32_t vmid;
	char *path;
	struct filestamp stamp;
	int seen, gone;
	int conf_ok;
	struct watch_conf conf;
	/* what the last scan saw */
	int scanned;
	enum guest_type type;
	char last_owner[NODE_NAME_MAX];
	uint64_t instance; /* QEMU pid, or the container's command socket inode */
	char pve_name[64];
	int64_t last_disabled_log;
	/* state */
	enum gstate state;
	char reason[256];
	int64_t since, grace_until, fail_since, next_check, last_log;
	size_t heap_slot;
	time_t last_slot; /* restart_at: the last slot considered */
	int warned_lxc_uptime;
	/* the check in flight */
	struct probe *probes;
	size_t nprobes, pending;
	int checking;
	int64_t check_start;
	/* the action */
	int acting, act_scheduled;
	struct action_run act;
	struct evsrc act_output, act_done;
	struct action_window acts; /* the actions within action_window */
};

struct watcher {
	const struct watch_opts *o;
	struct guest **g; /* sorted by vmid */
	size_t n;
	char *mvmm_path, *defaults_path, *maint_path;
	struct filestamp st_mvmm, st_defaults;
	struct watch_conf defaults;
	int defaults_ok, defaults_changed;
	struct vmlist_current vl;
	struct ha_resources ha;
	char dir_err[512];
	struct lxc_running *lxc;
	size_t nlxc;
	int cluster_maint, node_maint;
	int epfd, sigfd;
	struct evsrc ev_prober, ev_signal;
	struct prober pr;
	struct heap due; /* watched guests by their next check */
	int64_t next_scan;
	int force_scan, quitting, nacting;
	char last_status[256];
	unsigned seed;
};

/* guests.c */
void scan(struct watcher *w, int force);
void evaluate(struct watcher *w, struct guest *g, int64_t now);
struct guest *find_guest(struct watcher *w, uint32_t vmid, size_t *pos);
void remove_guest(struct watcher *w, size_t pos);
uint64_t current_instance(struct watcher *w, const struct guest *g);
int in_maintenance(struct watcher *w, const struct guest *g, char *why, size_t len);

/* checks.c */
/* The heap of watched guests orders them by their next check. */
int64_t guest_due_key(const void *e);
size_t *guest_due_slot(void *e);
void schedule(struct watcher *w, struct guest *g, int64_t when);
void unschedule(struct watcher *w, struct guest *g);
void cancel_check(struct watcher *w, struct guest *g);
void run_due(struct watcher *w, int64_t now);

/* act.c */
void try_act(struct watcher *w, struct guest *g, const char *why, int scheduled);
void relay_output(struct guest *g);
void action_finished(struct watcher *w, struct guest *g);
void enforce_action_deadlines(struct watcher *w, int64_t now);
int64_t next_action_deadline(const struct watcher *w);

/* report.c */
extern const char *const state_names[];
const char *gname(const struct guest *g);
/* Prints a line when the state changes, or when the reason of an idle or
 * held guest changes (why it is not acting is the news there). */
void transition(struct watcher *w, struct guest *g, enum gstate st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void print_transition(struct watcher *w, const struct guest *g);
void fmt_duration(double s, char *out, size_t len);
void log_once(char *last, size_t len, const char *msg);
void status_table(struct watcher *w);
void notify_status(struct watcher *w);

#endif
