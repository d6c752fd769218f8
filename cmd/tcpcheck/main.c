/* tcpcheck: are these TCP ports open? Once (exit status), or as the node's
 * guest health watcher (--watch) that restarts guests whose services stay
 * down, the mvmm replacement. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"
#include "log.h"
#include "opt.h"
#include "tcpcheck.h"
#include "util.h"

#define CONFIG_DIR_DEFAULT "/etc/pve/pvekit/tcpcheck"

enum {
	OPT_ALL = 256,
	OPT_ANY,
	OPT_WAIT,
	OPT_JSON,
	OPT_CONFIG_DIR,
	OPT_PVE_DIR,
	OPT_NODE,
	OPT_RUN_DIR,
	OPT_LXC_DIR,
	OPT_INTERVAL,
	OPT_SYSTEMD_RUN,
};

static const struct option options[] = {
	{ "timeout", required_argument, NULL, 't' },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "any", no_argument, NULL, OPT_ANY },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "quiet", no_argument, NULL, 'q' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "watch", no_argument, NULL, 'w' },
	{ "config-dir", required_argument, NULL, OPT_CONFIG_DIR },
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
	{ "lxc-dir", required_argument, NULL, OPT_LXC_DIR },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "systemd-run", no_argument, NULL, OPT_SYSTEMD_RUN },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ 0 },
};

static const char usage_text[] =
    "usage: tcpcheck [-qv] [-t MS] [--all | --any | --wait S] [--json] HOST PORT... | "
    "HOST:PORT... | [V6]:PORT...\n"
    "       tcpcheck [-qv] [-t MS] [--all | --any | --wait S] [--json] < LIST\n"
    "       tcpcheck --watch [-nv] [--json] [-t MS] [--config-dir DIR] [--pve-dir DIR]\n"
    "                [--node NAME] [--run-dir DIR] [--lxc-dir DIR] [--interval SECS]\n"
    "                [--systemd-run]\n";

static const char help_text[] =
    "One-shot: connects to every endpoint at once and prints HOST PORT open|closed|timeout MS;\n"
    "exit 0 healthy, 1 unhealthy. --watch: the guest health watcher of this node.\n\n"
    "  -t, --timeout MS      deadline of a connect (default 1000)\n"
    "      --all             healthy when every endpoint is open (the default)\n"
    "      --any             healthy when one endpoint is open\n"
    "      --wait SECS       try again until every endpoint is open, at most this long\n"
    "  -q, --quiet           no output, only the exit status\n"
    "      --json            NDJSON instead of text lines\n"
    "  -w, --watch           watch this node's guests (configs in --config-dir)\n"
    "      --config-dir DIR  per-guest VMID.conf and defaults.conf\n"
    "                        (default /etc/pve/pvekit/tcpcheck)\n"
    "      --pve-dir DIR     the pmxcfs root (default /etc/pve)\n"
    "      --node NAME       this node's name (default: uname -n up to the first dot)\n"
    "      --run-dir DIR     qemu-server's VMID.pid and VMID.qmp (default /var/run/qemu-server)\n"
    "      --lxc-dir DIR     LXC's path for command sockets (default /var/lib/lxc)\n"
    "      --interval SECS   how often the node is scanned (default 2)\n"
    "  -n, --dry-run         say what an action would run, run nothing\n"
    "      --systemd-run     run actions as transient units of PID 1\n"
    "  -v, --verbose         more log lines\n"
    "  -h, --help            this help\n"
    "  -V, --version         print the version\n";

/* Options that only --watch uses, and those only one-shot checks use. */
static int
watch_only_option(int c)
{
	switch (c) {
	case OPT_CONFIG_DIR:
	case OPT_PVE_DIR:
	case OPT_NODE:
	case OPT_RUN_DIR:
	case OPT_LXC_DIR:
	case OPT_INTERVAL:
	case 'n':
	case OPT_SYSTEMD_RUN:
		return 1;
	default:
		return 0;
	}
}

static int
oneshot_only_option(int c)
{
	return c == OPT_ALL || c == OPT_ANY || c == 'q' || c == OPT_WAIT;
}

struct opts {
	int watch;
	struct oneshot_opts one;
	struct watch_opts w;
};

/* Fills o from the command line; returns the index of the first operand. */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	int c, watch_only = 0, oneshot_only = 0;

	while ((c = getopt_long(argc, argv, "t:qwnvhV", options, NULL)) != -1) {
		watch_only |= watch_only_option(c);
		oneshot_only |= oneshot_only_option(c);
		switch (c) {
		case 't':
			o->one.timeout_ms = (int)opt_ms("--timeout", optarg, 1, 3600000);
			break;
		case OPT_ALL:
			o->one.any = 0;
			break;
		case OPT_ANY:
			o->one.any = 1;
			break;
		case OPT_WAIT:
			o->one.wait_s = opt_seconds("--wait", optarg, 0.01, OPT_NO_MAX);
			break;
		case 'q':
			o->one.quiet = 1;
			break;
		case OPT_JSON:
			o->one.json = o->w.json = 1;
			break;
		case 'w':
			o->watch = 1;
			break;
		case OPT_CONFIG_DIR:
			o->w.config_dir = optarg;
			break;
		case OPT_PVE_DIR:
			o->w.pve_dir = optarg;
			break;
		case OPT_NODE:
			o->w.node = opt_node(optarg);
			break;
		case OPT_RUN_DIR:
			o->w.run_dir = optarg;
			break;
		case OPT_LXC_DIR:
			o->w.lxc_dir = optarg;
			break;
		case OPT_INTERVAL:
			o->w.interval = opt_seconds("--interval", optarg, 0.01, OPT_NO_MAX);
			break;
		case 'n':
			o->w.dry_run = 1;
			break;
		case OPT_SYSTEMD_RUN:
			o->w.systemd_run = 1;
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
	if (o->watch) {
		if (optind < argc)
			usage_error("--watch takes no operands");
		if (oneshot_only)
			usage_error("--all, --any, --quiet and --wait are for one-shot checks");
		if (!o->w.node)
			o->w.node = local_node_name();
		o->w.timeout_ms = o->one.timeout_ms;
	} else {
		if (watch_only)
			usage_error("--config-dir, --pve-dir, --node, --run-dir, --lxc-dir, "
			            "--interval, --dry-run and --systemd-run need --watch");
		if (o->one.wait_s > 0 && o->one.any)
			usage_error("--wait waits for every endpoint; it does not go with --any");
		if (optind == argc && isatty(STDIN_FILENO))
			usage_error("no endpoints (give HOST PORT... or a list on stdin)");
	}
	return optind;
}

int
main(int argc, char **argv)
{
	struct opts o = {
		.one = { .timeout_ms = 1000 },
		.w = {
			.config_dir = CONFIG_DIR_DEFAULT,
			.pve_dir = "/etc/pve",
			.run_dir = RUN_DIR_DEFAULT,
			.lxc_dir = LXC_DIR_DEFAULT,
			.interval = 2,
		},
	};
	int first;

	log_init("tcpcheck");
	opt_usage(usage_text, help_text);
	first = parse_args(argc, argv, &o);
	if (o.watch)
		return watch_main(&o.w);
	return oneshot_main(&o.one, argv + first, argc - first);
}
