/* tcpcheck --watch: what it tells: state lines on stdout (text or NDJSON),
 * the status table on SIGUSR1, and STATUS= for systemd. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "notify.h"
#include "util.h"
#include "watch.h"

const char *const state_names[] = { "idle",   "grace", "healthy", "failing",
	                            "acting", "held",  "gave-up" };

const char *
gname(const struct guest *g)
{
	if (g->conf.name)
		return g->conf.name;
	return g->pve_name[0] ? g->pve_name : "-";
}

/* json_string refuses text that is not UTF-8 (a name or a path from a file). */
static json_t *
json_text(const char *s)
{
	json_t *v = json_string(s);

	return v ? v : json_string("?");
}

void
print_transition(struct watcher *w, const struct guest *g)
{
	if (w->o->json) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		json_t *j = json_object();
		json_object_set_new(j, "vmid", json_integer(g->vmid));
		json_object_set_new(j, "state", json_string(state_names[g->state]));
		json_object_set_new(j, "reason", json_text(g->reason));
		json_object_set_new(j, "name", json_text(gname(g)));
		json_object_set_new(j, "type", json_string(guest_type_name(g->type)));
		json_object_set_new(j, "node", json_string(w->o->node));
		json_object_set_new(j, "time", json_real(ts.tv_sec + ts.tv_nsec / 1e9));
		char *s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(j);
	} else {
		printf("%u %s %s\n", g->vmid, state_names[g->state], g->reason);
	}
	fflush(stdout);
}

void
transition(struct watcher *w, struct guest *g, enum gstate st, const char *fmt, ...)
{
	char reason[sizeof g->reason];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	if (st == g->state && (strcmp(reason, g->reason) == 0 || (st != GS_IDLE && st != GS_HELD)))
		return;
	if (st != g->state)
		g->since = mono_ms();
	g->state = st;
	snprintf(g->reason, sizeof g->reason, "%s", reason);
	print_transition(w, g);
}

void
fmt_duration(double s, char *out, size_t len)
{
	long t = (long)(s + 0.5);

	if (s < 60)
		snprintf(out, len, "%.1fs", s);
	else if (t < 3600)
		snprintf(out, len, "%ldm%lds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(out, len, "%ldh%ldm", t / 3600, t % 3600 / 60);
	else
		snprintf(out, len, "%ldd%ldh", t / 86400, t % 86400 / 3600);
}

void
log_once(char *last, size_t len, const char *msg)
{
	if (strcmp(last, msg) != 0) {
		if (*msg)
			log_err("%s", msg);
		snprintf(last, len, "%s", msg);
	}
}

void
status_table(struct watcher *w)
{
	int64_t now = mono_ms();
	char d[32];

	log_info("status: %zu guests with a config, %d acting; maintenance: cluster-wide %s, "
	         "node-local %s",
	         w->n, w->nacting, w->cluster_maint ? "on" : "off", w->node_maint ? "on" : "off");
	for (size_t i = 0; i < w->n; i++) {
		const struct guest *g = w->g[i];
		fmt_duration((now - g->since) / 1000.0, d, sizeof d);
		log_info("status: %u %s %s; since %s; %zu/%u actions in window; name %s", g->vmid,
		         state_names[g->state], g->reason[0] ? g->reason : "-", d, g->acts.n,
		         g->conf.max_actions, gname(g));
	}
}

void
notify_status(struct watcher *w)
{
	char status[256];
	int watched = 0, failing = 0;

	for (size_t i = 0; i < w->n; i++) {
		watched += w->g[i]->state != GS_IDLE;
		failing += w->g[i]->state == GS_FAILING || w->g[i]->state == GS_HELD ||
		           w->g[i]->state == GS_GAVE_UP;
	}
	snprintf(status, sizeof status, "STATUS=watching %d of %zu guests, %d failing, %d acting%s",
	         watched, w->n, failing, w->nacting,
	         w->cluster_maint || w->node_maint ? ", maintenance" : "");
	if (strcmp(status, w->last_status) != 0) {
		sd_notify_msg(status);
		snprintf(w->last_status, sizeof w->last_status, "%s", status);
	}
}
