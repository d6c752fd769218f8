#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"
#include "vmlist.h"

#define VMLIST_MAX (64 * 1024 * 1024)

static int
cmp_owner(const void *a, const void *b)
{
	uint32_t x = ((const struct vm_owner *)a)->vmid, y = ((const struct vm_owner *)b)->vmid;

	return x < y ? -1 : x > y;
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

static int
sort_unique(struct vmlist *l, char *err, size_t errlen)
{
	if (l->n)
		qsort(l->e, l->n, sizeof *l->e, cmp_owner);
	for (size_t i = 1; i < l->n; i++) {
		if (l->e[i].vmid == l->e[i - 1].vmid) {
			snprintf(err, errlen, "guest %u is on both %s and %s", l->e[i].vmid,
				 l->e[i - 1].node, l->e[i].node);
			return -1;
		}
	}
	return 0;
}

int
vmlist_parse(const char *text, size_t len, struct vmlist *out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root, *ids, *v;
	const char *key;

	memset(out, 0, sizeof *out);
	if (len == 0) {
		snprintf(err, errlen, "empty");
		return -1;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(err, errlen, "line %d: %s", je.line, je.text);
		return -1;
	}
	if (!json_is_object(root) || !json_is_integer(json_object_get(root, "version")) ||
	    json_integer_value(json_object_get(root, "version")) < 0) {
		snprintf(err, errlen, "no \"version\" number");
		goto fail;
	}
	out->version = (uint64_t)json_integer_value(json_object_get(root, "version"));
	ids = json_object_get(root, "ids");
	if (ids && !json_is_object(ids)) {
		snprintf(err, errlen, "\"ids\" is not an object");
		goto fail;
	}
	json_object_foreach(ids, key, v) {
		struct vm_owner o = { 0 };
		json_t *node = json_object_get(v, "node"), *type = json_object_get(v, "type");

		if (parse_vmid(key, &o.vmid) < 0) {
			snprintf(err, errlen, "guest id \"%.32s\" is not a number", key);
			goto fail;
		}
		if (!json_is_string(node) || !node_name_valid(json_string_value(node))) {
			snprintf(err, errlen, "guest %u: bad \"node\"", o.vmid);
			goto fail;
		}
		if (!json_is_string(type) || guest_type_parse(json_string_value(type), &o.type) < 0) {
			/* openvz is long gone from Proxmox; no tool here handles it. */
			if (json_is_string(type) && strcmp(json_string_value(type), "openvz") == 0)
				continue;
			snprintf(err, errlen, "guest %u: bad \"type\"", o.vmid);
			goto fail;
		}
		snprintf(o.node, sizeof o.node, "%s", json_string_value(node));
		out->e = xreallocarray(out->e, out->n + 1, sizeof *out->e);
		out->e[out->n++] = o;
	}
	json_decref(root);
	if (sort_unique(out, err, errlen) < 0) {
		vmlist_free(out);
		return -1;
	}
	return 0;
fail:
	json_decref(root);
	vmlist_free(out);
	return -1;
}

/* pmxcfs counts only ^[1-9][0-9]*\.conf$ directly in a guest dir. */
static int
conf_name_vmid(const char *name, uint32_t *vmid)
{
	const char *dot = strchr(name, '.');
	char num[16];

	if (!dot || strcmp(dot, ".conf") != 0 || (size_t)(dot - name) >= sizeof num)
		return -1;
	memcpy(num, name, dot - name);
	num[dot - name] = '\0';
	return parse_vmid(num, vmid);
}

static int
scan_guest_dir(struct vmlist *l, const char *pve_dir, const char *node, enum guest_type t)
{
	char *path = xasprintf("%s/nodes/%s/%s", pve_dir, node, guest_type_dir(t));
	DIR *d = opendir(path);
	struct dirent *de;

	free(path);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	while ((de = readdir(d))) {
		struct vm_owner o = { .type = t };

		if (de->d_type == DT_DIR || conf_name_vmid(de->d_name, &o.vmid) < 0)
			continue;
		snprintf(o.node, sizeof o.node, "%s", node);
		l->e = xreallocarray(l->e, l->n + 1, sizeof *l->e);
		l->e[l->n++] = o;
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

	memset(out, 0, sizeof *out);
	if (!d) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	while ((de = readdir(d))) {
		if (!node_name_valid(de->d_name))
			continue;
		if (scan_guest_dir(out, pve_dir, de->d_name, GUEST_QEMU) < 0 ||
		    scan_guest_dir(out, pve_dir, de->d_name, GUEST_LXC) < 0) {
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
	json_t *root, *v;
	int rc = -1;

	if (read_file(path, 1024 * 1024, &b) == 0 && (root = json_loadb(b.data, b.len, 0, NULL))) {
		v = json_object_get(root, key);
		if (json_is_integer(v) && json_integer_value(v) >= 0) {
			*out = (uint64_t)json_integer_value(v);
			rc = 0;
		}
		json_decref(root);
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
