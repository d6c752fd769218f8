/* failoverip-set: route failover IPs to a server through the provider's API
 * (Online.net, Hetzner Robot, OVHcloud), reading the current route first and
 * moving only what is elsewhere. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "failoverip.h"
#include "log.h"
#include "opt.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/pvekit/failoverip.conf"
#define RETRY_CAP_MS 30000

static const char usage_text[] =
    "usage: failoverip-set [-nv] [-c FILE] [-t DEST] [--timeout SECS] [--skip-unknown] IP...\n"
    "       failoverip-set [-v] [-c FILE] [--timeout SECS] --list [IP...]\n";

struct opts {
	const char *config;
	const char *to;
	double timeout;
	int dry_run, list, skip_unknown;
};

static void
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 't' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "list", no_argument, NULL, 'l' },
		{ "skip-unknown", no_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o->config = DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:t:nlvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 't':
			o->to = optarg;
			break;
		case 'n':
			o->dry_run = 1;
			break;
		case 'l':
			o->list = 1;
			break;
		case 's':
			o->skip_unknown = 1;
			break;
		case 'T':
			o->timeout = opt_seconds("--timeout", optarg, 0.001, 86400);
			break;
		case 'v':
			log_verbose++;
			break;
		case 'h':
			opt_help();
		case 'V':
			opt_version();
		default:
			opt_bad();
		}
	}
	if (!o->list && optind >= argc)
		usage_error("no IP given");
	if (o->list && (o->to || o->dry_run))
		usage_error("--list takes neither --to nor --dry-run");
}

/* "IP" or "IP/PREFIX", IPv4 or IPv6, kept in canonical form; a full-length
 * prefix (/32, /128) is the address alone. */
static struct fip *
parse_ip(const char *arg)
{
	char canon[IPADDR_STRLEN];
	struct ipaddr a;
	struct fip *ip;
	unsigned len;
	int whole;

	if (ipaddr_parse_net(arg, &a, &len) < 0)
		return NULL;
	ipaddr_format(&a, canon);
	whole = len == (a.family == AF_INET ? 32u : 128u);
	ip = xcalloc(1, sizeof *ip);
	ip->family = a.family;
	ip->addr = xstrdup(canon);
	ip->prefix = whole ? -1 : (int)len;
	ip->text = whole ? xstrdup(canon) : xasprintf("%s/%u", canon, len);
	return ip;
}

static void
fip_free(struct fip *ip)
{
	free(ip->block);
	free(ip->text);
	free(ip->addr);
	free(ip->current);
	free(ip->previous);
	free(ip);
}

