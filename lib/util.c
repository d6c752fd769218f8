#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void *
check_alloc(void *p)
{
	if (!p)
		die(EXIT_OSERR, "out of memory");
	return p;
}

void *
xmalloc(size_t n)
{
	return check_alloc(malloc(n ? n : 1));
}

void *
xcalloc(size_t n, size_t size)
{
	return check_alloc(calloc(n ? n : 1, size ? size : 1));
}

void *
xrealloc(void *p, size_t n)
{
	return check_alloc(realloc(p, n ? n : 1));
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	return check_alloc(reallocarray(p, n ? n : 1, size ? size : 1));
}

char *
xstrdup(const char *s)
{
	return check_alloc(strdup(s));
}

char *
xstrndup(const char *s, size_t n)
{
	return check_alloc(strndup(s, n));
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return check_alloc(s);
}

void
buf_grow(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	if (b->cap < 256)
		b->cap = 256;
	while (b->cap < need)
		b->cap *= 2;
	b->data = xrealloc(b->data, b->cap);
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	buf_grow(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_grow(b, n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int
read_file(const char *path, size_t max, struct buf *out)
{
	return read_file_at(AT_FDCWD, path, max, out);
}

static int
same_content(const char *path, const void *data, size_t len)
{
	struct buf cur = { 0 };
	int same;

	if (read_file(path, len + 1, &cur) < 0) {
		buf_free(&cur); /* EFBIG leaves the buffer allocated */
		return 0;
	}
	same = cur.len == len && memcmp(cur.data, data, len) == 0;
	buf_free(&cur);
	return same;
}

int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int
write_if_changed(const char *path, const void *data, size_t len, mode_t mode, int sync)
{
	char *tmp;
	int fd, e;

	if (same_content(path, data, len))
		return 0;
	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		goto fail;
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || (sync && fsync(fd) < 0)) {
		e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		goto fail;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		errno = e;
		goto fail;
	}
	free(tmp);
	return 1;
fail:
	e = errno;
	free(tmp);
	errno = e;
	return -1;
}

int
write_file_if_changed(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_if_changed(path, data, len, mode, 1);
}

int
write_copy_if_changed(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_if_changed(path, data, len, mode, 0);
}

int
mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			rc = -1;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

int
check_private_file(int fd, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "mode %04o is readable by group or others, want 0600",
			 (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen, "owned by uid %u, want root or uid %u", (unsigned)st.st_uid,
			 (unsigned)geteuid());
		return -1;
	}
	return 0;
}

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int
parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

int
parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

int
parse_vmid(const char *s, uint32_t *out)
{
	unsigned long v;
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 9 || s[0] == '0' || parse_ulong(s, 999999999, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int
parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

const char *
local_node_name(void)
{
	static char name[sizeof(((struct utsname *)0)->nodename)];
	struct utsname u;

	if (!name[0]) {
		if (uname(&u) < 0)
			return "localhost";
		snprintf(name, sizeof name, "%s", u.nodename);
		name[strcspn(name, ".")] = '\0';
	}
	return name;
}

void
raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

size_t
open_files_budget(size_t reserve)
{
	struct rlimit rl;

	raise_nofile_limit();
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur - reserve > 1000000)
		return 1000000;
	return rl.rlim_cur > reserve + 32 ? (size_t)rl.rlim_cur - reserve : 16;
}

void
on_signal(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

int
read_fd(int fd, size_t max, struct buf *out)
{
	struct stat st;
	int e;

	buf_reset(out);
	if (fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	for (;;) {
		/* Ask for one byte more than the size: a shorter read is the end.
		 * Not so for a size of 0 (/proc, cgroupfs), read until nothing. */
		size_t want =
		    out->len < (size_t)st.st_size ? (size_t)st.st_size - out->len + 1 : 65536;
		ssize_t n;

		buf_grow(out, want);
		n = read(fd, out->data + out->len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		out->len += n;
		if (out->len > max) {
			errno = EFBIG;
			goto fail;
		}
		if (n == 0 || (st.st_size > 0 && (size_t)n < want))
			break;
	}
	out->data[out->len] = '\0';
	return 0;
fail:
	e = errno;
	buf_reset(out);
	errno = e;
	return -1;
}

int
read_file_at(int dirfd, const char *name, size_t max, struct buf *out)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), rc, e;

	buf_reset(out);
	if (fd < 0)
		return -1;
	rc = read_fd(fd, max, out);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

void
utc_time_now(char *out, size_t len, int digits)
{
	struct timespec ts;
	struct tm tm;
	char s[32];
	long frac;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
	frac = ts.tv_nsec;
	for (int i = digits; i < 9; i++)
		frac /= 10;
	snprintf(out, len, "%s.%0*ld", s, digits, frac);
}

char *
trim_space(char *s)
{
	char *e;

	s += strspn(s, " \t\r\n");
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	return s;
}
