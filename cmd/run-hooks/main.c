/* run-hooks: runs the executables of a directory as run-parts does, with a
 * deadline per hook that nothing a hook starts can escape; with --events,
 * runs up.d/down.d hooks for pve-watch-conf's guest events. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "opt.h"
#include "run-hooks.h"

#define DEFAULT_EVENTS_TIMEOUT_MS (300 * 1000)
#define DEFAULT_KILL_AFTER_MS (5 * 1000)
#define DEFAULT_JOBS 4
#define MAX_JOBS 256

enum {
	OPT_TEST = 256,
	OPT_LIST,
	OPT_REPORT,
	OPT_REVERSE,
	OPT_EXIT_ON_ERROR,
	OPT_NEW_SESSION,
	OPT_LSBSYSINIT,
	OPT_REGEX,
	OPT_TIMEOUT,
	OPT_KILL_AFTER,
	OPT_EVENTS,
	OPT_STATE_DIR,
	OPT_NODE,
	OPT_SYSTEMD_RUN,
};

static const struct option long_opts[] = {
	{ "test", no_argument, NULL, OPT_TEST },
	{ "list", no_argument, NULL, OPT_LIST },
	{ "verbose", no_argument, NULL, 'v' },
	{ "report", no_argument, NULL, OPT_REPORT },
	{ "reverse", no_argument, NULL, OPT_REVERSE },
	{ "exit-on-error", no_argument, NULL, OPT_EXIT_ON_ERROR },
	{ "new-session", no_argument, NULL, OPT_NEW_SESSION },
	{ "lsbsysinit", no_argument, NULL, OPT_LSBSYSINIT },
	{ "regex", required_argument, NULL, OPT_REGEX },
	{ "umask", required_argument, NULL, 'u' },
	{ "arg", required_argument, NULL, 'a' },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "kill-after", required_argument, NULL, OPT_KILL_AFTER },
	{ "events", required_argument, NULL, OPT_EVENTS },
	{ "jobs", required_argument, NULL, 'j' },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "systemd-run", no_argument, NULL, OPT_SYSTEMD_RUN },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
    "usage: run-hooks [-v] [--test | --list] [--report] [--reverse] [--exit-on-error]\n"
    "                 [--regex ERE | --lsbsysinit] [-a ARG]... [-u UMASK] [--new-session]\n"
    "                 [--timeout SECS] [--kill-after SECS] [--systemd-run] DIR [ARG...]\n"
    "       run-hooks --events HOOKS [-v] [-j N] [--state-dir DIR] [--node NAME]\n"
    "                 [--timeout SECS] [--kill-after SECS] [--exit-on-error] [-u UMASK]\n"
    "                 [--systemd-run]\n";

static const char help_text[] =
    "Runs the executables of DIR in strcmp order, as run-parts does, each with a deadline\n"
    "that nothing it starts escapes. --events: pve-watch-conf's lines on stdin run\n"
    "HOOKS/up.d (create, migrate-in) or HOOKS/down.d (destroy, migrate-out).\n\n"
    "      --test             print the hooks that would run, run none\n"
    "      --list             print every file whose name matches the rule\n"
    "      --report           print a hook's path before its first output\n"
    "  -v, --verbose          print each hook's command line before it runs\n"
    "      --reverse          run the hooks in reverse order\n"
    "      --exit-on-error    stop at the first hook that fails\n"
    "      --regex ERE        hooks are the names matching ERE\n"
    "      --lsbsysinit       hooks are named as LSB init scripts and cron jobs allow\n"
    "  -a, --arg ARG          pass ARG to every hook (may be repeated)\n"
    "  -u, --umask UMASK      the hooks' umask, octal (default 022)\n"
    "      --new-session      start each hook in a session of its own\n"
    "      --timeout SECS     stop a hook that runs longer (--events: default 300)\n"
    "      --kill-after SECS  SIGKILL this long after SIGTERM (default 5)\n"
    "      --systemd-run      run each hook as a transient unit of PID 1\n"
    "      --events HOOKS     run HOOKS/up.d and down.d for the events on stdin\n"
    "  -j, --jobs N           --events: guests whose events run at once (default 4)\n"
    "      --state-dir DIR    --events: the journal's dir (default /var/lib/pvekit)\n"
    "      --node NAME        --events: this node's name, for PVEKIT_NODE\n"
    "  -h, --help             this help\n"
    "  -V, --version          print the version\n";

static int64_t
parse_ms(const char *opt, const char *s)
{
	double secs = opt_seconds(opt, s, 0, OPT_NO_MAX);
	int64_t ms = (int64_t)(secs * 1000);

	return ms < secs * 1000 ? ms + 1 : ms; /* rounded up: 0.0001 is not "none" */
}

