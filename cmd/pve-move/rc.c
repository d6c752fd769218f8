/* ~/.proxmoverc, read as proxmove reads it: Python's configparser with
 * interpolation=None, inline_comment_prefixes=('#', ';') and
 * empty_lines_in_values=False, strict (a duplicate section or option is an
 * error). The rules, as configparser._read has them:
 *   - a line whose stripped text starts with '#' or ';' is a comment;
 *   - '#' or ';' at the start of a line or after white space starts an
 *     inline comment;
 *   - a line empty after that ends the value before it;
 *   - a line indented deeper than the option line continues its value
 *     (joined with '\n');
 *   - "[name]" (up to the last ']') starts a section, [DEFAULT] holds
 *     defaults merged into every section;
 *   - otherwise "key = value" or "key: value", split at the first '=' or
 *     ':'; the key is stripped and lower-cased, the value stripped.
 * Any problem ends the program with exit 78, naming file and line. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "move.h"

#define RC_MAX (1 << 20)

struct opt {
	char *key;
	struct buf val;
	int line;
};

struct sect {
	char *name;
	struct opt *opts;
	size_t nopts;
	int line;
};

static struct opt *
sect_find(struct sect *s, const char *key)
{
	for (size_t i = 0; i < s->nopts; i++)
		if (strcmp(s->opts[i].key, key) == 0)
			return &s->opts[i];
	return NULL;
}

/* Where an inline comment starts, found the way configparser finds it: in
 * rounds, each round moving every prefix to its next occurrence; the first
 * round in which any occurrence follows white space (or starts the line)
 * decides, with the smallest such position. So in "a#b #c ;d" the comment
 * starts at ";d": "#b" does not count and ";d" counts before "#c" is
 * looked at. (size_t)-1: none. */
static size_t
comment_start(const char *line)
{
	static const char prefixes[] = "#;";
	long idx[2] = { -1, -1 };
	int alive[2] = { 1, 1 };

	for (;;) {
		size_t best = (size_t)-1;
		int any = 0;

		for (int k = 0; k < 2; k++) {
			const char *hit;

			if (!alive[k])
				continue;
			hit = strchr(line + idx[k] + 1, prefixes[k]);
			if (!hit) {
				alive[k] = 0;
				continue;
			}
			any = 1;
			idx[k] = hit - line;
			if ((idx[k] == 0 || isspace((unsigned char)line[idx[k] - 1])) &&
			    (size_t)idx[k] < best)
				best = (size_t)idx[k];
		}
		if (best != (size_t)-1 || !any)
			return best;
	}
}

static char *
strip(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	for (char *e = s + strlen(s); e > s && isspace((unsigned char)e[-1]);)
		*--e = '\0';
	return s;
}

static void
sects_free(struct sect *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < s[i].nopts; j++) {
			free(s[i].opts[j].key);
			explicit_bzero(s[i].opts[j].val.data, s[i].opts[j].val.len);
			buf_free(&s[i].opts[j].val);
		}
		free(s[i].opts);
		free(s[i].name);
	}
	free(s);
}

