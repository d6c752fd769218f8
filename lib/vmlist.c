#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "clock.h"
#include "file.h"
#include "filestamp.h"
#include "jsonscan.h"
#include "log.h"
#include "node.h"
#include "parse.h"
#include "vmlist.h"

#define VMLIST_MAX (64 * 1024 * 1024)
#define VERSION_MAX (1024 * 1024)

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

/* One "VMID": { "node": ..., "type": ..., "version": N } value. Sets *skip
 * for types no tool here handles (openvz is long gone from Proxmox). */
static int
parse_entry(struct jsonscan *j, struct vm_owner *o, int *skip)
{
	char key[16], node[NODE_NAME_MAX + 1], type[16];
	int first = 1, seen_node = 0, seen_type = 0, seen_version = 0, r;
	size_t klen, n;
	uint64_t v;

	if (jsonscan_peek(j) != '{')
		return jsonscan_fail(j, "guest %u: not an object", o->vmid);
	j->p++;
	while ((r = jsonscan_member(j, &first, key, sizeof key, &klen)) > 0) {
		if (jsonscan_key_is(key, klen, "node")) {
			if (seen_node++)
				return jsonscan_fail(j, "guest %u: duplicate \"node\"", o->vmid);
			if (jsonscan_peek(j) != '"')
				return jsonscan_fail(j, "guest %u: bad \"node\"", o->vmid);
			if (jsonscan_string(j, node, sizeof node, &n) < 0)
				return -1;
			if (n >= sizeof node || !node_name_valid(node))
				return jsonscan_fail(j, "guest %u: bad \"node\"", o->vmid);
			memcpy(o->node, node, n + 1);
		} else if (jsonscan_key_is(key, klen, "type")) {
			if (seen_type++)
				return jsonscan_fail(j, "guest %u: duplicate \"type\"", o->vmid);
			if (jsonscan_peek(j) != '"')
				return jsonscan_fail(j, "guest %u: bad \"type\"", o->vmid);
			if (jsonscan_string(j, type, sizeof type, &n) < 0)
				return -1;
			if (n >= sizeof type)
				return jsonscan_fail(j, "guest %u: bad \"type\"", o->vmid);
			if (strcmp(type, "openvz") == 0)
				*skip = 1;
			else if (guest_type_parse(type, &o->type) < 0)
				return jsonscan_fail(j, "guest %u: bad \"type\"", o->vmid);
		} else if (jsonscan_key_is(key, klen, "version")) {
			if (seen_version++)
				return jsonscan_fail(j, "guest %u: duplicate \"version\"", o->vmid);
			if (jsonscan_uint(j, UINT32_MAX, &v) < 0)
				return -1;
			o->version = (uint32_t)v;
		} else if (jsonscan_skip(j, 2) < 0) {
			return -1;
		}
	}
	if (r < 0)
		return -1;
	if (!seen_node)
		return jsonscan_fail(j, "guest %u: no \"node\"", o->vmid);
	if (!seen_type)
		return jsonscan_fail(j, "guest %u: no \"type\"", o->vmid);
	return 0;
}

/* A VMID pmxcfs registers (memdb.c name_is_vm_config: any 32-bit number)
 * that is above what Proxmox's API and parse_vmid take. */
static int
vmid_too_big(const char *s, uint32_t *vmid)
{
	unsigned long v;

	if (s[0] < '1' || s[0] > '9' || strlen(s) > 10 || parse_ulong(s, UINT32_MAX, &v) < 0)
		return 0;
	*vmid = (uint32_t)v;
	return 1;
}