static mode_t
parse_umask(const char *s)
{
	size_t n = strspn(s, "01234567");

	if (n == 0 || n > 4 || s[n])
		usage_error("--umask %s: want an octal mode such as 022", s);
	return (mode_t)strtoul(s, NULL, 8);
}

static void
add_arg(struct opts *o, char *arg)
{
	o->args = xreallocarray(o->args, o->nargs + 1, sizeof *o->args);
	o->args[o->nargs++] = arg;
}

/* Returns the index of DIR in argv (directory mode), or 0 (events mode). */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	int c, given_jobs = 0, given_state = 0, given_node = 0;
	char err[256];

	*o = (struct opts){
		.umask = 022,
		.timeout_ms = -1,
		.kill_after_ms = DEFAULT_KILL_AFTER_MS,
		.jobs = DEFAULT_JOBS,
		.state_dir = "/var/lib/pvekit",
	};
	while ((c = getopt_long(argc, argv, "hVva:u:j:", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_TEST:
			o->test = 1;
			break;
		case OPT_LIST:
			o->list = 1;
			break;
		case 'v':
			log_verbose++;
			o->verbose = 1;
			break;
		case OPT_REPORT:
			o->report = 1;
			break;
		case OPT_REVERSE:
			o->reverse = 1;
			break;
		case OPT_EXIT_ON_ERROR:
			o->exit_on_error = 1;
			break;
		case OPT_NEW_SESSION:
			o->new_session = 1;
			break;
		case OPT_LSBSYSINIT:
			o->names = NAMES_LSBSYSINIT;
			break;
		case OPT_REGEX:
			o->names = NAMES_REGEX;
			o->regex = optarg;
			break;
		case 'u':
			o->umask = parse_umask(optarg);
			break;
		case 'a':
			add_arg(o, optarg);
			break;
		case OPT_TIMEOUT:
			o->timeout_ms = parse_ms("--timeout", optarg);
			break;
		case OPT_KILL_AFTER:
			o->kill_after_ms = parse_ms("--kill-after", optarg);
			break;
		case OPT_EVENTS:
			o->events = optarg;
			break;
		case 'j':
			o->jobs = opt_count("--jobs", optarg, 1, MAX_JOBS);
			given_jobs = 1;
			break;
		case OPT_STATE_DIR:
			o->state_dir = optarg;
			given_state = 1;
			break;
		case OPT_NODE:
			o->node = opt_node(optarg);
			given_node = 1;
			break;
		case OPT_SYSTEMD_RUN:
			o->systemd_run = 1;
			break;
		case 'h':
			opt_help();
		case 'V':
			opt_version();
		default:
			opt_bad();
		}
	}
	if (o->list && o->test)
		usage_error("--list and --test cannot be used together");
	if (o->systemd_run && o->new_session)
		usage_error("--new-session and --systemd-run cannot be used together: "
		            "a transient unit has a session of its own");
	if (names_init(o, err, sizeof err) < 0)
		usage_error("--regex: %s", err);
	if (o->events) {
		if (optind < argc || o->nargs)
			usage_error(
			    "--events takes no DIR or ARG: each hook gets the event's CONF");
		if (o->test || o->list || o->report)
			usage_error("--events cannot be used with --test, --list or --report");
		if (!o->node)
			o->node = local_node_name();
		if (o->timeout_ms < 0)
			o->timeout_ms = DEFAULT_EVENTS_TIMEOUT_MS;
		return 0;
	}
	if (given_jobs || given_state || given_node)
		usage_error("--jobs, --state-dir and --node need --events");
	if (optind >= argc)
		usage_error("missing DIR");
	for (int i = optind + 1; i < argc; i++)
		add_arg(o, argv[i]);
	return optind;
}

