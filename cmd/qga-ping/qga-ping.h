/* qga-ping: shared between the one-shot ping (qga-ping.c) and --watch (watch.c). */
#ifndef QGA_PING_H
#define QGA_PING_H

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
};

/* Runs until SIGTERM or SIGINT; returns the exit status. */
int watch_run(const struct watch_opts *o);

/* Event times: UTC with microseconds, masakari's generated_time form. */
#define EVENT_TIME_DIGITS 6

#endif
