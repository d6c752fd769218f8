/* pve-watch-conf: prints a line when a guest is created on, destroyed on,
 * migrated to or migrated away from this Proxmox VE node.
 *
 * The owner map (vmid -> node, from pmxcfs's .vmlist) is the truth; each
 * change is a diff against the map the previous events led to, which is
 * saved under the state dir with the events not yet confirmed (outbox.c),
 * so nothing is lost across restarts, bursts, queue overflows or a reader
 * that dies. inotify only says "look now". */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "opt.h"
#include "seqfile.h"
#include "util.h"
#include "vmlist.h"
#include "watch.h"

#define PRUNE_EVERY_MS (3600 * 1000)
#define STOP_DRAIN_MS 1000

/* How reconcile() reads the guest list: RECONCILE_FORCE reads it even when
 * .version did not change; RECONCILE_FULL also refreshes the copy of every
 * guest config, not only the changed ones, and prunes the store. */
enum reconcile_flags { RECONCILE_FORCE = 1, RECONCILE_FULL = 2 };

static const char usage_text[] =
    "usage: pve-watch-conf [--pve-dir DIR] [--node NAME] [--state-dir DIR]\n"
    "                      [--interval SECS] [--hold SECS] [--seq] [--json] [--once]\n"
    "                      [--initial] [-v]\n";

static const char help_text[] =
    "Prints create, destroy, migrate-in and migrate-out lines for this node's guests.\n"
    "\n"
    "  --pve-dir DIR     pmxcfs root (default /etc/pve)\n"
    "  --node NAME       this node (default: uname -n up to the first dot)\n"
    "  --state-dir DIR   saved owner map and config copies in DIR/watch\n"
    "                    (default /var/lib/pvekit)\n"
    "  --interval SECS   poll interval, fractions allowed (default 1)\n"
    "  --hold SECS       hold a mass disappearance this long (default 60; 0: never)\n"
    "  --seq             number the events; keep each until run-hooks confirms it\n"
    "                    in STATE/run-hooks/confirmed\n"
    "  --json            one JSON object per event\n"
    "  --once            reconcile, print, save and exit\n"
    "  --initial         on the first run, a create for every guest of this node\n"
    "  -v, --verbose     debug messages on stderr\n"
    "  -h, --help        this help\n"
    "  -V, --version     the version\n";

enum {
	OPT_PVE_DIR = 256,
	OPT_NODE,
	OPT_STATE_DIR,
	OPT_INTERVAL,
	OPT_HOLD,
	OPT_SEQ,
	OPT_JSON,
	OPT_ONCE,
	OPT_INITIAL
};

static const struct option long_options[] = {
	{ "pve-dir", required_argument, NULL, OPT_PVE_DIR },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "seq", no_argument, NULL, OPT_SEQ },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "once", no_argument, NULL, OPT_ONCE },
	{ "initial", no_argument, NULL, OPT_INITIAL },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static volatile sig_atomic_t got_term, got_hup;

static void
on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static void
on_hup(int sig)
{
	(void)sig;
	got_hup = 1;
}

/* An absolute path without trailing slashes: CONF paths on the event lines
 * must work from any working directory, and a newline would split a line. */
static char *
clean_dir(const char *opt, const char *dir)
{
	char *p;
	size_t n;

	if (!*dir || strchr(dir, '\n'))
		usage_error("%s: want a directory path without newlines", opt);
	if (dir[0] == '/') {
		p = xstrdup(dir);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof cwd))
			die(EXIT_OSERR, "getcwd: %s", strerror(errno));
		p = xasprintf("%s/%s", cwd, dir);
	}
	n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	return p;
}

