/* failoverip-set's runs: route the IPs (read where each is routed, move
 * what is elsewhere) or list them, a batch at a time, each request retried
 * with backoff inside the timeout while the provider says "later"; the
 * outcomes settle each IP and the worst sets the exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "failoverip.h"
#include "log.h"
#include "util.h"

#define RETRY_CAP_MS 30000

/* Where ip goes: destination, or destination6 for an IPv6 net at a
 * provider that routes those to their own destination (Hetzner); NULL,
 * after saying why, when the configuration has none. */
static const char *
fip_dest(const struct config *cfg, const struct fip *ip)
{
	if (cfg->provider->dest6 && ip->family == AF_INET6) {
		if (!cfg->destination6)
			log_err(
			    "%s: %s routes an IPv6 net to the destination server's IPv6 subnet, "
			    "not to its main IPv4 address: set destination6 in %s (or give the "
			    "subnet with --to)",
			    ip->text, cfg->provider->name, cfg->path);
		return cfg->destination6;
	}
	if (!cfg->destination)
		log_err("%s: no destination for it: set destination in %s (or give --to)", ip->text,
		        cfg->path);
	return cfg->destination;
}

/* Moves the IPs of todo, each to its own dest, a run of equal ones in one
 * call. */
static enum outcome
move_all(struct ctx *c, struct fip **todo, size_t m)
{
	enum outcome o = OUTCOME_OK;

	for (size_t i = 0, k; o == OUTCOME_OK && i < m; i = k) {
		for (k = i + 1; k < m && strcmp(todo[k]->dest, todo[i]->dest) == 0; k++)
			;
		o = c->cfg->provider->move(c, todo + i, k - i, todo[i]->dest);
	}
	return o;
}

/* One try: read the routes, then move what is elsewhere. */
static enum outcome
attempt(struct ctx *c, struct fip **ips, size_t n, int dry_run)
{
	const struct provider *p = c->cfg->provider;
	struct fip **todo = xcalloc(n, sizeof *todo);
	enum outcome o;
	size_t m = 0;

	o = p->lookup(c, ips, n);
	for (size_t i = 0; o == OUTCOME_OK && i < n; i++) {
		struct fip *ip = ips[i];
		const char *dest;

		if (ip->state != ST_PENDING)
			continue;
		dest = ip->dest = fip_dest(c->cfg, ip);
		if (!dest) {
			ip->state = ST_FAILED;
			ip->fail = OUTCOME_CONFIG;
			continue;
		}
		if (p->same_dest(ip->current, dest)) {
			/* After a move that seemed to fail, the route may be here
			 * already: then this run did move it. */
			ip->state = ip->move_sent ? ST_ROUTED : ST_UNCHANGED;
			ip->task_id = 0;
			continue;
		}
		if (!ip->move_sent) {
			free(ip->previous);
			ip->previous = ip->current ? xstrdup(ip->current) : NULL;
		}
		todo[m++] = ip;
	}
	if (o == OUTCOME_OK && m > 0) {
		if (dry_run) {
			for (size_t i = 0; i < m; i++)
				todo[i]->state = ST_WOULD;
		} else {
			o = move_all(c, todo, m);
		}
	}
	free(todo);
	return o;
}

static char *
batch_label(struct fip **ips, size_t n)
{
	struct buf b = { 0 };

	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%s", i ? "," : "", ips[i]->text);
	return b.data;
}

/* Settles the IPs of one batch: IPs the provider does not know, then the
 * outcome of the batch for all still pending. */
static void
settle(struct ctx *c, struct fip **ips, size_t n, enum outcome o, int skip_unknown)
{
	for (size_t i = 0; i < n; i++) {
		struct fip *ip = ips[i];

		if (ip->state == ST_FAILED && ip->fail == OUTCOME_UNKNOWN) {
			if (skip_unknown) {
				ip->state = ST_SKIPPED;
				log_info("%s: %s: not a failover IP of this %s account, skipped",
				         ip->text, c->cfg->peer, c->cfg->provider->name);
			} else {
				log_err("%s: %s: not a failover IP of this %s account", ip->text,
				        c->cfg->peer, c->cfg->provider->name);
			}
		} else if (ip->state == ST_PENDING) {
			ip->state = ST_FAILED;
			ip->fail = o == OUTCOME_OK ? OUTCOME_BADREPLY : o;
		}
	}
}

static void
report(const struct provider *p, const struct fip *const *ips, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct fip *ip = ips[i];
		const char *dest = ip->dest;

		switch (ip->state) {
		case ST_ROUTED:
			printf("%s %s routed %s\n", ip->text, dest, dest_shown(p, ip->previous));
			break;
		case ST_UNCHANGED:
			printf("%s %s unchanged %s\n", ip->text, dest, dest);
			break;
		case ST_WOULD:
			printf("%s %s would-route %s\n", ip->text, dest,
			       dest_shown(p, ip->current));
			break;
		default:
			break;
		}
	}
	fflush(stdout);
}

/* Runs fn until it gives a final answer, retrying transient failures with
 * backoff inside the timeout. The message of a final failure is logged. */
typedef enum outcome (*try_fn)(struct ctx *c, void *arg);

