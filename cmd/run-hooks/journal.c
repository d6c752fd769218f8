/* The event journal: "E SEQ LINE" when an event is read (synced before its
 * hooks start), "D SEQ" when its hooks have finished. On start the entries
 * without a "D" are the events to run again. The file is emptied whenever
 * nothing is outstanding and rewritten with only the open entries when it
 * grows past JOURNAL_MAX, so it stays small. A lock file keeps a second
 * run-hooks --events away from the same state dir. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "run-hooks.h"

#define JOURNAL_MAX (1 << 20)
#define JOURNAL_READ_MAX (256 << 20)

static void
write_failed(struct journal *j)
{
	int e = errno;

	/* Never leave half an entry for the next one to run into. */
	if (ftruncate(j->fd, j->size) < 0)
		j->size = lseek(j->fd, 0, SEEK_END);
	if (!j->failing)
		log_err("%s: %s; events read from now on are not kept across a crash", j->path,
		        strerror(e));
	j->failing = 1;
}

static void
append(struct journal *j, const struct buf *b, int sync)
{
	if (write_all(j->fd, b->data, b->len) < 0 || (sync && fdatasync(j->fd) < 0)) {
		write_failed(j);
		return;
	}
	j->size += b->len;
	if (j->failing)
		log_info("%s: writable again", j->path);
	j->failing = 0;
}

static int
parse_seq(const char *s, char **end, uint64_t *seq)
{
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*seq = strtoull(s, end, 10);
	return errno ? -1 : 0;
}

