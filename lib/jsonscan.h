/* A strict JSON reader for the small, fixed formats pmxcfs renders (.vmlist
 * and .version). It builds no tree: the caller walks the text with these
 * calls and takes what it wants on the way, so a 10,000-guest .vmlist is
 * read in one pass straight into its sorted array. Every byte of the text
 * is checked, so a truncated or garbled file is always an error, and the
 * first error is kept as "line N: reason" in the caller's err buffer. */
#ifndef PVEKIT_JSONSCAN_H
#define PVEKIT_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>

struct jsonscan {
	const char *start, *p, *end;
	char *err;
	size_t errlen;
	int failed;
};

void jsonscan_init(struct jsonscan *j, const char *text, size_t len, char *err, size_t errlen);

/* Records the first error ("line N: " + the message); always -1. */
int jsonscan_fail(struct jsonscan *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The next significant character, or -1 at the end of the text. */
int jsonscan_peek(struct jsonscan *j);
/* Consumes c, the next significant character; 0 or -1. */
int jsonscan_expect(struct jsonscan *j, char c);
/* Decodes a string into out (cap bytes, always terminated when cap > 0;
 * NULL to skip it); *lenp is the full decoded length, so the caller sees
 * when it did not fit. 0 or -1. */
int jsonscan_string(struct jsonscan *j, char *out, size_t cap, size_t *lenp);
/* A non-negative integer no larger than max; 0 or -1. */
int jsonscan_uint(struct jsonscan *j, uint64_t max, uint64_t *v);
/* Reads the next member key of an object whose '{' was consumed (*first
 * set before the first call). 1 and the key with ':' consumed, 0 at the
 * closing '}', -1 on error. */
int jsonscan_member(struct jsonscan *j, int *first, char *key, size_t cap, size_t *klen);
/* Skips any value, nested at most 64 deep (depth: how deep it starts). */
int jsonscan_skip(struct jsonscan *j, int depth);
/* Only white space may follow; 0 or -1. */
int jsonscan_end(struct jsonscan *j);
/* Is the key just read (klen bytes, as jsonscan_member gave it) want? */
int jsonscan_key_is(const char *key, size_t klen, const char *want);

#endif
