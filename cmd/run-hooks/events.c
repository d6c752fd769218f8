/* run-hooks --events HOOKS: pve-watch-conf lines on stdin become runs of
 * HOOKS/up.d or HOOKS/down.d. Events of one guest run one after the other,
 * in the order read; different guests run in parallel, at most --jobs at a
 * time. Every event is in the journal before its hooks start and leaves it
 * only when they have finished, so a crash never loses one. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "childenv.h"
#include "log.h"
#include "run-hooks.h"
#include "vmlist.h"

/* Input lines longer than this are refused (a path is at most 4096). */
#define MAX_LINE 16384
/* Stop reading while this many events wait, to bound memory. */
#define MAX_QUEUED 100000

struct event {
	struct journal_entry je; /* seq and the line as read */
	char *fields;            /* a copy of the line, split in place */
	enum guest_event kind;
	uint32_t vmid;
	const char *type, *peer, *conf;
	struct event *next;                /* in its guest's queue */
	struct event *all_prev, *all_next; /* every outstanding event, in order */
};

struct guest {
	uint32_t vmid;
	struct event *head, *tail;
	int busy, ready;
	struct guest *next_ready;
};

struct job {
	struct guest *g;
	struct event *ev;
	const char *dir, *dirname;
	char **hooks; /* paths, in run order */
	size_t nhooks, next;
	char *label;      /* "VM 100 migrate-in" */
	char *hook_label; /* "VM 100 migrate-in: up.d/10-name" */
	struct child_env env;
	struct hookrun run;
	int running, failed;
};

static const struct opts *opt;
static struct journal journal;
static char *hook_dirs[2]; /* up.d, down.d */

static struct guest **guests; /* open addressing on vmid */
static size_t guests_cap, guests_n;
static struct guest *ready_head, *ready_tail;
static struct event *all_head, *all_tail;
static size_t outstanding, queued;

static struct job *jobs;
static size_t nbusy; /* jobs with an event */

static int reading = 1, stopping;
static unsigned long lineno;
static struct buf input;
static int skipping_long;
static int hook_failed, bad_input;

static struct guest *
guest_get(uint32_t vmid)
{
	size_t i;

	if ((guests_n + 1) * 10 > guests_cap * 7) {
		struct guest **old = guests;
		size_t oldcap = guests_cap;

		guests_cap = guests_cap ? guests_cap * 2 : 64;
		guests = xcalloc(guests_cap, sizeof *guests);
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k])
				continue;
			for (i = old[k]->vmid & (guests_cap - 1); guests[i];
			     i = (i + 1) & (guests_cap - 1))
				;
			guests[i] = old[k];
		}
		free(old);
	}
	for (i = vmid & (guests_cap - 1); guests[i]; i = (i + 1) & (guests_cap - 1))
		if (guests[i]->vmid == vmid)
			return guests[i];
	guests[i] = xcalloc(1, sizeof **guests);
	guests[i]->vmid = vmid;
	guests_n++;
	return guests[i];
}

static void
make_ready(struct guest *g)
{
	g->ready = 1;
	g->next_ready = NULL;
	if (ready_tail)
		ready_tail->next_ready = g;
	else
		ready_head = g;
	ready_tail = g;
}

static struct guest *
pop_ready(void)
{
	struct guest *g = ready_head;

	ready_head = g->next_ready;
	if (!ready_head)
		ready_tail = NULL;
	g->ready = 0;
	return g;
}

