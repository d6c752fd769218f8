/* Files: one strict reader, the atomic writer, and the checks around them. */
#ifndef PVEKIT_FILE_H
#define PVEKIT_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* Reads the regular file name in directory dirfd (at most max bytes, else
 * EFBIG) with one read for a file that does not change meanwhile; opened
 * non-blocking, so a FIFO or a device under that name fails (EINVAL, a
 * directory EISDIR) instead of blocking. Files that say they are empty
 * (/proc, cgroupfs) are read to their end. 0 or -1 with errno. */
int read_file_at(int dirfd, const char *name, size_t max, struct buf *out);
/* The same relative to the working directory. */
int read_file(const char *path, size_t max, struct buf *out);
/* The same for a file already open (say, after check_private_file). */
int read_fd(int fd, size_t max, struct buf *out);

/* Why one of the three readers failed, for a message: EINVAL (a FIFO, a
 * device, a socket) is "not a regular file", else strerror(err). */
const char *read_file_strerror(int err);

/* Writes all of data, going on after EINTR and short writes. 0 or -1 with
 * errno (EAGAIN on a non-blocking fd that is full). */
int write_all(int fd, const void *data, size_t len);

/* Writes path atomically (temp file in the same directory, fsync, rename),
 * and only when the content differs. 0 unchanged, 1 written, -1 errno.
 * The file gets mode; where the file system refuses that chmod (EPERM) but
 * keeps the file at least as private (pmxcfs: 0640, 0600 under priv/), it
 * stays so. */
int write_file_if_changed(const char *path, const void *data, size_t len, mode_t mode);
/* The same without the fsync, for a copy that is made again when lost: a
 * burst of thousands costs no thousands of disk flushes. */
int write_copy_if_changed(const char *path, const void *data, size_t len, mode_t mode);

/* mkdir -p; 0 or -1 with errno. */
int mkdir_p(const char *path, mode_t mode);

/* A secrets file must be a regular file owned by us or root, with no access
 * for group or others. 0 when safe; otherwise -1 and a reason in err
 * ("mode 0620 is writable by group, want 0600"). */
int check_private_file(int fd, char *err, size_t errlen);

#endif
