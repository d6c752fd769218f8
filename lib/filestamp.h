/* Has a file changed since it was last looked at? One stat(2): device,
 * inode, size, mtime, and whether it exists at all. Editors and Proxmox
 * write a temp file and rename it (a new inode), so the usual edit shows;
 * pmxcfs keeps whole-second mtimes, so a rewrite in place within the same
 * second may not: filestamp_settled says when a stamp can be trusted. */
#ifndef PVEKIT_FILESTAMP_H
#define PVEKIT_FILESTAMP_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* A file changed less than this long ago may change again under the same
 * stamp. */
#define FILESTAMP_SETTLE_NS (2 * 1000000000LL)

struct filestamp {
	int exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

/* The stamp of a stat(2) result (NULL: the file does not exist). */
void filestamp_of(const struct stat *st, struct filestamp *s);
/* Stats path into s; returns s->exists. */
int filestamp_take(const char *path, struct filestamp *s);
int filestamp_same(const struct filestamp *a, const struct filestamp *b);
/* Takes path's stamp; 1 when it differs from *s (which it replaces), else 0. */
int filestamp_changed(const char *path, struct filestamp *s);
/* Was the file's mtime at least FILESTAMP_SETTLE_NS before now_ns
 * (CLOCK_REALTIME)? A missing file is settled. */
int filestamp_settled(const struct filestamp *s, int64_t now_ns);
/* A hash of the stamp, for a signature over many files. */
uint64_t filestamp_hash(const struct filestamp *s);

#endif