static int
parse_event(struct event *e, char *err, size_t errlen)
{
	char *f[4], *p;

	p = e->fields = xstrdup(e->je.line);
	for (int i = 0; i < 4; i++) {
		char *sp = strchr(p, ' ');
		if (!sp || sp == p) {
			snprintf(err, errlen, "want \"EVENT VMID TYPE PEER CONF\"");
			return -1;
		}
		*sp = '\0';
		f[i] = p;
		p = sp + 1;
	}
	if (!*p) {
		snprintf(err, errlen, "want \"EVENT VMID TYPE PEER CONF\"");
		return -1;
	}
	if (guest_event_parse(f[0], &e->kind) < 0) {
		snprintf(err, errlen, "unknown event \"%.64s\"", f[0]);
		return -1;
	}
	if (parse_vmid(f[1], &e->vmid) < 0) {
		snprintf(err, errlen, "bad VMID \"%.64s\"", f[1]);
		return -1;
	}
	if (strcmp(f[2], "qemu") != 0 && strcmp(f[2], "lxc") != 0) {
		snprintf(err, errlen, "unknown type \"%.64s\", want qemu or lxc", f[2]);
		return -1;
	}
	e->type = f[2];
	e->peer = strcmp(f[3], "-") == 0 ? "" : f[3];
	e->conf = p;
	return 0;
}

static void
event_free(struct event *e)
{
	free(e->je.line);
	free(e->fields);
	free(e);
}

/* A new event from stdin or the journal; NULL (and a message) when bad. */
static struct event *
event_new(char *line, const char *where)
{
	struct event *e = xcalloc(1, sizeof *e);
	char err[128];

	e->je.line = line;
	if (parse_event(e, err, sizeof err) == 0)
		return e;
	log_err("%s: %s; skipped", where, err);
	event_free(e);
	return NULL;
}

static void
enqueue(struct event *e)
{
	struct guest *g = guest_get(e->vmid);

	if (g->tail)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
	e->all_prev = all_tail;
	if (all_tail)
		all_tail->all_next = e;
	else
		all_head = e;
	all_tail = e;
	outstanding++;
	queued++;
	if (!g->busy && !g->ready)
		make_ready(g);
}

static void
forget(struct event *e)
{
	if (e->all_prev)
		e->all_prev->all_next = e->all_next;
	else
		all_head = e->all_next;
	if (e->all_next)
		e->all_next->all_prev = e->all_prev;
	else
		all_tail = e->all_prev;
	outstanding--;
	event_free(e);
}

static void
compact_journal(void)
{
	const struct journal_entry **v;
	size_t n = 0;

	if (outstanding == 0) {
		journal_clear(&journal);
		return;
	}
	if (!journal_needs_compacting(&journal))
		return;
	v = xcalloc(outstanding, sizeof *v);
	for (struct event *e = all_head; e; e = e->all_next)
		v[n++] = &e->je;
	journal_rewrite(&journal, v, n);
	free(v);
}

/* The hooks' environment: ours, with the event's PVEKIT_* variables. */
static void
event_env(const struct event *e, struct child_env *env)
{
	child_env_init(env);
	child_env_set(env, "PVEKIT_EVENT", "%s", guest_event_name(e->kind));
	child_env_set(env, "PVEKIT_VMID", "%u", e->vmid);
	child_env_set(env, "PVEKIT_TYPE", "%s", e->type);
	child_env_set(env, "PVEKIT_NODE", "%s", opt->node);
	child_env_set(env, "PVEKIT_PEER", "%s", e->peer);
	child_env_set(env, "PVEKIT_CONFIG", "%s", e->conf);
}

static void
free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void
job_clear(struct job *j)
{
	child_env_free(&j->env);
	free_strv(j->hooks, j->nhooks);
	free(j->label);
	free(j->hook_label);
	memset(j, 0, sizeof *j);
}

/* The runnable hooks of the event's directory, stat'ed now. */
static void
collect_hooks(struct job *j)
{
	struct names names;

	if (names_scan(j->dir, &names) < 0) {
		if (errno == ENOENT) {
			log_info("%s: no hooks: %s does not exist", j->label, j->dir);
			return;
		}
		log_err("%s: %s: %s", j->label, j->dir, strerror(errno));
		j->failed = 1;
		return;
	}
	j->hooks = xcalloc(names.n, sizeof *j->hooks);
	for (size_t k = 0; k < names.n; k++) {
		size_t i = opt->reverse ? names.n - 1 - k : k;
		char *path = xasprintf("%s/%s", j->dir, names.v[i]);

		switch (entry_classify(path)) {
		case ENTRY_RUN:
			j->hooks[j->nhooks++] = path;
			continue;
		case ENTRY_NOSTAT:
			log_err("%s: failed to stat component %s: %s", j->label, path,
			        strerror(errno));
			j->failed = 1;
			break;
		case ENTRY_NOTPLAIN:
			log_err("%s: component %s is not an executable plain file", j->label, path);
			j->failed = 1;
			break;
		case ENTRY_LISTED:
		case ENTRY_SKIP:
			break;
		}
		free(path);
	}
	names_free(&names);
}

