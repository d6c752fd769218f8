#include <string.h>

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

int
filestamp_take(const char *path, struct filestamp *s)
{
	struct stat st;

	filestamp_of(stat(path, &st) == 0 ? &st : NULL, s);
	return s->exists;
}

int
filestamp_same(const struct filestamp *a, const struct filestamp *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int
filestamp_changed(const char *path, struct filestamp *s)
{
	struct filestamp now;

	filestamp_take(path, &now);
	if (filestamp_same(&now, s))
		return 0;
	*s = now;
	return 1;
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

	return mix(mix(mix(mix(mix(1, (uint64_t)s->exists), (uint64_t)m), (uint64_t)s->size),
	               s->ino),
	           s->dev);
}
