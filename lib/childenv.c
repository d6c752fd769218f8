#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "childenv.h"

extern char **environ;

static void
push(struct child_env *e, char *s)
{
	if (e->n + 2 > e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->v = xreallocarray(e->v, e->cap, sizeof *e->v);
	}
	e->v[e->n++] = s;
	e->v[e->n] = NULL;
}

/* The index of NAME's entry, or e->n. */
static size_t
find(const struct child_env *e, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < e->n; i++)
		if (strncmp(e->v[i], name, len) == 0 && e->v[i][len] == '=')
			return i;
	return e->n;
}

void
child_env_init(struct child_env *e)
{
	memset(e, 0, sizeof *e);
	e->cap = 64;
	e->v = xcalloc(e->cap, sizeof *e->v);
	for (char **p = environ; *p; p++)
		push(e, xstrdup(*p));
}

void
child_env_set(struct child_env *e, const char *name, const char *fmt, ...)
{
	char *value, *entry;
	size_t i = find(e, name);
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&value, fmt, ap) < 0)
		value = NULL;
	va_end(ap);
	entry = xasprintf("%s=%s", name, value ? value : "");
	free(value);
	if (i < e->n) {
		free(e->v[i]);
		e->v[i] = entry;
	} else {
		push(e, entry);
	}
}

void
child_env_unset(struct child_env *e, const char *name)
{
	size_t i = find(e, name);

	if (i == e->n)
		return;
	free(e->v[i]);
	memmove(e->v + i, e->v + i + 1, (e->n - i) * sizeof *e->v); /* the NULL too */
	e->n--;
}

const char *
child_env_get(const struct child_env *e, const char *name)
{
	size_t i = find(e, name);

	return i < e->n ? e->v[i] + strlen(name) + 1 : NULL;
}

void
child_env_free(struct child_env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	memset(e, 0, sizeof *e);
}