int
ini_parse(const char *text, size_t len, int (*cb)(const struct ini_item *, void *), void *arg,
          char *err, size_t errlen)
{
	struct sect *sects = NULL, defaults = { 0 }, *cur = NULL;
	struct opt *curopt = NULL;
	size_t nsects = 0, indent_level = (size_t)-1;
	int lineno = 0, rc = 0, bad_line = 0;
	const char *p = text, *end = text + len;

	defaults.name = xstrdup("DEFAULT");
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
		char *line = xstrndup(p, n), *value;
		size_t cut = (size_t)-1, indent;

		p = eol ? eol + 1 : end;
		lineno++;
		/* cppcheck-suppress knownConditionTrueFalse ; an empty line has n 0 */
		if (n && line[n - 1] == '\r')
			line[n - 1] = '\0';
		cut = comment_start(line);
		value = strip(line);
		if (*value == '#' || *value == ';')
			cut = 0;
		if (cut != (size_t)-1) {
			line[cut] = '\0';
			value = strip(line);
		}
		if (!*value) {
			indent_level = (size_t)-1; /* an empty line ends the value */
			free(line);
			continue;
		}
		for (indent = 0; line[indent] && isspace((unsigned char)line[indent]); indent++)
			;
		if (cur && curopt && indent_level != (size_t)-1 && indent > indent_level) {
			buf_puts(&curopt->val, "\n");
			buf_puts(&curopt->val, value);
			free(line);
			continue;
		}
		indent_level = indent;
		if (value[0] == '[' && strrchr(value, ']') > value + 1) {
			char *name = xstrndup(value + 1, (size_t)(strrchr(value, ']') - value - 1));

			curopt = NULL;
			if (strcmp(name, "DEFAULT") == 0) {
				cur = &defaults;
				free(name);
			} else {
				for (size_t i = 0; i < nsects; i++)
					if (strcmp(sects[i].name, name) == 0) {
						snprintf(err, errlen,
						         "line %d: section [%s] already exists (line %d)",
						         lineno, name, sects[i].line);
						free(name);
						free(line);
						rc = -1;
						goto out;
					}
				sects = xreallocarray(sects, nsects + 1, sizeof *sects);
				cur = &sects[nsects++];
				*cur = (struct sect){ .name = name, .line = lineno };
			}
		} else if (!cur) {
			snprintf(err, errlen, "line %d: no section header before this line", lineno);
			free(line);
			rc = -1;
			goto out;
		} else {
			char *d = value + strcspn(value, "=:"), *key;

			if (!*d || d == value) {
				/* configparser collects these and fails at the end */
				if (!bad_line)
					bad_line = lineno;
				curopt = NULL;
				free(line);
				continue;
			}
			*d = '\0';
			key = strip(value);
			for (char *k = key; *k; k++)
				*k = (char)tolower((unsigned char)*k);
			if (sect_find(cur, key)) {
				snprintf(err, errlen, "line %d: option '%s' in section [%s] already exists",
				         lineno, key, cur->name);
				free(line);
				rc = -1;
				goto out;
			}
			cur->opts = xreallocarray(cur->opts, cur->nopts + 1, sizeof *cur->opts);
			curopt = &cur->opts[cur->nopts++];
			*curopt = (struct opt){ .key = xstrdup(key), .line = lineno };
			buf_puts(&curopt->val, strip(d + 1));
		}
		explicit_bzero(line, n);
		free(line);
	}
	if (bad_line) {
		snprintf(err, errlen, "line %d: not 'key = value', a section or a comment", bad_line);
		rc = -1;
		goto out;
	}
	for (size_t i = 0; i < nsects && rc == 0; i++) {
		struct sect *s = &sects[i];
		struct ini_item head = { s->name, NULL, NULL, s->line };

		rc = cb(&head, arg); /* the section itself, keys or not */
		for (size_t j = 0; j < s->nopts && rc == 0; j++) {
			struct ini_item it = { s->name, s->opts[j].key,
				               s->opts[j].val.data ? s->opts[j].val.data : "",
				               s->opts[j].line };

			rc = cb(&it, arg);
		}
		for (size_t j = 0; j < defaults.nopts && rc == 0; j++) {
			struct ini_item it = { s->name, defaults.opts[j].key,
				               defaults.opts[j].val.data ? defaults.opts[j].val.data
				                                         : "",
				               defaults.opts[j].line };

			if (!sect_find(s, it.key))
				rc = cb(&it, arg);
		}
		if (rc < 0)
			snprintf(err, errlen, "stopped");
	}
out:
	sects_free(sects, nsects);
	for (size_t j = 0; j < defaults.nopts; j++) {
		free(defaults.opts[j].key);
		buf_free(&defaults.opts[j].val);
	}
	free(defaults.opts);
	free(defaults.name);
	return rc;
}

/* ---- the meaning of the sections ---- */

struct load {
	struct rc *rc;
	int has_secret;
};

