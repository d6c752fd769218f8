/* Small helpers every program uses: memory, growable buffers, files, time,
 * number parsing. Allocation failures abort: these are tiny daemons and a
 * half-handled ENOMEM is worse than a restart by systemd. */
#ifndef PVEKIT_UTIL_H
#define PVEKIT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated. */
struct buf {
	char *data;
	size_t len, cap;
};

void buf_grow(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n); /* drop n bytes from the front */
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Reads a whole regular file (at most max bytes, else EFBIG): read_file_at
 * relative to the working directory. 0 or -1 with errno. */
int read_file(const char *path, size_t max, struct buf *out);

/* Writes path atomically (temp file in the same directory, fsync, rename),
 * and only when the content differs. 0 unchanged, 1 written, -1 errno. */
int write_file_if_changed(const char *path, const void *data, size_t len, mode_t mode);
/* The same without the fsync, for a copy that is made again when lost: a
 * burst of thousands costs no thousands of disk flushes. */
int write_copy_if_changed(const char *path, const void *data, size_t len, mode_t mode);

/* mkdir -p; 0 or -1 with errno. */
int mkdir_p(const char *path, mode_t mode);

/* A secrets file must be owned by us or root and not readable by group or
 * others. 0 when safe; otherwise -1 and a reason in err. */
int check_private_file(int fd, char *err, size_t errlen);

/* Clocks in milliseconds, microseconds / nanoseconds. */
int64_t mono_ms(void);
int64_t mono_us(void);
int64_t real_ns(void);
void sleep_ms(int64_t ms);

/* Strict parsers: the whole string must match; 0 or -1. */
int parse_ulong(const char *s, unsigned long max, unsigned long *out);
int parse_seconds(const char *s, double *out); /* "5", "0.25": >= 0, finite */
int parse_vmid(const char *s, uint32_t *out);  /* ^[1-9][0-9]{0,8}$ */
int parse_bool(const char *s, int *out);       /* 1/0 yes/no true/false on/off */

/* This node's name as Proxmox computes it: uname -n cut at the first '.'. */
const char *local_node_name(void);

/* Raises the soft open-files limit to the hard limit (for many sockets). */
void raise_nofile_limit(void);
/* How many sockets a program that opens many at once may keep open: the
 * limit, raised, less reserve for everything else (at least 16, at most
 * 1000000). */
size_t open_files_budget(size_t reserve);

/* Installs handler for sig with sigaction and no SA_RESTART. */
void on_signal(int sig, void (*handler)(int));

/* Reads the regular file name in directory dirfd (at most max bytes, else
 * EFBIG) with one read for a file that does not change meanwhile; opened
 * non-blocking, so a FIFO or a device under that name fails (EINVAL, a
 * directory EISDIR) instead of blocking. Files that say they are empty
 * (/proc, cgroupfs) are read to their end. 0 or -1 with errno. */
int read_file_at(int dirfd, const char *name, size_t max, struct buf *out);
/* The same for a file already open (say, after check_private_file). */
int read_fd(int fd, size_t max, struct buf *out);

/* Writes all of data, going on after EINTR and short writes. 0 or -1 with
 * errno (EAGAIN on a non-blocking fd that is full). */
int write_all(int fd, const void *data, size_t len);

/* The time now in UTC as "2024-05-01T12:00:00.123", with digits (1 to 9)
 * digits of the second's fraction. */
void utc_time_now(char *out, size_t len, int digits);

/* Cuts spaces, tabs, CRs and newlines off both ends of s, in place;
 * returns where s now starts. */
char *trim_space(char *s);

#endif
