/* pve-start-plan: starts this node's guests at boot in the order a plan
 * gives, each group when the previous one is ready (its agent answers, a
 * port accepts), not after fixed delays. VMMonitor's start-up list, with
 * its syntax kept. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"
#include "log.h"
#include "opt.h"
#include "plan.h"
#include "power.h"
#include "qga.h"
#include "ready.h"
#include "util.h"
#include "vmlist.h"

#define PLAN_DEFAULT "/etc/pvekit/start-plan"
#define CONFIG_DIR_DEFAULT "/etc/pve/pvekit"
#define CONF_MAX (64 * 1024)
#define ADDR_TRY_MS 2000
#define ADDR_RETRY_MS 250

enum {
	OPT_STRICT = 256,
	OPT_MAX_WAIT,
	OPT_PVE_DIR,
	OPT_NODE,
	OPT_RUN_DIR,
	OPT_LXC_DIR,
	OPT_CONFIG_DIR
};

static const struct option long_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "timeout", required_argument, NULL, 't' },
	{ "max-wait", required_argument, NULL, OPT_MAX_WAIT },
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
	{ "lxc-dir", required_argument, NULL, OPT_LXC_DIR },
	{ "config-dir", required_argument, NULL, OPT_CONFIG_DIR },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
    "usage: pve-start-plan [-nqv] [--strict] [-c FILE] [-t SECS] [--max-wait SECS]\n"
    "                      [--pve-dir DIR] [--node NAME] [--run-dir DIR] [--lxc-dir DIR]\n"
    "                      [--config-dir DIR]\n";

static const char help_text[] =
    "  -c, --config FILE   the plan (default /etc/pvekit/start-plan; - reads stdin)\n"
    "  -n, --dry-run       print what it would do, start nothing\n"
    "      --strict        stop at the first failed start or wait\n"
    "  -t, --timeout SECS  deadline of one qm/pct start (default 300)\n"
    "      --max-wait SECS a wait's deadline when its line gives none (default 120)\n"
    "      --pve-dir DIR   the cluster file system (default /etc/pve)\n"
    "      --node NAME     this node (default: uname -n up to the first dot)\n"
    "      --run-dir DIR   pid files and agent sockets (default /var/run/qemu-server)\n"
    "      --lxc-dir DIR   LXC's path, in its command sockets' names (default /var/lib/lxc)\n"
    "      --config-dir DIR  pvekit's cluster-wide folder (default /etc/pve/pvekit)\n"
    "  -q, --quiet         no warnings about skipped guests\n"
    "  -v, --verbose       say where addresses come from\n";

struct opts {
	const char *plan, *pve_dir, *node, *run_dir, *lxc_dir, *config_dir;
	double timeout, max_wait;
	int dry_run, strict, quiet;
};

/* How the run went. */
struct tally {
	unsigned failed, timed_out;
};

