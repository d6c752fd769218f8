/* vm-ip-from-arp: which IP addresses do this node's guests use? The MACs of
 * their NICs (live configs) looked up in the kernel's neighbour tables. */
#include <getopt.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "guestconf.h"
#include "ipfile.h"
#include "log.h"
#include "nl.h"
#include "nodeguests.h"
#include "opt.h"
#include "util.h"
#include "vmlist.h"

struct opts {
	const char *pve_dir, *node, *config_dir;
	int *ifindex; /* --bridge, resolved */
	size_t nifindex;
	int all, print_only, replace, prune, probe;
	int probe_timeout_ms;
	char **args;
	int nargs;
};

/* One MAC of a guest NIC; vmid 0 marks a MAC that several guests use. */
struct mac_owner {
	uint8_t mac[6];
	uint32_t vmid;
};

static const char usage_text[] =
    "usage: vm-ip-from-arp [-anv] [-b IFACE] [--replace] [--no-prune] [--probe IP...|-]\n";

static const char help_text[] =
    "Finds the IP addresses of this node's guests in the kernel's neighbour\n"
    "tables (IPv4 and IPv6) by the MACs of their NICs, prints \"VMID IP\" lines\n"
    "and writes CONFIG_DIR/failoverip/VMID.\n\n"
    "  -a, --all                keep IPv6 link-local addresses (fe80::/10)\n"
    "  -b, --bridge IFACE       only neighbours on IFACE (may be repeated)\n"
    "  -p, --probe              resolve the addresses given as arguments\n"
    "                           (or on stdin with \"-\") before the lookup\n"
    "      --probe-timeout SECS deadline for all probes (default 3)\n"
    "      --replace            a guest's file becomes exactly what is found\n"
    "      --no-prune           keep files of guests that no longer exist\n"
    "  -v, --verbose            only print, write nothing (also -n, --dry-run)\n"
    "      --config-dir DIR     default /etc/pve/pvekit\n"
    "      --pve-dir DIR        default /etc/pve\n"
    "      --node NAME          default: this host's name\n"
    "  -h, --help               this help\n"
    "  -V, --version            print the version\n";

