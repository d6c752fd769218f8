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

struct store {
	char *dir, *owners;
	int lock_fd;
};

int store_open(struct store *s, const char *state_dir, char *err, size_t errlen);
/* 0 and *found (0: first run); -1 with err: unreadable; -2: corrupt. */
int store_load(struct store *s, struct vmlist *out, int *found, char *err, size_t errlen);
int store_save(struct store *s, const struct vmlist *m);
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

struct event {
	enum guest_event kind;
	uint32_t vmid;
	enum guest_type type;
	char peer[NODE_NAME_MAX]; /* "" when none */
};

struct output {
	int fd, json, fifo;
	const char *node;
	volatile sig_atomic_t *stop; /* set by a signal: give up a blocked write */
	struct buf line;
};

/* Events that turn map old into map new, seen from node, in vmid order. */
size_t events_diff(const struct vmlist *old, const struct vmlist *new, const char *node,
                   struct event **out);
/* A create for every guest node owns in m (--initial). */
size_t events_initial(const struct vmlist *m, const char *node, struct event **out);

void output_init(struct output *o, int fd, int json, const char *node, volatile sig_atomic_t *stop);
/* 0 written; -1 the reader went away (or another write error, errno);
 * -2 interrupted by a stop signal before anything of the line was written. */
int output_event(struct output *o, const struct event *e, const char *conf);
/* Bytes written but not yet read from a pipe (0 when fd is no pipe). */
size_t output_unread(const struct output *o);
void output_free(struct output *o);

#endif
