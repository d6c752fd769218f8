/* qga-ping --wait: the one-shot ping for guests that are still booting.
 * Every agent is asked again and again, quietly, until all have answered
 * (0) or the deadline has passed (2, naming those that did not); never
 * longer. The waiting is lib/ready's, the one pve-start-plan uses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "log.h"
#include "qga-ping.h"
#include "qga.h"
#include "qgatarget.h"
#include "ready.h"
#include "util.h"

int
ping_wait(const struct qga_target *t, size_t n, const struct wait_opts *o)
{
	struct ready *r = xcalloc(n ? n : 1, sizeof *r);
	struct buf late = { 0 };
	size_t left;

	for (size_t i = 0; i < n; i++)
		ready_agent(&r[i], t[i].path);
	left = ready_wait(r, n, (int64_t)(o->wait_s * 1000), o->timeout_ms, READY_RETRY_MS);
	for (size_t i = 0; i < n; i++) {
		struct qga_call c = { .result = r[i].ok ? QGA_OK : r[i].result,
			              .elapsed_us = r[i].rtt_us };

		snprintf(c.detail, sizeof c.detail, "%s", r[i].why);
		print_result(&t[i], &c, o->json);
		if (r[i].ok)
			continue;
		buf_printf(&late, " %s", t[i].label);
		if (!o->quiet)
			log_warn("%s", r[i].why); /* its last try's reason, naming the socket */
	}
	fflush(stdout);
	if (left)
		log_err("not answering after %g s:%s", o->wait_s, late.data);
	buf_free(&late);
	free(r);
	return left ? EXIT_TIMEOUT : 0;
}