static int
cmp_seq(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Splits the old journal into open entries; warns about damaged lines. */
static void
load(struct journal *j, const struct buf *b, struct journal_entry **pending, size_t *npending)
{
	struct journal_entry *e = NULL;
	uint64_t *done = NULL, seq;
	size_t ne = 0, nd = 0, off = 0, keep = 0;
	unsigned long lineno = 0;

	while (off < b->len) {
		char *line = b->data + off, *nl = memchr(line, '\n', b->len - off), *end;

		if (!nl) {
			log_warn("%s: dropping an incomplete last entry (written during a crash)",
			         j->path);
			break;
		}
		*nl = '\0';
		off = nl + 1 - b->data;
		lineno++;
		if (line[0] == 'E' && line[1] == ' ' && parse_seq(line + 2, &end, &seq) == 0 &&
		    *end == ' ' && end[1]) {
			e = xreallocarray(e, ne + 1, sizeof *e);
			e[ne].seq = seq;
			e[ne++].line = xstrdup(end + 1);
		} else if (line[0] == 'D' && line[1] == ' ' &&
		           parse_seq(line + 2, &end, &seq) == 0 && !*end) {
			done = xreallocarray(done, nd + 1, sizeof *done);
			done[nd++] = seq;
		} else {
			log_warn("%s:%lu: malformed entry, dropped", j->path, lineno);
			continue;
		}
		if (seq >= j->next_seq)
			j->next_seq = seq + 1;
	}
	if (nd)
		qsort(done, nd, sizeof *done, cmp_seq);
	for (size_t i = 0; i < ne; i++) {
		if (nd && bsearch(&e[i].seq, done, nd, sizeof *done, cmp_seq)) {
			free(e[i].line);
			continue;
		}
		e[keep++] = e[i];
	}
	free(done);
	*pending = e;
	*npending = keep;
}

static void
render(struct buf *b, const struct journal_entry *const *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_printf(b, "E %" PRIu64 " %s\n", e[i]->seq, e[i]->line);
}

/* Replaces the journal with b's content (atomic) and reopens it. */
static int
replace(struct journal *j, const struct buf *b)
{
	int fd;

	if (write_file_if_changed(j->path, b->data ? b->data : "", b->len, 0600) < 0 ||
	    fsync(j->dir_fd) < 0)
		return -1;
	fd = open(j->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->size = b->len;
	return 0;
}

/* The hooks of a run that was killed may still be on their way out (their
 * supervisors stop them when run-hooks dies, and a hook may take up to
 * --kill-after to go): their events are replayed only once they are gone,
 * so one guest's hooks never overlap. */
static int
take_hooks_lock(struct journal *j, const char *dir)
{
	char *path = xasprintf("%s/hooks.lock", dir);
	int rc = -1;

	j->hooks_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->hooks_fd < 0) {
		log_err("%s: %s", path, strerror(errno));
		goto out;
	}
	if (flock(j->hooks_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			log_err("%s: %s", path, strerror(errno));
			goto out;
		}
		log_info("%s: waiting for the hooks of an earlier run to end", dir);
		while (flock(j->hooks_fd, LOCK_EX) < 0) {
			if (errno != EINTR) {
				log_err("%s: %s", path, strerror(errno));
				goto out;
			}
		}
		log_info("%s: the hooks of the earlier run have ended", dir);
	}
	rc = 0;
out:
	free(path);
	return rc;
}

int
journal_open(struct journal *j, const char *state_dir, struct journal_entry **pending,
             size_t *npending, int *code)
{
	char *dir = xasprintf("%s/run-hooks", state_dir), *lock = xasprintf("%s/lock", dir);
	struct buf old = { 0 }, fresh = { 0 };
	const struct journal_entry **ptr;
	int rc = -1;

	memset(j, 0, sizeof *j);
	j->fd = j->lock_fd = j->dir_fd = j->hooks_fd = -1;
	j->next_seq = 1;
	j->path = xasprintf("%s/journal", dir);
	*pending = NULL;
	*npending = 0;
	*code = EXIT_OSERR;
	if (mkdir_p(dir, 0700) < 0 ||
	    (j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		log_err("%s: %s", dir, strerror(errno));
		goto out;
	}
	j->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lock_fd < 0) {
		log_err("%s: %s", lock, strerror(errno));
		goto out;
	}
	/* A POSIX record lock: a fork does not inherit it, so a hook's
	 * supervisor never holds it, not even between its fork and closing
	 * our descriptors (a restart right after a SIGKILL then found it
	 * taken). The supervisors hold hooks.lock instead. */
	if (fcntl(j->lock_fd, F_SETLK, &(struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET }) <
	    0) {
		if (errno == EAGAIN || errno == EACCES) {
			log_err("%s: in use by another run-hooks --events", dir);
			*code = EXIT_TEMPFAIL;
		} else
			log_err("%s: %s", lock, strerror(errno));
		goto out;
	}
	if (take_hooks_lock(j, dir) < 0)
		goto out;
	if (read_file(j->path, JOURNAL_READ_MAX, &old) < 0 && errno != ENOENT) {
		log_err("%s: %s", j->path, strerror(errno));
		goto out;
	}
	load(j, &old, pending, npending);
	ptr = xcalloc(*npending, sizeof *ptr);
	for (size_t i = 0; i < *npending; i++)
		ptr[i] = &(*pending)[i];
	render(&fresh, ptr, *npending);
	free(ptr);
	if (replace(j, &fresh) < 0) {
		log_err("%s: %s", j->path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		for (size_t i = 0; i < *npending; i++)
			free((*pending)[i].line);
		free(*pending);
		*pending = NULL;
		*npending = 0;
	}
	buf_free(&old);
	buf_free(&fresh);
	free(lock);
	free(dir);
	return rc;
}

int
journal_add(struct journal *j, struct journal_entry *const *e, size_t n)
{
	struct buf b = { 0 };

	for (size_t i = 0; i < n; i++)
		e[i]->seq = j->next_seq++;
	render(&b, (const struct journal_entry *const *)e, n);
	append(j, &b, 1);
	buf_free(&b);
	return j->failing ? -1 : 0;
}

void
journal_done(struct journal *j, uint64_t seq)
{
	struct buf b = { 0 };

	/* Not synced: a "D" lost in a power cut only means one more run. */
	buf_printf(&b, "D %" PRIu64 "\n", seq);
	append(j, &b, 0);
	buf_free(&b);
}

void
journal_clear(struct journal *j)
{
	if (j->size == 0)
		return;
	if (ftruncate(j->fd, 0) < 0) {
		write_failed(j);
		return;
	}
	j->size = 0;
}

int
journal_needs_compacting(const struct journal *j)
{
	return j->size > JOURNAL_MAX;
}

void
journal_rewrite(struct journal *j, const struct journal_entry *const *e, size_t n)
{
	struct buf b = { 0 };

	render(&b, e, n);
	if (replace(j, &b) < 0)
		log_err("%s: compacting: %s", j->path, strerror(errno));
	buf_free(&b);
}

void
journal_close(struct journal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	if (j->hooks_fd >= 0)
		close(j->hooks_fd);
	free(j->path);
	memset(j, 0, sizeof *j);
	j->fd = j->dir_fd = j->lock_fd = j->hooks_fd = -1;
}