static int
parse_ids(struct jsonscan *j, struct vmlist *out, size_t *cap)
{
	int first = 1, r, c = jsonscan_peek(j);
	char key[16];
	size_t klen;

	if (c != '{')
		return jsonscan_fail(j, c < 0 ? "truncated: expected '{'" : "\"ids\" is not an object");
	j->p++;
	while ((r = jsonscan_member(j, &first, key, sizeof key, &klen)) > 0) {
		struct vm_owner o = { 0 };
		int skip = 0, big = 0;

		if (klen >= sizeof key || parse_vmid(key, &o.vmid) < 0) {
			if (klen < sizeof key && vmid_too_big(key, &o.vmid)) {
				big = 1;
			} else {
				for (char *s = key; *s; s++)
					if ((unsigned char)*s < 0x20 || *s == '"')
						*s = '?';
				return jsonscan_fail(j, "guest id \"%s%s\" is not a number", key,
				                     klen >= sizeof key ? "..." : "");
			}
		}
		if (parse_entry(j, &o, &skip) < 0)
			return -1;
		if (big) {
			if (!out->nskipped++ || o.vmid < out->skipped_vmid)
				out->skipped_vmid = o.vmid;
		} else if (!skip) {
			push_owner(out, cap, &o);
		}
	}
	return r;
}

void
vmlist_warn_skipped(const char *path, const struct vmlist *l)
{
	/* What the last warning was about (one process, one map). */
	static size_t warned_n;
	static uint32_t warned_vmid;

	if (l->nskipped == warned_n && (!l->nskipped || l->skipped_vmid == warned_vmid))
		return;
	warned_n = l->nskipped;
	warned_vmid = l->skipped_vmid;
	if (!l->nskipped)
		return;
	if (l->nskipped == 1)
		log_warn("%s: guest %u skipped: a VMID above 999999999 is not a Proxmox guest ID",
		         path, l->skipped_vmid);
	else
		log_warn("%s: %zu guests skipped (VMID %u and more): a VMID above 999999999 is "
		         "not a Proxmox guest ID",
		         path, l->nskipped, l->skipped_vmid);
}

int
vmlist_parse(const char *text, size_t len, struct vmlist *out, char *err, size_t errlen)
{
	struct jsonscan j;
	int first = 1, seen_version = 0, seen_ids = 0, r;
	char key[16];
	size_t klen, cap = 0;

	memset(out, 0, sizeof *out);
	jsonscan_init(&j, text, len, err, errlen);
	if (jsonscan_peek(&j) < 0) {
		snprintf(err, errlen, "empty");
		return -1;
	}
	if (jsonscan_expect(&j, '{') < 0)
		goto fail;
	while ((r = jsonscan_member(&j, &first, key, sizeof key, &klen)) > 0) {
		if (jsonscan_key_is(key, klen, "version")) {
			if (seen_version++) {
				jsonscan_fail(&j, "duplicate \"version\"");
				goto fail;
			}
			if (jsonscan_uint(&j, UINT64_MAX, &out->version) < 0)
				goto fail;
		} else if (jsonscan_key_is(key, klen, "ids")) {
			if (seen_ids++) {
				jsonscan_fail(&j, "duplicate \"ids\"");
				goto fail;
			}
			if (parse_ids(&j, out, &cap) < 0)
				goto fail;
		} else if (jsonscan_skip(&j, 1) < 0) {
			goto fail;
		}
	}
	if (r < 0 || jsonscan_end(&j) < 0)
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
	struct jsonscan j;
	int first = 1, found = 0, r;
	size_t klen;
	uint64_t v = 0;

	jsonscan_init(&j, text, len, err, sizeof err);
	if (jsonscan_expect(&j, '{') < 0)
		return -1;
	while ((r = jsonscan_member(&j, &first, k, sizeof k, &klen)) > 0) {
		int c = jsonscan_peek(&j);

		if (!found && jsonscan_key_is(k, klen, key) && c >= '0' && c <= '9') {
			if (jsonscan_uint(&j, UINT64_MAX, &v) < 0)
				return -1;
			found = 1;
		} else if (jsonscan_skip(&j, 1) < 0) {
			return -1;
		}
	}
	if (r < 0 || jsonscan_end(&j) < 0 || !found)
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
	} else {
		vmlist_warn_skipped(path, out);
	}
	buf_free(&b);
	free(path);
	return rc;
}

