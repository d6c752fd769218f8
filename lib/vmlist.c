#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"
#include "vmlist.h"

#define VMLIST_MAX (64 * 1024 * 1024)
#define JSON_DEPTH_MAX 64

static int
cmp_owner(const void *a, const void *b)
{
	uint32_t x = ((const struct vm_owner *)a)->vmid, y = ((const struct vm_owner *)b)->vmid;

	return x < y ? -1 : x > y;
}

static const char *const guest_event_names[] = {
	[GUEST_CREATE] = "create",
	[GUEST_DESTROY] = "destroy",
	[GUEST_MIGRATE_IN] = "migrate-in",
	[GUEST_MIGRATE_OUT] = "migrate-out",
};

const char *
guest_event_name(enum guest_event e)
{
	return guest_event_names[e];
}

int
guest_event_parse(const char *s, enum guest_event *e)
{
	for (size_t i = 0; i < ARRAY_LEN(guest_event_names); i++)
		if (strcmp(s, guest_event_names[i]) == 0)
			return *e = (enum guest_event)i, 0;
	return -1;
}

int
node_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= NODE_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-'))
			return 0;
	return 1;
}

void
vmlist_free(struct vmlist *l)
{
	free(l->e);
	memset(l, 0, sizeof *l);
}

const struct vm_owner *
vmlist_find(const struct vmlist *l, uint32_t vmid)
{
	struct vm_owner key = { .vmid = vmid };

	return l->n ? bsearch(&key, l->e, l->n, sizeof *l->e, cmp_owner) : NULL;
}

void
vmlist_add(struct vmlist *l, const struct vm_owner *o)
{
	size_t i = l->n;

	l->e = xreallocarray(l->e, l->n + 1, sizeof *l->e);
	while (i > 0 && l->e[i - 1].vmid > o->vmid)
		i--;
	memmove(l->e + i + 1, l->e + i, (l->n - i) * sizeof *l->e);
	l->e[i] = *o;
	l->n++;
}

/* Appends with geometric growth; *cap is the caller's capacity counter. */
static void
push_owner(struct vmlist *l, size_t *cap, const struct vm_owner *o)
{
	if (l->n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		l->e = xreallocarray(l->e, *cap, sizeof *l->e);
	}
	l->e[l->n++] = *o;
}

static int
sort_unique(struct vmlist *l, char *err, size_t errlen)
{
	if (l->n) {
		qsort(l->e, l->n, sizeof *l->e, cmp_owner);
		l->e = xreallocarray(l->e, l->n, sizeof *l->e); /* give back the slack */
	}
	for (size_t i = 1; i < l->n; i++) {
		if (l->e[i].vmid == l->e[i - 1].vmid) {
			snprintf(err, errlen, "guest %u is on both %s and %s", l->e[i].vmid,
			         l->e[i - 1].node, l->e[i].node);
			return -1;
		}
	}
	return 0;
}

/* A strict JSON reader for the two small, fixed formats pmxcfs renders
 * (.vmlist and .version). It builds no tree: a 10,000-guest .vmlist is read
 * in one pass straight into the sorted array, and every byte of the text
 * is checked, so a truncated or garbled file is always an error. */
struct jr {
	const char *start, *p, *end;
	char *err;
	size_t errlen;
	int failed;
};

__attribute__((format(printf, 2, 3))) static int
jr_fail(struct jr *j, const char *fmt, ...)
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
static int
jr_peek(struct jr *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
	return j->p < j->end ? (unsigned char)*j->p : -1;
}

static int
jr_expect(struct jr *j, char c)
{
	int got = jr_peek(j);

	if (got == c) {
		j->p++;
		return 0;
	}
	return jr_fail(j, got < 0 ? "truncated: expected '%c'" : "expected '%c'", c);
}

static int
jr_hex4(struct jr *j, uint32_t *v)
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
			return jr_fail(j, c < 0 ? "truncated string" : "bad \\u escape");
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

/* Decodes a string into out (cap bytes, always terminated when cap > 0;
 * NULL to skip it); *lenp is the full decoded length, so the caller sees
 * when it did not fit. */
static int
jr_string(struct jr *j, char *out, size_t cap, size_t *lenp)
{
	size_t n = 0;

#define PUT(ch)                                                                                    \
	do {                                                                                       \
		if (out && n + 1 < cap)                                                            \
			out[n] = (char)(ch);                                                       \
		n++;                                                                               \
	} while (0)

	if (jr_expect(j, '"') < 0)
		return -1;
	for (;;) {
		unsigned char c;
		uint32_t cp, lo;

		if (j->p >= j->end)
			return jr_fail(j, "truncated string");
		c = (unsigned char)*j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return jr_fail(j, "control character in a string");
		if (c != '\\') {
			PUT(c);
			continue;
		}
		if (j->p >= j->end)
			return jr_fail(j, "truncated string");
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
			if (jr_hex4(j, &cp) < 0)
				return -1;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return jr_fail(j, "lone surrogate in a string");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
					return jr_fail(j, "lone surrogate in a string");
				j->p += 2;
				if (jr_hex4(j, &lo) < 0)
					return -1;
				if (lo < 0xdc00 || lo > 0xdfff)
					return jr_fail(j, "lone surrogate in a string");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return jr_fail(j, "NUL in a string");
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
			return jr_fail(j, "bad escape in a string");
		}
	}
