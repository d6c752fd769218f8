/* pve-watch-conf: the parts of the watcher, one file each.
 *
 *   main.c     options, the poll loop, reconciling, signals
 *   watches.c  inotify on the node's guest dirs, re-armed as dirs come and go
 *   store.c    the saved owner map and the kept copies of guest configs
 *   output.c   the map diff and the event lines */
#ifndef PVE_WATCH_CONF_H
#define PVE_WATCH_CONF_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"
#include "vmlist.h"

/* watches.c */

enum { W_PVE, W_NODES, W_NODE, W_QEMU, W_LXC, W_COUNT };

struct watch {
	char *path;
	uint32_t mask;
	int wd;
	dev_t dev;
	ino_t ino;
	int warned;
};

struct hint {
	uint32_t vmid;
	enum guest_type type;
};

struct watch_news {
	int look;           /* something relevant changed: read the map now */
	int rearm;          /* a watched dir came, went or was replaced */
	int overflow;       /* the kernel dropped events */
	struct hint *hints; /* VMID.conf names touched in this node's guest dirs */
	size_t nhints, caphints;
};

struct watches {
	int fd; /* -1: no inotify, polling only */
	struct watch w[W_COUNT];
};

void watches_open(struct watches *ws, const char *pve_dir, const char *node);
/* Arms what exists, re-arms what was replaced; the number newly armed. */
int watches_sync(struct watches *ws);
void watches_read(struct watches *ws, const char *node, struct watch_news *news);
void watches_close(struct watches *ws);

/* store.c */

struct event {
	enum guest_event kind;
	uint32_t vmid;
	enum guest_type type;
	char peer[NODE_NAME_MAX]; /* "" when none */
};

/* An event numbered and due to be printed, or printed and not yet confirmed
 * (by the reader taking it from the pipe, or, with --seq, by run-hooks'
 * confirmation file): kept in the saved state until then. */
struct pending {
	uint64_t seq;
	int64_t time_ms; /* when it was seen, ms since the epoch (--json's time) */
	struct event ev;
	char *conf; /* NULL: none */
};

/* A guest of a mass disappearance, held since (real time, ms). */
struct held {
	uint32_t vmid;
	int64_t since_ms;
};

/* Everything the state file holds. */
struct saved {
	struct vmlist map; /* the owner map the numbered events lead to */
	uint64_t seq;      /* the last number given to an event */
	struct pending *box;
	size_t nbox;
	struct held *held;
	size_t nheld;
};

struct store {
	char *dir, *owners;
	int lock_fd;
};

int store_open(struct store *s, const char *state_dir, char *err, size_t errlen);
/* 0 and *found (0: first run); -1 with err: unreadable; -2: corrupt. */
int store_load(struct store *s, struct saved *out, int *found, char *err, size_t errlen);
/* Atomically and synced. 0, or -1 with errno. */
int store_save(struct store *s, const struct saved *st);
void saved_free(struct saved *sv);
void pending_free(struct pending *p);
char *store_copy_path(const struct store *s, enum guest_type t, uint32_t vmid);
/* Copies the live config over the kept copy when it differs: 1 written,
 * 0 same, -1 with errno (the live file is unreadable: *live_failed set). */
int store_refresh_copy(struct store *s, const char *live, enum guest_type t, uint32_t vmid,
                       int *live_failed);
/* Moves the guest's copy aside for its destroy event: the path, or NULL. */
char *store_retire_copy(struct store *s, enum guest_type t, uint32_t vmid);
void store_drop_copy(struct store *s, enum guest_type t, uint32_t vmid);
/* Removes copies of guests this node does not own and destroyed copies
 * older than the retention time. */
void store_prune(struct store *s, const struct vmlist *cur, const char *node);
void store_close(struct store *s);

#define DESTROYED_KEEP_SECS (7 * 24 * 3600)

/* output.c */