static void
parse_args(int argc, char *argv[], struct opts *o)
{
	int c;

	while ((c = getopt_long(argc, argv, "c:nt:qvhV", long_options, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->plan = optarg;
			break;
		case 'n':
			o->dry_run = 1;
			break;
		case OPT_STRICT:
			o->strict = 1;
			break;
		case 't':
			o->timeout = opt_seconds("--timeout", optarg, 1, 86400);
			break;
		case OPT_MAX_WAIT:
			o->max_wait = opt_seconds("--max-wait", optarg, 0.1, 86400);
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
		case OPT_CONFIG_DIR:
			o->config_dir = optarg;
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
	opt_no_operands(argc, argv);
}

/* One result line: the step (or the part of it for one guest), a result
 * word and a detail; flushed at once, for the journal. */
static void result(const char *step, const char *res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
result(const char *step, const char *res, const char *fmt, ...)
{
	printf("%s %s", step, res);
	if (fmt && *fmt) {
		va_list ap;
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

static const char *
ref_word(const struct guest_ref *r, char *buf, size_t len)
{
	if (r->name)
		return r->name;
	snprintf(buf, len, "%u", r->vmid);
	return buf;
}

static int
onboot(const struct plan_guest *g)
{
	const char *v = guest_conf_get(&g->conf, "onboot");
	int b = 0;

	return v && parse_bool(v, &b) == 0 && b;
}

/* --- start --- */

struct starting {
	const struct guest_ref *r;
	struct plan_guest *g;
	struct power_cmd cmd;
	int done;
};

/* The guests of one start line that are to be started; the others get
 * their line now. */
static size_t
start_select(const struct opts *o, const struct step *s, struct starting *st)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nguests; i++) {
		const struct guest_ref *r = &s->guests[i];
		struct plan_guest *g = (struct plan_guest *)r->g;
		struct local_guest lg;
		char w[16], step[160], why[300];
		int running;

		snprintf(step, sizeof step, "start %s", ref_word(r, w, sizeof w));
		if (!g) {
			result(step, "skipped", "not-here");
			continue;
		}
		if (onboot(g)) {
			result(step, "skipped", "onboot");
			continue;
		}
		lg = (struct local_guest){ .vmid = g->vmid, .type = g->type, .conf = g->conf };
		running = power_running(o->run_dir, o->lxc_dir, &lg, why, sizeof why);
		if (running < 0)
			log_warn("%s: %s; starting it anyway", step, why);
		if (running > 0) {
			result(step, "skipped", "running");
			continue;
		}
		if (o->dry_run) {
			result(step, "dry-run", "%s start %u", power_tool(g->type), g->vmid);
			continue;
		}
		st[n++] = (struct starting){ .r = r, .g = g };
	}
	return n;
}

static void
start_done(struct starting *x, struct tally *t)
{
	char w[16], step[160];

	power_cmd_collect(&x->cmd);
	x->done = 1;
	snprintf(step, sizeof step, "start %s", ref_word(x->r, w, sizeof w));
	if (x->cmd.rc == 0) {
		result(step, "ok", "%.2f", x->cmd.ms / 1000.0);
		return;
	}
	x->g->start_failed = 1;
	t->failed++;
	result(step, "failed", "%.2f", x->cmd.ms / 1000.0);
	log_warn("%s: %s start %u: %s", step, power_tool(x->g->type), x->g->vmid, x->cmd.last);
}

/* Starts them all at once and reports each as it ends. */
static void
run_start(const struct opts *o, const struct step *s, struct tally *t)
{
	struct starting *st = xcalloc(s->nguests, sizeof *st);
	struct pollfd *pfd = xcalloc(s->nguests, sizeof *pfd);
	size_t n = start_select(o, s, st), left = n;

	for (size_t i = 0; i < n; i++) {
		char vmid[16];
		const char *args[] = { "start", vmid, NULL };

		snprintf(vmid, sizeof vmid, "%u", st[i].g->vmid);
		if (power_cmd_spawn(&st[i].cmd, st[i].g->type, args, o->timeout) < 0) {
			start_done(&st[i], t);
			left--;
		}
	}
	while (left) {
		size_t np = 0;
		for (size_t i = 0; i < n; i++)
			if (!st[i].done)
				pfd[np++] = (struct pollfd){ st[i].cmd.proc.fd, POLLIN, 0 };
		if (poll(pfd, np, -1) < 0)
			continue; /* EINTR */
		for (size_t i = 0, k = 0; i < n; i++) {
			if (st[i].done)
				continue;
			if (pfd[k++].revents) {
				start_done(&st[i], t);
				left--;
			}
		}
	}
	free(st);
	free(pfd);
}

/* --- waits --- */

/* The guest a wait is for, checked: NULL when the wait cannot happen (its
 * line is printed). */
static const struct plan_guest *
wait_guest(const struct step *s, struct tally *t)
{
	const struct plan_guest *g = s->nguests ? s->guests[0].g : NULL;

	if (s->nguests && !g) {
		result(s->text, "skipped", "not-here");
		return NULL;
	}
	if (g && g->start_failed) {
		t->failed++;
		result(s->text, "failed", "not-started");
		return NULL;
	}
	return g;
}

static double
wait_secs(const struct opts *o, const struct step *s)
{
	return s->secs > 0 ? s->secs : o->max_wait;
}

static void
wait_report(const struct step *s, const struct ready *r, double secs, struct tally *t)
{
	if (r->ok) {
		result(s->text, "ready", "%.2f", r->ms / 1000.0);
		return;
	}
	t->timed_out++;
	result(s->text, "timeout", "%.2f", secs);
	log_warn("%s: not ready after %g s: %s", s->text, secs, r->why);
}

static void
run_wait_agent(const struct opts *o, const struct step *s, struct tally *t)
{
	const struct plan_guest *g = wait_guest(s, t);
	double secs = wait_secs(o, s);
	struct ready r;
	char *path;

	if (!g)
		return;
	if (g->type != GUEST_QEMU || !guest_conf_agent_enabled(&g->conf)) {
		t->failed++;
		result(s->text, "failed", g->type == GUEST_QEMU ? "agent-disabled" : "container");
		log_warn("%s: guest %u %s", s->text, g->vmid,
		         g->type == GUEST_QEMU ? "has the agent disabled in its config"
		                               : "is a container: no agent");
		return;
	}
	if (o->dry_run) {
		result(s->text, "dry-run", "%g", secs);
		return;
	}
	path = qga_socket_path(o->run_dir, g->vmid);
	ready_agent(&r, path);
	ready_wait(&r, 1, (int64_t)(secs * 1000), READY_TRY_MS, READY_RETRY_MS);
	wait_report(s, &r, secs, t);
	free(path);
}

static int
set_addr(struct sockaddr_storage *sa, socklen_t *len, const char *text)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	char buf[INET6_ADDRSTRLEN + 8];

	snprintf(buf, sizeof buf, "%.*s", (int)strcspn(text, "/%"), text);
	memset(sa, 0, sizeof *sa);
	if (inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		*len = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		*len = sizeof *v6;
		return 0;
	}
	return -1;
}

static const char *
addr_text(const struct sockaddr_storage *sa, char *out, size_t len)
{
	const void *a = sa->ss_family == AF_INET
	                    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	                    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

	if (!inet_ntop(sa->ss_family, a, out, len))
		snprintf(out, len, "-");
	return out;
}

/* ip= in tcpcheck's file for the guest (key=value, key = value or
 * "key value"; '#' comments; quotes around the value). */
static int
addr_from_tcpcheck(const struct opts *o, uint32_t vmid, struct sockaddr_storage *sa,
                   socklen_t *len)
{
	char *path = xasprintf("%s/tcpcheck/%u.conf", o->config_dir, vmid), *save = NULL, *l;
	struct buf b = { 0 };
	int rc = -1;

	if (read_file(path, CONF_MAX, &b) < 0) {
		free(path);
		return -1;
	}
	for (l = strtok_r(b.data, "\n", &save); l && rc < 0; l = strtok_r(NULL, "\n", &save)) {
		l = trim_space(l);
		if (strncmp(l, "ip", 2) != 0 || !strchr(" \t=", l[2]))
			continue;
		l = trim_space(l + 2);
		if (*l == '=')
			l = trim_space(l + 1);
		l[strcspn(l, " \t#")] = '\0';
		if (*l == '"' || *l == '\'') {
			l++;
			l[strcspn(l, "\"'")] = '\0';
		}
		rc = set_addr(sa, len, l);
		log_debug("guest %u: address %s from %s", vmid, l, path);
	}
	buf_free(&b);
	free(path);
	return rc;
}

/* A container's first static ip= (netN: ...,ip=192.0.2.5/24). */
static int
addr_from_lxc_conf(const struct plan_guest *g, struct sockaddr_storage *sa, socklen_t *len)
{
	for (size_t i = 0; i < g->conf.nkv; i++) {
		char ip[64];
		const struct guest_kv *kv = &g->conf.kv[i];

		if (strncmp(kv->key, "net", 3) != 0 || prop_get(kv->value, "ip", ip, sizeof ip) < 0)
			continue;
		if (set_addr(sa, len, ip) == 0) {
			log_debug("guest %u: address %s from its %s", g->vmid, ip, kv->key);
			return 0;
		}
	}
	return -1;
}

/* The agent's first address of an interface other than lo, IPv4 before
 * IPv6, loopback and link-local left out. */
static int
addr_from_reply(json_t *ret, struct sockaddr_storage *sa, socklen_t *len)
{
	size_t i, j;
	json_t *ifc, *a;

	for (int want = AF_INET; want; want = want == AF_INET ? AF_INET6 : 0)
		json_array_foreach(ret, i, ifc)
		{
			const char *name = json_string_value(json_object_get(ifc, "name"));
			if (name && strcmp(name, "lo") == 0)
				continue;
			json_array_foreach(json_object_get(ifc, "ip-addresses"), j, a)
			{
				const char *ip = json_string_value(json_object_get(a, "ip-address"));
				if (!ip || set_addr(sa, len, ip) < 0 || sa->ss_family != want)
					continue;
				const uint8_t *b =
				    want == AF_INET
				        ? (const uint8_t *)&((struct sockaddr_in *)sa)->sin_addr
				        : ((struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
				if (want == AF_INET && (b[0] == 127 || (b[0] == 169 && b[1] == 254)))
					continue;
				if (want == AF_INET6 &&
				    (IN6_IS_ADDR_LOOPBACK(b) || IN6_IS_ADDR_LINKLOCAL(b)))
					continue;
				return 0;
			}
		}
	return -1;
}

/* Asks the agent until it names an address or the deadline passes. */
static int
addr_from_agent(const struct opts *o, const struct plan_guest *g, int64_t until,
                struct sockaddr_storage *sa, socklen_t *len, char *why, size_t wlen)
{
	char *path = qga_socket_path(o->run_dir, g->vmid);
	int rc = -1;

	snprintf(why, wlen, "%s: no agent answer", path);
	for (int64_t now = mono_ms(); now < until && rc < 0; now = mono_ms()) {
		struct qga_call c;
		int64_t t = until - now < ADDR_TRY_MS ? until - now : ADDR_TRY_MS;

		qga_call_init(&c, path, "{\"execute\":\"guest-network-get-interfaces\"}", (int)t);
		qga_run(&c, 1, 1);
		if (c.result == QGA_OK && json_is_array(c.ret))
			rc = addr_from_reply(c.ret, sa, len);
		if (c.result != QGA_OK)
			snprintf(why, wlen, "%s", c.detail);
		else if (rc < 0)
			snprintf(why, wlen, "%s: the agent names no usable address yet", path);
		qga_call_cleanup(&c);
		if (rc < 0 && mono_ms() < until)
			sleep_ms(ADDR_RETRY_MS < until - mono_ms() ? ADDR_RETRY_MS : until - mono_ms());
	}
	if (rc == 0) {
		char text[INET6_ADDRSTRLEN];
		log_debug("guest %u: address %s from its agent", g->vmid,
		          addr_text(sa, text, sizeof text));
	}
	free(path);
	return rc;
}

static void
run_wait_port(const struct opts *o, const struct step *s, struct tally *t)
{
	const struct plan_guest *g = wait_guest(s, t);
	double secs = wait_secs(o, s);
	int64_t start = mono_ms(), until = start + (int64_t)(secs * 1000);
	struct sockaddr_storage sa = s->addr;
	socklen_t len = s->addrlen;
	const char *from = "plan";
	char why[300];
	struct ready r;

	if (s->nguests && !g)
		return;
	if (g) {
		from = "tcpcheck";
		if (addr_from_tcpcheck(o, g->vmid, &sa, &len) < 0) {
			from = g->type == GUEST_LXC ? "config" : "agent";
			len = 0;
			if (g->type == GUEST_LXC && addr_from_lxc_conf(g, &sa, &len) < 0) {
				t->failed++;
				result(s->text, "failed", "no-address");
				log_warn("%s: no address for container %u: give tcpcheck's ip= or a "
				         "static ip= in its config, or write the address in the plan",
				         s->text, g->vmid);
				return;
			}
		}
	}
	if (o->dry_run) {
		char addr[INET6_ADDRSTRLEN];
		result(s->text, "dry-run", "%g %s %s", secs,
		       len ? addr_text(&sa, addr, sizeof addr) : "-", from);
		return;
	}
	if (!len && addr_from_agent(o, g, until, &sa, &len, why, sizeof why) < 0) {
		t->timed_out++;
		result(s->text, "timeout", "%.2f", secs);
		log_warn("%s: no address for guest %u after %g s: %s", s->text, g->vmid, secs, why);
		return;
	}
	if (sa.ss_family == AF_INET)
		((struct sockaddr_in *)&sa)->sin_port = htons(s->port);
	else
		((struct sockaddr_in6 *)&sa)->sin6_port = htons(s->port);
	ready_port(&r, (struct sockaddr *)&sa, len);
	ready_wait(&r, 1, until - mono_ms(), READY_TRY_MS, READY_RETRY_MS);
	r.ms = mono_ms() - start; /* the whole wait, the address included */
	wait_report(s, &r, secs, t);
}

/* --- the plan --- */

/* The plan from stdin: a pipe, a terminal or a file. 0 or -1 with errno. */
static int
read_stdin(struct buf *b)
{
	char chunk[4096];
	size_t n;

	while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
		buf_append(b, chunk, n);
		if (b->len > CONF_MAX) {
			errno = EFBIG;
			return -1;
		}
	}
	return ferror(stdin) ? -1 : 0;
}

static void
run_step(const struct opts *o, const struct step *s, struct tally *t)
{
	switch (s->kind) {
	case STEP_START:
		run_start(o, s, t);
		break;
	case STEP_WAIT_AGENT:
		run_wait_agent(o, s, t);
		break;
	case STEP_WAIT_PORT:
		run_wait_port(o, s, t);
		break;
	case STEP_DELAY:
		if (!o->dry_run)
			sleep_ms((int64_t)(s->secs * 1000));
		result(s->text, o->dry_run ? "dry-run" : "done", NULL);
		break;
	}
}

/* This node's guests, in vmid order. */
static size_t
load_guests(const struct opts *o, struct plan_guest **out)
{
	struct vmlist l;
	char err[256];
	int from_file;
	size_t n = 0;

	if (vmlist_load(o->pve_dir, &l, &from_file, err, sizeof err) < 0)
		die(EXIT_UNAVAILABLE, "%s: the guest list: %s", o->pve_dir, err);
	*out = xcalloc(l.n ? l.n : 1, sizeof **out);
	for (size_t i = 0; i < l.n; i++) {
		struct local_guest g;
		if (strcmp(l.e[i].node, o->node) != 0)
			continue;
		if (local_guest_load(o->pve_dir, o->node, &l, l.e[i].vmid, &g) < 0) {
			log_warn("guest %u: its config: %m", l.e[i].vmid);
			continue;
		}
		(*out)[n++] = (struct plan_guest){ g.vmid, g.type, g.conf, 0 };
	}
	vmlist_free(&l);
	return n;
}

/* Warns once about what the plan names but will leave alone. */
static void
warn_skips(const struct opts *o, const struct plan *p)
{
	struct buf ob = { 0 };
	char w[16];

	for (size_t i = 0; i < p->n; i++) {
		const struct step *s = &p->steps[i];
		for (size_t k = 0; k < s->nguests; k++) {
			const struct guest_ref *r = &s->guests[k];
			if (!r->g && !o->quiet)
				log_warn("%s:%u: guest %s is not on this node: skipped", o->plan,
				         s->line, ref_word(r, w, sizeof w));
			else if (r->g && s->kind == STEP_START && onboot(r->g))
				buf_printf(&ob, " %u", r->g->vmid);
		}
	}
	if (ob.len)
		log_warn("left to Proxmox (onboot=1, started by pve-guests):%s", ob.data);
	buf_free(&ob);
}

int
main(int argc, char *argv[])
{
	struct opts o = { .plan = PLAN_DEFAULT,
		          .pve_dir = "/etc/pve",
		          .run_dir = RUN_DIR_DEFAULT,
		          .lxc_dir = LXC_DIR_DEFAULT,
		          .config_dir = CONFIG_DIR_DEFAULT,
		          .timeout = 300,
		          .max_wait = 120 };
	struct tally t = { 0 };
	struct plan p;
	struct plan_guest *g;
	struct buf text = { 0 };
	int from_stdin, bad_code;
	size_t ng;

	log_init("pve-start-plan");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);
	if (!o.node)
		o.node = local_node_name();
	from_stdin = strcmp(o.plan, "-") == 0;
	bad_code = from_stdin ? EXIT_DATAERR : EXIT_CONFIG;
	if ((from_stdin ? read_stdin(&text) : read_file(o.plan, CONF_MAX, &text)) < 0)
		die(bad_code, "%s: %s", from_stdin ? "stdin" : o.plan, read_file_strerror(errno));
	if (from_stdin)
		o.plan = "stdin";
	if (plan_parse(text.data, text.len, o.plan, &p))
		exit(bad_code);
	ng = load_guests(&o, &g);
	if (plan_resolve(&p, o.plan, g, ng))
		exit(bad_code);
	warn_skips(&o, &p);
	for (size_t i = 0; i < p.n; i++) {
		run_step(&o, &p.steps[i], &t);
		if (o.strict && (t.failed || t.timed_out) && i + 1 < p.n) {
			log_err("--strict: stopping after %s:%u", o.plan, p.steps[i].line);
			break;
		}
	}
	plan_free(&p);
	for (size_t i = 0; i < ng; i++)
		guest_conf_free(&g[i].conf);
	free(g);
	buf_free(&text);
	return t.failed ? 1 : t.timed_out ? EXIT_TIMEOUT : 0;
}
