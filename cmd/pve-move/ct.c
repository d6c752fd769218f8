/* Containers: rootfs and mount points travel inside a vzdump archive,
 * streamed from vzdump --stdout on the source host into pct restore on the
 * target host; no archive file is written anywhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "move.h"

/* Containers: vzdump --stdout on the source into pct restore on the
 * target, stop mode (the guest is already stopped). */
int
restore_ct(struct move *m, struct guest *g, struct journal *jl)
{
	struct vol *root = NULL;
	struct buf d = { 0 };
	struct pipe_cmd pc = { 0 };
	struct progress pr;
	struct host sh, dh;
	char *s, *what, *q;
	uint64_t total = 0;
	const char *k;
	json_t *val;
	int rc;

	for (size_t i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		if (v->kind != DK_DISK)
			continue;
		if (!root)
			root = v;
		total += v->size;
	}
	if (!root) {
		log_err("%s: %s has no volume to move", m->src_alias, g->name);
		return EXIT_DATAERR;
	}
	sh = src_host(m, g, root);
	dh = dst_host(m, root);
	s = xasprintf("exec vzdump %u --mode stop --stdout 1 --compress 0", g->vmid);
	buf_printf(&d, "exec pct restore %u - --hostname ", g->dst_vmid);
	q = xasprintf("%s--CREATING", g->name);
	{
		char *qq = shq(q);
		buf_puts(&d, qq);
		free(qq);
	}
	free(q);
	if (g->pool) {
		char *qq = shq(g->pool);
		buf_printf(&d, " --pool %s", qq);
		free(qq);
	}
	if (json_object_get(g->config, "unprivileged")) {
		char *u = json_dumps(json_object_get(g->config, "unprivileged"), JSON_ENCODE_ANY);
		buf_printf(&d, " --unprivileged %s", strchr(u, '1') ? "1" : "0");
		free(u);
	}
	for (size_t i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		struct buf opt = { 0 };
		char *qq, *p, *save = NULL, *o = xstrdup(v->opts);

		if (v->kind != DK_DISK)
			continue;
		buf_printf(&opt, "%s:%.3f", v->dst_storage, (double)v->size / (1024.0 * 1024 * 1024));
		for (p = strtok_r(o, ",", &save); p; p = strtok_r(NULL, ",", &save))
			if (strncmp(p, "size=", 5) != 0)
				buf_printf(&opt, ",%s", p);
		free(o);
		qq = shq(opt.data);
		buf_printf(&d, " --%s %s", v->key, qq);
		free(qq);
		buf_free(&opt);
	}
	json_object_foreach(g->config, k, val)
	{
		const char *sv = json_string_value(val), *br;
		if (!sv || strncmp(k, "net", 3) != 0 || !(br = strstr(sv, "bridge=")) || !m->nbridge_map)
			continue;
		{
			size_t bl = strcspn(br + 7, ",");
			char *old = xstrndup(br + 7, bl);
			const char *to = map_lookup(m->bridge_map, m->nbridge_map, old);
			if (to) {
				char *nv, *qq;
				nv = xasprintf("%.*sbridge=%s%s", (int)(br - sv), sv, to, br + 7 + bl);
				qq = shq(nv);
				buf_printf(&d, " --%s %s", k, qq);
				free(qq);
				free(nv);
			}
			free(old);
		}
	}
	pc.src_argv = host_argv(&sh, s, NULL);
	pc.dst_argv = host_argv(&dh, d.data, NULL);
	if (m->dry_run) {
		char *a = argv_line(pc.src_argv), *b = argv_line(pc.dst_argv);
		plan(m, "copy %s: %s | %s", g->name, a, b);
		free(a), free(b);
		rc = 0;
		goto out;
	}
	what = xasprintf("%s (vzdump)", g->name);
	progress_start(&pr, what, total);
	pc.idle_ms = 10 * 60 * 1000;
	log_info("%s: vzdump on %s into pct restore %u on %s", g->name,
	         sh.target ? sh.target : "this host", g->dst_vmid, dh.target ? dh.target : "this host");
	rc = relay_pipe(&pc, &pr);
	free(what);
	if (rc < 0) {
		log_err("%s: %s", g->name,
		        pc.why[0] ? pc.why
		        : pc.src_rc ? first_line_of(&pc.src_err, "vzdump")
		                    : first_line_of(&pc.dst_err, "pct restore"));
		rc = interrupted ? 128 + SIGINT : EXIT_FAILED;
		goto out;
	}
	journal_set_int(jl, "dst_vmid", g->dst_vmid);
	journal_set(jl, "step", "disks");
	journal_save(jl);
out:
	argv_free(pc.src_argv);
	argv_free(pc.dst_argv);
	buf_free(&pc.src_err);
	buf_free(&pc.dst_err);
	buf_free(&d);
	free(s);
	return rc;
}
