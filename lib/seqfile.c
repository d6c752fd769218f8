#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "seqfile.h"

char *
seqfile_path(const char *state_dir)
{
	return xasprintf("%s/" SEQFILE_NAME, state_dir);
}

int
seqfile_read(const char *path, uint64_t *seq)
{
	struct buf b = { 0 };
	char *end;
	int rc = -1;

	if (read_file(path, 64, &b) < 0) {
		int e = errno;

		buf_free(&b);
		errno = e;
		return e == ENOENT ? 0 : -1;
	}
	errno = 0;
	if (b.len >= 2 && b.data[0] >= '0' && b.data[0] <= '9') {
		*seq = strtoull(b.data, &end, 10);
		if (!errno && end == b.data + b.len - 1 && *end == '\n')
			rc = 1;
	}
	buf_free(&b);
	if (rc < 0)
		errno = EINVAL;
	return rc;
}

int
seqfile_write(const char *path, uint64_t seq)
{
	char text[32], *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int n = snprintf(text, sizeof text, "%" PRIu64 "\n", seq), rc, e;

	rc = write_file_if_changed(path, text, (size_t)n, 0600) < 0 ? -1 : 0;
	e = errno;
	/* The rename is durable only once its directory is. */
	if (rc == 0 && slash) {
		int fd;

		*slash = '\0';
		fd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0) {
			rc = -1;
			e = errno;
		}
		if (fd >= 0)
			close(fd);
	}
	free(dir);
	errno = e;
	return rc;
}