static void finish_event(struct job *j);
static void stop(void);

/* Starts the job's next hook; finishes the event when none is left. When
 * stopping, an event with hooks left stays unfinished, in the journal. */
static void
advance(struct job *j)
{
	while (j->next < j->nhooks && !(j->failed && opt->exit_on_error) && !stopping) {
		const char *path = j->hooks[j->next++];
		char *argv[] = { (char *)path, (char *)j->ev->conf, NULL };
		struct hookspec h = {
			.path = path,
			.argv = argv,
			.envp = j->env.v,
			.mode = OUT_LOG,
			.stdin_null = 1,
			.vmid = j->ev->vmid,
		};
		int rc;

		free(j->hook_label);
		j->hook_label =
		    xasprintf("%s: %s/%s", j->label, j->dirname, strrchr(path, '/') + 1);
		h.label = j->hook_label;
		log_debug("%s: executing %s %s", j->hook_label, path, j->ev->conf);
		rc = hookrun_start(&j->run, &h, opt);
		if (rc < 0)
			log_err("%s: cannot start: %s", j->hook_label, strerror(errno));
		else {
			j->running = 1;
			return;
		}
		j->failed = 1;
	}
	if (stopping && j->next < j->nhooks)
		return;
	finish_event(j);
}

static void
start_event(struct job *j, struct guest *g)
{
	struct event *e = g->head;
	int up = e->kind == GUEST_CREATE || e->kind == GUEST_MIGRATE_IN;
	const char *dir = hook_dirs[up ? 0 : 1];

	g->head = e->next;
	if (!g->head)
		g->tail = NULL;
	g->busy = 1;
	queued--;
	nbusy++;
	j->g = g;
	j->ev = e;
	j->dir = dir;
	j->dirname = up ? "up.d" : "down.d";
	j->label = xasprintf("%s %u %s", strcmp(e->type, "lxc") == 0 ? "CT" : "VM", e->vmid,
	                     guest_event_name(e->kind));
	event_env(e, &j->env);
	collect_hooks(j);
	if (j->nhooks)
		log_info("%s%s%s: %zu hook%s in %s", j->label,
		         !*e->peer                      ? ""
		         : e->kind == GUEST_MIGRATE_IN  ? " from "
		         : e->kind == GUEST_MIGRATE_OUT ? " to "
		                                        : " peer ",
		         e->peer, j->nhooks, j->nhooks == 1 ? "" : "s", dir);
	else if (!j->failed)
		log_info("%s: no hooks in %s", j->label, dir);
	advance(j);
}

static void
finish_event(struct job *j)
{
	struct guest *g = j->g;

	j->running = 0;
	nbusy--;
	hook_failed |= j->failed;
	journal_done(&journal, j->ev->je.seq);
	forget(j->ev);
	g->busy = 0;
	if (g->head && !g->ready)
		make_ready(g);
	job_clear(j);
	compact_journal();
}

static void
hook_ended(struct job *j, const struct proc_status *st)
{
	char what[160];
	double secs = st->ms / 1000.0;
	int code = proc_exit_code(st);

	j->running = 0;
	proc_describe(st, what, sizeof what);
	/* Under systemd a stop sends SIGTERM to every process at once: the hook
	 * or its supervisor may see it before we do. Judge the result only
	 * once a pending stop signal has had its say. */
	take_stop_signals();
	if (stop_signal && !stopping)
		stop();
	if (stopping && (st->aborted || WIFSIGNALED(st->wstatus))) {
		/* Not finished: the event stays in the journal. */
		log_warn("%s: stopped, %s; the event runs again on the next start", j->hook_label,
		         what);
		return;
	}
	if (st->timed_out)
		log_err("%s: timed out after %g s%s, %s (%.3f s)", j->hook_label,
		        opt->timeout_ms / 1000.0, st->killed ? ", killed" : "", what, secs);
	else if (code)
		log_err("%s: %s (%.3f s)", j->hook_label, what, secs);
	else
		log_info("%s: ok (%.3f s)", j->hook_label, secs);
	if (code)
		j->failed = 1;
	advance(j);
}

