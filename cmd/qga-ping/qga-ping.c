/* qga-ping: is the QEMU guest agent of each guest answering?
 * One-shot: every operand at once, one line each. --watch: the heartbeat of
 * every agent-enabled guest of this node (watch.c). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "log.h"
#include "opt.h"
#include "qga-ping.h"
#include "qga.h"
#include "qgatarget.h"
#include "util.h"

#define PING_COMMAND "{\"execute\":\"guest-ping\"}"

enum {
	OPT_QGA_DIR = 256,
	OPT_PVE_DIR,
	OPT_NODE,
	OPT_ALL,
	OPT_WAIT,
	OPT_JSON,
	OPT_THRESHOLD,
	OPT_GRACE,
	OPT_EXEC,
	OPT_EXEC_TIMEOUT,
	OPT_TIMESYNC_GAP,
	OPT_SYSTEMD_RUN,
	OPT_RESTART,
	OPT_MAX_RESTARTS,
	OPT_RESTART_WINDOW,
	OPT_RESTART_WAIT,
	OPT_RESTART_TIMEOUT,
};

static const struct option long_options[] = {
	{ "timeout", required_argument, NULL, 't' },
	{ "qga-dir", required_argument, NULL, OPT_QGA_DIR },
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "watch", no_argument, NULL, 'w' },
	{ "interval", required_argument, NULL, 'i' },
	{ "threshold", required_argument, NULL, OPT_THRESHOLD },
	{ "grace", required_argument, NULL, OPT_GRACE },
	{ "exec", required_argument, NULL, OPT_EXEC },
	{ "exec-timeout", required_argument, NULL, OPT_EXEC_TIMEOUT },
	{ "timesync-gap", required_argument, NULL, OPT_TIMESYNC_GAP },
	{ "systemd-run", no_argument, NULL, OPT_SYSTEMD_RUN },
	{ "restart", no_argument, NULL, OPT_RESTART },
	{ "max-restarts", required_argument, NULL, OPT_MAX_RESTARTS },
	{ "restart-window", required_argument, NULL, OPT_RESTART_WINDOW },
	{ "restart-wait", required_argument, NULL, OPT_RESTART_WAIT },
	{ "restart-timeout", required_argument, NULL, OPT_RESTART_TIMEOUT },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
    "usage: qga-ping [-qv] [-t MS] [--wait S] [--json] [--qga-dir DIR] VMID|SOCKET...\n"
    "       qga-ping [-qv] [-t MS] [--wait S] [--json] --all [--pve-dir DIR] [--node NAME]\n"
    "       qga-ping --watch [-v] [-i S] [-t MS] [--threshold N] [--grace S]\n"
    "                [--exec CMD] [--exec-timeout S] [--systemd-run] [--timesync-gap S]\n"
    "                [--restart [--max-restarts N] [--restart-window S] [--restart-wait S]\n"
    "                [--restart-timeout S]] [--json] [--pve-dir DIR] [--node NAME]\n"
    "                [--qga-dir DIR]\n";

static const char help_text[] =
    "One-shot: asks every guest's agent at once (guest-sync-delimited, guest-ping) and\n"
    "prints TARGET ok MS or TARGET fail REASON; exit 0 all answered, 1 some did not, 2\n"
    "timeout. --watch: the agent heartbeat of every agent-enabled guest of this node.\n\n"
    "  -t, --timeout MS       deadline of one exchange (default 1000)\n"
    "      --qga-dir DIR      agent sockets and pid files (default /var/run/qemu-server)\n"
    "      --all              every agent-enabled running guest of this node\n"
    "      --wait SECS        ask silent agents again until all answer, at most this long\n"
    "      --pve-dir DIR      the pmxcfs root (default /etc/pve)\n"
    "      --node NAME        this node's name (default: uname -n up to the first dot)\n"
    "      --json             NDJSON instead of text lines\n"
    "  -q, --quiet            one-shot: no detail lines on stderr\n"
    "  -v, --verbose          watch: log every miss, and why it does not count\n"
    "  -w, --watch            watch the node's guests until stopped\n"
    "  -i, --interval SECS    ping each guest, and rescan the node, this often (default 2)\n"
    "      --threshold N      consecutive misses that make a failure (default 3)\n"
    "      --grace SECS       misses after a start or a migration do not count (default 60)\n"
    "      --exec CMD         run CMD (/bin/sh -c) when a guest fails and when it recovers\n"
    "      --exec-timeout S   stop a command that runs longer (default 60)\n"
    "      --systemd-run      run --exec commands and restarts as transient units of PID 1\n"
    "      --timesync-gap S   qga-timesync after an agent was silent this long (default 10;\n"
    "                         0: never)\n"
    "      --restart          restart a guest whose agent failed (lock- and HA-aware)\n"
    "      --max-restarts N   at most N restarts of a guest within --restart-window (default 3)\n"
    "      --restart-window S\n"
    "                         the window of --max-restarts (default 3600)\n"
    "      --restart-wait S   how long a shutdown may take before the hard stop (default 15)\n"
    "      --restart-timeout S\n"
    "                         stop a restart that runs longer (default 2 * wait + 120)\n"
    "  -h, --help             this help\n"
    "  -V, --version          print the version\n";

struct opts {
	int all, json, quiet, watch;
	double wait_s; /* --wait (wait.c) */
	struct watch_opts w;
};

