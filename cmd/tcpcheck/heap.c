/* A binary min-heap of pointers. Each element stores its slot, so removing
 * or re-keying any element (a cancelled probe, a rescheduled guest) is
 * O(log n) instead of a search. */
#include <stdlib.h>

#include "tcpcheck.h"
#include "util.h"

static void
place(struct heap *h, size_t i, void *e)
{
	h->v[i] = e;
	*h->slot(e) = i;
}

static void
sift_up(struct heap *h, size_t i)
{
	void *e = h->v[i];
	int64_t k = h->key(e);

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->key(h->v[parent]) <= k)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, e);
}

static void
sift_down(struct heap *h, size_t i)
{
	void *e = h->v[i];
	int64_t k = h->key(e);

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->key(h->v[c + 1]) < h->key(h->v[c]))
			c++;
		if (k <= h->key(h->v[c]))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, e);
}

void
heap_push(struct heap *h, void *e)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
	}
	h->v[h->n] = e;
	*h->slot(e) = h->n;
	h->n++;
	sift_up(h, h->n - 1);
}

void
heap_remove(struct heap *h, void *e)
{
	size_t i = *h->slot(e);

	if (i == HEAP_NONE || i >= h->n || h->v[i] != e)
		return;
	*h->slot(e) = HEAP_NONE;
	h->n--;
	if (i == h->n)
		return;
	void *moved = h->v[h->n];
	place(h, i, moved);
	sift_down(h, i);
	sift_up(h, *h->slot(moved));
}

void
heap_fix(struct heap *h, void *e)
{
	size_t i = *h->slot(e);

	if (i == HEAP_NONE || i >= h->n)
		return;
	sift_up(h, i);
	sift_down(h, *h->slot(e));
}

void *
heap_top(const struct heap *h)
{
	return h->n ? h->v[0] : NULL;
}

void
heap_free(struct heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
