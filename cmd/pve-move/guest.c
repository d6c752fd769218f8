/* The guest on the source: found by name or VMID, its config read,
 * refused when it cannot move, translated for the create call, its volumes
 * resolved through the API. Nothing here changes anything. */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "move.h"

static const char *const suffixes[] = { "--CREATING", "--CLONING", "--MIGRATED" };

/* Keys never copied: bookkeeping (digest, meta, pending), what Proxmox's
 * own clone skips (qemu-server clone_vm), and what belongs to the source
 * cluster. */
static const char *const drop_keys[] = {
	"digest",     "meta",          "pending",        "parent",
	"snaptime",   "vmstate",       "snapstate",      "runningcpu",
	"runningmachine", "running-nets-host-mtu", "lock", "vmstatestorage",
	"name",       "hostname",
};

const char *
map_lookup(char *const *map, size_t n, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < n; i++)
		if (strncmp(map[i], key, kl) == 0 && map[i][kl] == '=')
			return map[i] + kl + 1;
	return NULL;
}

static int
match(const char *re, const char *s)
{
	regex_t r;
	int ok;

	if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	ok = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return ok;
}

static int
is_disk_key(const char *type, const char *k)
{
	if (strcmp(type, "lxc") == 0)
		return strcmp(k, "rootfs") == 0 || match("^mp[0-9]+$", k);
	return match("^(ide|sata|scsi|virtio)[0-9]+$|^efidisk0$|^tpmstate0$", k);
}

static char *
value_str(json_t *v)
{
	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (json_is_integer(v))
		return xasprintf("%lld", (long long)json_integer_value(v));
	if (json_is_real(v))
		return xasprintf("%g", json_real_value(v));
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "1" : "0");
	return NULL;
}