static void
parse_options(int argc, char **argv, struct opts *o)
{
	const char *pve_dir = "/etc/pve", *state_dir = "/var/lib/pvekit";
	double secs = 1, hold = 60;
	int c;

	memset(o, 0, sizeof *o);
	while ((c = getopt_long(argc, argv, "vhV", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_PVE_DIR:
			pve_dir = optarg;
			break;
		case OPT_NODE:
			o->node = optarg;
			break;
		case OPT_STATE_DIR:
			state_dir = optarg;
			break;
		case OPT_INTERVAL:
			o->interval = optarg;
			break;
		case OPT_HOLD:
			o->hold = optarg;
			break;
		case OPT_SEQ:
			o->seq = 1;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_ONCE:
			o->once = 1;
			break;
		case OPT_INITIAL:
			o->initial = 1;
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

	if (o->interval)
		secs = opt_seconds("--interval", o->interval, 0.01, 86400);
	o->interval_ms = (int64_t)(secs * 1000 + 0.5);
	if (o->hold)
		hold = opt_seconds("--hold", o->hold, 0, 86400);
	o->hold_ms = (int64_t)(hold * 1000 + 0.5);
	if (o->node)
		opt_node(o->node);
	else if (!node_name_valid(o->node = local_node_name()))
		die(EXIT_CONFIG, "this host's name \"%s\" is not a node name: give --node", o->node);
	o->pve_dir = clean_dir("--pve-dir", pve_dir);
	o->state_dir = clean_dir("--state-dir", state_dir);
}

static int
owned_here(const struct watcher *w, const struct vm_owner *e)
{
	return strcmp(e->node, w->o.node) == 0;
}

static void
update_status(struct watcher *w)
{
	char s[sizeof w->status];
	size_t here = 0;

	for (size_t i = 0; i < w->cur.n; i++)
		here += owned_here(w, &w->cur.e[i]);
	if (w->broken)
		snprintf(s, sizeof s,
		         "guests: %zu here, %zu in the cluster (last good map; %.160s)", here,
		         w->cur.n, w->src.err);
	else
		snprintf(s, sizeof s, "guests: %zu here, %zu in the cluster (from %s)", here,
		         w->cur.n, vmlist_source_name(&w->src));
	if (strcmp(s, w->status) != 0) {
		memcpy(w->status, s, sizeof s);
		sd_notifyf("STATUS=%s", s);
	}
}

static void
note_broken(struct watcher *w)
{
	if (w->broken) {
		log_debug("%s", w->src.err);
		return;
	}
	w->broken = 1;
	log_warn("%s; no events until it is readable again", w->src.err);
	update_status(w);
}

static void
note_good(struct watcher *w)
{
	if (w->broken) {
		w->broken = 0;
		log_info("owner map readable again (from %s)", vmlist_source_name(&w->src));
	} else if (w->have_read && w->src.from != w->last_mode) {
		log_info("owner map now from %s", vmlist_source_name(&w->src));
	}
	w->have_read = 1;
	w->last_mode = w->src.from;
}

/* In a scan there are no per-guest versions: this node's guests get their
 * config file's stat signature, so an edit refreshes the kept copy. */
static void
stamp_scan_versions(struct watcher *w, struct vmlist *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct vm_owner *e = &m->e[i];
		char *p;
		struct stat st;

		if (!owned_here(w, e))
			continue;
		p = guest_conf_path(w->o.pve_dir, w->o.node, e->type, e->vmid);
		if (stat(p, &st) == 0)
			e->version = (uint32_t)(st.st_mtim.tv_sec * 2654435761u ^
			                        st.st_mtim.tv_nsec ^ st.st_size ^ st.st_ino) |
			             1;
		free(p);
	}
}

static void
refresh_copy(struct watcher *w, enum guest_type t, uint32_t vmid)
{
	char *live = guest_conf_path(w->o.pve_dir, w->o.node, t, vmid);
	int live_failed, r = store_refresh_copy(&w->st, live, t, vmid, &live_failed);

	if (r < 0 && live_failed) {
		if (errno == ENOENT) /* moved on since the map was read */
			log_debug("%s: %s", live, strerror(errno));
		else
			log_warn("%s: %s; keeping the previous copy, if any", live,
			         errno == EINVAL ? "not a regular file" : strerror(errno));
	} else if (r < 0) {
		/* The state disk failed (full, read-only): once, not per guest. */
		char *copy = store_copy_path(&w->st, t, vmid);

		if (!w->copy_failed++)
			log_warn("%s: %s; config copies are not kept until it works again", copy,
			         strerror(errno));
		free(copy);
	} else if (r > 0 && w->copy_failed) { /* a write, not an unchanged copy */
		log_info("config copies are kept again (%d failed)", w->copy_failed);
		w->copy_failed = 0;
	}
	free(live);
}

static void
refresh_copies(struct watcher *w, const struct vmlist *old, int all)
{
	for (size_t i = 0; i < w->cur.n; i++) {
		const struct vm_owner *e = &w->cur.e[i], *p;

		if (!owned_here(w, e))
			continue;
		p = vmlist_find(old, e->vmid);
		if (all || !p || p->type != e->type || !owned_here(w, p) ||
		    p->version != e->version)
			refresh_copy(w, e->type, e->vmid);
	}
}

static int
owners_differ(const struct vmlist *a, const struct vmlist *b)
{
	if (a->n != b->n)
		return 1;
	for (size_t i = 0; i < a->n; i++)
		if (a->e[i].vmid != b->e[i].vmid || a->e[i].type != b->e[i].type ||
		    strcmp(a->e[i].node, b->e[i].node) != 0)
			return 1;
	return 0;
}

/* The events from the last map to new go to the outbox, which is saved
 * before they are written: from then on a crash cannot lose them. */
static void
apply(struct watcher *w, struct vmlist *new, int full)
{
	struct vmlist old;
	struct event *ev = NULL;
	size_t n = 0;

	if (w->first_run) {
		if (w->o.initial)
			n = events_initial(new, w->o.node, &ev);
		w->first_run = 0;
		w->dirty = 1;
	} else {
		vanish_hold(w, new);
		n = events_diff(&w->cur, new, w->o.node, &ev);
	}
	old = w->cur;
	w->cur = *new;
	if (owners_differ(&old, &w->cur))
		w->dirty = 1;
	if (n) {
		outbox_queue(w, ev, n);
		outbox_save(w);
	}
	outbox_emit(w);
	refresh_copies(w, &old, full);
	if (full)
		store_prune(&w->st, &w->cur, w->o.node);
	vmlist_free(&old);
	free(ev);
	update_status(w);
}

static void
clear_hints(struct watcher *w)
{
	free(w->news.hints);
	w->news.hints = NULL;
	w->news.nhints = w->news.caphints = 0;
	w->recheck_at = 0;
	w->recheck_step = 0;
}

/* inotify saw VMID.conf come or go in this node's dirs; the map must agree.
 * pmxcfs changes both at once, but a slower writer (the simulator, or a
 * rename racing our read) may lag a little: look again after short delays,
 * then leave it to the poll. Met hints are dropped; this node's guests among
 * them get their copy refreshed (a local config write). */
static int
cmp_hint(const void *a, const void *b)
{
	const struct hint *x = a, *y = b;

	if (x->vmid != y->vmid)
		return x->vmid < y->vmid ? -1 : 1;
	return (int)x->type - (int)y->type;
}

static void
check_hints(struct watcher *w, int from_timer)
{
	static const int delays_ms[] = { 2, 5, 10, 25, 50 };
	struct watch_news *nw = &w->news;
	size_t keep = 0;

	qsort(nw->hints, nw->nhints, sizeof *nw->hints, cmp_hint);
	for (size_t i = 0; i < nw->nhints; i++) {
		struct hint h = nw->hints[i];
		char *p;
		const struct vm_owner *o = vmlist_find(&w->cur, h.vmid);
		int mapped = o && o->type == h.type && owned_here(w, o), exists;
		struct stat st;

		if (i > 0 && cmp_hint(&nw->hints[i - 1], &h) == 0)
			continue;
		p = guest_conf_path(w->o.pve_dir, w->o.node, h.type, h.vmid);
		exists = stat(p, &st) == 0 && S_ISREG(st.st_mode);
		free(p);
		if (exists != mapped)
			nw->hints[keep++] = h;
		else if (mapped && !w->broken)
			refresh_copy(w, h.type, h.vmid);
	}
	nw->nhints = keep;
	if (!keep) {
		clear_hints(w);
		return;
	}
	if (w->recheck_at && !from_timer)
		return; /* a look is already scheduled */
	if (w->recheck_step < (int)ARRAY_LEN(delays_ms)) {
		w->recheck_at = mono_ms() + delays_ms[w->recheck_step++];
		return;
	}
	log_debug("the map does not show %zu local change(s) yet; the poll will", keep);
	clear_hints(w);
}

static void
reconcile(struct watcher *w, int flags, int from_timer)
{
	struct vmlist new;
	int r = vmlist_source_read(&w->src, flags != 0, &new);

	if (r < 0) {
		note_broken(w);
	} else {
		note_good(w);
		if (r > 0) {
			if (w->src.from == VMLIST_FROM_SCAN)
				stamp_scan_versions(w, &new);
			apply(w, &new, flags & RECONCILE_FULL);
		}
	}
	/* While a look is scheduled, an unchanged map cannot have caught up:
	 * checking thousands of hints on every inotify wake-up of a burst would
	 * cost quadratic time for nothing. */
	if (w->news.nhints && !w->reader_gone && !w->out_errno &&
	    (r > 0 || from_timer || !w->recheck_at))
		check_hints(w, from_timer);
}

static void
maybe_save(struct watcher *w, int64_t now)
{
	if (w->dirty && (!w->save_at || now >= w->save_at))
		outbox_save(w);
}

/* Waits at most drain_ms (-1: no limit) for the reader to take what is in
 * the pipe, and with --seq at most STOP_DRAIN_MS more for its confirmation;
 * saves the state; says what is left for the next start. */
static int
finish(struct watcher *w, int64_t drain_ms)
{
	outbox_emit(w);
	if (w->nbox && !w->out_errno)
		outbox_wait(w, drain_ms, w->o.seq ? STOP_DRAIN_MS : 0);
	if (w->dirty)
		outbox_save(w);
	if (w->printed && !w->o.seq)
		log_info("%zu byte(s) of events not taken by the reader; they are printed again "
		         "on the next start",
		         output_unread(&w->out));
	else if (w->printed)
		log_info("%zu event(s) not confirmed in %s; they are printed again on the next "
		         "start",
		         w->printed, w->confirm_path);
	if (w->nbox > w->printed)
		log_info("%zu event(s) not printed; they are on the next start",
		         w->nbox - w->printed);
	sd_notify_msg("STOPPING=1");
	if (w->out_errno) {
		log_err("stdout: %s", strerror(w->out_errno));
		return EXIT_OSERR;
	}
	return 0;
}

static int
run(struct watcher *w)
{
	for (;;) {
		struct pollfd pfd[2] = { { STDOUT_FILENO, 0, 0 }, { w->ws.fd, POLLIN, 0 } };
		int64_t now = mono_ms(), wake = w->next_tick;
		int flags = 0, from_timer = 0;
		struct timespec ts;

		if (w->recheck_at && w->recheck_at < wake)
			wake = w->recheck_at;
		if (w->hold_wake && w->hold_wake < wake)
			wake = w->hold_wake;
		if (w->pace_wake && w->pace_wake < wake)
			wake = w->pace_wake;
		if (w->dirty && w->save_at && w->save_at < wake)
			wake = w->save_at;
		if (w->next_prune < wake)
			wake = w->next_prune;
		wake = wake > now ? wake - now : 0;
		ts.tv_sec = wake / 1000;
		ts.tv_nsec = (wake % 1000) * 1000000;
		if (ppoll(pfd, w->ws.fd >= 0 ? 2 : 1, &ts, &w->run_mask) < 0 && errno != EINTR)
			die(EXIT_OSERR, "poll: %s", strerror(errno));
		if (got_term)
			return finish(w, STOP_DRAIN_MS);
		if (pfd[0].revents & (POLLERR | POLLHUP)) {
			log_info("stdout: the reader went away; exiting");
			return finish(w, 0);
		}
		if (got_hup) {
			got_hup = 0;
			log_info("SIGHUP: reading everything again");
			flags |= RECONCILE_FORCE | RECONCILE_FULL;
		}
		if (pfd[1].revents & POLLIN)
			watches_read(&w->ws, w->o.node, &w->news);
		if (w->news.overflow) {
			log_warn("inotify: event queue overflowed; reading everything again");
			w->news.overflow = 0;
			clear_hints(w);
			flags |= RECONCILE_FORCE | RECONCILE_FULL;
		}
		now = mono_ms();
		if (w->news.rearm || now >= w->next_tick) {
			w->news.rearm = 0;
			if (watches_sync(&w->ws) > 0)
				flags |= RECONCILE_FORCE; /* what happened before the watch */
		}
		if (now >= w->next_tick) {
			w->next_tick = now + w->o.interval_ms;
			w->news.look = 1;
		}
		if (w->recheck_at && now >= w->recheck_at) {
			w->recheck_at = 0;
			from_timer = w->news.look = 1;
		}
		if (w->hold_wake && now >= w->hold_wake) {
			w->hold_wake = 0;
			flags |= RECONCILE_FORCE; /* a hold ran out: the map decides now */
		}
		if (w->news.look || flags) {
			w->news.look = 0;
			reconcile(w, flags, from_timer);
		}
		if (w->reader_gone) {
			log_info("stdout: the reader went away; exiting");
			return finish(w, 0);
		}
		if (w->out_errno || got_term)
			return finish(w, STOP_DRAIN_MS);
		outbox_emit(w);
		outbox_confirm(w);
		maybe_save(w, mono_ms());
		if (now >= w->next_prune) {
			store_prune(&w->st, &w->cur, w->o.node);
			w->next_prune = now + PRUNE_EVERY_MS;
		}
	}
}

static void
setup_signals(struct watcher *w)
{
	sigemptyset(&w->block_mask);
	sigaddset(&w->block_mask, SIGTERM);
	sigaddset(&w->block_mask, SIGINT);
	sigaddset(&w->block_mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &w->block_mask, &w->run_mask);
	sigdelset(&w->run_mask, SIGTERM);
	sigdelset(&w->run_mask, SIGINT);
	sigdelset(&w->run_mask, SIGHUP);
	on_signal(SIGTERM, on_term);
	on_signal(SIGINT, on_term);
	on_signal(SIGHUP, on_hup);
	signal(SIGPIPE, SIG_IGN); /* a gone reader is EPIPE, handled */
}

static void
setup(struct watcher *w)
{
	char err[512];
	struct saved sv;
	int found;

	if (fcntl(STDOUT_FILENO, F_GETFL) < 0)
		die(EXIT_OSERR, "stdout: %s", strerror(errno));
	if (store_open(&w->st, w->o.state_dir, err, sizeof err) < 0)
		die(EXIT_OSERR, "%s", err);
	switch (store_load(&w->st, &sv, &found, err, sizeof err)) {
	case -1:
		die(EXIT_OSERR, "%s", err);
	case -2:
		die(EXIT_DATAERR, "%s; remove it to start afresh", err);
	}
	w->first_run = !found;
	w->cur = sv.map;
	w->seq = sv.seq;
	w->box = sv.box;
	w->nbox = sv.nbox;
	w->held = sv.held;
	w->nheld = sv.nheld;
	if (w->nbox)
		log_info("%zu event(s) printed before and not confirmed: printing them again",
		         w->nbox);
	/* Big buffers (a 10,000-guest .vmlist) go back to the system when freed. */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	setup_signals(w);
	output_init(&w->out, STDOUT_FILENO, w->o.json, w->o.seq, w->o.node, &got_term);
	if (w->o.seq) {
		w->confirm_path = seqfile_path(w->o.state_dir);
		outbox_confirm(w);
	}
	vmlist_source_init(&w->src, w->o.pve_dir, w->o.node);
	watches_open(&w->ws, w->o.pve_dir, w->o.node);
	watches_sync(&w->ws);
}

int
main(int argc, char **argv)
{
	struct watcher w;
	int rc;

	log_init("pve-watch-conf");
	opt_usage(usage_text, help_text);
	memset(&w, 0, sizeof w);
	parse_options(argc, argv, &w.o);
	setup(&w);

	reconcile(&w, RECONCILE_FORCE | RECONCILE_FULL, 0);
	outbox_emit(&w); /* the events of an earlier run, also without a map now */
	if (!w.broken)
		log_info("%s: node %s: %s", w.o.pve_dir, w.o.node, w.status);
	if (w.o.once) {
		rc = finish(&w, -1);
		if (w.broken && !rc)
			rc = EXIT_TEMPFAIL;
	} else {
		sd_notify_msg("READY=1");
		w.next_tick = mono_ms() + w.o.interval_ms;
		w.next_prune = mono_ms() + PRUNE_EVERY_MS;
		rc = w.reader_gone || w.out_errno ? finish(&w, 0) : run(&w);
	}
	watches_close(&w.ws);
	vmlist_source_free(&w.src);
	output_free(&w.out);
	store_close(&w.st);
	vmlist_free(&w.cur);
	outbox_free(&w);
	free(w.held);
	free(w.news.hints);
	free(w.o.pve_dir);
	free(w.o.state_dir);
	return rc;
}
