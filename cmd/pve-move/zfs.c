/* ZFS to ZFS in two stages with pvekit's own snapshots only
 * (pvekit-move-TARGETVMID-1 and -2): a full send while the guest runs, the
 * delta (send -i) after the stop, an interrupted receive resumed from its
 * token (receive -s, send -t), the last snapshot's guid compared on both
 * ends, both snapshots destroyed on both ends afterwards. Never send -R:
 * the guest's own snapshots stay where they are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "move.h"

#define IDLE_MS (5 * 60 * 1000)
#define RUN_MS (120 * 1000)

static char *
zvol_dataset(const char *path)
{
	const char *p = strstr(path, "/zvol/");

	return p ? xstrdup(p + 6) : xstrdup(path[0] == '/' ? path + 1 : path);
}

static int
zfs_q(struct host *h, const char *cmd, struct buf *out)
{
	struct buf err = { 0 };
	int rc = host_run(h, cmd, RUN_MS, out, &err);

	if (rc < 0)
		log_err("%s host: %s: %s", h->label, cmd, first_line_of(&err, "the command"));
	buf_free(&err);
	return rc;
}

static int
zfs_send(struct move *m, struct guest *g, struct vol *v, const char *sds, const char *dds,
         const char *from, const char *snap, struct journal *jl)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	struct buf out = { 0 };
	char *qd = shq(dds), *cmd, *scmd, *dcmd, *what;
	const char *token = NULL;
	struct pipe_cmd pc = { 0 };
	struct progress pr;
	int rc;

	/* an interrupted receive left a token: go on from there */
	cmd = xasprintf("zfs get -H -o value receive_resume_token %s 2>/dev/null || true", qd);
	if (zfs_q(&dh, cmd, &out) == 0 && out.data && strlen(trim_space(out.data)) > 1)
		token = trim_space(out.data);
	free(cmd);
	if (token) {
		char *qt = shq(token);
		log_info("%s %s: resuming the interrupted zfs receive", g->name, v->key);
		scmd = xasprintf("exec zfs send -t %s", qt);
		free(qt);
	} else if (from) {
		char *a = xasprintf("%s@%s", sds, from), *b = xasprintf("%s@%s", sds, snap);
		char *qa = shq(a), *qb = shq(b);
		scmd = xasprintf("exec zfs send -i %s %s", qa, qb);
		free(a), free(b), free(qa), free(qb);
	} else {
		char *b = xasprintf("%s@%s", sds, snap), *qb = shq(b);
		scmd = xasprintf("exec zfs send %s", qb);
		free(b), free(qb);
	}
	dcmd = xasprintf("exec zfs receive -s %s", qd);
	what = xasprintf("%s %s (zfs%s)", g->name, v->key, from ? " delta" : "");
	progress_start(&pr, what, from ? 0 : v->size);
	pc.src_argv = host_argv(&sh, scmd, NULL);
	pc.dst_argv = host_argv(&dh, dcmd, NULL);
	pc.idle_ms = IDLE_MS;
	rc = relay_pipe(&pc, &pr);
	if (rc < 0)
		log_err("%s %s: zfs send: %s", g->name, v->key,
		        pc.why[0] ? pc.why
		        : pc.src_rc ? first_line_of(&pc.src_err, "the command")
		                    : first_line_of(&pc.dst_err, "the command"));
	else
		journal_disk_set(jl, v->key, from ? "zfs_delta" : "zfs_full", snap);
	journal_save(jl);
	argv_free(pc.src_argv);
	argv_free(pc.dst_argv);
	buf_free(&pc.src_err);
	buf_free(&pc.dst_err);
	buf_free(&out);
	free(qd), free(scmd), free(dcmd), free(what);
	return rc;
}

static int
zfs_snapshot(struct host *h, const char *ds, const char *snap)
{
	struct buf out = { 0 };
	char *full = xasprintf("%s@%s", ds, snap), *q = shq(full);
	char *cmd = xasprintf("zfs list -H -o name -t snapshot %s >/dev/null 2>&1 || "
	                      "zfs snapshot %s", q, q);
	int rc = zfs_q(h, cmd, &out);

	free(full), free(q), free(cmd);
	buf_free(&out);
	return rc;
}

