/* Has a file changed since it was last looked at? One stat(2): device,
 * inode, size, mtime, and whether it exists at all. Editors and Proxmox
 * write a temp file and rename it (a new inode), so the usual edit shows.
 * The stat alone misses one: pmxcfs keeps the inode on a write in place and
 * has whole-second mtimes, so a same-size rewrite in place within the second
 * of the last one (`portsall=22` made `portsall=80`) leaves all four as they
 * were; so does any edit of a file whose mtime is ahead of this clock
 * (written by a node whose clock is). So while a regular file's mtime is
 * not at least FILESTAMP_SETTLE_NS in the past, filestamp_take also reads
 * it and keeps a hash of its content, and the comparisons look at that.
 * A settled file costs one stat; an unsettled one is read on every take.
 * Left to the stat: a same-stat edit of a file whose mtime was already
 * settled (its mtime set back by hand), and a change and its undoing both
 * between a take and the caller's read of the file. */
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
	int hashed;       /* content holds the file's content hash */
	uint64_t content; /* (an unreadable file: a hash of the errno) */
};

/* The stamp of a stat(2) result (NULL: the file does not exist); no
 * content hash. */
void filestamp_of(const struct stat *st, struct filestamp *s);
/* Stats path into s, with the content hash while it is unsettled (see
 * above); returns s->exists. */
int filestamp_take(const char *path, struct filestamp *s);
/* Same stat, and the same content hash where both have one. A stamp with
 * the hash and one without (taken before and after the file settled) are
 * not the same: the content in between is unknown. */
int filestamp_same(const struct filestamp *a, const struct filestamp *b);
/* Takes path's stamp; 1 when it differs from *s (which it replaces), else 0.
 * Where *s has the hash and the file has settled since, the content is read
 * once more to compare. */
int filestamp_changed(const char *path, struct filestamp *s);
/* Was the file's mtime at least FILESTAMP_SETTLE_NS before now_ns
 * (CLOCK_REALTIME)? A missing file is settled. */
int filestamp_settled(const struct filestamp *s, int64_t now_ns);
/* A hash of the stamp (with its content hash, if any), for a signature
 * over many files. */
uint64_t filestamp_hash(const struct filestamp *s);

#endif