static void
add_bridge(struct opts *o, const char *name)
{
	unsigned idx = if_nametoindex(name);

	if (!idx)
		die(EXIT_CONFIG, "--bridge %s: no such interface", name);
	o->ifindex = xreallocarray(o->ifindex, o->nifindex + 1, sizeof *o->ifindex);
	o->ifindex[o->nifindex++] = (int)idx;
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_CONFIG_DIR = 256, O_PVE_DIR, O_NODE, O_PROBE_TIMEOUT, O_REPLACE, O_NO_PRUNE };
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "probe", no_argument, NULL, 'p' },
		{ "probe-timeout", required_argument, NULL, O_PROBE_TIMEOUT },
		{ "replace", no_argument, NULL, O_REPLACE },
		{ "no-prune", no_argument, NULL, O_NO_PRUNE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "config-dir", required_argument, NULL, O_CONFIG_DIR },
		{ "pve-dir", required_argument, NULL, O_PVE_DIR },
		{ "node", required_argument, NULL, O_NODE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	*o = (struct opts){ .pve_dir = "/etc/pve",
		            .config_dir = "/etc/pve/pvekit",
		            .node = local_node_name(),
		            .prune = 1,
		            .probe_timeout_ms = 3000 };
	while ((c = getopt_long(argc, argv, "ab:pvnhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->all = 1;
			break;
		case 'b':
			add_bridge(o, optarg);
			break;
		case 'p':
			o->probe = 1;
			break;
		case 'v':
		case 'n':
			o->print_only = 1;
			break;
		case O_PROBE_TIMEOUT:
			o->probe_timeout_ms =
			    (int)(opt_seconds("--probe-timeout", optarg, 0, 600) * 1000);
			break;
		case O_REPLACE:
			o->replace = 1;
			break;
		case O_NO_PRUNE:
			o->prune = 0;
			break;
		case O_CONFIG_DIR:
			o->config_dir = optarg;
			break;
		case O_PVE_DIR:
			o->pve_dir = optarg;
			break;
		case O_NODE:
			o->node = opt_node(optarg);
			break;
		case 'h':
			opt_help();
		case 'V':
			opt_version();
		default:
			opt_bad();
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	if (o->nargs && !o->probe)
		usage_error("%s: unexpected argument (addresses go with --probe)", o->args[0]);
	for (int i = 0; i < o->nargs; i++) {
		struct ipaddr ip;
		if (strcmp(o->args[i], "-") != 0 && ipaddr_parse(o->args[i], &ip) < 0)
			usage_error("--probe %s: not an IP address", o->args[i]);
	}
	if (o->probe && !o->nargs)
		usage_error("--probe: no address given (use - to read them from stdin)");
}

static int
mac_cmp(const void *a, const void *b)
{
	return memcmp(((const struct mac_owner *)a)->mac, ((const struct mac_owner *)b)->mac, 6);
}

/* Every MAC of every guest, sorted; a MAC shared by two guests is ambiguous
 * (a clone with a copied MAC) and matches neither. */
static struct mac_owner *
collect_macs(const struct node_guest *g, size_t ng, size_t *n)
{
	struct mac_owner *m = NULL;
	size_t k = 0, cap = 0, out = 0;
	char s[18];

	for (size_t i = 0; i < ng; i++)
		for (size_t j = 0; j < g[i].conf.nnics; j++) {
			if (!g[i].conf.nics[j].has_mac)
				continue;
			if (k == cap) {
				cap = cap ? cap * 2 : 1024;
				m = xreallocarray(m, cap, sizeof *m);
			}
			memcpy(m[k].mac, g[i].conf.nics[j].mac, 6);
			m[k++].vmid = g[i].vmid;
		}
	if (k)
		qsort(m, k, sizeof *m, mac_cmp);
	for (size_t i = 0; i < k; i++) {
		if (out && mac_cmp(&m[out - 1], &m[i]) == 0) {
			if (m[out - 1].vmid != m[i].vmid && m[out - 1].vmid) {
				mac_format(m[i].mac, s);
				log_warn("MAC %s is used by guests %u and %u: ignored", s,
				         m[out - 1].vmid, m[i].vmid);
				m[out - 1].vmid = 0;
			}
			continue;
		}
		m[out++] = m[i];
	}
	*n = out;
	return m;
}

static int
want_ifindex(const struct opts *o, int ifindex)
{
	if (!o->nifindex)
		return 1;
	for (size_t i = 0; i < o->nifindex; i++)
		if (o->ifindex[i] == ifindex)
			return 1;
	return 0;
}

/* The addresses to probe: the arguments, or the first word of each line on
 * stdin for "-" (so "failoverip-set --list" output can be piped in). */
static struct nl_probe *
probe_list(const struct opts *o, size_t *n)
{
	struct nl_probe *p = NULL;
	char *line = NULL;
	size_t cap = 0, lineno = 0;

	*n = 0;
	for (int i = 0; i < o->nargs; i++) {
		struct ipaddr ip;

		if (strcmp(o->args[i], "-") == 0) {
			while (getline(&line, &cap, stdin) > 0) {
				char *w = line + strspn(line, " \t");
				lineno++;
				w[strcspn(w, " \t\r\n")] = '\0';
				if (!*w || *w == '#')
					continue;
				if (ipaddr_parse(w, &ip) < 0) {
					log_warn("stdin:%zu: %s: not an IP address, skipped",
					         lineno, w);
					continue;
				}
				p = xreallocarray(p, *n + 1, sizeof *p);
				p[(*n)++] = (struct nl_probe){ .ip = ip };
			}
			continue;
		}
		ipaddr_parse(o->args[i], &ip); /* checked by parse_args */
		p = xreallocarray(p, *n + 1, sizeof *p);
		p[(*n)++] = (struct nl_probe){ .ip = ip };
	}
	free(line);
	return p;
}

static void
run_probes(const struct opts *o)
{
	char err[256], s[IPADDR_STRLEN];
	size_t n;
	struct nl_probe *p = probe_list(o, &n);

	if (n && nl_probe(p, n, o->probe_timeout_ms, err, sizeof err) < 0)
		die(EXIT_OSERR, "%s", err);
	for (size_t i = 0; i < n; i++) {
		ipaddr_format(&p[i].ip, s);
		if (p[i].state == NL_PROBE_RESOLVED)
			log_debug("probe %s: resolved", s);
		else
			log_info("probe %s: %s: %s", s, nl_probe_state_name(p[i].state),
			         p[i].detail);
	}
	free(p);
}

struct neigh_dump {
	struct nl_neigh *ne;
	size_t n;
	int rc;
	char err[256];
};

static void *
dump_neighbours(void *arg)
{
	struct neigh_dump *d = arg;

	d->rc = nl_neigh_dump(&d->ne, &d->n, d->err, sizeof d->err);
	return NULL;
}

/* Neighbours whose MAC belongs to a guest, as "VMID IP" records. */
static struct vm_ip *
match_neighbours(const struct opts *o, const struct neigh_dump *d, const struct mac_owner *m,
                 size_t nm, size_t *n)
{
	struct vm_ip *v;
	size_t k = 0;

	if (d->rc < 0)
		die(EXIT_OSERR, "%s", d->err);
	v = xcalloc(d->n, sizeof *v);
	for (size_t i = 0; i < d->n; i++) {
		const struct nl_neigh *ne = &d->ne[i];
		struct mac_owner key = { 0 }, *hit;

		if (!want_ifindex(o, ne->ifindex) || (!o->all && ipaddr_is_ll6(&ne->ip)))
			continue;
		memcpy(key.mac, ne->mac, 6);
		hit = nm ? bsearch(&key, m, nm, sizeof *m, mac_cmp) : NULL;
		if (hit && hit->vmid)
			v[k++] = (struct vm_ip){ hit->vmid, ne->ip };
	}
	*n = vm_ip_sort_unique(v, k);
	return v;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct vmlist l = { 0 };
	struct node_guest *g;
	struct mac_owner *macs;
	struct vm_ip *v;
	struct neigh_dump d = { 0 };
	pthread_t dumper;
	size_t ng, nm, n;
	int rc = 0, dumping = 0, code;
	char err[512];

	log_init("vm-ip-from-arp");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);

	/* The kernel dumps its tables while the configs are read; a probe
	 * must fill them first, and comes after the --node check. */
	if (!o.probe)
		dumping = pthread_create(&dumper, NULL, dump_neighbours, &d) == 0;
	if ((code = node_guests_open(o.pve_dir, o.node, &l, &g, &ng, err, sizeof err)))
		die(code, "%s", err);
	macs = collect_macs(g, ng, &nm);
	if (o.probe)
		run_probes(&o);
	if (dumping)
		pthread_join(dumper, NULL);
	else
		dump_neighbours(&d);
	v = match_neighbours(&o, &d, macs, nm, &n);
	vm_ip_print(v, n);
	if (!o.print_only) {
		uint32_t *owned = xcalloc(ng ? ng : 1, sizeof *owned);
		for (size_t i = 0; i < ng; i++)
			owned[i] = g[i].vmid;
		int r = ipfile_sync(o.config_dir, v, n,
		                    o.replace ? IPFILE_REPLACE : IPFILE_KEEP_UNSEEN, owned, ng,
		                    o.prune ? &l : NULL, o.pve_dir);

		if (r < 0)
			rc = r == IPFILE_REFUSED ? EXIT_CANTCREAT : EXIT_TEMPFAIL;
		free(owned);
	}

	free(v);
	free(d.ne);
	free(macs);
	free(o.ifindex);
	node_guests_free(g, ng);
	vmlist_free(&l);
	return rc;
}
