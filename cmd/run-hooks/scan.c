/* Which files of a directory are hooks: run-parts' rules exactly. Regexes
 * run in the C locale (we never call setlocale), the order is strcmp. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "run-hooks.h"

static enum name_rule rule;
static regex_t custom, lsb_hier, lsb_excl, lsb_trad;

int
names_init(const struct opts *o, char *err, size_t errlen)
{
	int rc = 0;

	rule = o->names;
	if (rule == NAMES_REGEX)
		rc = regcomp(&custom, o->regex, REG_EXTENDED | REG_NOSUB);
	else if (rule == NAMES_LSBSYSINIT) {
		/* The LSB namespaces as debianutils 5.7 (Debian 12) has them. */
		if (regcomp(&lsb_hier, "^_?([a-z0-9_.]+-)+[a-z0-9]+$", REG_EXTENDED | REG_NOSUB) ||
		    regcomp(&lsb_excl, "^[a-z0-9-].*\\.dpkg-(old|dist|new|tmp)$",
		            REG_EXTENDED | REG_NOSUB) ||
		    regcomp(&lsb_trad, "^[a-z0-9][a-z0-9-]*$", REG_NOSUB))
			abort();
	}
	if (rc)
		regerror(rc, &custom, err, errlen);
	return rc ? -1 : 0;
}

/* The classic rule ^[A-Za-z0-9_-]+$, without regex machinery. */
static int
classic_name(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
		      ('0' <= *s && *s <= '9') || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

int
name_ok(const char *name)
{
	switch (rule) {
	case NAMES_REGEX:
		return regexec(&custom, name, 0, NULL, 0) == 0;
	case NAMES_LSBSYSINIT:
		if (regexec(&lsb_hier, name, 0, NULL, 0) == 0)
			return regexec(&lsb_excl, name, 0, NULL, 0) != 0;
		return regexec(&lsb_trad, name, 0, NULL, 0) == 0;
	case NAMES_CLASSIC:
		break;
	}
	return classic_name(name);
}

static int
by_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
names_scan(const char *dir, struct names *out)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;

	out->v = NULL;
	out->n = 0;
	if (!d)
		return -1;
	errno = 0;
	while ((de = readdir(d))) {
		if (!name_ok(de->d_name))
			continue;
		if (out->n == cap) {
			cap = cap ? cap * 2 : 16;
			out->v = xreallocarray(out->v, cap, sizeof *out->v);
		}
		out->v[out->n++] = xstrdup(de->d_name);
	}
	if (errno) {
		int e = errno;
		closedir(d);
		names_free(out);
		errno = e;
		return -1;
	}
	closedir(d);
	if (out->n)
		qsort(out->v, out->n, sizeof *out->v, by_strcmp);
	return 0;
}

void
names_free(struct names *n)
{
	for (size_t i = 0; i < n->n; i++)
		free(n->v[i]);
	free(n->v);
	n->v = NULL;
	n->n = 0;
}

/* stat() follows symlinks: a link to a hook is a hook, as in run-parts. */
enum entry_kind
entry_classify(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return ENTRY_NOSTAT;
	if (S_ISDIR(st.st_mode))
		return ENTRY_SKIP;
	if (!S_ISREG(st.st_mode))
		return ENTRY_NOTPLAIN;
	if (access(path, X_OK) == 0)
		return ENTRY_RUN;
	if (access(path, R_OK) == 0)
		return ENTRY_LISTED;
	return ENTRY_SKIP;
}
