/* vm-power: power control of this node's guests for an ssh key, as the
 * key's forced command in authorized_keys. Reads "VERB VMID" from
 * SSH_ORIGINAL_COMMAND, checks it against the allow-lists on its own
 * command line (the key's), runs qm or pct, prints one result line and
 * sends one audit line to the journal. Anything else is refused, exit 77. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"
#include "log.h"
#include "opt.h"
#include "power.h"
#include "util.h"
#include "vm-power.h"
#include "vmlist.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define COMMAND_MAX 64
#define METACHARS ";&|$`<>(){}[]*?~!#'\"\\"

enum verb { V_START, V_SHUTDOWN, V_STOP, V_SUSPEND, V_HIBERNATE, V_RESUME, V_STATUS, V_N };
static const char *const verb_names[V_N] = { "start",     "shutdown", "stop",  "suspend",
	                                     "hibernate", "resume",   "status" };

enum {
	OPT_ALLOW = 256,
	OPT_GUESTS,
	OPT_KEY_NAME,
	OPT_AUTHORIZED_KEYS,
	OPT_TIMESYNC_WAIT,
	OPT_PVE_DIR,
	OPT_NODE,
	OPT_RUN_DIR,
	OPT_LXC_DIR,
	OPT_JOURNAL_SOCKET,
};

static const struct option long_options[] = {
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "guests", required_argument, NULL, OPT_GUESTS },
	{ "key-name", required_argument, NULL, OPT_KEY_NAME },
	{ "authorized-keys", required_argument, NULL, OPT_AUTHORIZED_KEYS },
	{ "timeout", required_argument, NULL, 't' },
	{ "timesync-wait", required_argument, NULL, OPT_TIMESYNC_WAIT },
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
	{ "lxc-dir", required_argument, NULL, OPT_LXC_DIR },
	{ "journal-socket", required_argument, NULL, OPT_JOURNAL_SOCKET },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
    "usage: vm-power [-nv] --guests VMID[-VMID],... [--allow VERB,...] [--key-name NAME]\n"
    "                [--authorized-keys FILE] [-t SECS] [--timesync-wait SECS]\n"
    "                [--pve-dir DIR] [--node NAME] [--run-dir DIR] [--lxc-dir DIR]\n"
    "                [--journal-socket PATH]\n"
    "       (as an ssh forced command; the client's command is VERB VMID)\n";

static const char help_text[] =
    "  VERB: start shutdown stop suspend hibernate resume status\n"
    "      --guests LIST       the guests this key may act on (101,103,200-209)\n"
    "      --allow VERBS       what it may do to them (default status)\n"
    "      --key-name NAME     the key's name in the audit line (default: its comment)\n"
    "      --authorized-keys FILE  where its comment is (default ~/.ssh/authorized_keys)\n"
    "  -t, --timeout SECS      deadline of the qm/pct command (default 600)\n"
    "      --timesync-wait SECS  how long qga-timesync waits for the agent after a\n"
    "                          resume (default 60; 0: no time sync)\n"
    "      --pve-dir DIR       the cluster file system (default /etc/pve)\n"
    "      --node NAME         this node (default: uname -n up to the first dot)\n"
    "      --run-dir DIR       pid files and sockets (default /var/run/qemu-server)\n"
    "      --lxc-dir DIR       LXC's path, in its command sockets' names (default /var/lib/lxc)\n"
    "      --journal-socket PATH  journald's native socket (default " JOURNAL_SOCKET ")\n"
    "  -n, --dry-run           say what would run, run nothing\n";

struct range {
	uint32_t lo, hi;
};

struct opts {
	unsigned allow; /* a bit per verb */
	struct range *guests;
	size_t nguests;
	const char *key_name, *authorized_keys, *pve_dir, *node, *run_dir, *lxc_dir, *journal;
	double timeout, timesync_wait;
	int dry_run;
};

static struct caller who;
static struct audit audit = { .outcome = "refused" };
static const char *journal_path = JOURNAL_SOCKET;

