/* pve-move: move guests between Proxmox clusters through the API, each disk
 * streamed once; a drop-in for proxmove (same operands, options and
 * ~/.proxmoverc). */
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "move.h"
#include "opt.h"

static const char usage_text[] =
    "usage: pve-move [options] SOURCE DEST NODE STORAGE VM...\n";
static const char help_text[] =
    "  -c, --config FILE        clusters and storages (default ~/.proxmoverc)\n"
    "  -n, --dry-run            print the whole plan, change nothing\n"
    "      --bwlimit MBPS       limit the copy to MBPS Mbit/s\n"
    "      --no-verify-ssl      do not check the API's certificates\n"
    "      --skip-disks         do not copy disks (implies --skip-start)\n"
    "      --skip-start         do not start the moved guest\n"
    "      --wait-before-stop   ask before the source is stopped\n"
    "      --ssh-ciphers LIST   ssh -c LIST (empty or 'default': ssh's own)\n"
    "      --debug              log API calls and commands\n"
    "      --ignore-exists      allow SOURCE equal to DEST\n"
    "      --vmid N             the VMID on the destination (one VM only)\n"
    "      --bridge-map A=B,..  rename bridges of the NICs\n"
    "      --storage-map S=T,.. target storage per source storage or disk\n"
    "      --resume             go on with an interrupted move\n"
    "      --native             use Proxmox's remote_migrate\n"
    "      --verify             compare source and target after each copy\n"
    "      --direct             the source host sends each disk to the target itself\n"
    "      --state-dir DIR      journals (default ~/.local/state/pvekit)\n"
    "      --ssh-config FILE    ssh -F FILE\n"
    "      --shutdown-timeout S seconds before the source is stopped hard (120)\n"
    "  -V, --version            print the version\n"
    "  -h, --help               this help\n";

enum {
	O_BWLIMIT = 256,
	O_NOVERIFY,
	O_SKIPDISKS,
	O_SKIPSTART,
	O_WAIT,
	O_CIPHERS,
	O_DEBUG,
	O_IGNORE,
	O_VMID,
	O_BRIDGE,
	O_STORAGE,
	O_RESUME,
	O_NATIVE,
	O_VERIFY,
	O_DIRECT,
	O_STATE,
	O_SSHCONF,
	O_SHUTDOWN,
};

static const struct option longopts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "bwlimit", required_argument, NULL, O_BWLIMIT },
	{ "no-verify-ssl", no_argument, NULL, O_NOVERIFY },
	{ "skip-disks", no_argument, NULL, O_SKIPDISKS },
	{ "skip-start", no_argument, NULL, O_SKIPSTART },
	{ "wait-before-stop", no_argument, NULL, O_WAIT },
	{ "ssh-ciphers", required_argument, NULL, O_CIPHERS },
	{ "debug", no_argument, NULL, O_DEBUG },
	{ "ignore-exists", no_argument, NULL, O_IGNORE },
	{ "vmid", required_argument, NULL, O_VMID },
	{ "bridge-map", required_argument, NULL, O_BRIDGE },
	{ "storage-map", required_argument, NULL, O_STORAGE },
	{ "resume", no_argument, NULL, O_RESUME },
	{ "native", no_argument, NULL, O_NATIVE },
	{ "verify", no_argument, NULL, O_VERIFY },
	{ "direct", no_argument, NULL, O_DIRECT },
	{ "state-dir", required_argument, NULL, O_STATE },
	{ "ssh-config", required_argument, NULL, O_SSHCONF },
	{ "shutdown-timeout", required_argument, NULL, O_SHUTDOWN },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void
on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const char *
home(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && *h)
		return h;
	pw = getpwuid(getuid());
	return pw ? pw->pw_dir : "/";
}

