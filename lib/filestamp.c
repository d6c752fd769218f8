#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "filestamp.h"

void
filestamp_of(const struct stat *st, struct filestamp *s)
{
	memset(s, 0, sizeof *s);
	if (!st)
		return;
	s->exists = 1;
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
}

static int64_t
real_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* FNV-1a over the file's bytes; an error that stops the reading is hashed
 * in, so a file that cannot be read differs from every readable one. */
static uint64_t
content_hash(const char *path)
{
	uint64_t h = 14695981039346656037ULL;
	unsigned char b[16384];
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return h ^ (uint64_t)(errno + 1) << 32;
	for (;;) {
		ssize_t n = read(fd, b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			h = (h ^ b[i]) * 1099511628211ULL;
	}
	close(fd);
	return err ? h ^ (uint64_t)(err + 1) << 32 : h;
}

/* Adds the content hash to a stamp taken by stat. */
static void
hash_content(const char *path, struct filestamp *s)
{
	s->content = content_hash(path);
	s->hashed = 1;
}

static int
take(const char *path, struct filestamp *s, mode_t *mode)
{
	struct stat st;
	int ok = stat(path, &st) == 0;

	filestamp_of(ok ? &st : NULL, s);
	*mode = ok ? st.st_mode : 0;
	return ok;
}

int
filestamp_take(const char *path, struct filestamp *s)
{
	mode_t mode;

	if (take(path, s, &mode) && S_ISREG(mode) && !filestamp_settled(s, real_now_ns()))
		hash_content(path, s);
	return s->exists;
}

static int
same_stat(const struct filestamp *a, const struct filestamp *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int
filestamp_same(const struct filestamp *a, const struct filestamp *b)
{
	if (!same_stat(a, b) || a->hashed != b->hashed)
		return 0;
	return !a->hashed || a->content == b->content;
}

int
filestamp_changed(const char *path, struct filestamp *s)
{
	struct filestamp now;
	mode_t mode;
	int settled, same;

	take(path, &now, &mode);
	settled = filestamp_settled(&now, real_now_ns());
	if (!same_stat(&now, s)) {
		if (S_ISREG(mode) && !settled)
			hash_content(path, &now);
		*s = now;
		return 1;
	}
	/* The stat as before: where it cannot be trusted (the file unsettled
	 * now, or when *s was taken), the content decides. */
	if (S_ISREG(mode) && (!settled || s->hashed)) {
		hash_content(path, &now);
		same = s->hashed && now.content == s->content;
	} else
		same = !s->hashed;
	if (settled) /* from now on the stat tells */
		now.hashed = 0, now.content = 0;
	*s = now;
	return !same;
}

int
filestamp_settled(const struct filestamp *s, int64_t now_ns)
{
	int64_t m = (int64_t)s->mtime.tv_sec * 1000000000 + s->mtime.tv_nsec;

	return !s->exists || now_ns - m >= FILESTAMP_SETTLE_NS;
}

static uint64_t
mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

uint64_t
filestamp_hash(const struct filestamp *s)
{
	int64_t m = (int64_t)s->mtime.tv_sec * 1000000000 + s->mtime.tv_nsec;
	uint64_t h;

	h = mix(mix(mix(mix(mix(1, (uint64_t)s->exists), (uint64_t)m), (uint64_t)s->size), s->ino),
	        s->dev);
	return s->hashed ? mix(h, s->content) : h;
}
