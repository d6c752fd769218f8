/* The environment of a child: the caller's, with variables set or removed,
 * built without touching the caller's own (no setenv between fork and
 * exec). */
#ifndef PVEKIT_CHILDENV_H
#define PVEKIT_CHILDENV_H

#include <stddef.h>

struct child_env {
	char **v; /* "NAME=VALUE" strings and a NULL: an envp */
	size_t n, cap;
};

/* A copy of environ. */
void child_env_init(struct child_env *e);
/* Sets NAME to the formatted value, in place of any NAME already there. */
void child_env_set(struct child_env *e, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void child_env_unset(struct child_env *e, const char *name);
/* NAME's value, or NULL. */
const char *child_env_get(const struct child_env *e, const char *name);
void child_env_free(struct child_env *e);

#endif