static void
warn_add(struct guest *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
warn_add(struct guest *g, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		die(EXIT_OSERR, "out of memory");
	va_end(ap);
	g->warnings = xreallocarray(g->warnings, g->nwarnings + 1, sizeof *g->warnings);
	g->warnings[g->nwarnings++] = s;
}

int
guest_find(struct move *m, const char *arg, struct guest *g, int *code)
{
	struct api_error err;
	uint32_t want = 0;
	json_t *res, *hit = NULL, *e;
	size_t i, nhits = 0;

	memset(g, 0, sizeof *g);
	if (!m->src_resources) {
		m->src_resources = api_call(&m->src, "GET", "/cluster/resources?type=vm", NULL, &err);
		if (!m->src_resources) {
			log_err("%s: guest list: %s", m->src_alias, err.msg);
			*code = EXIT_UNAVAILABLE;
			return -1;
		}
	}
	res = m->src_resources;
	parse_vmid(arg, &want);
	/* the exact name first; else the name with one of the step suffixes
	 * (an interrupted move, ours or proxmove's) */
	for (int pass = 0; pass < 2 && !hit; pass++) {
		json_array_foreach(res, i, e)
		{
			const char *name = json_string_value(json_object_get(e, "name"));
			json_int_t id = json_integer_value(json_object_get(e, "vmid"));
			int ok = 0;

			if (want)
				ok = pass == 0 && id == (json_int_t)want;
			else if (pass == 0)
				ok = name && strcmp(name, arg) == 0;
			else
				for (size_t k = 0; name && k < ARRAY_LEN(suffixes); k++) {
					size_t al = strlen(arg);
					if (strncmp(name, arg, al) == 0 &&
					    strcmp(name + al, suffixes[k]) == 0)
						ok = 1;
				}
			if (ok) {
				hit = e;
				nhits++;
			}
		}
	}
	if (!hit) {
		log_err("%s: no guest named or numbered '%s'", m->src_alias, arg);
		*code = EXIT_DATAERR;
		return -1;
	}
	if (nhits > 1) {
		log_err("%s: %zu guests are named '%s': give the VMID", m->src_alias, nhits, arg);
		*code = EXIT_DATAERR;
		return -1;
	}
	g->type = xstrdup(json_string_value(json_object_get(hit, "type")));
	g->vmid = (uint32_t)json_integer_value(json_object_get(hit, "vmid"));
	g->node = xstrdup(json_string_value(json_object_get(hit, "node")));
	g->status = xstrdup(json_string_value(json_object_get(hit, "status"))
	                        ? json_string_value(json_object_get(hit, "status"))
	                        : "unknown");
	g->running = strcmp(g->status, "running") == 0;
	if (json_string_value(json_object_get(hit, "pool")))
		g->pool = xstrdup(json_string_value(json_object_get(hit, "pool")));
	g->cur_name = xstrdup(json_string_value(json_object_get(hit, "name"))
	                          ? json_string_value(json_object_get(hit, "name"))
	                          : "");
	g->name = xstrdup(g->cur_name);
	for (size_t k = 0; k < ARRAY_LEN(suffixes); k++) {
		size_t nl = strlen(g->name), sl = strlen(suffixes[k]);
		if (nl > sl && strcmp(g->name + nl - sl, suffixes[k]) == 0)
			g->name[nl - sl] = '\0';
	}
	if (strcmp(g->type, "qemu") != 0 && strcmp(g->type, "lxc") != 0) {
		log_err("%s: %s: unknown guest type '%s'", m->src_alias, arg, g->type);
		*code = EXIT_DATAERR;
		return -1;
	}
	if (!*g->name) {
		free(g->name);
		g->name = xasprintf("%s%u", strcmp(g->type, "lxc") == 0 ? "ct" : "vm", g->vmid);
	}
	if (json_integer_value(json_object_get(hit, "template")) == 1) {
		log_err("%s: %s (%u) is a template: pve-move moves guests, not templates",
		        m->src_alias, g->name, g->vmid);
		*code = EXIT_DATAERR;
		return -1;
	}
	return 0;
}

/* Splits "vol,opt=1,opt=2" (or "file=vol,...") into the volume and the
 * options (",opt=1,opt=2", size kept). */
static void
split_volume(const char *value, char **vol, char **opts)
{
	const char *c = strchr(value, ',');
	char *first = c ? xstrndup(value, (size_t)(c - value)) : xstrdup(value);
	struct buf o = { 0 };

	buf_puts(&o, "");
	if (strncmp(first, "file=", 5) == 0 || strncmp(first, "volume=", 7) == 0) {
		char *v = xstrdup(strchr(first, '=') + 1);
		free(first);
		first = v;
	}
	/* a volume given as file= somewhere later */
	if (c)
		buf_puts(&o, c);
	*vol = first;
	*opts = o.data;
}

static json_t *
storage_list(struct api *a, const char *node, struct api_error *err)
{
	char *path = xasprintf("/nodes/%s/storage", node);
	json_t *l = api_call(a, "GET", path, NULL, err);

	free(path);
	return l;
}

static json_t *
storage_find(json_t *list, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach(list, i, e)
	{
		const char *s = json_string_value(json_object_get(e, "storage"));
		if (s && strcmp(s, name) == 0)
			return e;
	}
	return NULL;
}

static int
file_storage(const char *type)
{
	static const char *const t[] = { "dir", "nfs", "cifs", "glusterfs", "btrfs" };

	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		if (strcmp(type, t[i]) == 0)
			return 1;
	return 0;
}

/* qemu-server lets only root@pam set these (check_vm_modify_config_perm:
 * "only root can set '$opt' config"); a copy needs the same right. */
static int
root_only(const char *k, const char *v)
{
	if (strcmp(k, "args") == 0 || match("^hostpci[0-9]+$", k) || match("^parallel[0-9]+$", k))
		return 1;
	if (match("^usb[0-9]+$", k))
		return strstr(v, "host=") != NULL;
	if (match("^serial[0-9]+$", k))
		return strcmp(v, "socket") != 0;
	return 0;
}

static int
resolve_vol(struct move *m, struct guest *g, struct vol *v, json_t *src_st, json_t *dst_st,
            int *code)
{
	struct api_error err;
	json_t *s, *d, *info;
	char *ev, *path;
	const char *dst;
	int lxc = strcmp(g->type, "lxc") == 0;

	s = storage_find(src_st, v->storage);
	if (!s) {
		log_err("%s: %s %s: storage '%s' is not on node %s", m->src_alias, g->name, v->key,
		        v->storage, g->node);
		*code = EXIT_DATAERR;
		return -1;
	}
	v->stype = xstrdup(json_string_value(json_object_get(s, "type")) ?: "?");
	ev = http_escape(v->volid);
	path = xasprintf("/nodes/%s/storage/%s/content/%s", g->node, v->storage, ev);
	free(ev);
	info = api_call(&m->src, "GET", path, NULL, &err);
	free(path);
	if (!info) {
		log_err("%s: %s %s: volume %s: %s", m->src_alias, g->name, v->key, v->volid,
		        err.msg);
		*code = EXIT_DATAERR;
		return -1;
	}
	v->path = xstrdup(json_string_value(json_object_get(info, "path")) ?: "");
	v->format = xstrdup(json_string_value(json_object_get(info, "format")) ?: "raw");
	v->size = (uint64_t)json_integer_value(json_object_get(info, "size"));
	json_decref(info);
	if (!*v->path || !v->size) {
		log_err("%s: %s %s: volume %s: the API gave no path or size", m->src_alias,
		        g->name, v->key, v->volid);
		*code = EXIT_DATAERR;
		return -1;
	}
	dst = map_lookup(m->storage_map, m->nstorage_map, v->key);
	if (!dst)
		dst = map_lookup(m->storage_map, m->nstorage_map, v->storage);
	if (!dst)
		dst = m->storage;
	v->dst_storage = xstrdup(dst);
	d = storage_find(dst_st, dst);
	if (!d) {
		log_err("%s: storage '%s' is not on node %s (for %s %s)", m->dst_alias, dst,
		        m->node, g->name, v->key);
		*code = EXIT_DATAERR;
		return -1;
	}
	{
		const char *content = json_string_value(json_object_get(d, "content")) ?: "";
		if (!strstr(content, lxc ? "rootdir" : "images")) {
			log_err("%s: storage '%s' does not hold %s (content %s)", m->dst_alias, dst,
			        lxc ? "container volumes" : "disk images", content);
			*code = EXIT_DATAERR;
			return -1;
		}
	}
	v->dst_stype = xstrdup(json_string_value(json_object_get(d, "type")) ?: "?");
	if (file_storage(v->dst_stype) && (strcmp(v->format, "qcow2") == 0 ||
	                                   strcmp(v->format, "vmdk") == 0 || lxc))
		v->dst_format = xstrdup(lxc && strcmp(v->format, "subvol") == 0 ? "raw" : v->format);
	else
		v->dst_format = xstrdup("raw");
	v->src_rc = rc_storage(&m->rc, m->src_alias, v->storage, g->node);
	v->dst_rc = rc_storage(&m->rc, m->dst_alias, dst, m->node);
	if (!v->src_rc || !v->dst_rc) {
		log_err("%s: no [storage:%s:%s] section: pve-move needs it (ssh=) to reach the "
		        "storage",
		        m->rc.file, v->src_rc ? m->dst_alias : m->src_alias,
		        v->src_rc ? dst : v->storage);
		*code = EXIT_CONFIG;
		return -1;
	}
	if (lxc)
		v->method = xstrdup("vzdump");
	else if (strcmp(v->stype, "zfspool") == 0 && strcmp(v->dst_stype, "zfspool") == 0)
		v->method = xstrdup("zfs");
	else if (strcmp(v->format, "raw") == 0 && strcmp(v->dst_format, "raw") == 0 &&
	         v->path[0] == '/' && strcmp(v->stype, "rbd") != 0 &&
	         strcmp(v->dst_stype, "rbd") != 0)
		/* raw to raw between paths (a file, an LV, a zvol; not an rbd:
		 * URL): its data only, see sparse.c */
		v->method = xstrdup("sparse");
	else
		v->method = xstrdup("nbd"); /* disk.c may pick "stream" once it sees the file */
	return 0;
}

static int
translate_qemu(struct move *m, struct guest *g, int *code)
{
	const char *k;
	json_t *val;
	struct buf refused = { 0 };

	g->create = json_object();
	json_object_foreach(g->config, k, val)
	{
		char *s = value_str(val);
		int drop = 0;

		if (!s)
			continue;
		for (size_t i = 0; i < ARRAY_LEN(drop_keys); i++)
			if (strcmp(k, drop_keys[i]) == 0)
				drop = 1;
		if (match("^unused[0-9]+$", k)) {
			warn_add(g, "%s (%s) is not copied: unused volumes stay on the source", k, s);
			drop = 1;
		} else if (strcmp(k, "cipassword") == 0) {
			warn_add(g, "cipassword is not copied (the API shows it masked): set it again "
			            "on the destination");
			drop = 1;
		} else if (strcmp(k, "vmgenid") == 0 && !m->dst.is_root) {
			drop = 1; /* root@pam only; Proxmox makes a new one */
		} else if (strcmp(k, "hookscript") == 0) {
			warn_add(g, "hookscript %s is not copied: it names a file on the source", s);
			drop = 1;
		} else if (root_only(k, s) && !m->dst.is_root) {
			buf_printf(&refused, "%s%s", refused.len ? ", " : "", k);
			drop = 1;
		} else if (is_disk_key(g->type, k)) {
			drop = 1; /* set with the disks */
		} else if (match("^net[0-9]+$", k) && m->nbridge_map) {
			char *br = strstr(s, "bridge=");
			if (br) {
				size_t bl = strcspn(br + 7, ",");
				char *old = xstrndup(br + 7, bl);
				const char *to = map_lookup(m->bridge_map, m->nbridge_map, old);
				if (to) {
					char *n = xasprintf("%.*sbridge=%s%s", (int)(br - s), s, to,
					                    br + 7 + bl);
					free(s);
					s = n;
				}
				free(old);
			}
		}
		if (!drop)
			json_object_set_new(g->create, k, json_string(s));
		free(s);
	}
	if (refused.len) {
		log_err("%s: %s: only root@pam may set %s on %s; log in there as root@pam or "
		        "remove %s",
		        m->src_alias, g->name, refused.data, m->dst_alias,
		        strchr(refused.data, ',') ? "them" : "it");
		buf_free(&refused);
		*code = EXIT_DATAERR;
		return -1;
	}
	return 0;
}

int
guest_prepare(struct move *m, struct guest *g, int *code)
{
	struct api_error err;
	char *path;
	json_t *pend, *e, *src_st = NULL, *dst_st = NULL;
	size_t i;
	const char *k;
	json_t *val;
	int rc = -1;

	path = xasprintf("/nodes/%s/%s/%u/config", g->node, g->type, g->vmid);
	g->config = api_call(&m->src, "GET", path, NULL, &err);
	free(path);
	if (!json_is_object(g->config)) {
		log_err("%s: %s (%u): config: %s", m->src_alias, g->name, g->vmid, err.msg);
		*code = EXIT_UNAVAILABLE;
		return -1;
	}
	path = xasprintf("/nodes/%s/%s/%u/pending", g->node, g->type, g->vmid);
	pend = api_call(&m->src, "GET", path, NULL, &err);
	free(path);
	if (!pend) {
		log_err("%s: %s (%u): pending changes: %s", m->src_alias, g->name, g->vmid, err.msg);
		*code = EXIT_UNAVAILABLE;
		return -1;
	}
	{
		struct buf keys = { 0 };
		json_array_foreach(pend, i, e)
		{
			if (json_object_get(e, "pending") || json_object_get(e, "delete"))
				buf_printf(&keys, "%s%s", keys.len ? ", " : "",
				           json_string_value(json_object_get(e, "key")) ?: "?");
		}
		json_decref(pend);
		if (keys.len) {
			log_err("%s: %s (%u) has pending changes (%s): apply them (restart the "
			        "guest) or revert them first",
			        m->src_alias, g->name, g->vmid, keys.data);
			buf_free(&keys);
			*code = EXIT_DATAERR;
			return -1;
		}
	}
	if (json_string_value(json_object_get(g->config, "lock"))) {
		log_err("%s: %s (%u) is locked (%s)", m->src_alias, g->name, g->vmid,
		        json_string_value(json_object_get(g->config, "lock")));
		*code = EXIT_DATAERR;
		return -1;
	}
	if (strcmp(g->type, "qemu") == 0 && translate_qemu(m, g, code) < 0)
		return -1;
	src_st = storage_list(&m->src, g->node, &err);
	if (!src_st) {
		log_err("%s: storages of node %s: %s", m->src_alias, g->node, err.msg);
		*code = EXIT_UNAVAILABLE;
		goto out;
	}
	dst_st = storage_list(&m->dst, m->node, &err);
	if (!dst_st) {
		log_err("%s: storages of node %s: %s", m->dst_alias, m->node, err.msg);
		*code = err.status == 500 || err.status == 595 ? EXIT_DATAERR : EXIT_UNAVAILABLE;
		goto out;
	}
	json_object_foreach(g->config, k, val)
	{
		struct vol *v;
		char *s;

		if (!is_disk_key(g->type, k) || !json_is_string(val))
			continue;
		s = xstrdup(json_string_value(val));
		g->vols = xreallocarray(g->vols, g->nvols + 1, sizeof *g->vols);
		v = &g->vols[g->nvols++];
		memset(v, 0, sizeof *v);
		v->key = xstrdup(k);
		v->value = s;
		split_volume(s, &v->volid, &v->opts);
		if (strcmp(v->volid, "none") == 0) {
			v->kind = DK_NONE;
		} else if (strstr(v->volid, "cloudinit")) {
			v->kind = DK_CLOUDINIT;
			v->storage = xstrndup(v->volid, strcspn(v->volid, ":"));
		} else if (strstr(v->opts, "media=cdrom") || strcmp(v->volid, "cdrom") == 0) {
			v->kind = DK_CDROM;
			if (strcmp(v->volid, "none") != 0)
				warn_add(g, "%s (%s) is set to none: media are not copied", k, v->volid);
		} else if (v->volid[0] == '/' || !strchr(v->volid, ':')) {
			log_err("%s: %s %s is %s, not a volume of a storage: it cannot be moved",
			        m->src_alias, g->name, k, v->volid);
			*code = EXIT_DATAERR;
			goto out;
		} else {
			v->kind = DK_DISK;
			v->storage = xstrndup(v->volid, strcspn(v->volid, ":"));
			if (resolve_vol(m, g, v, src_st, dst_st, code) < 0)
				goto out;
		}
	}
	for (i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		if (v->kind == DK_CLOUDINIT) {
			const char *d = map_lookup(m->storage_map, m->nstorage_map, v->key);
			if (!d)
				d = map_lookup(m->storage_map, m->nstorage_map, v->storage);
			v->dst_storage = xstrdup(d ? d : m->storage);
			if (!storage_find(dst_st, v->dst_storage)) {
				log_err("%s: storage '%s' is not on node %s (for %s %s)", m->dst_alias,
				        v->dst_storage, m->node, g->name, v->key);
				*code = EXIT_DATAERR;
				goto out;
			}
		}
	}
	rc = 0;
out:
	json_decref(src_st);
	json_decref(dst_st);
	return rc;
}

void
guest_free(struct guest *g)
{
	for (size_t i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		free(v->key), free(v->value), free(v->volid), free(v->storage), free(v->opts);
		free(v->path), free(v->format), free(v->stype), free(v->dst_storage);
		free(v->dst_stype), free(v->dst_format), free(v->method), free(v->dst_volid);
	}
	free(g->vols);
	for (size_t i = 0; i < g->nwarnings; i++)
		free(g->warnings[i]);
	free(g->warnings);
	json_decref(g->config);
	json_decref(g->create);
	free(g->type), free(g->name), free(g->cur_name), free(g->node), free(g->status);
	free(g->pool);
	memset(g, 0, sizeof *g);
}