struct output {
	int fd, json, fifo;
	int seq; /* --seq: lines start with the event's number, objects have "seq" */
	const char *node;
	volatile sig_atomic_t *stop; /* set by a signal: give up a blocked write */
	struct buf line;
};

/* Events that turn map old into map new, seen from node, in vmid order. */
size_t events_diff(const struct vmlist *old, const struct vmlist *new, const char *node,
                   struct event **out);
/* A create for every guest node owns in m (--initial). */
size_t events_initial(const struct vmlist *m, const char *node, struct event **out);

void output_init(struct output *o, int fd, int json, int seq, const char *node,
                 volatile sig_atomic_t *stop);
/* 0 written; -1 the reader went away (or another write error, errno);
 * -2 interrupted by a stop signal before anything of the line was written. */
int output_event(struct output *o, const struct pending *p);
/* Bytes written but not yet read from a pipe (0 when fd is no pipe). */
size_t output_unread(const struct output *o);
void output_free(struct output *o);

/* main.c: the watcher */

struct opts {
	char *pve_dir, *state_dir;
	const char *node, *interval, *hold;
	int64_t interval_ms;
	int64_t hold_ms; /* --hold: how long a mass disappearance is held */
	int json, once, initial, seq;
};

struct watcher {
	struct opts o;
	struct vmlist_source src;
	struct store st;
	struct watches ws;
	struct output out;
	struct watch_news news;
	struct vmlist cur; /* the map the numbered events lead to */
	int first_run;     /* no saved map yet: the first one is recorded silently */
	int have_read;     /* a map was read at least once */
	int broken;        /* no usable map right now */
	int dirty;         /* the state is not saved yet */
	int save_failed, copy_failed;
	int reader_gone, out_errno;
	enum vmlist_from last_mode;
	int recheck_step;
	int64_t next_tick, recheck_at, save_at, next_prune;
	sigset_t run_mask, block_mask;
	char status[256];

	/* outbox.c: numbered events until confirmed */
	uint64_t seq;         /* the last number given to an event */
	struct pending *box;  /* not confirmed yet, in order */
	size_t nbox, printed; /* box[0..printed) are written to stdout */
	char *confirm_path;   /* --seq: run-hooks' confirmation file */
	uint64_t confirm_sig; /* its stat signature when last read */
	int confirm_warned, unconfirmed_warned;
	int64_t pace_wake; /* monotonic ms: a pipe's reader is slow, try again; 0 */

	/* vanish.c: guests missing from the map, held back */
	struct held *held; /* a mass disappearance, in vmid order */
	size_t nheld;
	int suspicious;    /* the current mass disappearance was reported */
	int64_t hold_wake; /* monotonic ms: read again when a hold runs out; 0 */
};

/* outbox.c */

/* Numbers the events, gives each its CONF (a destroy retires its copy) and
 * adds them to the outbox. */
void outbox_queue(struct watcher *w, const struct event *ev, size_t n);
/* Writes the outbox entries not yet written; stops when the reader went
 * away or a stop signal interrupted a blocked write. */
void outbox_emit(struct watcher *w);
/* Forgets the entries the reader confirmed (--seq: the confirmation file;
 * else: every written byte was read from the pipe). */
void outbox_confirm(struct watcher *w);
/* Saves map, number, holds and outbox; 0, or -1 (warned once, retried). */
int outbox_save(struct watcher *w);
/* Waits at most drain_ms (-1: no limit, but a stop signal ends it) for the
 * reader to take every byte from the pipe, then at most confirm_ms for the
 * confirmation of every written entry; 0 when all are confirmed, -1 when
 * time ran out or the reader went away first. */
int outbox_wait(struct watcher *w, int64_t drain_ms, int64_t confirm_ms);
void outbox_free(struct watcher *w);

/* vanish.c */

/* Guests of the last map that the new one lacks: each stays in new while a
 * config of it is under some node; a mass disappearance is warned about
 * and held for --hold. */
void vanish_hold(struct watcher *w, struct vmlist *new);

#endif
