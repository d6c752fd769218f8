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

int
main(int argc, char **argv)
{
	struct oneshot_opts o = { .timeout_ms = 1000 };
	struct watch_opts w = {
		.config_dir = CONFIG_DIR_DEFAULT,
		.pve_dir = "/etc/pve",
		.run_dir = RUN_DIR_DEFAULT,
		.lxc_dir = LXC_DIR_DEFAULT,
		.interval = 2,
	};
	int watch = 0, c, watch_only = 0, oneshot_only = 0;

	log_init("tcpcheck");
	opt_usage(usage_text, NULL);
	while ((c = getopt_long(argc, argv, "t:qwnvhV", options, NULL)) != -1) {
		watch_only |= watch_only_option(c);
		oneshot_only |= oneshot_only_option(c);
		switch (c) {
		case 't':
			o.timeout_ms = (int)opt_ms("--timeout", optarg, 1, 3600000);
			break;
		case OPT_ALL:
			o.any = 0;
			break;
		case OPT_ANY:
			o.any = 1;
			break;
		case OPT_WAIT:
			o.wait_s = opt_seconds("--wait", optarg, 0.01, OPT_NO_MAX);
			break;
		case 'q':
			o.quiet = 1;
			break;
		case OPT_JSON:
			o.json = w.json = 1;
			break;
		case 'w':
			watch = 1;
			break;
		case OPT_CONFIG_DIR:
			w.config_dir = optarg;
			break;
		case OPT_PVE_DIR:
			w.pve_dir = optarg;
			break;
		case OPT_NODE:
			w.node = opt_node(optarg);
			break;
		case OPT_RUN_DIR:
			w.run_dir = optarg;
			break;
		case OPT_LXC_DIR:
			w.lxc_dir = optarg;
			break;
		case OPT_INTERVAL:
			w.interval = opt_seconds("--interval", optarg, 0.01, OPT_NO_MAX);
			break;
		case 'n':
			w.dry_run = 1;
			break;
		case OPT_SYSTEMD_RUN:
			w.systemd_run = 1;
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
	argc -= optind;
	argv += optind;

	if (watch) {
		if (argc > 0)
			usage_error("--watch takes no operands");
		if (oneshot_only)
			usage_error("--all, --any, --quiet and --wait are for one-shot checks");
		if (!w.node)
			w.node = local_node_name();
		w.timeout_ms = o.timeout_ms;
		return watch_main(&w);
	}
	if (watch_only)
		usage_error("--config-dir, --pve-dir, --node, --run-dir, --lxc-dir, --interval, "
		            "--dry-run and --systemd-run need --watch");
	if (o.wait_s > 0 && o.any)
		usage_error("--wait waits for every endpoint; it does not go with --any");
	if (argc == 0 && isatty(STDIN_FILENO))
		usage_error("no endpoints (give HOST PORT... or a list on stdin)");
	return oneshot_main(&o, argv, argc);
}
