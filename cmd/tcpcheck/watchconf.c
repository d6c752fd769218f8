/* Guest health configs, read the way mvmm reads them (Perl AppConfig):
 *   key=value or key = value or "key value"; '#' starts a comment at the
 *   start of a line or after blanks ("\#" is a literal '#'); a trailing
 *   backslash continues the line (on the last line it is an error, not a
 *   literal '\'); one pair of quotes around a value is dropped; keys are
 *   case-sensitive; a UTF-8 byte order mark is skipped.
 * Unlike mvmm, an unknown key or a bad value is an error naming FILE:LINE,
 * and the guest it belongs to is not watched (mvmm warned and went on with
 * the default, which for a typo in fail_threshold means early reboots). */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpcheck.h"
#include "util.h"

#define CONF_MAX (64 * 1024)

void
watchconf_defaults(struct watch_conf *c, int timeout_ms)
{
	memset(c, 0, sizeof *c);
	/* mvmm's defaults, so an mvmm directory keeps its behaviour. */
	c->check_interval = 60;
	c->fail_interval = 10;
	c->fail_threshold = 30;
	c->wait_interval = 15;
	c->log_interval = 900;
	c->recovery_time = 60; /* mvmm's boot_time */
	c->disabled_log_interval = 25200;
	/* ours */
	c->timeout = timeout_ms / 1000.0;
	c->action_timeout = 0; /* automatic */
	c->action_window = 3600;
	c->max_actions = 3;
	c->enabled = 1;
	c->restart_at = -1;
}

void
watchconf_copy(struct watch_conf *dst, const struct watch_conf *src)
{
	*dst = *src;
	dst->name = src->name ? xstrdup(src->name) : NULL;
	dst->action = src->action ? xstrdup(src->action) : NULL;
}

void
watchconf_free(struct watch_conf *c)
{
	free(c->name);
	free(c->action);
	c->name = c->action = NULL;
}

double
watchconf_fail_interval(const struct watch_conf *c)
{
	/* The default re-checks faster while failing, never slower. */
	if (!c->fail_interval_set && c->check_interval < c->fail_interval)
		return c->check_interval;
	return c->fail_interval;
}

double
watchconf_action_timeout(const struct watch_conf *c)
{
	/* Shutdown and stop may each take wait_interval; starts, qm's own
	 * start-up and HA's scheduling get two more minutes. */
	return c->action_timeout > 0 ? c->action_timeout : 2 * c->wait_interval + 120;
}

enum kind { K_IP, K_PORTS, K_SECONDS, K_POSITIVE, K_BOOL, K_COUNT, K_TEXT, K_CLOCK };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
};

#define F(field) offsetof(struct watch_conf, field)

static const struct key keys[] = {
	{ "ip", K_IP, 0 },
	{ "portsall", K_PORTS, F(portsall) },
	{ "portsany", K_PORTS, F(portsany) },
	{ "check_interval", K_POSITIVE, F(check_interval) },
	{ "fail_interval", K_POSITIVE, F(fail_interval) },
	{ "fail_threshold", K_SECONDS, F(fail_threshold) },
	{ "wait_interval", K_SECONDS, F(wait_interval) },
	{ "log_interval", K_POSITIVE, F(log_interval) },
	{ "recovery_time", K_SECONDS, F(recovery_time) },
	{ "boot_time", K_SECONDS, F(recovery_time) }, /* mvmm's name for it */
	{ "disabled_log_interval", K_POSITIVE, F(disabled_log_interval) },
	{ "restart_after", K_SECONDS, F(restart_after) },
	{ "restart_at", K_CLOCK, F(restart_at) },
	{ "enabled", K_BOOL, F(enabled) },
	{ "name", K_TEXT, F(name) },
	/* ours */
	{ "maintenance", K_BOOL, F(maintenance) },
	{ "max_actions", K_COUNT, F(max_actions) },
	{ "action", K_TEXT, F(action) },
	{ "action_timeout", K_SECONDS, F(action_timeout) },
	{ "action_window", K_POSITIVE, F(action_window) },
	{ "timeout", K_POSITIVE, F(timeout) },
};

static int
parse_ports(const char *key, const char *v, uint16_t *ports, unsigned *n, char *err, size_t errlen)
{
	char *copy = xstrdup(v), *save = NULL, *tok;
	unsigned k = 0;
	int rc = 0;

	for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		if (k == MAX_PORTS) {
			snprintf(err, errlen, "%s: more than %d ports", key, MAX_PORTS);
			rc = -1;
			break;
		}
		if (parse_port(tok, &ports[k]) < 0) {
			snprintf(err, errlen, "%s: bad port '%.20s' (want 1-65535)", key, tok);
			rc = -1;
			break;
		}
		k++;
	}
	free(copy);
	if (rc == 0)
		*n = k;
	return rc;
}

/* Fields are written through memcpy at their offset: one table serves every
 * key without casting the struct to the field's type. */
static void
put(struct watch_conf *c, size_t off, const void *v, size_t len)
{
	memcpy((char *)c + off, v, len);
}