static void
parse_allow(struct opts *o, const char *arg)
{
	char *copy = xstrdup(arg), *save = NULL;

	o->allow = 0;
	for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		int v = V_N;
		for (int i = 0; i < V_N; i++)
			if (strcmp(w, verb_names[i]) == 0)
				v = i;
		if (v == V_N)
			usage_error("--allow %s: %s is not a verb (start shutdown stop suspend "
			            "hibernate resume status)",
			            arg, w);
		o->allow |= 1u << v;
	}
	free(copy);
}

static void
parse_guests(struct opts *o, const char *arg)
{
	char *copy = xstrdup(arg), *save = NULL;

	for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		struct range r;
		char *dash = strchr(w, '-');
		if (dash)
			*dash = '\0';
		if (parse_vmid(w, &r.lo) < 0 || (dash && parse_vmid(dash + 1, &r.hi) < 0))
			usage_error("--guests %s: want VMIDs and ranges (101,103,200-209)", arg);
		if (!dash)
			r.hi = r.lo;
		if (r.hi < r.lo)
			usage_error("--guests %s: a range that ends before it starts", arg);
		o->guests = xreallocarray(o->guests, o->nguests + 1, sizeof *o->guests);
		o->guests[o->nguests++] = r;
	}
	free(copy);
}