static void
parse_args(int argc, char *argv[], struct opts *o)
{
	int c, restart_opts = 0;

	while ((c = getopt_long(argc, argv, "t:qvwi:hV", long_options, NULL)) != -1) {
		switch (c) {
		case 't':
			o->w.timeout_ms = (int)opt_ms("--timeout", optarg, 1, 600000);
			break;
		case OPT_QGA_DIR:
			o->w.qga_dir = optarg;
			break;
		case OPT_PVE_DIR:
			o->w.pve_dir = optarg;
			break;
		case OPT_NODE:
			o->w.node = opt_node(optarg);
			break;
		case OPT_ALL:
			o->all = 1;
			break;
		case OPT_WAIT:
			o->wait_s = opt_seconds("--wait", optarg, 0.01, OPT_NO_MAX);
			break;
		case OPT_JSON:
			o->json = o->w.json = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'v':
			log_verbose++;
			break;
		case 'w':
			o->watch = 1;
			break;
		case 'i':
			o->w.interval_s = opt_seconds("--interval", optarg, 0.05, OPT_NO_MAX);
			break;
		case OPT_THRESHOLD:
			o->w.threshold = (unsigned)opt_count("--threshold", optarg, 1, 10000);
			break;
		case OPT_GRACE:
			o->w.grace_s = opt_seconds("--grace", optarg, 0, OPT_NO_MAX);
			break;
		case OPT_EXEC:
			o->w.exec_cmd = optarg;
			break;
		case OPT_EXEC_TIMEOUT:
			o->w.exec_timeout_s =
			    opt_seconds("--exec-timeout", optarg, 0.1, OPT_NO_MAX);
			break;
		case OPT_TIMESYNC_GAP:
			o->w.timesync_gap_s = opt_seconds("--timesync-gap", optarg, 0, OPT_NO_MAX);
			break;
		case OPT_SYSTEMD_RUN:
			o->w.systemd_run = 1;
			break;
		case OPT_RESTART:
			o->w.restart = 1;
			break;
		case OPT_MAX_RESTARTS:
			o->w.max_restarts = (unsigned)opt_count("--max-restarts", optarg, 1, 10000);
			restart_opts = 1;
			break;
		case OPT_RESTART_WINDOW:
			o->w.restart_window_s =
			    opt_seconds("--restart-window", optarg, 1, OPT_NO_MAX);
			restart_opts = 1;
			break;
		case OPT_RESTART_WAIT:
			o->w.restart_wait_s = opt_seconds("--restart-wait", optarg, 1, 3600);
			restart_opts = 1;
			break;
		case OPT_RESTART_TIMEOUT:
			o->w.restart_timeout_s =
			    opt_seconds("--restart-timeout", optarg, 1, OPT_NO_MAX);
			restart_opts = 1;
			break;
		case 'h':
			opt_help();
		case 'V':
			opt_version();
		default:
			opt_bad();
		}
	}
	if (o->watch && (o->all || optind < argc))
		usage_error("--watch takes no operands and no --all");
	if (o->watch && o->wait_s > 0)
		usage_error("--wait is for one-shot pings, not --watch");
	if (o->w.systemd_run && !o->watch)
		usage_error("--systemd-run needs --watch");
	if (o->w.restart && !o->watch)
		usage_error("--restart needs --watch");
	if (restart_opts && !o->w.restart)
		usage_error("--max-restarts, --restart-window, --restart-wait and "
		            "--restart-timeout need --restart");
	if (o->w.restart_timeout_s == 0)
		o->w.restart_timeout_s = 2 * o->w.restart_wait_s + 120;
}

