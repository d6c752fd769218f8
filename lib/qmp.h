/* One exchange with a QEMU monitor (QMP) over its Unix socket:
 *   connect, read QEMU's greeting, send qmp_capabilities and read its
 *   return, send COMMAND and read its return (or error), close.
 * Events QEMU sends in between are skipped. The monitor takes one client at
 * a time (the next waits in the listen backlog) and pvestatd and qm use it
 * every few seconds, so a call closes the socket the moment the reply is in
 * and never keeps it beyond its deadline. Calls are non-blocking state
 * machines with the shape of lib/qga.h, so a poll loop can run them beside
 * anything else; qmp_query_status is the blocking form for one question. */
#ifndef PVEKIT_QMP_H
#define PVEKIT_QMP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "usock.h"
#include "buf.h"

#define QMP_QUERY_STATUS "{\"execute\":\"query-status\"}"

enum qmp_result {
	QMP_PENDING = -1,
	QMP_OK = 0,
	QMP_NOSOCKET, /* no socket file: QEMU is not running */
	QMP_REFUSED,  /* a socket file nobody listens on: QEMU is gone */
	QMP_TIMEOUT,  /* no (complete) answer before the deadline: QEMU hangs,
	                 or another client holds the monitor */
	QMP_GARBAGE,  /* bytes that are not QMP */
	QMP_ERROR,    /* QEMU answered the command with an error object */
	QMP_IOERR,    /* connect/read/write failed otherwise, or QEMU hung up */
};

struct qmp_call {
	/* set by qmp_call_init */
	char *path;
	char *command; /* one JSON object, e.g. QMP_QUERY_STATUS */
	int timeout_ms;
	/* results */
	enum qmp_result result;
	json_t *ret;      /* the "return" value on QMP_OK (owned, freed by cleanup) */
	char detail[256]; /* why, for every result but QMP_OK */
	/* private */
	int state, phase;
	char name[48]; /* the command's "execute", for messages */
	struct usock sock;
};

/* Short names for results: "ok", "no-socket", "refused", "timeout",
 * "garbage", "error", "io-error". */
const char *qmp_result_name(enum qmp_result r);

void qmp_call_init(struct qmp_call *c, const char *path, const char *command, int timeout_ms);
/* Starts (or, once done, starts again) the exchange; it may finish at once.
 * The previous results are dropped, so one call serves every check. */
void qmp_call_start(struct qmp_call *c, int64_t now_ms);
/* poll(2) interest: fd and events; fd -1 while waiting on a timer or done. */
int qmp_call_fd(const struct qmp_call *c);
short qmp_call_events(const struct qmp_call *c);
/* When the call next needs qmp_call_step without I/O (a retry or the deadline). */
int64_t qmp_call_wakeup(const struct qmp_call *c);
/* Advances on revents (0 for a timer); closes the socket once done. */
void qmp_call_step(struct qmp_call *c, short revents, int64_t now_ms);
int qmp_call_done(const struct qmp_call *c);
void qmp_call_cleanup(struct qmp_call *c);

/* Hands the call bytes as the monitor sent them; qmp_call_step does this
 * after each read. On a call that was only initialised it runs the exchange
 * without a socket (how the fuzzer drives the parser): what the client
 * would send then collects in c->sock.out. */
void qmp_call_feed(struct qmp_call *c, const void *data, size_t len, int64_t now_ms);

/* Starts the call and polls it to the end (at most its timeout). */
void qmp_call_run(struct qmp_call *c);

/* The run state in a query-status return ("running", "paused",
 * "prelaunch", "inmigrate", ...), or NULL. */
const char *qmp_run_state(const json_t *ret);

/* One blocking query-status exchange with the monitor at path: QMP_OK with
 * the run state in status, or another result with the reason in why. */
enum qmp_result qmp_query_status(const char *path, int timeout_ms, char *status, size_t len,
                                 char *why, size_t wlen);

/* QEMU run states in which the guest is stopped on purpose or in transit
 * (paused, suspended, a migration, a snapshot, prelaunch, debug, colo): a
 * silent guest is expected there and a restart would destroy what the
 * admin or a migration is doing. With shutdown_too, "shutdown" (the guest
 * powered itself off) counts too: Proxmox starts QEMU with -no-shutdown,
 * so QEMU stays in that state until qmeventd cleans up, or until a backup
 * that keeps it alive ends; the watchers pass 1. The others (running,
 * guest-panicked, internal-error, io-error, watchdog) are a hung or broken
 * guest. */
int qemu_status_hands_off(const char *status, int shutdown_too);

#endif