static void
parse_args(int argc, char *argv[], struct opts *o)
{
	int c;

	while ((c = getopt_long(argc, argv, "t:nvhV", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_ALLOW:
			parse_allow(o, optarg);
			break;
		case OPT_GUESTS:
			parse_guests(o, optarg);
			break;
		case OPT_KEY_NAME:
			o->key_name = optarg;
			break;
		case OPT_AUTHORIZED_KEYS:
			o->authorized_keys = optarg;
			break;
		case 't':
			o->timeout = opt_seconds("--timeout", optarg, 1, 86400);
			break;
		case OPT_TIMESYNC_WAIT:
			o->timesync_wait = opt_seconds("--timesync-wait", optarg, 0, 3600);
			break;
		case OPT_PVE_DIR:
			o->pve_dir = optarg;
			break;
		case OPT_NODE:
			o->node = opt_node(optarg);
			break;
		case OPT_RUN_DIR:
			o->run_dir = optarg;
			break;
		case OPT_LXC_DIR:
			o->lxc_dir = optarg;
			break;
		case OPT_JOURNAL_SOCKET:
			o->journal = optarg;
			break;
		case 'n':
			o->dry_run = 1;
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
	opt_no_operands(argc, argv);
	if (!o->nguests)
		usage_error("--guests is required: the guests this key may act on");
}

/* Ends the call: the audit line, then the exit. */
static _Noreturn void
finish(int code)
{
	fflush(stdout);
	audit_send(journal_path, &who, &audit);
	exit(code);
}

static _Noreturn void refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void
refuse(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(audit.detail, sizeof audit.detail, fmt, ap);
	va_end(ap);
	audit.outcome = "refused";
	log_err("refused: %s", audit.detail);
	finish(EXIT_NOPERM);
}

/* SSH_ORIGINAL_COMMAND into a verb and a VMID, or refused. */
static void
parse_command(const char *cmd, enum verb *verb, uint32_t *vmid)
{
	char copy[COMMAND_MAX + 1], *w[3], *save = NULL;
	size_t nw = 0;

	if (!cmd)
		refuse("no command: this key runs only \"VERB VMID\"");
	for (const char *p = cmd; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\n' || c == '\r' || (c && strchr(METACHARS, c)))
			refuse("shell metacharacter '%s' in the command",
			       c == '\n' ? "\\n" : c == '\r' ? "\\r" : (char[]){ (char)c, 0 });
		if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != ' ') {
			if (c > ' ' && c < 0x7f)
				refuse("character '%c' in the command (want \"VERB VMID\")", c);
			refuse("character \\x%02x in the command (want \"VERB VMID\")", c);
		}
	}
	if (strlen(cmd) > COMMAND_MAX)
		refuse("command longer than %d characters", COMMAND_MAX);
	snprintf(copy, sizeof copy, "%s", cmd);
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (nw == 2)
			refuse("extra words after \"VERB VMID\"");
		w[nw++] = t;
	}
	if (nw == 0)
		refuse("empty command: this key runs only \"VERB VMID\"");
	for (*verb = 0; *verb < V_N && strcmp(w[0], verb_names[*verb]) != 0; (*verb)++)
		;
	if (*verb == V_N)
		refuse("unknown verb '%s' (start shutdown stop suspend hibernate resume status)",
		       w[0]);
	audit.verb = verb_names[*verb];
	if (nw < 2)
		refuse("%s: which guest? (want \"VERB VMID\")", w[0]);
	if (parse_vmid(w[1], vmid) < 0)
		refuse("'%s' is not a VMID", w[1]);
	audit.vmid = *vmid;
}

static int
guest_allowed(const struct opts *o, uint32_t vmid)
{
	for (size_t i = 0; i < o->nguests; i++)
		if (vmid >= o->guests[i].lo && vmid <= o->guests[i].hi)
			return 1;
	return 0;
}

/* qga-timesync next to this program (the package installs both in one
 * directory), else on PATH. */
static char *
timesync_path(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n > 0) {
		self[n] = '\0';
		char *p = xasprintf("%s/qga-timesync", dirname(self));
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return xstrdup("/usr/bin/qga-timesync");
}

/* After a resume: qga-timesync's status word ("ok", "fixed", "unfixed",
 * "fail"), or "-" when the guest has no agent. */
static void
timesync(const struct opts *o, const struct local_guest *g, char *status, size_t len)
{
	char vmid[16], wait[32], *path = timesync_path();
	const char *argv[] = { "qga-timesync", "-q",  "--qga-dir", o->run_dir,
		               "--wait",       wait, vmid,        NULL };
	struct power_cmd c;
	char f2[32], f3[16];
	const char *line;

	snprintf(status, len, "-");
	if (g->type != GUEST_QEMU || !guest_conf_agent_enabled(&g->conf) || o->timesync_wait <= 0) {
		free(path);
		return;
	}
	snprintf(vmid, sizeof vmid, "%u", g->vmid);
	snprintf(wait, sizeof wait, "%g", o->timesync_wait);
	power_cmd_spawn_path(&c, path, argv, o->timesync_wait + 10);
	power_cmd_collect(&c);
	/* its line: "VMID DRIFT_MS STATUS [REASON]" */
	for (line = c.output; line && strncmp(line, vmid, strlen(vmid)) != 0;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		;
	if (line && sscanf(line + strlen(vmid), " %31s %15s", f2, f3) == 2)
		snprintf(status, len, "%s", f3);
	else
		snprintf(status, len, "fail");
	if (strcmp(status, "ok") != 0 && strcmp(status, "fixed") != 0)
		log_warn("qga-timesync %u: %s", g->vmid, c.last);
	free(path);
}

/* The qm/pct arguments for a verb; resume of a hibernated VM is a start. */
static void
command_for(enum verb v, const char *state, char *vmid, const char **args)
{
	size_t n = 0;

	if (v == V_RESUME && strcmp(state, "hibernated") == 0)
		args[n++] = "start";
	else if (v == V_HIBERNATE)
		args[n++] = "suspend";
	else
		args[n++] = verb_names[v];
	args[n++] = vmid;
	if (v == V_HIBERNATE) {
		args[n++] = "--todisk";
		args[n++] = "1";
	}
	args[n] = NULL;
}

static _Noreturn void
act(const struct opts *o, enum verb v, const struct local_guest *g)
{
	char vmid[16], state[64], why[300], text[128];
	const char *args[8];
	struct power_cmd c;
	int resumed;

	snprintf(vmid, sizeof vmid, "%u", g->vmid);
	if (power_state(o->run_dir, o->lxc_dir, g, state, sizeof state, why, sizeof why) < 0) {
		audit.outcome = "failed";
		snprintf(audit.detail, sizeof audit.detail, "%s", why);
		printf("%s %u failed\n", verb_names[v], g->vmid);
		log_err("%s", why);
		finish(1);
	}
	if (v == V_STATUS) {
		audit.outcome = "ok";
		snprintf(audit.detail, sizeof audit.detail, "%s", state);
		printf("status %u %s\n", g->vmid, state);
		finish(0);
	}
	command_for(v, state, vmid, args);
	snprintf(text, sizeof text, "%s", power_tool(g->type));
	for (size_t i = 0; args[i]; i++)
		snprintf(text + strlen(text), sizeof text - strlen(text), " %s", args[i]);
	if (o->dry_run) {
		audit.outcome = "dry-run";
		snprintf(audit.detail, sizeof audit.detail, "%s", text);
		printf("%s %u dry-run %s\n", verb_names[v], g->vmid, text);
		finish(0);
	}
	/* A resume from RAM or from disk (hibernation) leaves the guest's
	 * clock where it stopped. */
	resumed = v == V_RESUME || (v == V_START && strcmp(state, "hibernated") == 0);
	power_cmd_run(&c, g->type, args, o->timeout);
	if (c.rc != 0) {
		audit.outcome = c.timed_out ? "timeout" : "failed";
		snprintf(audit.detail, sizeof audit.detail, "%s: %s", text, c.last);
		printf("%s %u %s\n", verb_names[v], g->vmid, audit.outcome);
		log_err("%s: %s", text, c.last);
		finish(c.timed_out ? EXIT_TIMEOUT : 1);
	}
	audit.outcome = "ok";
	if (resumed) {
		char clock[16];
		timesync(o, g, clock, sizeof clock);
		snprintf(audit.detail, sizeof audit.detail, "clock %s", clock);
		printf("%s %u ok clock %s\n", verb_names[v], g->vmid, clock);
	} else {
		printf("%s %u ok\n", verb_names[v], g->vmid);
	}
	finish(0);
}

int
main(int argc, char *argv[])
{
	struct opts o = { .allow = 1u << V_STATUS,
		          .pve_dir = "/etc/pve",
		          .run_dir = RUN_DIR_DEFAULT,
		          .lxc_dir = LXC_DIR_DEFAULT,
		          .journal = JOURNAL_SOCKET,
		          .timeout = 600,
		          .timesync_wait = 60 };
	const char *cmd = getenv("SSH_ORIGINAL_COMMAND");
	struct local_guest g;
	struct vmlist l;
	enum verb v;
	uint32_t vmid;
	char err[256];
	int from_file;

	log_init("vm-power");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);
	journal_path = o.journal;
	if (!o.node)
		o.node = local_node_name();
	caller_identify(&who, o.key_name, o.authorized_keys);
	printable(cmd ? cmd : "", audit.command, sizeof audit.command);

	parse_command(cmd, &v, &vmid);
	if (!(o.allow & (1u << v)))
		refuse("%s is not allowed for this key", verb_names[v]);
	if (!guest_allowed(&o, vmid))
		refuse("guest %u is not allowed for this key", vmid);
	if (vmlist_load(o.pve_dir, &l, &from_file, err, sizeof err) < 0) {
		audit.outcome = "failed";
		snprintf(audit.detail, sizeof audit.detail, "the guest list: %s", err);
		log_err("%s: the guest list: %s", o.pve_dir, err);
		finish(EXIT_UNAVAILABLE);
	}
	if (local_guest_load(o.pve_dir, o.node, &l, vmid, &g) < 0) {
		if (errno == ENOENT)
			refuse("guest %u is not on this node", vmid);
		audit.outcome = "failed";
		snprintf(audit.detail, sizeof audit.detail, "its config: %s", strerror(errno));
		log_err("guest %u: its config: %m", vmid);
		finish(EXIT_UNAVAILABLE);
	}
	vmlist_free(&l);
	if (v == V_HIBERNATE && g.type == GUEST_LXC)
		refuse("guest %u is a container: containers cannot hibernate", vmid);
	act(&o, v, &g);
}
