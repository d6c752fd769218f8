/* qga-timesync: sets a guest's clock from the host's when it is off.
 * guest-get-time, compared with the host's CLOCK_REALTIME at the midpoint of
 * the exchange; when off by more than --max-drift, guest-set-time with the
 * host's time in nanoseconds, taken right before the command is sent. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "log.h"
#include "opt.h"
#include "qga.h"
#include "qgatarget.h"
#include "util.h"

#define GET_TIME "{\"execute\":\"guest-get-time\"}"
#define WAIT_RETRY_MS 1000
/* Guest time is guest input. A reading is taken from 1970 up to the end of
 * 2261 (int64 nanoseconds end in April 2262); anything else is refused. */
#define GUEST_TIME_MAX_NS INT64_C(9214646400000000000) /* 2262-01-01T00:00:00Z */

enum { OPT_QGA_DIR = 256, OPT_PVE_DIR, OPT_NODE, OPT_ALL, OPT_JSON, OPT_MAX_DRIFT, OPT_WAIT };

static const struct option long_options[] = {
	{ "max-drift", required_argument, NULL, OPT_MAX_DRIFT },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "timeout", required_argument, NULL, 't' },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "qga-dir", required_argument, NULL, OPT_QGA_DIR },
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
    "usage: qga-timesync [-nqv] [--max-drift MS] [-t MS] [--wait S] [--json]\n"
    "                    [--qga-dir DIR] VMID|SOCKET...\n"
    "       qga-timesync [-nqv] [--max-drift MS] [-t MS] [--wait S] [--json]\n"
    "                    --all [--pve-dir DIR] [--node NAME] [--qga-dir DIR]\n";

static const char help_text[] =
    "Reads each guest's clock through its agent and sets it when it is off; prints\n"
    "VMID DRIFT_MS ok|fixed|off (or VMID - fail REASON, VMID DRIFT_MS unfixed REASON).\n\n"
    "      --max-drift MS  set clocks off by more than this (default 1000; 0: every clock)\n"
    "  -n, --dry-run       only report\n"
    "  -t, --timeout MS    deadline of one exchange with an agent (default 2000)\n"
    "      --wait SECS     ask silent agents again every second for this long (default 0)\n"
    "      --all           every agent-enabled running guest of this node\n"
    "      --qga-dir DIR   agent sockets and pid files (default /var/run/qemu-server)\n"
    "      --pve-dir DIR   the pmxcfs root (default /etc/pve)\n"
    "      --node NAME     this node's name (default: uname -n up to the first dot)\n"
    "      --json          NDJSON instead of text lines\n"
    "  -q, --quiet         no detail lines on stderr\n"
    "  -v, --verbose       say when agents are asked again\n"
    "  -h, --help          this help\n"
    "  -V, --version       print the version\n";

struct opts {
	const char *qga_dir, *pve_dir, *node;
	long max_drift_ms;
	int timeout_ms, dry_run, all, json, quiet;
	double wait_s;
};

/* What happened to one guest. */
struct sync {
	struct qga_target *t;
	int have_drift;
	int bad_time;             /* the agent answered with something that is no time */
	int64_t drift_ns;         /* guest minus host */
	enum qga_result get, set; /* set: QGA_PENDING when not tried */
	char detail[256];
};

