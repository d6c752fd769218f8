#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonscan.h"

/* Deeper nesting than this in a value being skipped is refused. */
#define JSON_DEPTH_MAX 64

void
jsonscan_init(struct jsonscan *j, const char *text, size_t len, char *err, size_t errlen)
{
	*j = (struct jsonscan){ text, text, text + len, err, errlen, 0 };
}

int
jsonscan_fail(struct jsonscan *j, const char *fmt, ...)
{
	unsigned line = 1;
	char msg[160];
	va_list ap;

	if (j->failed)
		return -1;
	j->failed = 1;
	for (const char *q = j->start; q < j->p && q < j->end; q++)
		line += *q == '\n';
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(j->err, j->errlen, "line %u: %s", line, msg);
	return -1;
}

/* The next significant character, or -1 at the end of the text. */
int
jsonscan_peek(struct jsonscan *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
	return j->p < j->end ? (unsigned char)*j->p : -1;
}

int
jsonscan_expect(struct jsonscan *j, char c)
{
	int got = jsonscan_peek(j);

	if (got == c) {
		j->p++;
		return 0;
	}
	return jsonscan_fail(j, got < 0 ? "truncated: expected '%c'" : "expected '%c'", c);
}

static int
read_hex4(struct jsonscan *j, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++, j->p++) {
		int c = j->p < j->end ? (unsigned char)*j->p : -1, d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return jsonscan_fail(j, c < 0 ? "truncated string" : "bad \\u escape");
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

/* Decodes a string into out (cap bytes, always terminated when cap > 0;
 * NULL to skip it); *lenp is the full decoded length, so the caller sees
 * when it did not fit. */
int
jsonscan_string(struct jsonscan *j, char *out, size_t cap, size_t *lenp)
{
	size_t n = 0;

#define PUT(ch)                                                                                    \
	do {                                                                                       \
		if (out && n + 1 < cap)                                                            \
			out[n] = (char)(ch);                                                       \
		n++;                                                                               \
	} while (0)

	if (jsonscan_expect(j, '"') < 0)
		return -1;
	for (;;) {
		unsigned char c;
		uint32_t cp, lo;

		if (j->p >= j->end)
			return jsonscan_fail(j, "truncated string");
		c = (unsigned char)*j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return jsonscan_fail(j, "control character in a string");
		if (c != '\\') {
			PUT(c);
			continue;
		}
		if (j->p >= j->end)
			return jsonscan_fail(j, "truncated string");
		c = (unsigned char)*j->p++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			PUT(c);
			break;
		case 'b':
			PUT('\b');
			break;
		case 'f':
			PUT('\f');
			break;
		case 'n':
			PUT('\n');
			break;
		case 'r':
			PUT('\r');
			break;
		case 't':
			PUT('\t');
			break;
		case 'u':
			if (read_hex4(j, &cp) < 0)
				return -1;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return jsonscan_fail(j, "lone surrogate in a string");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
					return jsonscan_fail(j, "lone surrogate in a string");
				j->p += 2;
				if (read_hex4(j, &lo) < 0)
					return -1;
				if (lo < 0xdc00 || lo > 0xdfff)
					return jsonscan_fail(j, "lone surrogate in a string");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return jsonscan_fail(j, "NUL in a string");
			if (cp < 0x80) {
				PUT(cp);
			} else if (cp < 0x800) {
				PUT(0xc0 | cp >> 6);
				PUT(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				PUT(0xe0 | cp >> 12);
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			} else {
				PUT(0xf0 | cp >> 18);
				PUT(0x80 | ((cp >> 12) & 0x3f));
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			}
			break;
		default:
			return jsonscan_fail(j, "bad escape in a string");
		}
	}
#undef PUT
	if (out && cap)
		out[n < cap ? n : cap - 1] = '\0';
	*lenp = n;
	return 0;
}

static int
at_digit(const struct jsonscan *j)
{
	return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

/* A non-negative JSON integer no larger than max. */
int
jsonscan_uint(struct jsonscan *j, uint64_t max, uint64_t *v)
{
	int c = jsonscan_peek(j);
	uint64_t x = 0;

	if (c == '-')
		return jsonscan_fail(j, "negative number");
	if (c < '0' || c > '9')
		return jsonscan_fail(j,
		                     c < 0 ? "truncated: expected a number" : "expected a number");
	if (*j->p == '0') {
		j->p++;
	} else {
		while (at_digit(j)) {
			unsigned d = (unsigned)(*j->p - '0');

			if (x > (max - d) / 10)
				return jsonscan_fail(j, "number out of range");
			x = x * 10 + d;
			j->p++;
		}
	}
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E' || at_digit(j)))
		return jsonscan_fail(j, "not a whole number");
	*v = x;
	return 0;
}

static int
read_literal(struct jsonscan *j, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return jsonscan_fail(j, (size_t)(j->end - j->p) < n ? "truncated value"
		                                                    : "unexpected character");
	j->p += n;
	return 0;
}

/* Any JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
read_number(struct jsonscan *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (!at_digit(j))
		return jsonscan_fail(j, j->p < j->end ? "bad number" : "truncated number");
	if (*j->p == '0')
		j->p++;
	else
		while (at_digit(j))
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!at_digit(j))
			return jsonscan_fail(j, "bad number");
		while (at_digit(j))
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!at_digit(j))
			return jsonscan_fail(j, "bad number");
		while (at_digit(j))
			j->p++;
	}
	return 0;
}

/* Reads the next member key of an object whose '{' was consumed (*first
 * set before the first call). 1 and the key with ':' consumed, 0 at the
 * closing '}', -1 on error. */
int
jsonscan_member(struct jsonscan *j, int *first, char *key, size_t cap, size_t *klen)
{
	int c = jsonscan_peek(j);

	if (c == '}') {
		j->p++;
		return 0;
	}
	if (!*first) {
		if (c != ',')
			return jsonscan_fail(j, c < 0 ? "truncated: expected ',' or '}'"
			                              : "expected ',' or '}'");
		j->p++;
		if (jsonscan_peek(j) == '}')
			return jsonscan_fail(j, "expected '\"'");
	}
	*first = 0;
	if (jsonscan_string(j, key, cap, klen) < 0 || jsonscan_expect(j, ':') < 0)
		return -1;
	return 1;
}

int
jsonscan_skip(struct jsonscan *j, int depth)
{
	int c = jsonscan_peek(j), first = 1, r;
	size_t n;

	if (depth > JSON_DEPTH_MAX)
		return jsonscan_fail(j, "nested too deep");
	switch (c) {
	case -1:
		return jsonscan_fail(j, "truncated: expected a value");
	case '"':
		return jsonscan_string(j, NULL, 0, &n);
	case '{':
		j->p++;
		while ((r = jsonscan_member(j, &first, NULL, 0, &n)) > 0)
			if (jsonscan_skip(j, depth + 1) < 0)
				return -1;
		return r;
	case '[':
		j->p++;
		if (jsonscan_peek(j) == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			if (jsonscan_skip(j, depth + 1) < 0)
				return -1;
			c = jsonscan_peek(j);
			if (c == ']') {
				j->p++;
				return 0;
			}
			if (c != ',')
				return jsonscan_fail(j, c < 0 ? "truncated: expected ',' or ']'"
				                              : "expected ',' or ']'");
			j->p++;
		}
	case 't':
		return read_literal(j, "true");
	case 'f':
		return read_literal(j, "false");
	case 'n':
		return read_literal(j, "null");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return read_number(j);
		return jsonscan_fail(j, "unexpected character");
	}
}

int
jsonscan_end(struct jsonscan *j)
{
	if (jsonscan_peek(j) >= 0)
		return jsonscan_fail(j, "trailing data after the object");
	return 0;
}

int
jsonscan_key_is(const char *key, size_t klen, const char *want)
{
	return klen == strlen(want) && strcmp(key, want) == 0;
}
