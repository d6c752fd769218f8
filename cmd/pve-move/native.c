/* --native: Proxmox's own remote_migrate (qemu-server and pve-container,
 * since PVE 7.3, "EXPERIMENTAL"), driven through the source's API, its
 * task followed to the end. Checked first, so that it is refused with a
 * reason instead of failing half-way: both versions, an API token for the
 * target (remote_migrate speaks to it with a token only) with Sys.Incoming
 * on / and VM.Allocate, no snapshots, no HA, no replication. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "move.h"

static int
version_ok(struct api *a, char *out, size_t len)
{
	struct api_error err;
	json_t *v = api_call(a, "GET", "/version", NULL, &err);
	const char *s = v ? json_string_value(json_object_get(v, "version")) : NULL;
	int major = 0, minor = 0, ok;

	snprintf(out, len, "%s", s ? s : "?");
	ok = s && sscanf(s, "%d.%d", &major, &minor) == 2 && (major > 7 || (major == 7 && minor >= 3));
	json_decref(v);
	return ok;
}

static int
has_priv(json_t *perms, const char *path, const char *priv)
{
	json_t *p = json_object_get(perms, path);

	return json_is_object(p) && json_is_true(json_object_get(p, priv)) +
	                                    (json_integer_value(json_object_get(p, priv)) == 1) >
	                                0;
}

int
native_check(struct move *m, struct guest *g)
{
	struct api_error err;
	char vs[64], vd[64], *path, sid[64];
	json_t *j, *e;
	size_t i;
	struct buf why = { 0 };

	if (!version_ok(&m->src, vs, sizeof vs))
		buf_printf(&why, "%s runs Proxmox VE %s (remote_migrate needs 7.3 or later); ",
		           m->src_alias, vs);
	if (!version_ok(&m->dst, vd, sizeof vd))
		buf_printf(&why, "%s runs Proxmox VE %s (remote_migrate needs 7.3 or later); ",
		           m->dst_alias, vd);
	if (!m->dst.c->token_id)
		buf_printf(&why, "[pve:%s] has no token= (remote_migrate reaches the target with an "
		                 "API token only); ",
		           m->dst_alias);
	path = xasprintf("/nodes/%s/%s/%u/snapshot", g->node, g->type, g->vmid);
	j = api_call(&m->src, "GET", path, NULL, &err);
	free(path);
	json_array_foreach(j, i, e)
	{
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && strcmp(n, "current") != 0) {
			buf_printf(&why, "it has snapshots (%s) and remote_migrate moves none; ", n);
			break;
		}
	}
	json_decref(j);
	snprintf(sid, sizeof sid, "%s:%u", strcmp(g->type, "lxc") == 0 ? "ct" : "vm", g->vmid);
	j = api_call(&m->src, "GET", "/cluster/ha/resources", NULL, &err);
	json_array_foreach(j, i, e)
	{
		const char *s = json_string_value(json_object_get(e, "sid"));
		if (s && strcmp(s, sid) == 0)
			buf_printf(&why, "it is managed by HA (%s); ", sid);
	}
	json_decref(j);
	j = api_call(&m->src, "GET", "/cluster/replication", NULL, &err);
	json_array_foreach(j, i, e)
	{
		json_int_t gid = json_integer_value(json_object_get(e, "guest"));
		const char *gs = json_string_value(json_object_get(e, "guest"));
		if (gid == (json_int_t)g->vmid || (gs && (uint32_t)atol(gs) == g->vmid))
			buf_printf(&why, "it is replicated (job %s); ",
			           json_string_value(json_object_get(e, "id")) ?: "?");
	}
	json_decref(j);
	if (m->dst.c->token_id) {
		j = api_call(&m->dst, "GET", "/access/permissions", NULL, &err);
		if (!j) {
			buf_printf(&why, "the token's rights on %s: %s; ", m->dst_alias, err.msg);
		} else {
			char vp[32];
			snprintf(vp, sizeof vp, "/vms/%u", g->dst_vmid ? g->dst_vmid : g->vmid);
			if (!has_priv(j, "/", "Sys.Incoming"))
				buf_printf(&why, "the token %s lacks Sys.Incoming on / of %s; ",
				           m->dst.c->token_id, m->dst_alias);
			if (!has_priv(j, "/", "VM.Allocate") && !has_priv(j, "/vms", "VM.Allocate") &&
			    !has_priv(j, vp, "VM.Allocate"))
				buf_printf(&why, "the token %s lacks VM.Allocate on %s; ",
				           m->dst.c->token_id, m->dst_alias);
			json_decref(j);
		}
	}
	if (why.len) {
		why.data[why.len - 2] = '\0';
		log_err("%s: --native: %s", g->name, why.data);
		buf_free(&why);
		return EXIT_DATAERR;
	}
	return 0;
}

/* "a:b,c:d" for the storages the disks use, as remote_migrate takes it. */
static char *
storage_map(struct guest *g)
{
	struct buf b = { 0 };

	buf_puts(&b, "");
	for (size_t i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		char *pair;

		if (!v->storage || !v->dst_storage)
			continue;
		pair = xasprintf("%s:%s", v->storage, v->dst_storage);
		if (!strstr(b.data, pair))
			buf_printf(&b, "%s%s", b.len ? "," : "", pair);
		free(pair);
	}
	return b.data;
}

