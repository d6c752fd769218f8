/* run-hooks --events, its parts (one state, passed as a pointer):
 *
 *   events.c    the queues (one per guest, in order), the poll loop, the
 *               journal around them, stop and replay
 *   eventin.c   reading pve-watch-conf's lines from stdin
 *   eventjob.c  running one event's hooks (up.d or down.d) in order */
#ifndef RUN_HOOKS_EVENTS_H
#define RUN_HOOKS_EVENTS_H

#include <stdint.h>

#include "childenv.h"
#include "run-hooks.h"
#include "vmlist.h"

/* Input lines longer than this are refused (a path is at most 4096). */
#define MAX_LINE 16384
/* Stop reading while this many events wait, to bound memory. */
#define MAX_QUEUED 100000

struct event {
	struct journal_entry je; /* seq and the line as read */
	uint64_t wseq;           /* pve-watch-conf --seq's number; 0: none */
	char *fields;            /* a copy of the line, split in place */
	enum guest_event kind;
	uint32_t vmid;
	const char *type, *peer, *conf;
	struct event *next;                /* in its guest's queue */
	struct event *all_prev, *all_next; /* every outstanding event, in order */
};

struct ev_guest {
	uint32_t vmid;
	struct event *head, *tail;
	int busy, ready;
	struct ev_guest *next_ready;
};

struct job {
	struct ev_guest *g;
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

struct events {
	const struct opts *opt;
	struct journal journal;
	char *hook_dirs[2]; /* up.d, down.d */
	struct ev_guest **guests; /* open addressing on vmid */
	size_t guests_cap, guests_n;
	struct ev_guest *ready_head, *ready_tail;
	struct event *all_head, *all_tail; /* every outstanding event, in order */
	size_t outstanding, queued;
	struct job *jobs;
	size_t nbusy; /* jobs with an event */
	int reading, stopping;
	unsigned long lineno;
	struct buf input;
	int skipping_long;
	int hook_failed, bad_input;
	/* STATE/run-hooks/confirmed (lib/seqfile): the watcher's number of
	 * the last event journaled, and its value. */
	char *confirm_path;
	uint64_t confirmed;
	int confirm_failing;
};

/* events.c */
void enqueue(struct events *evs, struct event *e);
void forget(struct events *evs, struct event *e);
void make_ready(struct events *evs, struct ev_guest *g);
void compact_journal(struct events *evs);
void stop(struct events *evs);

/* eventin.c */
/* A new event from stdin or the journal; NULL (and a message) when bad. */
struct event *event_new(char *line, const char *where);
void event_free(struct event *e);
/* One read; 0 at EOF or a read error (which ends the input too). */
int read_input(struct events *evs);
void drain_input(struct events *evs);
/* Tells pve-watch-conf --seq that every event up to seq is journaled. */
void confirm_upto(struct events *evs, uint64_t seq);

/* eventjob.c */
void start_event(struct events *evs, struct job *j, struct ev_guest *g);
void hook_ended(struct events *evs, struct job *j, const struct proc_status *st);
void job_clear(struct job *j);

#endif
