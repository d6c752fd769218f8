/* tcpcheck: TCP port checks, one-shot and as the node's guest health watcher.
 * Shared declarations of the files in cmd/tcpcheck/. */
#ifndef TCPCHECK_H
#define TCPCHECK_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "guest.h"
#include "guestconf.h"
#include "ipaddr.h"
#include "proc.h"
#include "vmlist.h"

/* ---- heap.c: a binary min-heap of pointers, each element knowing its slot */

struct heap {
	void **v;
	size_t n, cap;
	int64_t (*key)(const void *e);
	size_t *(*slot)(void *e);
};

void heap_push(struct heap *h, void *e);
void heap_remove(struct heap *h, void *e);
void heap_fix(struct heap *h, void *e); /* after e's key changed */
void *heap_top(const struct heap *h);
void heap_free(struct heap *h);
#define HEAP_NONE ((size_t)-1)

/* ---- probe.c: many non-blocking TCP connects on one epoll set */

enum probe_state {
	PROBE_IDLE,
	PROBE_QUEUED, /* waiting for a free socket slot */
	PROBE_CONNECTING,
	PROBE_OPEN,
	PROBE_CLOSED, /* refused, or another error (err) */
	PROBE_TIMEOUT,
	PROBE_UNTRIED, /* the deadline came before a socket slot did */
};

struct probe {
	/* set by the caller before prober_start */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int64_t deadline_ms; /* mono_ms */
	void (*done)(struct probe *p);
	void *user;
	/* results */
	enum probe_state state;
	int err;            /* errno for PROBE_CLOSED */
	int64_t elapsed_us; /* from prober_start to the result */
	/* private */
	int fd;
	int64_t start_us;
	size_t heap_slot;
	struct probe *qnext;
};

struct prober {
	int epfd;
	size_t inflight, max_inflight;
	struct heap heap; /* connecting probes by deadline */
	struct probe *qhead, *qtail;
	size_t nqueued;
};

int prober_init(struct prober *pr, size_t max_inflight); /* 0 or -1 errno */
void prober_free(struct prober *pr);
void prober_start(struct prober *pr, struct probe *p);
void prober_cancel(struct prober *pr, struct probe *p); /* no callback */
/* Waits at most timeout_ms (0: just handle what is ready), handles answers
 * and expired deadlines; callbacks run from here. */
void prober_poll(struct prober *pr, int timeout_ms);
int64_t prober_next_deadline(const struct prober *pr); /* INT64_MAX: none */
int prober_fd(const struct prober *pr);
/* Descriptors kept for stdio, epoll, pipes and config reads: the prober may
 * keep open_files_budget(PROBE_FD_RESERVE) sockets. */
#define PROBE_FD_RESERVE 64
const char *probe_state_name(enum probe_state s);

/* ---- oneshot.c */

struct oneshot_opts {
	int timeout_ms;
	int any;
	int quiet;
	int json;
	double wait_s; /* --wait (wait.c): try again until all are open or this passed */
};

int oneshot_main(const struct oneshot_opts *o, char **operands, int n);
/* One endpoint's line (text or NDJSON); error for a closed one. */
void oneshot_print(const struct oneshot_opts *o, const char *host, unsigned port,
                   enum probe_state state, long ms, const char *addr, const char *error);

/* ---- wait.c: --wait, the one-shot check until every endpoint is open */

struct addrinfo;
struct wait_endpoint {
	const char *host; /* as written */
	uint16_t port;
	const struct addrinfo *ai; /* its addresses; NULL when it did not resolve */
	const char *why;           /* the resolver's reason */
};

/* Prints a line each; returns 0 (all open) or EXIT_TIMEOUT. */
int wait_main(const struct oneshot_opts *o, const struct wait_endpoint *ep, size_t n);

/* ---- watchconf.c: the per-guest settings, mvmm-compatible key=value files */

#define MAX_PORTS 32

struct watch_conf {
	int has_ip;
	struct ipaddr addr;
	char ip[64]; /* as written */
	uint16_t portsall[MAX_PORTS], portsany[MAX_PORTS];
	unsigned nall, nany;
	double check_interval, fail_interval, fail_threshold, wait_interval;
	double log_interval, recovery_time, disabled_log_interval, timeout;
	double action_timeout, action_window, restart_after;
	int fail_interval_set;
	int restart_at; /* minutes after midnight, -1: none */
	int enabled, maintenance;
	unsigned max_actions;
	char *name;   /* NULL: the guest's own name */
	char *action; /* NULL: the built-in restart */
};

void watchconf_defaults(struct watch_conf *c, int timeout_ms);
void watchconf_copy(struct watch_conf *dst, const struct watch_conf *src);
void watchconf_free(struct watch_conf *c);
/* Applies FILE's lines on top of c. 0 ok, 1 file absent, -1 error with
 * "FILE:LINE: reason" (or "FILE: reason") in err. */
int watchconf_load(struct watch_conf *c, const char *path, char *err, size_t errlen);
/* Cross-key checks once every file is read; -1 with a reason in err. */
int watchconf_validate(const struct watch_conf *c, char *err, size_t errlen);
double watchconf_fail_interval(const struct watch_conf *c);
double watchconf_action_timeout(const struct watch_conf *c);

/* ---- watch.c */

struct watch_opts {
	const char *config_dir, *pve_dir, *node, *run_dir, *lxc_dir;
	double interval;
	int timeout_ms;
	int json, dry_run, systemd_run;
};

int watch_main(const struct watch_opts *o);

#endif