void
print_result(const struct qga_target *t, const struct qga_call *c, int json)
{
	if (json) {
		json_t *j = json_pack("{s:s, s:o, s:s, s:s}", "target", t->label, "vmid",
		                      t->vmid ? json_integer(t->vmid) : json_null(), "socket",
		                      t->path, "status", c->result == QGA_OK ? "ok" : "fail");
		if (c->result == QGA_OK) {
			json_object_set_new(j, "rtt_ms", json_real(c->elapsed_us / 1000.0));
		} else {
			json_object_set_new(j, "reason", json_string(qga_result_name(c->result)));
			json_object_set_new(j, "detail", json_string(c->detail));
		}
		char *s =
		    json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
		puts(s);
		free(s);
		json_decref(j);
	} else if (c->result == QGA_OK) {
		printf("%s ok %.3f\n", t->label, c->elapsed_us / 1000.0);
	} else {
		printf("%s fail %s\n", t->label, qga_result_name(c->result));
	}
}

/* Every target at once; 0 all answered, 2 some timed out, else 1. */
static int
ping_once(const struct opts *o, struct qga_target *t, size_t n)
{
	struct qga_call *calls = xcalloc(n, sizeof *calls);
	int timeouts = 0, fails = 0;

	for (size_t i = 0; i < n; i++)
		qga_call_init(&calls[i], t[i].path, PING_COMMAND, o->w.timeout_ms);
	qga_run(calls, n, open_files_budget(QGA_FD_RESERVE));
	for (size_t i = 0; i < n; i++) {
		print_result(&t[i], &calls[i], o->json);
		if (calls[i].result == QGA_TIMEOUT)
			timeouts++;
		else if (calls[i].result != QGA_OK)
			fails++;
		if (calls[i].result != QGA_OK && !o->quiet)
			log_warn("%s", calls[i].detail); /* names the socket */
		qga_call_cleanup(&calls[i]);
	}
	free(calls);
	fflush(stdout);
	return timeouts ? EXIT_TIMEOUT : fails ? 1 : 0;
}

int
main(int argc, char *argv[])
{
	struct opts o = { .w = {
		              .pve_dir = "/etc/pve",
		              .qga_dir = RUN_DIR_DEFAULT,
		              .timesync_cmd = "qga-timesync",
		              .interval_s = 2,
		              .grace_s = 60,
		              .exec_timeout_s = 60,
		              .timesync_gap_s = 10,
		              .timeout_ms = 1000,
		              .threshold = 3,
		              .max_restarts = 3,
		              .restart_window_s = 3600,
		              .restart_wait_s = 15,
		          } };
	struct qga_target *targets;
	size_t n;
	int rc;
	char err[512];

	log_init("qga-ping");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);
	if (!o.w.node)
		o.w.node = local_node_name();
	if (o.watch)
		return watch_run(&o.w);
	rc = qga_targets_get(o.all, o.w.pve_dir, o.w.node, o.w.qga_dir, argc - optind, argv + optind,
	                     &targets, &n, err, sizeof err);
	if (rc == EXIT_USAGE)
		usage_error("%s", err);
	if (rc)
		die(rc, "%s", err);
	if (o.wait_s > 0)
		rc = ping_wait(targets, n,
		               &(struct wait_opts){ o.wait_s, o.w.timeout_ms, o.json, o.quiet });
	else
		rc = ping_once(&o, targets, n);
	qga_targets_free(targets, n);
	return rc;
}