static char *
zfs_guid(struct host *h, const char *ds, const char *snap)
{
	struct buf out = { 0 };
	char *full = xasprintf("%s@%s", ds, snap), *q = shq(full);
	char *cmd = xasprintf("zfs get -H -o value guid %s", q), *g = NULL;

	if (zfs_q(h, cmd, &out) == 0 && out.data)
		g = xstrdup(trim_space(out.data));
	free(full), free(q), free(cmd);
	buf_free(&out);
	return g;
}

int
zfs_move(struct move *m, struct guest *g, struct vol *v, const char *dpath, struct journal *jl,
         int stage)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	char *sds = zvol_dataset(v->path), *dds = zvol_dataset(dpath);
	char s1[64], s2[64], *ga = NULL, *gb = NULL;
	const char *full = journal_disk_get(jl, v->key, "zfs_full");
	int rc = -1;

	snprintf(s1, sizeof s1, "pvekit-move-%u-1", g->dst_vmid);
	snprintf(s2, sizeof s2, "pvekit-move-%u-2", g->dst_vmid);
	if (!journal_disk_get(jl, v->key, "zfs_received")) {
		/* the API made the volume; zfs receive makes its own */
		struct buf out = { 0 };
		char *q = shq(dds), *cmd = xasprintf("zfs destroy %s", q);
		if (zfs_q(&dh, cmd, &out) < 0) {
			free(q), free(cmd);
			goto out;
		}
		free(q), free(cmd);
		buf_free(&out);
		journal_disk_set(jl, v->key, "zfs_received", "1");
		journal_save(jl);
	}
	if (stage == 1) {
		if (full || zfs_snapshot(&sh, sds, s1) < 0)
			goto done_ok;
		journal_disk_set(jl, v->key, "zfs_snap1", s1);
		journal_save(jl);
		rc = zfs_send(m, g, v, sds, dds, NULL, s1, jl);
		goto out;
	}
	if (zfs_snapshot(&sh, sds, s2) < 0)
		goto out;
	journal_disk_set(jl, v->key, "zfs_snap2", s2);
	journal_save(jl);
	if (!journal_disk_get(jl, v->key, "zfs_delta") &&
	    zfs_send(m, g, v, sds, dds, full ? s1 : NULL, s2, jl) < 0)
		goto out;
	ga = zfs_guid(&sh, sds, s2);
	gb = zfs_guid(&dh, dds, s2);
	if (!ga || !gb || strcmp(ga, gb) != 0) {
		log_err("%s %s: snapshot %s has guid %s on the source and %s on the target",
		        g->name, v->key, s2, ga ? ga : "?", gb ? gb : "?");
		goto out;
	}
done_ok:
	rc = 0;
out:
	free(sds), free(dds), free(ga), free(gb);
	return rc;
}

void
disk_zfs_cleanup(struct move *m, struct guest *g, struct vol *v, struct journal *jl)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	char *sds = zvol_dataset(v->path);

	for (int i = 1; i <= 2; i++) {
		char snap[64], *full, *q, *cmd;
		struct buf out = { 0 };

		snprintf(snap, sizeof snap, "pvekit-move-%u-%d", g->dst_vmid, i);
		full = xasprintf("%s@%s", sds, snap);
		q = shq(full);
		cmd = xasprintf("zfs destroy %s 2>/dev/null || true", q);
		host_run(&sh, cmd, RUN_MS, &out, NULL);
		free(full), free(q), free(cmd);
		if (v->dst_volid) {
			char *dp = dst_path(m, v);
			if (dp) {
				char *dds = zvol_dataset(dp);
				full = xasprintf("%s@%s", dds, snap);
				q = shq(full);
				cmd = xasprintf("zfs destroy %s 2>/dev/null || true", q);
				host_run(&dh, cmd, RUN_MS, &out, NULL);
				free(full), free(q), free(cmd), free(dds), free(dp);
			}
		}
		buf_free(&out);
	}
	journal_disk_set(jl, v->key, "zfs_cleaned", "1");
	free(sds);
}