#undef PUT
	if (out && cap)
		out[n < cap ? n : cap - 1] = '\0';
	*lenp = n;
	return 0;
}

static int
is_digit(const struct jr *j)
{
	return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

/* A non-negative JSON integer no larger than max. */
static int
jr_uint(struct jr *j, uint64_t max, uint64_t *v)
{
	int c = jr_peek(j);
	uint64_t x = 0;

	if (c == '-')
		return jr_fail(j, "negative number");
	if (c < '0' || c > '9')
		return jr_fail(j, c < 0 ? "truncated: expected a number" : "expected a number");
	if (*j->p == '0') {
		j->p++;
	} else {
		while (is_digit(j)) {
			unsigned d = (unsigned)(*j->p - '0');

			if (x > (max - d) / 10)
				return jr_fail(j, "number out of range");
			x = x * 10 + d;
			j->p++;
		}
	}
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E' || is_digit(j)))
		return jr_fail(j, "not a whole number");
	*v = x;
	return 0;
}

static int
jr_literal(struct jr *j, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return jr_fail(j, (size_t)(j->end - j->p) < n ? "truncated value"
		                                              : "unexpected character");
	j->p += n;
	return 0;
}

/* Any JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
jr_number(struct jr *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (!is_digit(j))
		return jr_fail(j, j->p < j->end ? "bad number" : "truncated number");
	if (*j->p == '0')
		j->p++;
	else
		while (is_digit(j))
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!is_digit(j))
			return jr_fail(j, "bad number");
		while (is_digit(j))
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!is_digit(j))
			return jr_fail(j, "bad number");
		while (is_digit(j))
			j->p++;
	}
	return 0;
}

/* Reads the next member key of an object whose '{' was consumed (*first
 * set before the first call). 1 and the key with ':' consumed, 0 at the
 * closing '}', -1 on error. */
static int
jr_member(struct jr *j, int *first, char *key, size_t cap, size_t *klen)
{
	int c = jr_peek(j);

	if (c == '}') {
		j->p++;
		return 0;
	}
	if (!*first) {
		if (c != ',')
			return jr_fail(j, c < 0 ? "truncated: expected ',' or '}'"
			                        : "expected ',' or '}'");
		j->p++;
		if (jr_peek(j) == '}')
			return jr_fail(j, "expected '\"'");
	}
	*first = 0;
	if (jr_string(j, key, cap, klen) < 0 || jr_expect(j, ':') < 0)
		return -1;
	return 1;
}

static int
jr_skip(struct jr *j, int depth)
{
	int c = jr_peek(j), first = 1, r;
	size_t n;

	if (depth > JSON_DEPTH_MAX)
		return jr_fail(j, "nested too deep");
	switch (c) {
	case -1:
		return jr_fail(j, "truncated: expected a value");
	case '"':
		return jr_string(j, NULL, 0, &n);
	case '{':
		j->p++;
		while ((r = jr_member(j, &first, NULL, 0, &n)) > 0)
			if (jr_skip(j, depth + 1) < 0)
				return -1;
		return r;
	case '[':
		j->p++;
		if (jr_peek(j) == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			if (jr_skip(j, depth + 1) < 0)
				return -1;
			c = jr_peek(j);
			if (c == ']') {
				j->p++;
				return 0;
			}
			if (c != ',')
				return jr_fail(j, c < 0 ? "truncated: expected ',' or ']'"
				                        : "expected ',' or ']'");
			j->p++;
		}
	case 't':
		return jr_literal(j, "true");
	case 'f':
		return jr_literal(j, "false");
	case 'n':
		return jr_literal(j, "null");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return jr_number(j);
		return jr_fail(j, "unexpected character");
	}
}

static int
jr_end(struct jr *j)
{
	if (jr_peek(j) >= 0)
		return jr_fail(j, "trailing data after the object");
	return 0;
}

static int
key_is(const char *key, size_t klen, const char *want)
{
	return klen == strlen(want) && strcmp(key, want) == 0;
}

/* One "VMID": { "node": ..., "type": ..., "version": N } value. Sets *skip
 * for types no tool here handles (openvz is long gone from Proxmox). */
static int
parse_entry(struct jr *j, struct vm_owner *o, int *skip)
{
	char key[16], node[NODE_NAME_MAX + 1], type[16];
	int first = 1, seen_node = 0, seen_type = 0, seen_version = 0, r;
	size_t klen, n;
	uint64_t v;

	if (jr_peek(j) != '{')
		return jr_fail(j, "guest %u: not an object", o->vmid);
	j->p++;
	while ((r = jr_member(j, &first, key, sizeof key, &klen)) > 0) {
		if (key_is(key, klen, "node")) {
			if (seen_node++)
				return jr_fail(j, "guest %u: duplicate \"node\"", o->vmid);
			if (jr_peek(j) != '"')
				return jr_fail(j, "guest %u: bad \"node\"", o->vmid);
			if (jr_string(j, node, sizeof node, &n) < 0)
				return -1;
			if (n >= sizeof node || !node_name_valid(node))
				return jr_fail(j, "guest %u: bad \"node\"", o->vmid);
			memcpy(o->node, node, n + 1);
		} else if (key_is(key, klen, "type")) {
			if (seen_type++)
				return jr_fail(j, "guest %u: duplicate \"type\"", o->vmid);
			if (jr_peek(j) != '"')
				return jr_fail(j, "guest %u: bad \"type\"", o->vmid);
			if (jr_string(j, type, sizeof type, &n) < 0)
				return -1;
			if (n >= sizeof type)
				return jr_fail(j, "guest %u: bad \"type\"", o->vmid);
			if (strcmp(type, "openvz") == 0)
				*skip = 1;
			else if (guest_type_parse(type, &o->type) < 0)
				return jr_fail(j, "guest %u: bad \"type\"", o->vmid);
		} else if (key_is(key, klen, "version")) {
			if (seen_version++)
				return jr_fail(j, "guest %u: duplicate \"version\"", o->vmid);
			if (jr_uint(j, UINT32_MAX, &v) < 0)
				return -1;
			o->version = (uint32_t)v;
		} else if (jr_skip(j, 2) < 0) {
			return -1;
		}
	}
	if (r < 0)
		return -1;
	if (!seen_node)
		return jr_fail(j, "guest %u: no \"node\"", o->vmid);
	if (!seen_type)
		return jr_fail(j, "guest %u: no \"type\"", o->vmid);
	return 0;
}

static int
parse_ids(struct jr *j, struct vmlist *out, size_t *cap)
{
	int first = 1, r, c = jr_peek(j);
	char key[16];
	size_t klen;

	if (c != '{')
		return jr_fail(j, c < 0 ? "truncated: expected '{'" : "\"ids\" is not an object");
	j->p++;
	while ((r = jr_member(j, &first, key, sizeof key, &klen)) > 0) {
		struct vm_owner o = { 0 };
		int skip = 0;

		if (klen >= sizeof key || parse_vmid(key, &o.vmid) < 0) {
			for (char *s = key; *s; s++)
				if ((unsigned char)*s < 0x20 || *s == '"')
					*s = '?';
			return jr_fail(j, "guest id \"%s%s\" is not a number", key,
			               klen >= sizeof key ? "..." : "");
		}
		if (parse_entry(j, &o, &skip) < 0)
			return -1;
		if (!skip)
			push_owner(out, cap, &o);
	}
	return r;
}

int
vmlist_parse(const char *text, size_t len, struct vmlist *out, char *err, size_t errlen)
{
	struct jr j = { text, text, text + len, err, errlen, 0 };
	int first = 1, seen_version = 0, seen_ids = 0, r;
	char key[16];
	size_t klen, cap = 0;

	memset(out, 0, sizeof *out);
	if (jr_peek(&j) < 0) {
		snprintf(err, errlen, "empty");
		return -1;
	}
	if (jr_expect(&j, '{') < 0)
		goto fail;
	while ((r = jr_member(&j, &first, key, sizeof key, &klen)) > 0) {
		if (key_is(key, klen, "version")) {
			if (seen_version++) {
				jr_fail(&j, "duplicate \"version\"");
				goto fail;
			}
			if (jr_uint(&j, UINT64_MAX, &out->version) < 0)
				goto fail;
		} else if (key_is(key, klen, "ids")) {
			if (seen_ids++) {
				jr_fail(&j, "duplicate \"ids\"");
				goto fail;
			}
			if (parse_ids(&j, out, &cap) < 0)
				goto fail;
		} else if (jr_skip(&j, 1) < 0) {
			goto fail;
		}
	}
	if (r < 0 || jr_end(&j) < 0)
		goto fail;
	if (!seen_version) {
		snprintf(err, errlen, "no \"version\" number");
		goto fail;
	}
	if (sort_unique(out, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	vmlist_free(out);
	return -1;
}

int
pve_version_parse(const char *text, size_t len, const char *key, uint64_t *out)
{
	char err[160], k[64];
	struct jr j = { text, text, text + len, err, sizeof err, 0 };
	int first = 1, found = 0, r;
	size_t klen;
	uint64_t v = 0;

	if (jr_expect(&j, '{') < 0)
		return -1;
	while ((r = jr_member(&j, &first, k, sizeof k, &klen)) > 0) {
		int c = jr_peek(&j);

		if (!found && key_is(k, klen, key) && c >= '0' && c <= '9') {
			if (jr_uint(&j, UINT64_MAX, &v) < 0)
				return -1;
			found = 1;
		} else if (jr_skip(&j, 1) < 0) {
			return -1;
		}
	}
	if (r < 0 || jr_end(&j) < 0 || !found)
		return -1;
	*out = v;
	return 0;
}

int
guest_conf_name_vmid(const char *name, uint32_t *vmid)
{
	const char *dot = strchr(name, '.');
	char num[16];

	if (!dot || strcmp(dot, ".conf") != 0 || (size_t)(dot - name) >= sizeof num)
		return -1;
	memcpy(num, name, dot - name);
	num[dot - name] = '\0';
	return parse_vmid(num, vmid);
}

/* pmxcfs counts only regular files named ^[1-9][0-9]*\.conf$ directly in a
 * guest dir. d_type is DT_UNKNOWN on some file systems (FUSE among them). */
static int
scan_guest_dir(struct vmlist *l, size_t *cap, const char *pve_dir, const char *node,
               enum guest_type t)
{
	char *path = xasprintf("%s/nodes/%s/%s", pve_dir, node, guest_type_dir(t));
	DIR *d = opendir(path);
	struct dirent *de;

	free(path);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	while ((de = readdir(d))) {
		struct vm_owner o = { .type = t };
		struct stat st;

		if (guest_conf_name_vmid(de->d_name, &o.vmid) < 0)
			continue;
		if (de->d_type != DT_REG &&
		    (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode)))
			continue;
		snprintf(o.node, sizeof o.node, "%s", node);
		push_owner(l, cap, &o);
	}
	closedir(d);
	return 0;
}

int
vmlist_scan(const char *pve_dir, struct vmlist *out, char *err, size_t errlen)
{
	char *path = xasprintf("%s/nodes", pve_dir);
	DIR *d = opendir(path);
	struct dirent *de;
	size_t cap = 0;

	memset(out, 0, sizeof *out);
	if (!d) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	while ((de = readdir(d))) {
		if (!node_name_valid(de->d_name))
			continue;
		if (scan_guest_dir(out, &cap, pve_dir, de->d_name, GUEST_QEMU) < 0 ||
		    scan_guest_dir(out, &cap, pve_dir, de->d_name, GUEST_LXC) < 0) {
			snprintf(err, errlen, "%s/%s: %s", path, de->d_name, strerror(errno));
			goto fail;
		}
	}
	closedir(d);
	free(path);
	if (sort_unique(out, err, errlen) < 0) {
		vmlist_free(out);
		return -1;
	}
	return 0;
fail:
	closedir(d);
	free(path);
	vmlist_free(out);
	return -1;
}

int
vmlist_load(const char *pve_dir, struct vmlist *out, int *from_file, char *err, size_t errlen)
{
	char *path = xasprintf("%s/.vmlist", pve_dir);
	struct buf b = { 0 };
	int rc;

	if (read_file(path, VMLIST_MAX, &b) < 0) {
		if (errno == ENOENT) {
			free(path);
			*from_file = 0;
			return vmlist_scan(pve_dir, out, err, errlen);
		}
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		memset(out, 0, sizeof *out);
		return -1;
	}
	*from_file = 1;
	rc = vmlist_parse(b.data, b.len, out, err, errlen);
	if (rc < 0) {
		char tmp[256];
		snprintf(tmp, sizeof tmp, "%s", err);
		snprintf(err, errlen, "%s: %s", path, tmp);
	}
	buf_free(&b);
	free(path);
	return rc;
}

int
pve_version_counter(const char *pve_dir, const char *key, uint64_t *out)
{
	char *path = xasprintf("%s/.version", pve_dir);
	struct buf b = { 0 };
	int rc = -1;

	if (read_file(path, 1024 * 1024, &b) == 0)
		rc = pve_version_parse(b.data, b.len, key, out);
	buf_free(&b);
	free(path);
	return rc;
}

char *
guest_conf_path(const char *pve_dir, const char *node, enum guest_type t, uint32_t vmid)
{
	return xasprintf("%s/nodes/%s/%s/%u.conf", pve_dir, node, guest_type_dir(t), vmid);
}
