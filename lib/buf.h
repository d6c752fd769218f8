/* A growable byte buffer, always NUL-terminated. */
#ifndef PVEKIT_BUF_H
#define PVEKIT_BUF_H

#include <stddef.h>

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

/* Hands each complete line in b (without its '\n') to fn and drops it from
 * b; a line longer than max goes in pieces of max bytes; with flush, an
 * unfinished last line goes too. For relaying a child's output as log
 * lines. */
void buf_take_lines(struct buf *b, size_t max, int flush,
                    void (*fn)(void *ctx, const char *line, size_t len), void *ctx);

#endif
