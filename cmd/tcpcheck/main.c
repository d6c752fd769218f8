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
#include "tcpcheck.h"
#include "util.h"

#define CONFIG_DIR_DEFAULT "/etc/pve/pvekit/tcpcheck"
#define LXC_DIR_DEFAULT "/var/lib/lxc"

enum {
	OPT_ALL = 256,
	OPT_ANY,
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
    "usage: tcpcheck [-qv] [-t MS] [--all | --any] [--json] HOST PORT... | HOST:PORT... | "
    "[V6]:PORT...\n"
    "       tcpcheck [-qv] [-t MS] [--all | --any] [--json] < LIST\n"
    "       tcpcheck --watch [-nv] [--json] [-t MS] [--config-dir DIR] [--pve-dir DIR]\n"
    "                [--node NAME] [--run-dir DIR] [--lxc-dir DIR] [--interval SECS]\n"
    "                [--systemd-run]\n";

static void
usage_error(const char *msg)
{
	log_err("%s", msg);
	fputs(usage_text, stderr);
	exit(EXIT_USAGE);
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
	unsigned long ul;

	log_init("tcpcheck");
	while ((c = getopt_long(argc, argv, "t:qwnvhV", options, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_ulong(optarg, 3600000, &ul) < 0 || ul == 0)
				usage_error("--timeout: want milliseconds, 1 to 3600000");
			o.timeout_ms = (int)ul;
			break;
		case OPT_ALL:
			o.any = 0;
			oneshot_only = 1;
			break;
		case OPT_ANY:
			o.any = 1;
			oneshot_only = 1;
			break;
		case 'q':
			o.quiet = 1;
			oneshot_only = 1;
			break;
		case OPT_JSON:
			o.json = w.json = 1;
			break;
		case 'w':
			watch = 1;
			break;
		case OPT_CONFIG_DIR:
			w.config_dir = optarg;
			watch_only = 1;
			break;
		case OPT_PVE_DIR:
			w.pve_dir = optarg;
			watch_only = 1;
			break;
		case OPT_NODE:
			if (!node_name_valid(optarg))
				usage_error("--node: not a valid node name");
			w.node = optarg;
			watch_only = 1;
			break;
		case OPT_RUN_DIR:
			w.run_dir = optarg;
			watch_only = 1;
			break;
		case OPT_LXC_DIR:
			w.lxc_dir = optarg;
			watch_only = 1;
			break;
		case OPT_INTERVAL:
			if (parse_seconds(optarg, &w.interval) < 0 || w.interval < 0.01)
				usage_error(
				    "--interval: want seconds (fractions allowed), at least 0.01");
			watch_only = 1;
			break;
		case 'n':
			w.dry_run = 1;
			watch_only = 1;
			break;
		case OPT_SYSTEMD_RUN:
			w.systemd_run = 1;
			watch_only = 1;
			break;
		case 'v':
			log_verbose++;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			print_version();
			return 0;
		default:
			fputs(usage_text, stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;

	if (watch) {
		if (argc > 0)
			usage_error("--watch takes no operands");
		if (oneshot_only)
			usage_error("--all, --any and --quiet are for one-shot checks");
		if (!w.node)
			w.node = local_node_name();
		w.timeout_ms = o.timeout_ms;
		return watch_main(&w);
	}
	if (watch_only)
		usage_error("--config-dir, --pve-dir, --node, --run-dir, --lxc-dir, --interval, "
		            "--dry-run and --systemd-run need --watch");
	if (argc == 0 && isatty(STDIN_FILENO))
		usage_error("no endpoints (give HOST PORT... or a list on stdin)");
	return oneshot_main(&o, argv, argc);
}