/* Runs one hook to its end; returns its exit status as we report it. */
static int
run_hook(const char *path, const struct opts *o)
{
	char **argv = xcalloc(o->nargs + 2, sizeof *argv);
	struct hookspec h = { .path = path,
		              .argv = argv,
		              .mode = o->report ? OUT_REPORT : OUT_INHERIT };
	struct pollfd pfd[HOOKRUN_NPOLL];
	struct proc_status st;
	struct hookrun r;
	int aborted = 0, code;

	argv[0] = (char *)path;
	for (size_t i = 0; i < o->nargs; i++)
		argv[i + 1] = o->args[i];
	if (o->verbose) {
		struct buf b = { 0 };
		buf_printf(&b, "executing %s", path);
		for (size_t i = 0; i < o->nargs; i++)
			buf_printf(&b, " %s", o->args[i]);
		log_info("%s", b.data);
		buf_free(&b);
	}
	if (hookrun_start(&r, &h, o) < 0) {
		log_err("%s: cannot start: %s", path, strerror(errno));
		free(argv);
		return EXIT_OSERR;
	}
	for (;;) {
		hookrun_pollfds(&r, pfd);
		if (ppoll(pfd, HOOKRUN_NPOLL, NULL, &poll_mask) < 0 && errno != EINTR)
			die(EXIT_OSERR, "poll: %s", strerror(errno));
		if (stop_signal && !aborted) {
			hookrun_abort(&r);
			aborted = 1;
		}
		if (hookrun_handle(&r, pfd, &st))
			break;
	}
	free(argv);
	code = proc_exit_code(&st);
	if (st.timed_out)
		log_err("%s timed out after %g s%s", path, o->timeout_ms / 1000.0,
		        st.killed ? "; still running after SIGTERM, killed" : "");
	if (code) {
		char what[160];
		log_err("%s %s", path, proc_describe(&st, what, sizeof what));
	}
	return code;
}

/* run-parts, entry by entry: each is stat'ed just before it would run. */
static int
run_dir(const char *dir, const struct opts *o)
{
	struct names names;
	int rc = 0, stop = 0;

	if (names_scan(dir, &names) < 0) {
		log_err("failed to open directory %s: %s", dir, strerror(errno));
		return EXIT_CONFIG;
	}
	for (size_t k = 0; k < names.n && !stop; k++) {
		size_t i = o->reverse ? names.n - 1 - k : k;
		char *path = xasprintf("%s/%s", dir, names.v[i]);
		int code = 0;

		switch (entry_classify(path)) {
		case ENTRY_NOSTAT:
			log_err("failed to stat component %s: %s", path, strerror(errno));
			/* run-parts goes on (status 0) when only listing; a hook
			 * that cannot run is a failure when running. */
			if (o->exit_on_error)
				code = 1, stop = 1;
			else if (!o->list && !o->test)
				code = 1;
			break;
		case ENTRY_NOTPLAIN:
			if (!o->list) {
				log_err("component %s is not an executable plain file", path);
				code = 1;
				stop = o->exit_on_error && !o->test;
			}
			break;
		case ENTRY_RUN:
			if (o->list) {
				if (access(path, R_OK) == 0)
					printf("%s\n", path);
			} else if (o->test) {
				printf("%s\n", path);
			} else {
				take_stop_signals();
				if (stop_signal) {
					stop = 1;
					break;
				}
				code = run_hook(path, o);
				take_stop_signals();
				stop = (code && o->exit_on_error) || stop_signal;
			}
			break;
		case ENTRY_LISTED:
			if (o->list)
				printf("%s\n", path);
			break;
		case ENTRY_SKIP:
			break;
		}
		if (code)
			rc = code;
		free(path);
	}
	names_free(&names);
	if (stop_signal)
		rc = 128 + stop_signal;
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o;
	int dir, rc;

	log_init("run-hooks");
	opt_usage(usage_text, help_text);
	dir = parse_args(argc, argv, &o);
	setup_signals();
	umask(o.umask);
	if (o.events)
		rc = events_run(&o);
	else
		rc = run_dir(argv[dir], &o);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		log_err("stdout: %s", strerror(errno));
		rc = EXIT_OSERR;
	}
	free(o.args);
	return rc;
}
