/* One exchange with a QEMU guest agent over its Unix socket:
 *   connect, write 0xFF + guest-sync-delimited(random id) + COMMAND,
 *   skip to the 0xFF that starts the agent's sync reply, check the id,
 *   read COMMAND's reply, close.
 * The socket takes one client at a time and Proxmox uses it too, so a call
 * never keeps it longer than its deadline. Calls are non-blocking state
 * machines so a program can run hundreds of them on one poll loop. */
#ifndef PVEKIT_QGA_H
#define PVEKIT_QGA_H

#include <jansson.h>
#include <stdint.h>

#include "usock.h"
#include "buf.h"

enum qga_result {
	QGA_PENDING = -1,
	QGA_OK = 0,
	QGA_NOSOCKET,  /* no socket file: guest not running or agent disabled */
	QGA_REFUSED,   /* socket file but nobody listening: QEMU gone */
	QGA_TIMEOUT,   /* no (complete) answer before the deadline: hung agent */
	QGA_GARBAGE,   /* bytes that are not the agent protocol */
	QGA_WRONGID,   /* a sync reply, but never with our id */
	QGA_ERROR,     /* the agent answered with an error object */
	QGA_IOERR,     /* connect/read/write failed otherwise, or peer closed */
};

struct qga_call {
	/* set by qga_call_init */
	char *path;
	char *command; /* one JSON object, e.g. {"execute":"guest-ping"} */
	int timeout_ms;
	void *user;
	/* results */
	enum qga_result result;
	json_t *ret;        /* the "return" value on QGA_OK (owned, freed by cleanup) */
	char detail[256];   /* why, for every result but QGA_OK */
	int64_t elapsed_ms; /* from start to result */
	int64_t elapsed_us; /* the same in microseconds (an RTT worth printing) */
	int64_t start_real_ns; /* CLOCK_REALTIME at the start (qga-timesync's midpoint) */
	/* private */
	int state, saw_sync, stale, junk_bad;
	uint32_t id; /* the sync id: random per start (see qga_call_feed) */
	int64_t start_ms, start_us;
	struct usock sock;
};

/* Short names for results: "ok", "no-socket", "refused", "timeout",
 * "garbage", "wrong-id", "error", "io-error". */
const char *qga_result_name(enum qga_result r);

void qga_call_init(struct qga_call *c, const char *path, const char *command, int timeout_ms);
/* Starts (or, once done, starts again) the exchange; the previous results
 * are dropped, so one call can serve every cycle of a watcher. */
void qga_call_start(struct qga_call *c, int64_t now_ms);
/* poll(2) interest: fd and events; fd -1 while waiting on a timer or done. */
int qga_call_fd(const struct qga_call *c);
short qga_call_events(const struct qga_call *c);
/* When the call next needs qga_call_step without I/O (a retry or the deadline). */
int64_t qga_call_wakeup(const struct qga_call *c);
/* Advances on revents (0 for a timer); closes the socket once done. */
void qga_call_step(struct qga_call *c, short revents, int64_t now_ms);
int qga_call_done(const struct qga_call *c);
void qga_call_cleanup(struct qga_call *c);

/* Hands the call bytes as the agent sent them; qga_call_step does this
 * after each read. On a call that was only initialised it runs the exchange
 * without a socket (how the fuzzer drives the parser), with the sync id set
 * in c->id after qga_call_init if any: what the client would send then
 * collects in c->sock.out. */
void qga_call_feed(struct qga_call *c, const void *data, size_t len, int64_t now_ms);

/* The most an agent may send for one call (stale replies and the sync reply
 * included): a larger reply ends the call as QGA_GARBAGE before it is
 * parsed, so a guest cannot make the host parse megabytes of JSON. 1 MiB
 * holds guest-network-get-interfaces of some 3,000 interfaces. */
#define QGA_REPLY_MAX (1024 * 1024)

/* Descriptors a program running many calls keeps for everything else:
 * open_files_budget(QGA_FD_RESERVE) is the usual max_parallel below. */
#define QGA_FD_RESERVE 32

/* Runs n calls to completion, all at once (at most max_parallel sockets
 * open, 0 = no limit). Each call keeps its own deadline. */
void qga_run(struct qga_call *calls, size_t n, size_t max_parallel);

#endif
