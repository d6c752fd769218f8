/* qga-ping --watch: what it tells: event lines on stdout (text or NDJSON),
 * STATUS= for systemd, and the table SIGUSR1 logs. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "util.h"
#include "watch.h"

void
emit(struct watcher *w, uint32_t vmid, const char *event, const char *arg, json_t *extra)
{
	if (w->o->json) {
		char ts[40];
		utc_time_now(ts, sizeof ts, EVENT_TIME_DIGITS);
		json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "time", ts, "node", w->o->node,
		                      "vmid", (json_int_t)vmid, "event", event);
		if (extra)
			json_object_update(j, extra);
		char *s =
		    json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
		puts(s);
		free(s);
		json_decref(j);
	} else {
		printf("%u %s %s\n", vmid, event, arg);
	}
	json_decref(extra);
	fflush(stdout);
}

void
update_status(struct watcher *w)
{
	size_t watched = 0, failed = 0;

	for (size_t i = 0; i < w->ng; i++) {
		watched += w->g[i]->watched;
		failed += w->g[i]->watched && w->g[i]->failed;
	}
	sd_notifyf("STATUS=watching %zu guests, %zu failed", watched, failed);
}

void
log_table(const struct watcher *w, int64_t now)
{
	log_info("%zu guests of %s, %zu children running", w->ng, w->o->node, w->nch);
	for (size_t i = 0; i < w->ng; i++) {
		const struct guest *g = w->g[i];
		char ago[32] = "never";
		if (g->last_ok)
			snprintf(ago, sizeof ago, "%.1fs-ago", (now - g->last_ok) / 1000.0);
		log_info("%u: %s%s misses=%u last_answer=%s lock=%s pid=%ld", g->vmid,
		         !g->agent     ? "agent-off"
		         : !g->watched ? "stopped"
		         : g->failed   ? "failed"
		                       : "ok",
		         g->watched && now < g->grace_until ? " (grace)" : "", g->misses, ago,
		         g->lock[0] ? g->lock : "-", (long)g->pid);
	}
}