static _Noreturn void bad(const struct rc *rc, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void
bad(const struct rc *rc, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	die(EXIT_CONFIG, "%s:%d: %s", rc->file, line, msg);
}

/* api=https://USER@REALM:PASS@HOST[:PORT] as urllib's urlparse splits it:
 * the user part ends at the last '@', the password starts after the first
 * ':' in it. */
static void
parse_api(struct rc *rc, struct rc_cluster *c, const char *v, int line, int *secret)
{
	const char *hostpart, *at, *slash;
	char *netloc, *colon;

	if (strncmp(v, "https://", 8) != 0)
		bad(rc, line, "[pve:%s] api: want https://USER@REALM:PASSWORD@HOST[:PORT]",
		    c->alias);
	v += 8;
	slash = v + strcspn(v, "/?#");
	netloc = xstrndup(v, (size_t)(slash - v));
	at = strrchr(netloc, '@');
	hostpart = at ? at + 1 : netloc;
	if (at) {
		char *userinfo = xstrndup(netloc, (size_t)(at - netloc));
		char *pw = strchr(userinfo, ':');

		if (pw) {
			*pw++ = '\0';
			c->password = xstrdup(pw);
			http_add_secret(c->password);
			*secret = 1;
		}
		c->user = xstrdup(userinfo);
		explicit_bzero(userinfo, strlen(userinfo));
		free(userinfo);
	}
	if (*hostpart == '[') {
		const char *e = strchr(hostpart, ']');

		if (!e)
			bad(rc, line, "[pve:%s] api: bad IPv6 address", c->alias);
		c->host = xstrndup(hostpart + 1, (size_t)(e - hostpart - 1));
		hostpart = e + 1;
		colon = (char *)(*hostpart == ':' ? hostpart : NULL);
	} else {
		colon = strchr(hostpart, ':');
		c->host = xstrndup(hostpart, colon ? (size_t)(colon - hostpart) : strlen(hostpart));
	}
	for (char *h = c->host; *h; h++)
		*h = (char)tolower((unsigned char)*h);
	c->port = 8006;
	if (colon) {
		unsigned long port;

		if (parse_ulong(colon + 1, 65535, &port) < 0 || port == 0)
			bad(rc, line, "[pve:%s] api: bad port '%s'", c->alias, colon + 1);
		c->port = (int)port;
	}
	if (!*c->host)
		bad(rc, line, "[pve:%s] api: no host", c->alias);
	explicit_bzero(netloc, strlen(netloc));
	free(netloc);
}

static int
on_item(const struct ini_item *it, void *arg)
{
	struct load *ld = arg;
	struct rc *rc = ld->rc;
	char *sec = xstrdup(it->section), *type = sec, *rest = strchr(sec, ':');

	if (rest)
		*rest++ = '\0';
	if (strcmp(type, "pve") == 0 && rest && !strchr(rest, ':')) {
		struct rc_cluster *c = (struct rc_cluster *)rc_cluster(rc, rest);

		if (!c) {
			rc->clusters = xreallocarray(rc->clusters, rc->nclusters + 1, sizeof *c);
			c = &rc->clusters[rc->nclusters++];
			*c = (struct rc_cluster){ .alias = xstrdup(rest), .line = it->line, .port = 8006 };
		}
		if (!it->key) {
			/* the section alone: made above */
		} else if (strcmp(it->key, "api") == 0) {
			parse_api(rc, c, it->value, it->line, &ld->has_secret);
		} else if (strcmp(it->key, "token") == 0) {
			const char *eq = strchr(it->value, '='), *bang = strchr(it->value, '!');

			if (!eq || !bang || bang > eq || !strchr(it->value, '@') || !eq[1])
				bad(rc, it->line, "[pve:%s] token: want USER@REALM!TOKENID=SECRET",
				    c->alias);
			c->token_id = xstrndup(it->value, (size_t)(eq - it->value));
			c->token_secret = xstrdup(eq + 1);
			http_add_secret(c->token_secret);
			ld->has_secret = 1;
		} else if (strcmp(it->key, "fingerprint") == 0) {
			unsigned char fp[32];

			if (http_parse_fingerprint(it->value, fp) < 0)
				bad(rc, it->line,
				    "[pve:%s] fingerprint: want the SHA-256 fingerprint, 32 hex "
				    "bytes (AB:CD:...)",
				    c->alias);
			c->fingerprint = xstrdup(it->value);
		} else if (strcmp(it->key, "ca") == 0) {
			if (access(it->value, R_OK) < 0)
				bad(rc, it->line, "[pve:%s] ca: %s: %s", c->alias, it->value,
				    strerror(errno));
			c->ca = xstrdup(it->value);
		} else {
			bad(rc, it->line, "unknown key '%s' in section [%s]", it->key, it->section);
		}
	} else if (strcmp(type, "storage") == 0 && rest && strchr(rest, ':') &&
	           !strchr(strchr(rest, ':') + 1, ':')) {
		char *name = strchr(rest, ':'), *node;
		struct rc_storage *s = NULL;

		*name++ = '\0';
		node = strchr(name, '@');
		if (node)
			*node++ = '\0';
		if (!rc_cluster(rc, rest))
			bad(rc, it->line, "storage describing unknown cluster '%s': [%s]", rest,
			    it->section);
		for (size_t i = 0; i < rc->nstorages; i++)
			if (strcmp(rc->storages[i].alias, rest) == 0 &&
			    strcmp(rc->storages[i].name, name) == 0 &&
			    (node ? rc->storages[i].node && strcmp(rc->storages[i].node, node) == 0
			          : !rc->storages[i].node))
				s = &rc->storages[i];
		if (!s) {
			rc->storages = xreallocarray(rc->storages, rc->nstorages + 1, sizeof *s);
			s = &rc->storages[rc->nstorages++];
			*s = (struct rc_storage){ .alias = xstrdup(rest), .name = xstrdup(name),
				                  .node = node ? xstrdup(node) : NULL,
				                  .line = it->line };
		}
		if (!it->key) {
			/* the section alone: a storage on this host */
		} else if (strcmp(it->key, "ssh") == 0) {
			const char *colon = strrchr(it->value, ':');
			unsigned long port;

			if (it->value[0] == '-' || strpbrk(it->value, " \t\n'\"\\;&|`$"))
				bad(rc, it->line, "[%s] ssh: want user@host[:port]", it->section);
			if (colon && !strchr(colon, ']')) {
				if (parse_ulong(colon + 1, 65535, &port) < 0 || port == 0)
					bad(rc, it->line, "[%s] ssh: bad port '%s'", it->section,
					    colon + 1);
				s->ssh = xstrndup(it->value, (size_t)(colon - it->value));
				s->ssh_port = (int)port;
			} else {
				s->ssh = xstrdup(it->value);
			}
		} else if (strcmp(it->key, "path") == 0) {
			if (it->value[0] != '/' && strncmp(it->value, "zfs:", 4) != 0)
				bad(rc, it->line, "[%s] path: want /DIR or zfs:POOL/FS", it->section);
			s->path = xstrdup(it->value);
		} else if (strcmp(it->key, "temp") == 0) {
			s->temp = xstrdup(it->value);
		} else {
			bad(rc, it->line, "unknown key '%s' in section [%s]", it->key, it->section);
		}
	} else {
		bad(rc, it->line, "unknown section [%s]: want [pve:ALIAS] or "
		                  "[storage:ALIAS:NAME[@NODE]]",
		    it->section);
	}
	free(sec);
	return 0;
}

static void
free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

void
rc_free(struct rc *rc)
{
	for (size_t i = 0; i < rc->nclusters; i++) {
		struct rc_cluster *c = &rc->clusters[i];

		free(c->alias);
		free(c->host);
		free(c->user);
		free_secret(c->password);
		free(c->token_id);
		free_secret(c->token_secret);
		free(c->fingerprint);
		free(c->ca);
	}
	for (size_t i = 0; i < rc->nstorages; i++) {
		struct rc_storage *s = &rc->storages[i];

		free(s->alias);
		free(s->name);
		free(s->node);
		free(s->ssh);
		free(s->path);
		free(s->temp);
	}
	free(rc->clusters);
	free(rc->storages);
	*rc = (struct rc){ 0 };
}

void
rc_load(struct rc *rc, const char *file)
{
	struct load ld = { rc, 0 };
	struct buf text = { 0 };
	char err[512], why[256];
	int fd;

	rc->file = file;
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		die(EXIT_CONFIG, "%s: %s", file, strerror(errno));
	if (read_fd(fd, RC_MAX, &text) < 0)
		die(EXIT_CONFIG, "%s: %s", file, read_file_strerror(errno));
	if (ini_parse(text.data ? text.data : "", text.len, on_item, &ld, err, sizeof err) < 0)
		die(EXIT_CONFIG, "%s: %s", file, err);
	/* A file holding a password or a token is private. */
	if (ld.has_secret && check_private_file(fd, why, sizeof why) < 0)
		die(EXIT_CONFIG, "%s: holds a password or token: %s", file, why);
	close(fd);
	explicit_bzero(text.data, text.len);
	buf_free(&text);
	for (size_t i = 0; i < rc->nclusters; i++) {
		struct rc_cluster *c = &rc->clusters[i];

		if (!c->host)
			bad(rc, c->line, "[pve:%s]: no api= key", c->alias);
		if (c->token_id && c->password)
			bad(rc, c->line, "[pve:%s]: both a password in api= and a token=", c->alias);
		if (!c->token_id && !(c->user && c->password))
			bad(rc, c->line, "[pve:%s]: no credentials: want USER@REALM:PASSWORD in api= "
			                 "or token=",
			    c->alias);
	}
}

const struct rc_cluster *
rc_cluster(const struct rc *rc, const char *alias)
{
	for (size_t i = 0; i < rc->nclusters; i++)
		if (strcmp(rc->clusters[i].alias, alias) == 0)
			return &rc->clusters[i];
	return NULL;
}

const struct rc_storage *
rc_storage(const struct rc *rc, const char *alias, const char *name, const char *node)
{
	const struct rc_storage *any = NULL;

	for (size_t i = 0; i < rc->nstorages; i++) {
		const struct rc_storage *s = &rc->storages[i];

		if (strcmp(s->alias, alias) != 0 || strcmp(s->name, name) != 0)
			continue;
		if (s->node && node && strcmp(s->node, node) == 0)
			return s;
		if (!s->node)
			any = s;
	}
	return any;
}