int
native_move(struct move *m, struct guest *g, struct journal *jl)
{
	struct api_error err;
	struct buf f = { 0 }, ep = { 0 }, br = { 0 };
	char num[32], *path, *smap;
	json_t *r;
	int rc = 0;

	buf_printf(&ep, "apitoken=PVEAPIToken=%s=%s,host=%s,port=%d", m->dst.c->token_id,
	           m->dst.c->token_secret, m->dst.c->host, m->dst.c->port);
	if (m->dst.c->fingerprint)
		buf_printf(&ep, ",fingerprint=%s", m->dst.c->fingerprint);
	form_add(&f, "target-endpoint", ep.data);
	smap = storage_map(g);
	form_add(&f, "target-storage", *smap ? smap : m->storage);
	for (size_t i = 0; i < m->nbridge_map; i++) {
		char *eq = strchr(m->bridge_map[i], '=');
		buf_printf(&br, "%s%.*s:%s", br.len ? "," : "", (int)(eq - m->bridge_map[i]),
		           m->bridge_map[i], eq + 1);
	}
	form_add(&f, "target-bridge", br.len ? br.data : "1");
	snprintf(num, sizeof num, "%u", g->dst_vmid);
	form_add(&f, "target-vmid", num);
	if (g->running)
		form_add(&f, strcmp(g->type, "lxc") == 0 ? "restart" : "online", "1");
	if (bwlimit_bps) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)(bwlimit_bps / 1024));
		form_add(&f, "bwlimit", num);
	}
	path = xasprintf("/nodes/%s/%s/%u/remote_migrate", g->node, g->type, g->vmid);
	if (m->dry_run) {
		plan(m, "POST %s %s %s", m->src_alias, path, f.data);
		goto out;
	}
	log_info("%s: remote_migrate to %s/%s as %u", g->name, m->dst_alias, m->node, g->dst_vmid);
	r = api_call(&m->src, "POST", path, f.data, &err);
	if (!r || !json_is_string(r)) {
		log_err("%s: remote_migrate: %s", m->src_alias, r ? "no task id" : err.msg);
		json_decref(r);
		rc = EXIT_FAILED;
		goto out;
	}
	journal_set(jl, "upid", json_string_value(r));
	journal_set_int(jl, "dst_vmid", g->dst_vmid);
	journal_save(jl);
	if (api_task_wait(&m->src, json_string_value(r), 7 * 24 * 3600 * 1000LL, &err) < 0) {
		log_err("%s: remote_migrate: %s", m->src_alias, err.msg);
		rc = interrupted ? 128 + SIGINT : EXIT_FAILED;
	}
	json_decref(r);
out:
	explicit_bzero(ep.data, ep.len);
	explicit_bzero(f.data, f.len);
	buf_free(&ep);
	buf_free(&f);
	buf_free(&br);
	free(smap);
	free(path);
	return rc;
}
