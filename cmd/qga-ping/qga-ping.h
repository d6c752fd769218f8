/* qga-ping: shared between the one-shot ping (qga-ping.c) and --watch (watch.c). */
#ifndef QGA_PING_H
#define QGA_PING_H

#include <stddef.h>
#include <stdint.h>

struct watch_opts {
	const char *pve_dir;
	const char *node;
	const char *qga_dir;
	const char *exec_cmd;     /* --exec, run with /bin/sh -c */
	const char *timesync_cmd; /* qga-timesync, found in PATH */
	double interval_s;
	double grace_s;
	double exec_timeout_s;
	double timesync_gap_s; /* 0: never */
	int timeout_ms;
	unsigned threshold;
	int json;
	int systemd_run; /* --exec and --restart as transient units of PID 1 (lib/sdrun) */
	/* --restart: restart a guest whose agent failed (lib/action) */
	int restart;
	unsigned max_restarts;   /* within restart_window_s */
	double restart_window_s;
	double restart_wait_s;    /* the shutdown's grace (qm shutdown --timeout) */
	double restart_timeout_s; /* the whole restart */
};

/* Runs until SIGTERM or SIGINT; returns the exit status. */
int watch_run(const struct watch_opts *o);

/* One target's line (text or NDJSON), one-shot and --wait. */
struct qga_target;
struct qga_call;
void print_result(const struct qga_target *t, const struct qga_call *c, int json);

/* --wait (wait.c): ping until every agent answers or wait_s has passed;
 * prints a line each, returns 0 or EXIT_TIMEOUT. */
struct wait_opts {
	double wait_s;
	int timeout_ms; /* one try */
	int json, quiet;
};
int ping_wait(const struct qga_target *t, size_t n, const struct wait_opts *o);

/* Event times: UTC with microseconds, masakari's generated_time form. */
#define EVENT_TIME_DIGITS 6

#endif