char *
guest_conf_path(const char *pve_dir, const char *node, enum guest_type t, uint32_t vmid)
{
	return xasprintf("%s/nodes/%s/%s/%u.conf", pve_dir, node, guest_type_dir(t), vmid);
}

/* ---- keeping the map fresh */

void
vmlist_source_init(struct vmlist_source *s, const char *pve_dir, const char *node)
{
	memset(s, 0, sizeof *s);
	s->pve_dir = pve_dir;
	s->vmlist_path = xasprintf("%s/.vmlist", pve_dir);
	s->version_path = xasprintf("%s/.version", pve_dir);
	s->node_dir = node ? xasprintf("%s/nodes/%s", pve_dir, node) : NULL;
}

void
vmlist_source_free(struct vmlist_source *s)
{
	free(s->vmlist_path);
	free(s->version_path);
	free(s->node_dir);
	buf_free(&s->version_buf);
}

const char *
vmlist_source_name(const struct vmlist_source *s)
{
	return s->from == VMLIST_FROM_SCAN ? "nodes/ scan" : ".vmlist";
}

static uint64_t
mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* The stamp's hash; clears *settled when the file changed too recently. */
static uint64_t
stamp_sig(const char *path, int64_t now, int *settled)
{
	struct filestamp st;

	filestamp_take(path, &st);
	if (!filestamp_settled(&st, now))
		*settled = 0;
	return filestamp_hash(&st);
}

/* Signature of nodes/, nodes/N, nodes/N/qemu-server and nodes/N/lxc: a
 * guest config added, removed or renamed changes one of their mtimes. The
 * sum makes it independent of readdir order. */
static int
scan_signature(const struct vmlist_source *s, uint64_t *sig, int *settled)
{
	static const char *const sub[] = { "", "/qemu-server", "/lxc" };
	char *nodes = xasprintf("%s/nodes", s->pve_dir);
	int64_t now = real_ns();
	struct dirent *de;
	uint64_t h;
	DIR *d;

	*settled = 1;
	if (!(d = opendir(nodes))) {
		free(nodes);
		return -1;
	}
	h = stamp_sig(nodes, now, settled);
	while ((de = readdir(d))) {
		if (!node_name_valid(de->d_name))
			continue;
		for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
			char *p = xasprintf("%s/%s%s", nodes, de->d_name, sub[i]);

			h += mix(mix(name_hash(de->d_name), i), stamp_sig(p, now, settled));
			free(p);
		}
	}
	closedir(d);
	free(nodes);
	*sig = h;
	return 0;
}

static int
source_fail(struct vmlist_source *s, const char *path, const char *reason)
{
	snprintf(s->err, sizeof s->err, "%s: %s", path, reason);
	s->gated = 0;
	return -1;
}

static int
read_scan(struct vmlist_source *s, int force, struct vmlist *out)
{
	char msg[300];
	uint64_t sig;
	int settled;

	if (scan_signature(s, &sig, &settled) < 0) {
		char *nodes = xasprintf("%s/nodes", s->pve_dir);
		int rc = source_fail(s, nodes, strerror(errno));

		free(nodes);
		return rc;
	}
	if (!force && s->gated && s->from == VMLIST_FROM_SCAN && sig == s->gate_sig)
		return 0;
	if (vmlist_scan(s->pve_dir, out, msg, sizeof msg) < 0) {
		snprintf(s->err, sizeof s->err, "%s", msg);
		s->gated = 0;
		return -1;
	}
	s->from = VMLIST_FROM_SCAN;
	s->gate_by_version = 0;
	s->gate_sig = sig;
	s->gated = settled;
	return 1;
}