static struct fip **
parse_ips(char **args, int n, const struct provider *p, size_t *count)
{
	struct fip **ips = xcalloc(n, sizeof *ips);
	size_t m = 0;

	for (int i = 0; i < n; i++) {
		struct fip *ip = parse_ip(args[i]);
		int dup = 0;

		if (!ip)
			usage_error("not an IP address or IP/PREFIX: '%s'", args[i]);
		if (p == &provider_online && ip->prefix >= 0)
			usage_error("online moves single addresses, not blocks: '%s'", args[i]);
		for (size_t k = 0; k < m && !dup; k++)
			dup = strcmp(ips[k]->text, ip->text) == 0;
		if (dup)
			fip_free(ip);
		else
			ips[m++] = ip;
	}
	*count = m;
	return ips;
}

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
	enum outcome o = OUT_OK;

	for (size_t i = 0, k; o == OUT_OK && i < m; i = k) {
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
	for (size_t i = 0; o == OUT_OK && i < n; i++) {
		struct fip *ip = ips[i];
		const char *dest;

		if (ip->state != ST_PENDING)
			continue;
		dest = ip->dest = fip_dest(c->cfg, ip);
		if (!dest) {
			ip->state = ST_FAILED;
			ip->fail = OUT_CONFIG;
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
	if (o == OUT_OK && m > 0) {
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

		if (ip->state == ST_FAILED && ip->fail == OUT_UNKNOWN) {
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
			ip->fail = o == OUT_OK ? OUT_BADREPLY : o;
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

		if (o == OUT_OK)
			return o;
		if (o != OUT_TRANSIENT) {
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
	case OUT_OK:
		return 0;
	case OUT_REFUSED:
	case OUT_AUTH:
	case OUT_UNKNOWN:
		return 1;
	case OUT_BADREPLY:
		return EXIT_DATAERR;
	case OUT_UNAVAIL:
		return EXIT_UNAVAILABLE;
	case OUT_TIMEOUT:
		return EXIT_TIMEOUT;
	case OUT_TRANSIENT:
		return EXIT_TEMPFAIL;
	case OUT_CONFIG:
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
		[OUT_OK] = 0,      [OUT_TRANSIENT] = 1, [OUT_TIMEOUT] = 2,
		[OUT_UNAVAIL] = 3, [OUT_BADREPLY] = 4,  [OUT_REFUSED] = 5,
		[OUT_AUTH] = 5,    [OUT_UNKNOWN] = 5,   [OUT_CONFIG] = 6,
	};

	return rank[o];
}

static enum outcome
worst_of(struct fip **ips, size_t n)
{
	enum outcome w = OUT_OK;

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
		ips[i]->fail = OUT_AUTH;
		left++;
	}
	if (left)
		log_err("credentials refused: not trying the other %zu IP%s", left,
		        left == 1 ? "" : "s");
}

static int
route(struct ctx *c, struct fip **ips, size_t n, const struct opts *o)
{
	const struct provider *p = c->cfg->provider;
	size_t per = p->batch ? n : 1;

	for (size_t i = 0; i < n; i += per) {
		struct route_job job = { ips + i, n - i < per ? n - i : per, o->dry_run };
		char *label = batch_label(job.ips, job.n);
		enum outcome r = with_retries(c, label, try_route, &job);

		free(label);
		settle(c, job.ips, job.n, r, o->skip_unknown);
		report(p, (const struct fip *const *)job.ips, job.n);
		if (r == OUT_AUTH) {
			stop_after_auth(ips + i + job.n, n - i - job.n);
			break;
		}
	}
	return outcome_exit(worst_of(ips, n));
}

static int
list(struct ctx *c, struct fip **ips, size_t n, const struct opts *o)
{
	const struct provider *p = c->cfg->provider;
	struct buf out = { 0 };
	enum outcome r;

	if (n == 0) {
		r = with_retries(c, p->name, try_list, &out);
		if (r == OUT_OK)
			fputs(out.data ? out.data : "", stdout);
		buf_free(&out);
		return outcome_exit(r);
	}
	for (size_t i = 0, per = p->batch ? n : 1; i < n; i += per) {
		struct lookup_job job = { ips + i, n - i < per ? n - i : per };
		char *label = batch_label(job.ips, job.n);

		r = with_retries(c, label, try_lookup, &job);
		free(label);
		for (size_t k = 0; r == OUT_OK && k < job.n; k++) {
			if (job.ips[k]->state != ST_PENDING)
				continue;
			job.ips[k]->state = ST_UNCHANGED;
			printf("%s %s\n", job.ips[k]->text, dest_shown(p, job.ips[k]->current));
		}
		fflush(stdout);
		settle(c, job.ips, job.n, r, o->skip_unknown);
		if (r == OUT_AUTH) {
			stop_after_auth(ips + i + job.n, n - i - job.n);
			break;
		}
	}
	return outcome_exit(worst_of(ips, n));
}

/* Plain http is for tests against a local fake; anywhere else the
 * credentials would cross the network in clear. */
static void
warn_plain_http(const struct config *cfg)
{
	char host[256];
	const char *p = cfg->peer;
	size_t n;

	if (!cfg->allow_http)
		return;
	if (*p == '[') {
		n = strcspn(++p, "]");
	} else {
		n = strcspn(p, ":");
	}
	snprintf(host, sizeof host, "%.*s", (int)n, p);
	if (strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	    strcmp(host, "::1") == 0)
		return;
	log_warn("%s: api_url is plain http: credentials would cross the network unencrypted",
	         cfg->path);
}

/* --to replaces destination, or, at a provider that routes IPv6 nets to
 * their own destination, destination6 when it is an IPv6 address. */
static void
apply_to(struct config *cfg, const char *to)
{
	char **slot = &cfg->destination;

	if (!cfg->provider->valid_dest(to))
		usage_error("--to: not a valid %s destination: '%s'", cfg->provider->name, to);
	if (cfg->provider->dest6 && strchr(to, ':'))
		slot = &cfg->destination6;
	free(*slot);
	*slot = xstrdup(to);
}

static void
register_secrets(const struct config *cfg)
{
	http_add_secret(cfg->token);
	http_add_secret(cfg->password);
	http_add_basic_secret(cfg->user, cfg->password);
	http_add_secret(cfg->app_key);
	http_add_secret(cfg->app_secret);
	http_add_secret(cfg->consumer_key);
}

int
main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct config cfg;
	struct ctx c = { 0 };
	struct fip **ips;
	size_t n;
	int rc;

	log_init("failoverip-set");
	opt_usage(usage_text, NULL);
	parse_args(argc, argv, &o);
	config_load(&cfg, o.config);
	if (o.timeout > 0)
		cfg.timeout = o.timeout;
	if (cfg.connect_timeout > cfg.timeout)
		cfg.connect_timeout = cfg.timeout;
	if (o.to)
		apply_to(&cfg, o.to);
	if (!o.list && !cfg.destination && !cfg.destination6)
		die(EXIT_CONFIG, "%s: no destination: set destination= or give --to", cfg.path);
	ips = parse_ips(argv + optind, argc - optind, cfg.provider, &n);
	warn_plain_http(&cfg);

	signal(SIGPIPE, SIG_IGN);
	if (http_global_init() < 0)
		die(EXIT_OSERR, "curl: global initialisation failed");
	register_secrets(&cfg);
	c.cfg = &cfg;
	c.http = http_new();

	rc = o.list ? list(&c, ips, n, &o) : route(&c, ips, n, &o);

	json_decref(c.listing);
	http_response_free(&c.resp);
	http_free(c.http);
	http_global_cleanup();
	for (size_t i = 0; i < n; i++)
		fip_free(ips[i]);
	free(ips);
	config_free(&cfg);
	return rc;
}