static void
schedule(void)
{
	while (!stopping && ready_head && nbusy < opt->jobs) {
		size_t i = 0;

		while (jobs[i].ev)
			i++;
		start_event(&jobs[i], pop_ready());
	}
}

static int
any_running(void)
{
	for (size_t i = 0; i < opt->jobs; i++)
		if (jobs[i].running)
			return 1;
	return 0;
}

/* Takes the complete lines out of the input buffer (and, at EOF, a last line
 * without its newline): journaled in one synced write, then queued. */
static void
take_lines(int at_eof)
{
	struct journal_entry **batch = NULL;
	struct event **evs = NULL;
	size_t n = 0, off = 0;
	char where[32];

	while (off < input.len) {
		char *start = input.data + off, *nl = memchr(start, '\n', input.len - off);
		size_t len = nl ? (size_t)(nl - start) : input.len - off;
		struct event *e;

		if (skipping_long) {
			off += len + (nl != NULL);
			skipping_long = !nl;
			continue;
		}
		if (!nl && len > MAX_LINE) {
			log_err("stdin:%lu: line longer than %d bytes; skipped", ++lineno,
			        MAX_LINE);
			bad_input = 1;
			skipping_long = 1;
			off = input.len;
			break;
		}
		if (!nl && !at_eof)
			break;
		off += len + (nl != NULL);
		lineno++;
		if (len > MAX_LINE) {
			log_err("stdin:%lu: line longer than %d bytes; skipped", lineno, MAX_LINE);
			bad_input = 1;
			continue;
		}
		if (memchr(start, '\0', len)) {
			log_err("stdin:%lu: NUL byte in line; skipped", lineno);
			bad_input = 1;
			continue;
		}
		snprintf(where, sizeof where, "stdin:%lu", lineno);
		e = event_new(xstrndup(start, len), where);
		if (!e) {
			bad_input = 1;
			continue;
		}
		evs = xreallocarray(evs, n + 1, sizeof *evs);
		batch = xreallocarray(batch, n + 1, sizeof *batch);
		evs[n] = e;
		batch[n++] = &e->je;
	}
	buf_consume(&input, off);
	if (n)
		journal_add(&journal, batch, n);
	for (size_t i = 0; i < n; i++)
		enqueue(evs[i]);
	free(batch);
	free(evs);
}

/* One read; 0 at EOF or a read error (which ends the input too). */
static int
read_input(void)
{
	char chunk[65536];
	ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n < 0) {
		log_err("stdin: %s", strerror(errno));
		bad_input = 1;
	}
	if (n <= 0) {
		take_lines(1);
		reading = 0;
		return 0;
	}
	buf_append(&input, chunk, n);
	take_lines(0);
	return 1;
}

/* On a stop signal: journal what the watcher has already written, so the
 * pipe loses nothing, then stop reading. */
static void
drain_input(void)
{
	for (int i = 0; i < 4096 && reading; i++) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0 || !read_input())
			break;
	}
	if (reading && input.len)
		log_warn("stdin: dropping an incomplete line at stop");
	reading = 0;
}

static void
stop(void)
{
	stopping = 1;
	drain_input();
	for (size_t i = 0; i < opt->jobs; i++)
		if (jobs[i].running)
			hookrun_abort(&jobs[i].run);
	if (outstanding)
		log_info("stopping on signal %d; %zu unfinished event%s kept in %s",
		         (int)stop_signal, outstanding, outstanding == 1 ? "" : "s", journal.path);
}

/* Hooks named so that run-parts' rule skips them are easy to miss after a
 * migration from pve-migration-monitor (which ran every file): say so. */