int
vmlist_source_read(struct vmlist_source *s, int force, struct vmlist *out)
{
	uint64_t start = 0, counter = 0, sig = 0;
	char msg[300];
	struct buf b = { 0 };
	int have_version, settled = 1;
	struct filestamp fs;
	struct stat st;

	if (s->node_dir) {
		if (stat(s->node_dir, &st) < 0)
			return source_fail(s, s->node_dir, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return source_fail(s, s->node_dir, strerror(ENOTDIR));
	}
	have_version =
	    read_file(s->version_path, VERSION_MAX, &s->version_buf) == 0 &&
	    pve_version_parse(s->version_buf.data, s->version_buf.len, "vmlist", &counter) == 0;
	if (have_version &&
	    pve_version_parse(s->version_buf.data, s->version_buf.len, "starttime", &start) < 0)
		start = 0;
	/* The counter starts again when pmxcfs does: starttime tells them apart. */
	if (have_version && !force && s->gated && s->gate_by_version &&
	    s->from == VMLIST_FROM_FILE && start == s->gate_start && counter == s->gate_counter)
		return 0;

	if (stat(s->vmlist_path, &st) < 0) {
		if (errno != ENOENT)
			return source_fail(s, s->vmlist_path, strerror(errno));
		return read_scan(s, force, out);
	}
	if (!have_version) {
		filestamp_of(&st, &fs);
		sig = filestamp_hash(&fs);
		settled = filestamp_settled(&fs, real_ns());
		if (!force && s->gated && !s->gate_by_version && s->from == VMLIST_FROM_FILE &&
		    sig == s->gate_sig)
			return 0;
	}
	if (read_file(s->vmlist_path, VMLIST_MAX, &b) < 0) {
		buf_free(&b);
		return source_fail(s, s->vmlist_path, strerror(errno));
	}
	if (vmlist_parse(b.data, b.len, out, msg, sizeof msg) < 0) {
		buf_free(&b);
		return source_fail(s, s->vmlist_path, msg);
	}
	buf_free(&b);
	vmlist_warn_skipped(s->vmlist_path, out);
	s->from = VMLIST_FROM_FILE;
	s->gate_by_version = have_version;
	if (have_version) {
		s->gate_start = start;
		s->gate_counter = counter;
		/* A .vmlist older than the counter that sent us here is read again. */
		s->gated = out->version >= counter;
	} else {
		s->gate_sig = sig;
		s->gated = settled;
	}
	return 1;
}

void
vmlist_current_init(struct vmlist_current *c, const char *pve_dir, const char *node)
{
	memset(c, 0, sizeof *c);
	vmlist_source_init(&c->src, pve_dir, node);
}

void
vmlist_current_free(struct vmlist_current *c)
{
	vmlist_source_free(&c->src);
	vmlist_free(&c->map);
}

int
vmlist_refresh(struct vmlist_current *c, int force)
{
	struct vmlist fresh;
	int r = vmlist_source_read(&c->src, force, &fresh);

	if (r < 0) {
		/* Never take a broken map for "every guest is gone". */
		if (!c->failing)
			log_err("%s; %s", c->src.err,
			        c->have_map ? "keeping the last guest list" : "no guest list yet");
		c->failing = 1;
		return c->have_map ? 0 : -1;
	}
	if (c->failing)
		log_info("%s: guest list readable again (from %s)", c->src.pve_dir,
		         vmlist_source_name(&c->src));
	c->failing = 0;
	if (r == 0)
		return 0;
	vmlist_free(&c->map);
	c->map = fresh;
	c->have_map = 1;
	return 1;
}

int
guest_conf_anywhere(const char *pve_dir, uint32_t vmid)
{
	char *nodes = xasprintf("%s/nodes", pve_dir);
	DIR *d = opendir(nodes);
	struct dirent *de;
	int found = 0;

	free(nodes);
	if (!d)
		return -1;
	while (!found && (de = readdir(d))) {
		if (!node_name_valid(de->d_name))
			continue;
		for (int t = GUEST_QEMU; t <= GUEST_LXC && !found; t++) {
			char *p = guest_conf_path(pve_dir, de->d_name, t, vmid);
			struct stat st;

			if (stat(p, &st) == 0)
				found = S_ISREG(st.st_mode);
			else if (errno != ENOENT && errno != ENOTDIR)
				found = -1;
			free(p);
		}
	}
	closedir(d);
	return found;
}
