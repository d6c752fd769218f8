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
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "seqfile.h"

static struct ev_guest *
guest_get(struct events *evs, uint32_t vmid)
{
	size_t i;

	if ((evs->guests_n + 1) * 10 > evs->guests_cap * 7) {
		struct ev_guest **old = evs->guests;
		size_t oldcap = evs->guests_cap;

		evs->guests_cap = evs->guests_cap ? evs->guests_cap * 2 : 64;
		evs->guests = xcalloc(evs->guests_cap, sizeof *evs->guests);
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k])
				continue;
			for (i = old[k]->vmid & (evs->guests_cap - 1); evs->guests[i];
			     i = (i + 1) & (evs->guests_cap - 1))
				;
			evs->guests[i] = old[k];
		}
		free(old);
	}
	for (i = vmid & (evs->guests_cap - 1); evs->guests[i]; i = (i + 1) & (evs->guests_cap - 1))
		if (evs->guests[i]->vmid == vmid)
			return evs->guests[i];
	evs->guests[i] = xcalloc(1, sizeof **evs->guests);
	evs->guests[i]->vmid = vmid;
	evs->guests_n++;
	return evs->guests[i];
}

void
make_ready(struct events *evs, struct ev_guest *g)
{
	g->ready = 1;
	g->next_ready = NULL;
	if (evs->ready_tail)
		evs->ready_tail->next_ready = g;
	else
		evs->ready_head = g;
	evs->ready_tail = g;
}

static struct ev_guest *
pop_ready(struct events *evs)
{
	struct ev_guest *g = evs->ready_head;

	evs->ready_head = g->next_ready;
	if (!evs->ready_head)
		evs->ready_tail = NULL;
	g->ready = 0;
	return g;
}

void
enqueue(struct events *evs, struct event *e)
{
	struct ev_guest *g = guest_get(evs, e->vmid);

	if (g->tail)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
	e->all_prev = evs->all_tail;
	if (evs->all_tail)
		evs->all_tail->all_next = e;
	else
		evs->all_head = e;
	evs->all_tail = e;
	evs->outstanding++;
	evs->queued++;
	if (!g->busy && !g->ready)
		make_ready(evs, g);
}

void
forget(struct events *evs, struct event *e)
{
	if (e->all_prev)
		e->all_prev->all_next = e->all_next;
	else
		evs->all_head = e->all_next;
	if (e->all_next)
		e->all_next->all_prev = e->all_prev;
	else
		evs->all_tail = e->all_prev;
	evs->outstanding--;
	event_free(e);
}

void
compact_journal(struct events *evs)
{
	const struct journal_entry **v;
	size_t n = 0;

	if (evs->outstanding == 0) {
		journal_clear(&evs->journal);
		return;
	}
	if (!journal_needs_compacting(&evs->journal))
		return;
	v = xcalloc(evs->outstanding, sizeof *v);
	for (struct event *e = evs->all_head; e; e = e->all_next)
		v[n++] = &e->je;
	journal_rewrite(&evs->journal, v, n);
	free(v);
}

static void
schedule(struct events *evs)
{
	while (!evs->stopping && evs->ready_head && evs->nbusy < evs->opt->jobs) {
		size_t i = 0;

		while (evs->jobs[i].ev)
			i++;
		start_event(evs, &evs->jobs[i], pop_ready(evs));
	}
}

static int
any_running(struct events *evs)
{
	for (size_t i = 0; i < evs->opt->jobs; i++)
		if (evs->jobs[i].running)
			return 1;
	return 0;
}