static void
warn_skipped_names(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat st;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *path;
		if (de->d_name[0] == '.' || name_ok(de->d_name))
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0)
			log_warn("%s: not run: the name does not match the hook name rule", path);
		free(path);
	}
	closedir(d);
}

static int
check_hook_dirs(void)
{
	struct stat st;

	if (stat(opt->events, &st) < 0) {
		log_err("%s: %s", opt->events, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("%s: not a directory", opt->events);
		return -1;
	}
	hook_dirs[0] = xasprintf("%s/up.d", opt->events);
	hook_dirs[1] = xasprintf("%s/down.d", opt->events);
	for (int i = 0; i < 2; i++) {
		if (stat(hook_dirs[i], &st) < 0)
			log_warn("%s: %s; its events run no hooks until it exists", hook_dirs[i],
			         strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			log_warn("%s: not a directory; its events run no hooks", hook_dirs[i]);
		else
			warn_skipped_names(hook_dirs[i]);
	}
	return 0;
}

static void
replay(struct journal_entry *pending, size_t n)
{
	size_t good = 0;

	for (size_t i = 0; i < n; i++) {
		char *where =
		    xasprintf("%s: entry %llu", journal.path, (unsigned long long)pending[i].seq);
		struct event *e = event_new(pending[i].line, where);

		free(where);
		if (!e) {
			journal_done(&journal, pending[i].seq);
			continue;
		}
		e->je.seq = pending[i].seq;
		enqueue(e);
		good++;
	}
	free(pending);
	if (good)
		log_info("replaying %zu unfinished event%s from %s", good, good == 1 ? "" : "s",
		         journal.path);
}

static void
loop(void)
{
	size_t npfd = 1 + opt->jobs * HOOKRUN_NPOLL;
	struct pollfd *pfd = xcalloc(npfd, sizeof *pfd);

	for (;;) {
		schedule();
		if (stopping ? !any_running() : !reading && outstanding == 0)
			break;
		pfd[0] = (struct pollfd){ .fd = reading && queued < MAX_QUEUED ? STDIN_FILENO : -1,
			                  .events = POLLIN };
		for (size_t i = 0; i < opt->jobs; i++) {
			struct pollfd *p = &pfd[1 + i * HOOKRUN_NPOLL];
			if (jobs[i].running)
				hookrun_pollfds(&jobs[i].run, p);
			else
				for (int k = 0; k < HOOKRUN_NPOLL; k++)
					p[k] = (struct pollfd){ .fd = -1 };
		}
		if (ppoll(pfd, npfd, NULL, &poll_mask) < 0 && errno != EINTR)
			die(EXIT_OSERR, "poll: %s", strerror(errno));
		if (stop_signal && !stopping)
			stop();
		if (pfd[0].revents && reading)
			read_input();
		for (size_t i = 0; i < opt->jobs; i++) {
			struct proc_status st;
			if (jobs[i].running &&
			    hookrun_handle(&jobs[i].run, &pfd[1 + i * HOOKRUN_NPOLL], &st))
				hook_ended(&jobs[i], &st);
		}
	}
	free(pfd);
}

int
events_run(const struct opts *o)
{
	struct journal_entry *pending;
	size_t npending;
	int code;

	opt = o;
	if (check_hook_dirs() < 0)
		return EXIT_CONFIG;
	if (journal_open(&journal, o->state_dir, &pending, &npending, &code) < 0)
		return code;
	jobs = xcalloc(o->jobs, sizeof *jobs);
	replay(pending, npending);
	loop();

	for (struct event *e = all_head, *next; e; e = next) {
		next = e->all_next;
		event_free(e);
	}
	for (size_t i = 0; i < o->jobs; i++)
		job_clear(&jobs[i]);
	for (size_t i = 0; i < guests_cap; i++)
		free(guests[i]);
	free(guests);
	free(jobs);
	free(hook_dirs[0]);
	free(hook_dirs[1]);
	buf_free(&input);
	journal_close(&journal);
	if (bad_input)
		return EXIT_DATAERR;
	return hook_failed ? 1 : 0;
}
