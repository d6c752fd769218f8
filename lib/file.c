#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "file.h"

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

int
read_file(const char *path, size_t max, struct buf *out)
{
	return read_file_at(AT_FDCWD, path, max, out);
}

const char *
read_file_strerror(int err)
{
	return err == EINVAL ? "not a regular file" : strerror(err);
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

/* fchmod, unless the file already has mode, or is more private and the
 * file system refuses the change: pmxcfs allows only 0640 (0600 under
 * priv/) and answers any other mode with EPERM (cfs_fuse_chmod). */
static int
set_mode(int fd, mode_t mode)
{
	struct stat st;
	int e;

	if (fstat(fd, &st) == 0 && (st.st_mode & 07777) == mode)
		return 0;
	if (fchmod(fd, mode) == 0)
		return 0;
	e = errno;
	if (e == EPERM && fstat(fd, &st) == 0 && !(st.st_mode & 07777 & ~mode))
		return 0;
	errno = e;
	return -1;
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
	if (set_mode(fd, mode) < 0 || write_all(fd, data, len) < 0 || (sync && fsync(fd) < 0)) {
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

/* "readable", "readable and writable", "readable, writable and executable". */
static void
access_words(unsigned bits, char *out, size_t len)
{
	const char *w[3];
	size_t n = 0;

	if (bits & 4)
		w[n++] = "readable";
	if (bits & 2)
		w[n++] = "writable";
	if (bits & 1)
		w[n++] = "executable";
	if (n == 3)
		snprintf(out, len, "%s, %s and %s", w[0], w[1], w[2]);
	else if (n == 2)
		snprintf(out, len, "%s and %s", w[0], w[1]);
	else
		snprintf(out, len, "%s", n ? w[0] : "");
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
		char g[40], o[40];
		unsigned gm = (st.st_mode >> 3) & 7, om = st.st_mode & 7;

		access_words(gm, g, sizeof g);
		access_words(om, o, sizeof o);
		if (gm == om)
			snprintf(err, errlen, "mode %04o is %s by group and others, want 0600",
			         (unsigned)(st.st_mode & 07777), g);
		else
			snprintf(err, errlen, "mode %04o is %s%s%s%s%s, want 0600",
			         (unsigned)(st.st_mode & 07777), g, gm ? " by group" : "",
			         gm && om ? ", " : "", o, om ? " by others" : "");
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen, "owned by uid %u, want root or uid %u", (unsigned)st.st_uid,
		         (unsigned)geteuid());
		return -1;
	}
	return 0;
}