static void
parse_args(int argc, char *argv[], struct opts *o)
{
	int c;

	while ((c = getopt_long(argc, argv, "nt:qvhV", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_MAX_DRIFT:
			o->max_drift_ms = (long)opt_ms("--max-drift", optarg, 0, 86400000UL * 365);
			break;
		case 'n':
			o->dry_run = 1;
			break;
		case 't':
			o->timeout_ms = (int)opt_ms("--timeout", optarg, 1, 600000);
			break;
		case OPT_WAIT:
			o->wait_s = opt_seconds("--wait", optarg, 0, OPT_NO_MAX);
			break;
		case OPT_ALL:
			o->all = 1;
			break;
		case OPT_QGA_DIR:
			o->qga_dir = optarg;
			break;
		case OPT_PVE_DIR:
			o->pve_dir = optarg;
			break;
		case OPT_NODE:
			o->node = opt_node(optarg);
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case 'q':
			o->quiet = 1;
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
}

/* The drift from the agent's answer to guest-get-time, compared with the
 * host's clock at the midpoint of the exchange; a reading that is no time
 * is refused (bad_time), and the clock is left alone. */
static void
take_time(struct sync *x, const struct qga_call *c)
{
	int64_t mid = c->start_real_ns + c->elapsed_us * 500;
	json_int_t t;

	if (!json_is_integer(c->ret)) {
		x->bad_time = 1;
		snprintf(x->detail, sizeof x->detail,
		         "%s: guest-get-time returned no integer, clock left alone", c->path);
		return;
	}
	t = json_integer_value(c->ret);
	if (t < 0 || t >= GUEST_TIME_MAX_NS ||
	    __builtin_sub_overflow((int64_t)t, mid, &x->drift_ns)) {
		x->bad_time = 1;
		snprintf(x->detail, sizeof x->detail,
		         "%s: guest-get-time returned %lld ns: not a time from 1970 to 2261, "
		         "clock left alone",
		         c->path, (long long)t);
		return;
	}
	x->have_drift = 1;
}

/* Reads every guest clock at once; with --wait, asks again every second
 * those that did not answer, until the wait is over. */
static void
read_clocks(const struct opts *o, struct sync *s, size_t n)
{
	int64_t until = mono_ms() + (int64_t)(o->wait_s * 1000);
	size_t parallel = open_files_budget(QGA_FD_RESERVE);
	struct qga_call *calls = xcalloc(n, sizeof *calls);
	size_t *idx = xcalloc(n, sizeof *idx);

	for (;;) {
		int64_t round = mono_ms();
		size_t m = 0;

		for (size_t i = 0; i < n; i++)
			if (s[i].get != QGA_OK)
				idx[m++] = i;
		for (size_t k = 0; k < m; k++)
			qga_call_init(&calls[k], s[idx[k]].t->path, GET_TIME, o->timeout_ms);
		qga_run(calls, m, parallel);
		for (size_t k = 0; k < m; k++) {
			struct sync *x = &s[idx[k]];
			struct qga_call *c = &calls[k];
			x->get = c->result;
			snprintf(x->detail, sizeof x->detail, "%s", c->detail);
			if (c->result == QGA_OK)
				take_time(x, c);
			qga_call_cleanup(c);
		}
		int64_t now = mono_ms(), next = round + WAIT_RETRY_MS;
		size_t left = 0;
		for (size_t i = 0; i < n; i++)
			left += s[i].get != QGA_OK;
		if (!left || next >= until)
			break;
		log_debug("%zu agents not answering yet, asking again", left);
		if (next > now)
			sleep_ms(next - now);
	}
	free(calls);
	free(idx);
}

static int
needs_set(const struct opts *o, const struct sync *x)
{
	int64_t d = x->drift_ns < 0 ? -x->drift_ns : x->drift_ns;

	return x->have_drift && (o->max_drift_ms == 0 || d > (int64_t)o->max_drift_ms * 1000000);
}

/* One guest at a time, so the time sent is never older than one exchange. */
static void
set_clock(const struct opts *o, struct sync *x)
{
	struct qga_call c;
	char cmd[128];

	snprintf(cmd, sizeof cmd, "{\"execute\":\"guest-set-time\",\"arguments\":{\"time\":%lld}}",
	         (long long)real_ns());
	qga_call_init(&c, x->t->path, cmd, o->timeout_ms);
	qga_run(&c, 1, 1);
	x->set = c.result;
	snprintf(x->detail, sizeof x->detail, "%s", c.detail);
	qga_call_cleanup(&c);
}

static long long
drift_ms(const struct sync *x)
{
	return (long long)(x->drift_ns / 1000000);
}

/* How a guest's clock ended; the word the line shows. */
enum sync_state {
	SYNC_FAIL,    /* its clock could not be read */
	SYNC_OK,      /* within --max-drift */
	SYNC_OFF,     /* off by more, and --dry-run left it */
	SYNC_FIXED,   /* set */
	SYNC_UNFIXED, /* setting it failed */
};

static const char *const sync_state_names[] = {
	[SYNC_FAIL] = "fail", [SYNC_OK] = "ok", [SYNC_OFF] = "off",
	[SYNC_FIXED] = "fixed", [SYNC_UNFIXED] = "unfixed",
};

static enum sync_state
state_of(const struct opts *o, const struct sync *x)
{
	if (!x->have_drift)
		return SYNC_FAIL;
	if (!needs_set(o, x))
		return SYNC_OK;
	if (o->dry_run)
		return SYNC_OFF;
	return x->set == QGA_OK ? SYNC_FIXED : SYNC_UNFIXED;
}

/* Why a guest failed: the reason word of the line. */
static const char *
reason_of(const struct sync *x)
{
	if (x->bad_time)
		return "bad-time";
	return qga_result_name(!x->have_drift ? x->get : x->set);
}

static void
report(const struct opts *o, const struct sync *x)
{
	enum sync_state st = state_of(o, x);
	const char *status = sync_state_names[st];
	int failed = st == SYNC_FAIL || st == SYNC_UNFIXED;

	if (o->json) {
		json_t *j = json_pack("{s:s, s:o, s:s}", "target", x->t->label, "vmid",
		                      x->t->vmid ? json_integer(x->t->vmid) : json_null(), "status",
		                      status);
		if (x->have_drift)
			json_object_set_new(j, "drift_ms", json_real(x->drift_ns / 1e6));
		if (failed) {
			json_object_set_new(j, "reason", json_string(reason_of(x)));
			json_object_set_new(j, "detail", json_string(x->detail));
		}
		char *s =
		    json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
		puts(s);
		free(s);
		json_decref(j);
	} else if (!x->have_drift) {
		printf("%s - fail %s\n", x->t->label, reason_of(x));
	} else if (failed) {
		printf("%s %lld unfixed %s\n", x->t->label, drift_ms(x), reason_of(x));
	} else {
		printf("%s %lld %s\n", x->t->label, drift_ms(x), status);
	}
	if (failed && !o->quiet)
		log_warn("%s", x->detail); /* names the socket */
}

int
main(int argc, char *argv[])
{
	struct opts o = { .qga_dir = RUN_DIR_DEFAULT,
		          .pve_dir = "/etc/pve",
		          .max_drift_ms = 1000,
		          .timeout_ms = 2000 };
	struct qga_target *t;
	struct sync *s;
	size_t n;
	int timeouts = 0, fails = 0, bad_times = 0, rc;
	char err[512];

	log_init("qga-timesync");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);
	if (!o.node)
		o.node = local_node_name();
	rc = qga_targets_get(o.all, o.pve_dir, o.node, o.qga_dir, argc - optind, argv + optind, &t,
	                     &n, err, sizeof err);
	if (rc == EXIT_USAGE)
		usage_error("%s", err);
	if (rc)
		die(rc, "%s", err);
	s = xcalloc(n, sizeof *s);
	for (size_t i = 0; i < n; i++)
		s[i] = (struct sync){ .t = &t[i], .get = QGA_PENDING, .set = QGA_PENDING };
	read_clocks(&o, s, n);
	for (size_t i = 0; i < n; i++) {
		if (needs_set(&o, &s[i]) && !o.dry_run)
			set_clock(&o, &s[i]);
		report(&o, &s[i]);
		enum sync_state st = state_of(&o, &s[i]);
		enum qga_result why = s[i].have_drift ? s[i].set : s[i].get;
		if (s[i].bad_time)
			bad_times++;
		else if (st == SYNC_FAIL || st == SYNC_UNFIXED)
			why == QGA_TIMEOUT ? timeouts++ : fails++;
		else if (st == SYNC_OFF)
			fails++;
	}
	fflush(stdout);
	free(s);
	qga_targets_free(t, n);
	return bad_times ? EXIT_DATAERR : timeouts ? EXIT_TIMEOUT : fails ? 1 : 0;
}
