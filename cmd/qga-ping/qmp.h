/* One non-blocking query-status exchange with a QEMU monitor (QMP) socket:
 * connect, qmp_capabilities + query-status in one write, skip the greeting
 * and events, read both replies, close. qga-ping asks it before declaring a
 * guest failed: a paused guest (qm suspend, a migration's last phase)
 * answers no agent ping, and is not hung. */
#ifndef QGA_PING_QMP_H
#define QGA_PING_QMP_H

#include <stdint.h>

#include "util.h"

struct qmp_call {
	int fd, state, returns, ok;
	char status[32];  /* QEMU's run state ("running", "paused", ...) when ok */
	char detail[256]; /* why not, otherwise */
	int64_t deadline_ms;
	struct buf in, out;
	size_t out_off;
};

/* Starts the exchange with the monitor at path; it may finish at once. */
void qmp_call_start(struct qmp_call *c, const char *path, int timeout_ms, int64_t now_ms);
int qmp_call_fd(const struct qmp_call *c); /* -1 when done */
short qmp_call_events(const struct qmp_call *c);
int64_t qmp_call_deadline(const struct qmp_call *c);
void qmp_call_step(struct qmp_call *c, short revents, int64_t now_ms);
int qmp_call_done(const struct qmp_call *c);
void qmp_call_cleanup(struct qmp_call *c);

#endif