static enum outcome
with_retries(struct ctx *c, const char *label, try_fn fn, void *arg)
{
	const struct config *cfg = c->cfg;
	struct http_backoff b;

	c->deadline_ms = mono_ms() + (int64_t)(cfg->timeout * 1000);
	http_backoff_init(&b, (int64_t)(cfg->retry_delay * 1000), RETRY_CAP_MS,
	                  (unsigned)cfg->retries, c->deadline_ms);
	for (;;) {
		enum outcome o = fn(c, arg);
		int64_t delay;

		if (o == OUTCOME_OK)
			return o;
		if (o != OUTCOME_TRANSIENT) {
			log_err("%s: %s", label, c->msg);
			return o;
		}
		delay = http_backoff_next(&b, c->hint_ms);
		if (delay < 0) {
			if (b.retries >= b.max_retries)
				log_err("%s: %s; giving up after %u retries", label, c->msg,
				        b.retries);
			else
				log_err("%s: %s; giving up: the next try would end after the "
				        "timeout (%.3g s)",
				        label, c->msg, cfg->timeout);
			return o;
		}
		log_warn("%s: %s; retry %u in %.1f s", label, c->msg, b.retries, delay / 1000.0);
		sleep_ms(delay);
	}
}

struct route_job {
	struct fip **ips;
	size_t n;
	int dry_run;
};

static enum outcome
try_route(struct ctx *c, void *arg)
{
	struct route_job *j = arg;

	return attempt(c, j->ips, j->n, j->dry_run);
}

struct lookup_job {
	struct fip **ips;
	size_t n;
};

static enum outcome
try_lookup(struct ctx *c, void *arg)
{
	struct lookup_job *j = arg;

	return c->cfg->provider->lookup(c, j->ips, j->n);
}

static enum outcome
try_list(struct ctx *c, void *arg)
{
	struct buf *out = arg;

	buf_reset(out);
	return c->cfg->provider->list(c, out);
}

static int
outcome_exit(enum outcome o)
{
	switch (o) {
	case OUTCOME_OK:
		return 0;
	case OUTCOME_REFUSED:
	case OUTCOME_AUTH:
	case OUTCOME_UNKNOWN:
		return 1;
	case OUTCOME_BADREPLY:
		return EXIT_DATAERR;
	case OUTCOME_UNAVAIL:
		return EXIT_UNAVAILABLE;
	case OUTCOME_TIMEOUT:
		return EXIT_TIMEOUT;
	case OUTCOME_TRANSIENT:
		return EXIT_TEMPFAIL;
	case OUTCOME_CONFIG:
		return EXIT_CONFIG;
	}
	return EXIT_SOFTWARE;
}

/* When IPs fail in different ways the most serious one sets the exit
 * status: bad config, refused, bad reply, unavailable, timeout, temporary. */
static int
severity(enum outcome o)
{
	static const int rank[] = {
		[OUTCOME_OK] = 0,      [OUTCOME_TRANSIENT] = 1, [OUTCOME_TIMEOUT] = 2,
		[OUTCOME_UNAVAIL] = 3, [OUTCOME_BADREPLY] = 4,  [OUTCOME_REFUSED] = 5,
		[OUTCOME_AUTH] = 5,    [OUTCOME_UNKNOWN] = 5,   [OUTCOME_CONFIG] = 6,
	};

	return rank[o];
}

static enum outcome
worst_of(struct fip **ips, size_t n)
{
	enum outcome w = OUTCOME_OK;

	for (size_t i = 0; i < n; i++)
		if (ips[i]->state == ST_FAILED && severity(ips[i]->fail) > severity(w))
			w = ips[i]->fail;
	return w;
}

static void
stop_after_auth(struct fip **ips, size_t n)
{
	size_t left = 0;

	for (size_t i = 0; i < n; i++) {
		if (ips[i]->state != ST_PENDING)
			continue;
		ips[i]->state = ST_FAILED;
		ips[i]->fail = OUTCOME_AUTH;
		left++;
	}
	if (left)
		log_err("credentials refused: not trying the other %zu IP%s", left,
		        left == 1 ? "" : "s");
}

int
route_ips(struct ctx *c, struct fip **ips, size_t n, int dry_run, int skip_unknown)
{
	const struct provider *p = c->cfg->provider;
	size_t per = p->batch ? n : 1;

	for (size_t i = 0; i < n; i += per) {
		struct route_job job = { ips + i, n - i < per ? n - i : per, dry_run };
		char *label = batch_label(job.ips, job.n);
		enum outcome r = with_retries(c, label, try_route, &job);

		free(label);
		settle(c, job.ips, job.n, r, skip_unknown);
		report(p, (const struct fip *const *)job.ips, job.n);
		if (r == OUTCOME_AUTH) {
			stop_after_auth(ips + i + job.n, n - i - job.n);
			break;
		}
	}
	return outcome_exit(worst_of(ips, n));
}

int
list_ips(struct ctx *c, struct fip **ips, size_t n, int skip_unknown)
{
	const struct provider *p = c->cfg->provider;
	struct buf out = { 0 };
	enum outcome r;

	if (n == 0) {
		r = with_retries(c, p->name, try_list, &out);
		if (r == OUTCOME_OK)
			fputs(out.data ? out.data : "", stdout);
		buf_free(&out);
		return outcome_exit(r);
	}
	for (size_t i = 0, per = p->batch ? n : 1; i < n; i += per) {
		struct lookup_job job = { ips + i, n - i < per ? n - i : per };
		char *label = batch_label(job.ips, job.n);

		r = with_retries(c, label, try_lookup, &job);
		free(label);
		for (size_t k = 0; r == OUTCOME_OK && k < job.n; k++) {
			if (job.ips[k]->state != ST_PENDING)
				continue;
			job.ips[k]->state = ST_UNCHANGED;
			printf("%s %s\n", job.ips[k]->text, dest_shown(p, job.ips[k]->current));
		}
		fflush(stdout);
		settle(c, job.ips, job.n, r, skip_unknown);
		if (r == OUTCOME_AUTH) {
			stop_after_auth(ips + i + job.n, n - i - job.n);
			break;
		}
	}
	return outcome_exit(worst_of(ips, n));
}
