/* Memory: allocators that never return NULL. An allocation failure ends the
 * program (exit 71): these are tiny daemons and a half-handled ENOMEM is
 * worse than a restart by systemd. */
#ifndef PVEKIT_ALLOC_H
#define PVEKIT_ALLOC_H

#include <stddef.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