/* "a=b,c=d": each A=B with both sides non-empty and free of ',' and '='. */
static void
parse_map(const char *opt, const char *arg, char ***map, size_t *n)
{
	char *s = xstrdup(arg), *save = NULL;

	for (char *p = strtok_r(s, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(p, '=');

		if (!eq || eq == p || !eq[1] || strchr(eq + 1, '='))
			usage_error("%s %s: want NAME=NAME[,NAME=NAME...]", opt, arg);
		*map = xreallocarray(*map, *n + 1, sizeof **map);
		(*map)[(*n)++] = xstrdup(p);
	}
	free(s);
}

static void
check_node(struct move *m)
{
	struct api_error err;
	json_t *l = api_call(&m->dst, "GET", "/nodes", NULL, &err), *e;
	struct buf names = { 0 };
	size_t i;

	if (!l)
		die(EXIT_UNAVAILABLE, "%s: nodes: %s", m->dst_alias, err.msg);
	json_array_foreach(l, i, e)
	{
		const char *n = json_string_value(json_object_get(e, "node"));
		const char *st = json_string_value(json_object_get(e, "status"));

		if (n && strcmp(n, m->node) == 0) {
			if (!st || strcmp(st, "online") != 0)
				die(EXIT_UNAVAILABLE, "%s: node %s is %s", m->dst_alias, m->node,
				    st ? st : "not online");
			json_decref(l);
			return;
		}
		buf_printf(&names, "%s%s", names.len ? ", " : "", n ? n : "?");
	}
	die(EXIT_DATAERR, "%s: no node '%s' (there: %s)", m->dst_alias, m->node,
	    names.data ? names.data : "none");
}

static void
login(struct api *a, const struct rc *rc, const char *alias, int insecure)
{
	const struct rc_cluster *c = rc_cluster(rc, alias);
	struct api_error err;

	if (!c)
		die(EXIT_CONFIG, "%s: no [pve:%s] section", rc->file, alias);
	api_open(a, c, insecure);
	if (api_login(a, &err) < 0)
		die(err.status == 401 || err.status == 403 ? EXIT_CONFIG : EXIT_UNAVAILABLE,
		    "%s: %s: %s", alias, c->host, err.msg);
}

int
main(int argc, char *argv[])
{
	struct move m = { 0 };
	const char *config = NULL;
	char *cfg_default = NULL, *state_default = NULL;
	int c, insecure = 0, rc = 0;
	unsigned long n;

	log_init("pve-move");
	opt_usage(usage_text, help_text);
	ssh_opts.ciphers = "aes128-gcm@openssh.com,aes128-cbc"; /* proxmove's */
	m.shutdown_timeout_ms = 120000;
	while ((c = getopt_long(argc, argv, "c:nVh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'n': m.dry_run = 1; break;
		case O_BWLIMIT:
			n = opt_count("--bwlimit", optarg, 1, 1000000);
			bwlimit_bps = (uint64_t)n * 1000000 / 8;
			break;
		case O_NOVERIFY: insecure = 1; break;
		case O_SKIPDISKS: m.skip_disks = 1; m.skip_start = 1; break;
		case O_SKIPSTART: m.skip_start = 1; break;
		case O_WAIT: m.wait_before_stop = 1; break;
		case O_CIPHERS:
			ssh_opts.ciphers = !*optarg || strcmp(optarg, "default") == 0 ||
			                           strcmp(optarg, "defaults") == 0 || strcmp(optarg, "-") == 0
			                       ? NULL
			                       : optarg;
			break;
		case O_DEBUG: m.debug = 1; log_verbose = 1; ssh_opts.debug = 1; break;
		case O_IGNORE: m.ignore_exists = 1; break;
		case O_VMID:
			if (parse_vmid(optarg, &m.vmid_opt) < 0 || m.vmid_opt < 100)
				usage_error("--vmid %s: want a VMID from 100 to 999999999", optarg);
			break;
		case O_BRIDGE: parse_map("--bridge-map", optarg, &m.bridge_map, &m.nbridge_map); break;
		case O_STORAGE: parse_map("--storage-map", optarg, &m.storage_map, &m.nstorage_map); break;
		case O_RESUME: m.resume = 1; break;
		case O_NATIVE: m.native = 1; break;
		case O_VERIFY: m.verify = 1; break;
		case O_DIRECT: m.direct = 1; break;
		case O_STATE: m.state_dir = optarg; break;
		case O_SSHCONF: ssh_opts.config = optarg; break;
		case O_SHUTDOWN:
			m.shutdown_timeout_ms = (int64_t)(opt_seconds("--shutdown-timeout", optarg, 1, 86400) * 1000);
			break;
		case 'V': opt_version();
		case 'h': opt_help();
		default: opt_bad();
		}
	}
	if (argc - optind < 5)
		usage_error("want SOURCE DEST NODE STORAGE and at least one VM");
	m.src_alias = argv[optind];
	m.dst_alias = argv[optind + 1];
	m.node = opt_node(argv[optind + 2]);
	m.storage = argv[optind + 3];
	if (strcmp(m.src_alias, m.dst_alias) == 0 && !m.ignore_exists)
		usage_error("SOURCE and DEST are both '%s': a move within one cluster needs "
		            "--ignore-exists (or use Proxmox's own migrate)",
		            m.src_alias);
	if (m.vmid_opt && argc - optind > 5)
		usage_error("--vmid %u: only with one VM", m.vmid_opt);
	if (m.native && m.skip_disks)
		usage_error("--native copies the disks itself: not with --skip-disks");
	if (!config)
		config = cfg_default = xasprintf("%s/.proxmoverc", home());
	if (!m.state_dir) {
		const char *x = getenv("XDG_STATE_HOME");
		m.state_dir = state_default = x && *x == '/' ? xasprintf("%s/pvekit", x)
		                                             : xasprintf("%s/.local/state/pvekit", home());
	}
	on_signal(SIGINT, on_interrupt);
	on_signal(SIGTERM, on_interrupt);
	on_signal(SIGHUP, on_interrupt);
	signal(SIGPIPE, SIG_IGN);

	rc_load(&m.rc, config);
	if (!rc_cluster(&m.rc, m.src_alias))
		die(EXIT_CONFIG, "%s: no [pve:%s] section", config, m.src_alias);
	if (!rc_cluster(&m.rc, m.dst_alias))
		die(EXIT_CONFIG, "%s: no [pve:%s] section", config, m.dst_alias);
	if (insecure)
		log_warn("--no-verify-ssl: the clusters' certificates are not checked; "
		         "fingerprint= in a [pve:ALIAS] section pins a self-signed one instead");
	if (http_global_init() < 0)
		die(EXIT_OSERR, "curl: cannot initialise");
	if (!m.dry_run)
		ssh_mux_start();
	login(&m.src, &m.rc, m.src_alias, insecure);
	login(&m.dst, &m.rc, m.dst_alias, insecure);
	check_node(&m);

	for (int i = optind + 4; i < argc && !interrupted; i++) {
		int r = move_guest(&m, argv[i]);
		if (r && !rc)
			rc = r;
	}
	if (interrupted && !rc)
		rc = 128 + SIGINT;
	json_decref(m.src_resources);
	json_decref(m.dst_resources);
	ssh_mux_stop();
	api_close(&m.src);
	api_close(&m.dst);
	http_global_cleanup();
	rc_free(&m.rc);
	for (size_t i = 0; i < m.nbridge_map; i++)
		free(m.bridge_map[i]);
	for (size_t i = 0; i < m.nstorage_map; i++)
		free(m.storage_map[i]);
	free(m.bridge_map);
	free(m.storage_map);
	free(cfg_default);
	free(state_default);
	return rc;
}