void
stop(struct events *evs)
{
	evs->stopping = 1;
	drain_input(evs);
	for (size_t i = 0; i < evs->opt->jobs; i++)
		if (evs->jobs[i].running)
			hookrun_abort(&evs->jobs[i].run);
	if (evs->outstanding)
		log_info("evs->stopping on signal %d; %zu unfinished event%s kept in %s",
		         (int)stop_signal, evs->outstanding, evs->outstanding == 1 ? "" : "s", evs->journal.path);
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
check_hook_dirs(struct events *evs)
{
	struct stat st;

	if (stat(evs->opt->events, &st) < 0) {
		log_err("%s: %s", evs->opt->events, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("%s: not a directory", evs->opt->events);
		return -1;
	}
	evs->hook_dirs[0] = xasprintf("%s/up.d", evs->opt->events);
	evs->hook_dirs[1] = xasprintf("%s/down.d", evs->opt->events);
	for (int i = 0; i < 2; i++) {
		if (stat(evs->hook_dirs[i], &st) < 0)
			log_warn("%s: %s; its events run no hooks until it exists", evs->hook_dirs[i],
			         strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			log_warn("%s: not a directory; its events run no hooks", evs->hook_dirs[i]);
		else
			warn_skipped_names(evs->hook_dirs[i]);
	}
	return 0;
}

static void
replay(struct events *evs, struct journal_entry *pending, size_t n)
{
	size_t good = 0;
	uint64_t top = 0;

	for (size_t i = 0; i < n; i++) {
		char *where =
		    xasprintf("%s: entry %llu", evs->journal.path, (unsigned long long)pending[i].seq);
		struct event *e = event_new(pending[i].line, where);

		free(where);
		if (!e) {
			journal_done(&evs->journal, pending[i].seq);
			continue;
		}
		e->je.seq = pending[i].seq;
		if (e->wseq > top)
			top = e->wseq;
		enqueue(evs, e);
		good++;
	}
	free(pending);
	/* Journaled before a crash that came before their confirmation. */
	confirm_upto(evs, top);
	if (good)
		log_info("replaying %zu unfinished event%s from %s", good, good == 1 ? "" : "s",
		         evs->journal.path);
}

static void
loop(struct events *evs)
{
	size_t npfd = 1 + evs->opt->jobs * HOOKRUN_NPOLL;
	struct pollfd *pfd = xcalloc(npfd, sizeof *pfd);

	for (;;) {
		schedule(evs);
		if (evs->stopping ? !any_running(evs) : !evs->reading && evs->outstanding == 0)
			break;
		pfd[0] = (struct pollfd){ .fd = evs->reading && evs->queued < MAX_QUEUED ? STDIN_FILENO : -1,
			                  .events = POLLIN };
		for (size_t i = 0; i < evs->opt->jobs; i++) {
			struct pollfd *p = &pfd[1 + i * HOOKRUN_NPOLL];
			if (evs->jobs[i].running)
				hookrun_pollfds(&evs->jobs[i].run, p);
			else
				for (int k = 0; k < HOOKRUN_NPOLL; k++)
					p[k] = (struct pollfd){ .fd = -1 };
		}
		if (ppoll(pfd, npfd, NULL, &poll_mask) < 0 && errno != EINTR)
			die(EXIT_OSERR, "poll: %s", strerror(errno));
		if (stop_signal && !evs->stopping)
			stop(evs);
		if (pfd[0].revents && evs->reading)
			read_input(evs);
		for (size_t i = 0; i < evs->opt->jobs; i++) {
			struct proc_status st;
			if (evs->jobs[i].running &&
			    hookrun_handle(&evs->jobs[i].run, &pfd[1 + i * HOOKRUN_NPOLL], &st))
				hook_ended(evs, &evs->jobs[i], &st);
		}
	}
	free(pfd);
}

int
events_run(const struct opts *o)
{
	struct events st = { .opt = o, .reading = 1 }, *evs = &st;
	struct journal_entry *pending;
	size_t npending;
	int code;

	if (check_hook_dirs(evs) < 0)
		return EXIT_CONFIG;
	if (journal_open(&evs->journal, o->state_dir, &pending, &npending, &code) < 0) {
		journal_close(&evs->journal);
		free(evs->hook_dirs[0]);
		free(evs->hook_dirs[1]);
		return code;
	}
	evs->jobs = xcalloc(o->jobs, sizeof *evs->jobs);
	evs->confirm_path = seqfile_path(o->state_dir);
	if (seqfile_read(evs->confirm_path, &evs->confirmed) < 0) {
		log_warn("%s: %s; writing it anew", evs->confirm_path,
		         errno == EINVAL ? "not a sequence number" : strerror(errno));
		evs->confirmed = 0;
	}
	replay(evs, pending, npending);
	loop(evs);

	for (struct event *e = evs->all_head, *next; e; e = next) {
		next = e->all_next;
		event_free(e);
	}
	for (size_t i = 0; i < o->jobs; i++)
		job_clear(&evs->jobs[i]);
	for (size_t i = 0; i < evs->guests_cap; i++)
		free(evs->guests[i]);
	free(evs->guests);
	free(evs->jobs);
	free(evs->hook_dirs[0]);
	free(evs->hook_dirs[1]);
	buf_free(&evs->input);
	free(evs->confirm_path);
	journal_close(&evs->journal);
	if (evs->bad_input)
		return EXIT_DATAERR;
	return evs->hook_failed ? 1 : 0;
}