static int
set_key(struct watch_conf *c, const char *k, const char *v, char *err, size_t errlen)
{
	const struct key *key = NULL;
	unsigned long ul;
	unsigned u;
	double d;
	int b;

	for (size_t i = 0; i < ARRAY_LEN(keys) && !key; i++)
		if (strcmp(keys[i].name, k) == 0)
			key = &keys[i];
	if (!key) {
		char name[KEY_EXCERPT_SIZE];
		key_excerpt(k, name); /* "password:s3cr3t" names "password" */
		snprintf(err, errlen, "unknown key '%s'", name);
		return -1;
	}
	if (!*v) {
		snprintf(err, errlen, "%s: empty value", k);
		return -1;
	}
	switch (key->kind) {
	case K_IP:
		if (strlen(v) >= sizeof c->ip || ipaddr_parse_scoped(v, &c->addr) < 0) {
			snprintf(err, errlen, "ip: '%s' is not an IPv4 or IPv6 address", v);
			return -1;
		}
		snprintf(c->ip, sizeof c->ip, "%s", v);
		c->has_ip = 1;
		return 0;
	case K_PORTS:
		if (key->off == F(portsall))
			return parse_ports(k, v, c->portsall, &c->nall, err, errlen);
		return parse_ports(k, v, c->portsany, &c->nany, err, errlen);
	case K_SECONDS:
	case K_POSITIVE:
		if (parse_seconds(v, &d) < 0 || (key->kind == K_POSITIVE && d < 0.01)) {
			snprintf(err, errlen, "%s: '%s' is not a number of seconds%s", k, v,
			         key->kind == K_POSITIVE ? " (at least 0.01)" : "");
			return -1;
		}
		put(c, key->off, &d, sizeof d);
		if (key->off == F(fail_interval))
			c->fail_interval_set = 1;
		return 0;
	case K_BOOL:
		if (parse_bool(v, &b) < 0) {
			snprintf(err, errlen,
			         "%s: '%s' is not a boolean (1/0, true/false, yes/no, on/off)", k,
			         v);
			return -1;
		}
		put(c, key->off, &b, sizeof b);
		return 0;
	case K_COUNT:
		if (parse_ulong(v, 1000, &ul) < 0) {
			snprintf(err, errlen, "%s: '%s' is not a count from 0 to 1000", k, v);
			return -1;
		}
		u = (unsigned)ul;
		put(c, key->off, &u, sizeof u);
		return 0;
	case K_TEXT: {
		char *old, *copy = xstrdup(v);
		memcpy(&old, (char *)c + key->off, sizeof old);
		free(old);
		put(c, key->off, &copy, sizeof copy);
		return 0;
	}
	case K_CLOCK: {
		int h, m, pos = 0;
		if (strlen(v) != 5 || sscanf(v, "%2d:%2d%n", &h, &m, &pos) != 2 || pos != 5 ||
		    !isdigit((unsigned char)v[0]) || !isdigit((unsigned char)v[3]) || h > 23 ||
		    m > 59 || h < 0 || m < 0) {
			snprintf(err, errlen, "restart_at: '%s' is not HH:MM", v);
			return -1;
		}
		c->restart_at = h * 60 + m;
		return 0;
	}
	}
	return -1;
}

/* AppConfig: "#" at the start or after blanks begins a comment. */
static void
strip_comment(char *s)
{
	for (char *p = s; *p; p++) {
		if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

static void
unescape_hash(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] == '#')
			r++;
		*w++ = *r;
	}
	*w = '\0';
}

/* One logical line (continuations joined); 0 or -1 with err. */
static int
parse_line(struct watch_conf *c, char *line, char *err, size_t errlen)
{
	char *s = trim_space(line), *k, *v;
	size_t klen, vlen;

	if (!*s)
		return 0;
	if (*s == '[') {
		snprintf(err, errlen, "[sections] are not supported");
		return -1;
	}
	if (*s == '-' || *s == '+') {
		snprintf(err, errlen, "'%c' before a key is not supported", *s);
		return -1;
	}
	k = s;
	klen = strcspn(k, " \t=");
	v = k + klen;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '=')
		v++;
	while (*v == ' ' || *v == '\t')
		v++;
	k[klen] = '\0';
	vlen = strlen(v);
	if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
		v[vlen - 1] = '\0';
		v++;
	}
	return set_key(c, k, v, err, errlen);
}

int
watchconf_load(struct watch_conf *c, const char *path, char *err, size_t errlen)
{
	struct buf b = { 0 }, logical = { 0 };
	unsigned lineno = 0, start = 0;
	char *p, *nl, msg[200];
	int rc = 0;

	if (read_file(path, CONF_MAX, &b) < 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "%s: %s", path, read_file_strerror(errno));
		return -1;
	}
	if (memchr(b.data, '\0', b.len)) {
		snprintf(err, errlen, "%s: binary data", path);
		buf_free(&b);
		return -1;
	}
	for (p = (char *)skip_bom(b.data); rc == 0 && *p; p = nl ? nl + 1 : p + strlen(p)) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		if (!logical.len)
			start = lineno;
		strip_comment(p);
		size_t n = strlen(p);
		int cont = n > 0 && p[n - 1] == '\\';
		if (cont && !(nl && nl[1])) {
			snprintf(err, errlen, "%s:%u: '\\' at the end of the last line continues nothing",
			         path, lineno);
			rc = -1;
			break;
		}
		buf_append(&logical, p, cont ? n - 1 : n);
		if (cont)
			continue;
		unescape_hash(logical.data);
		if (parse_line(c, logical.data, msg, sizeof msg) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, start, msg);
			rc = -1;
		}
		buf_reset(&logical);
		if (!nl)
			break;
	}
	buf_free(&logical);
	buf_free(&b);
	return rc;
}

int
watchconf_validate(const struct watch_conf *c, char *err, size_t errlen)
{
	if ((c->nall || c->nany) && !c->has_ip) {
		snprintf(err, errlen, "ports to check but no ip=");
		return -1;
	}
	return 0;
}
