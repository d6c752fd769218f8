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

static const char usage_text[] =
    "usage: failoverip-set [-nv] [-c FILE] [-t DEST] [--timeout SECS] [--skip-unknown] IP...\n"
    "       failoverip-set [-v] [-c FILE] [--timeout SECS] --list [IP...]\n";

static const char help_text[] =
    "Routes each failover IP (or IP/PREFIX) to this server through the provider's API\n"
    "(online, hetzner, ovh), reading the current route first; prints IP DEST routed|\n"
    "unchanged|would-route PREVIOUS. --list prints IP CURRENT_DEST lines.\n\n"
    "  -c, --config FILE   the provider config (default /etc/pvekit/failoverip.conf)\n"
    "  -t, --to DEST       route to DEST instead of destination= from the config\n"
    "  -n, --dry-run       read the routes, say what would change, move nothing\n"
    "  -l, --list          print where each IP (or every IP of the account) is routed\n"
    "      --skip-unknown  an IP the account does not have is skipped, not a failure\n"
    "      --timeout SECS  overrides timeout= from the config\n"
    "  -v, --verbose       log every request (method, host and path)\n"
    "  -h, --help          this help\n"
    "  -V, --version       print the version\n";

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

/* Parses the operands into *out, which the caller keeps where a usage
 * error's exit still finds it (LeakSanitizer counts a list held only in a
 * register as lost). */
static void
parse_ips(char **args, int n, struct fip ***out, size_t *count)
{
	struct fip **ips = *out = xcalloc(n, sizeof *ips);
	size_t m = 0;

	for (int i = 0; i < n; i++) {
		struct fip *ip = parse_ip(args[i]);
		int dup = 0;

		if (!ip)
			usage_error("not an IP address or IP/PREFIX: '%s'", args[i]);
		for (size_t k = 0; k < m && !dup; k++)
			dup = strcmp(ips[k]->text, ip->text) == 0;
		if (dup)
			fip_free(ip);
		else
			ips[m++] = ip;
	}
	*count = m;
}

/* What the provider cannot move, known once the config names it. */
static void
check_blocks(struct fip **ips, size_t n, const struct provider *p)
{
	for (size_t i = 0; i < n; i++)
		if (p == &provider_online && ips[i]->prefix >= 0)
			usage_error("online moves single addresses, not blocks: '%s'",
			            ips[i]->text);
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
	static struct fip **ips;
	static size_t n;
	int rc;

	log_init("failoverip-set");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);
	parse_ips(argv + optind, argc - optind, &ips, &n);
	config_load(&cfg, o.config);
	if (o.timeout > 0)
		cfg.timeout = o.timeout;
	if (cfg.connect_timeout > cfg.timeout)
		cfg.connect_timeout = cfg.timeout;
	if (o.to)
		apply_to(&cfg, o.to);
	if (!o.list && !cfg.destination && !cfg.destination6)
		die(EXIT_CONFIG, "%s: no destination: set destination= or give --to", cfg.path);
	check_blocks(ips, n, cfg.provider);
	warn_plain_http(&cfg);

	signal(SIGPIPE, SIG_IGN);
	if (http_global_init() < 0)
		die(EXIT_OSERR, "curl: global initialisation failed");
	register_secrets(&cfg);
	c.cfg = &cfg;
	c.http = http_new();

	rc = o.list ? list_ips(&c, ips, n, o.skip_unknown)
	            : route_ips(&c, ips, n, o.dry_run, o.skip_unknown);

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
