/* One disk of a VM: the target volume allocated through the API with the
 * exact size, the data copied once with no temp file anywhere, the volume
 * set on the target guest. Three ways to copy:
 *   nbd     qemu-nbd --read-only on the source behind a socket in a 0700
 *           directory, forwarded by ssh; qemu-img convert -n on the target
 *           reads it through its own forward. Only allocated data crosses;
 *           zeros are not written to a fresh thin target (--target-is-zero),
 *           and are written to a thick LV, which holds old data.
 *   stream  a dense raw or qcow2 file (no backing file, no internal
 *           snapshots) into a file of the same format: dd to dd.
 *   zfs     zfs send of pvekit's own snapshot while the guest runs, the
 *           delta (send -i) after the stop, resumed from the receive token,
 *           the guids compared, both snapshots destroyed; never send -R. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "move.h"

#define IDLE_MS (5 * 60 * 1000)
#define RUN_MS (120 * 1000)

struct host
src_host(struct move *m, const struct guest *g, const struct vol *v)
{
	(void)m;
	(void)g;
	return (struct host){ .label = "source", .target = v->src_rc ? v->src_rc->ssh : NULL,
		              .port = v->src_rc ? v->src_rc->ssh_port : 0 };
}

struct host
dst_host(struct move *m, const struct vol *v)
{
	(void)m;
	return (struct host){ .label = "target", .target = v->dst_rc ? v->dst_rc->ssh : NULL,
		              .port = v->dst_rc ? v->dst_rc->ssh_port : 0 };
}

/* "vm-105-disk-N" with the lowest N that the target storage does not
 * have. */
static char *
free_name(struct move *m, struct guest *g, struct vol *v, struct api_error *err)
{
	char *path = xasprintf("/nodes/%s/storage/%s/content?vmid=%u", m->node, v->dst_storage,
	                       g->dst_vmid);
	json_t *l = api_call(&m->dst, "GET", path, NULL, err), *e;
	size_t i;

	free(path);
	if (!l)
		return NULL;
	for (int n = 0; n < 1000; n++) {
		char *base = xasprintf("vm-%u-disk-%d", g->dst_vmid, n);
		int used = 0;

		json_array_foreach(l, i, e)
		{
			const char *id = json_string_value(json_object_get(e, "volid")) ?: "";
			const char *p = strstr(id, base);
			if (p && (p[strlen(base)] == '\0' || p[strlen(base)] == '.'))
				used = 1;
		}
		for (size_t k = 0; k < g->nvols && !used; k++)
			if (g->vols[k].dst_volid && strstr(g->vols[k].dst_volid, base))
				used = 1;
		if (!used) {
			json_decref(l);
			return base;
		}
		free(base);
	}
	json_decref(l);
	snprintf(err->msg, sizeof err->msg, "no free volume name");
	return NULL;
}

static int
allocate(struct move *m, struct guest *g, struct vol *v, struct journal *jl)
{
	struct api_error err;
	struct buf form = { 0 };
	char *name, *file, *path, num[32];
	uint64_t kib = (v->size + 1023) / 1024;
	json_t *r;
	const char *have = journal_disk_get(jl, v->key, "volid");

	free(v->dst_volid); /* a ZFS disk comes here in both stages */
	v->dst_volid = NULL;
	if (have) {
		v->dst_volid = xstrdup(have);
		return 0;
	}
	if (m->dry_run) {
		int isfile = strcmp(v->dst_stype, "dir") == 0 || strcmp(v->dst_stype, "nfs") == 0 ||
		           strcmp(v->dst_stype, "cifs") == 0;
		v->dst_volid = isfile ? xasprintf("%s:%u/vm-%u-disk-N.%s", v->dst_storage, g->dst_vmid,
		                                g->dst_vmid, v->dst_format)
		                    : xasprintf("%s:vm-%u-disk-N", v->dst_storage, g->dst_vmid);
		plan(m, "POST %s /nodes/%s/storage/%s/content vmid=%u filename=vm-%u-disk-N%s%s "
		        "size=%llu format=%s",
		     m->dst_alias, m->node, v->dst_storage, g->dst_vmid, g->dst_vmid,
		     strcmp(v->dst_format, "raw") && strchr(v->dst_stype, 'd') ? "." : "",
		     strcmp(v->dst_format, "raw") && strchr(v->dst_stype, 'd') ? v->dst_format : "",
		     (unsigned long long)kib, v->dst_format);
		return 0;
	}
	if (v->size % 1024)
		log_warn("%s %s: %llu bytes is not whole KiB; the target volume has %llu KiB",
		         g->name, v->key, (unsigned long long)v->size, (unsigned long long)kib);
	name = free_name(m, g, v, &err);
	if (!name) {
		log_err("%s: %s: volume name: %s", m->dst_alias, v->dst_storage, err.msg);
		return EXIT_UNAVAILABLE;
	}
	/* file storages want the format as the file name's extension */
	file = strcmp(v->dst_stype, "dir") == 0 || strcmp(v->dst_stype, "nfs") == 0 ||
	               strcmp(v->dst_stype, "cifs") == 0 || strcmp(v->dst_stype, "glusterfs") == 0 ||
	               strcmp(v->dst_stype, "btrfs") == 0
	           ? xasprintf("%s.%s", name, v->dst_format)
	           : xstrdup(name);
	snprintf(num, sizeof num, "%u", g->dst_vmid);
	form_add(&form, "vmid", num);
	form_add(&form, "filename", file);
	snprintf(num, sizeof num, "%llu", (unsigned long long)kib);
	form_add(&form, "size", num);
	form_add(&form, "format", v->dst_format);
	path = xasprintf("/nodes/%s/storage/%s/content", m->node, v->dst_storage);
	r = api_call(&m->dst, "POST", path, form.data, &err);
	free(path);
	buf_free(&form);
	free(name);
	free(file);
	if (!r || !json_is_string(r)) {
		log_err("%s: %s: allocating %s for %s: %s", m->dst_alias, v->dst_storage,
		        v->key, g->name, r ? "no volume id in the answer" : err.msg);
		json_decref(r);
		return EXIT_FAILED;
	}
	v->dst_volid = xstrdup(json_string_value(r));
	json_decref(r);
	journal_disk_set(jl, v->key, "volid", v->dst_volid);
	journal_disk_set(jl, v->key, "state", "allocated");
	journal_save(jl);
	return 0;
}

char *
dst_path(struct move *m, struct vol *v)
{
	struct api_error err;
	char *ev = http_escape(v->dst_volid);
	char *path = xasprintf("/nodes/%s/storage/%s/content/%s", m->node, v->dst_storage, ev);
	json_t *r = api_call(&m->dst, "GET", path, NULL, &err);
	char *p = NULL;

	free(ev);
	free(path);
	if (r && json_string_value(json_object_get(r, "path")))
		p = xstrdup(json_string_value(json_object_get(r, "path")));
	else
		log_err("%s: %s: %s", m->dst_alias, v->dst_volid, r ? "no path" : err.msg);
	json_decref(r);
	return p;
}

int
is_lvm(const char *t)
{
	return strcmp(t, "lvm") == 0 || strcmp(t, "lvmthin") == 0;
}

/* Decides between nbd and stream by looking at the source file: a qcow2
 * file without a backing file or internal snapshots (which the target's
 * config would not name) goes to a qcow2 file as the file itself. */
static void
pick_method(struct move *m, struct guest *g, struct vol *v)
{
	struct host h = src_host(m, g, v);
	struct buf out = { 0 }, err = { 0 };
	char *q, *cmd;
	unsigned long long size = 0;
	char kind[64] = "";

	if (strcmp(v->method, "nbd") != 0 || strcmp(v->format, "qcow2") != 0 ||
	    strcmp(v->dst_format, "qcow2") != 0 || is_lvm(v->dst_stype) ||
	    strcmp(v->dst_stype, "zfspool") == 0 || strcmp(v->dst_stype, "rbd") == 0)
		return;
	q = shq(v->path);
	cmd = xasprintf("stat -L -c '%%s %%F' %s && qemu-img info -U --output=json %s", q, q);
	if (host_run(&h, cmd, RUN_MS, &out, &err) == 0 &&
	    sscanf(out.data ? out.data : "", "%llu %63[a-z ]", &size, kind) == 2 &&
	    strncmp(kind, "regular", 7) == 0 && size && !strstr(out.data, "\"backing-filename\"") &&
	    !strstr(out.data, "\"snapshots\"")) {
		free(v->method);
		v->method = xstrdup("stream");
		v->file_size = size;
	}
	free(cmd);
	free(q);
	buf_free(&out);
	buf_free(&err);
}

static int
mkremote(struct host *h, char **dir)
{
	struct buf out = { 0 }, err = { 0 };

	if (host_run(h, "umask 077 && mktemp -d /tmp/pve-move.XXXXXXXX", RUN_MS, &out, &err) < 0 ||
	    !out.data || out.data[0] != '/') {
		log_err("%s host %s: mktemp: %s", h->label, h->target ? h->target : "(here)",
		        interrupted ? "interrupted" : first_line_of(&err, "the command"));
		buf_free(&out);
		buf_free(&err);
		return -1;
	}
	*dir = xstrdup(trim_space(out.data));
	buf_free(&out);
	buf_free(&err);
	return 0;
}

static void
rmremote(struct host *h, const char *dir)
{
	struct buf o = { 0 }, e = { 0 };
	char *q = shq(dir), *cmd = xasprintf("rm -rf %s", q);

	host_run(h, cmd, RUN_MS, &o, &e);
	free(q);
	free(cmd);
	buf_free(&o);
	buf_free(&e);
}

/* What runs on the target against the NBD export: a convert, a compare. */
enum nbd_job { NBD_CONVERT, NBD_COMPARE };

static int
nbd_session(struct move *m, struct guest *g, struct vol *v, const char *dpath, enum nbd_job job,
            struct progress *pr)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	char *sdir = NULL, *ddir = NULL, ldir[] = "/tmp/pve-move.XXXXXX";
	char *lsrc, *ldst, *fwd_l, *fwd_r, *sq, *dq, *scmd, *dcmd, *ssock, *dsock, *url;
	char *extra_s[5], *extra_d[5];
	struct nbd_cmd nc = { 0 };
	int rc = -1, zero = strcmp(v->dst_stype, "lvm") != 0;

	if (!mkdtemp(ldir)) {
		log_err("mkdtemp: %s", strerror(errno));
		return -1;
	}
	if (mkremote(&sh, &sdir) < 0 || mkremote(&dh, &ddir) < 0)
		goto out_dirs;
	lsrc = xasprintf("%s/src.sock", ldir);
	ldst = xasprintf("%s/dst.sock", ldir);
	ssock = xasprintf("%s/nbd.sock", sdir);
	dsock = xasprintf("%s/nbd.sock", ddir);
	fwd_l = xasprintf("%s:%s", lsrc, ssock);
	fwd_r = xasprintf("%s:%s", dsock, ldst);
	sq = shq(v->path);
	dq = shq(dpath);
	{
		char *qs = shq(ssock), *qd = shq(sdir);
		scmd = xasprintf("%s%s%s"
		                 "qemu-nbd --read-only --persistent --format=%s --socket=%s %s & p=$!; "
		                 "i=0; while [ ! -S %s ]; do "
		                 "if ! kill -0 $p 2>/dev/null; then wait $p; rm -rf %s; exit 1; fi; "
		                 "i=$((i+1)); if [ $i -gt 600 ]; then kill $p; exit 1; fi; sleep 0.1; "
		                 "done; echo ready; cat >/dev/null; kill $p 2>/dev/null; "
		                 "wait $p 2>/dev/null; rm -rf %s; exit 0",
		                 is_lvm(v->stype) ? "lvchange -ay " : "", is_lvm(v->stype) ? sq : "",
		                 is_lvm(v->stype) ? " || exit 1; " : "", v->format, qs, sq, qs, qd,
		                 qd);
		free(qs);
		free(qd);
	}
	url = xasprintf("nbd+unix:///?socket=%s", dsock);
	{
		char *qu = shq(url), *qd = shq(ddir), *qs = shq(dsock), *work;

		if (job == NBD_CONVERT)
			/* -W: writes in any order, so that requests in flight
			 * through the tunnels overlap */
			work = xasprintf("qemu-img convert -p -n -W%s -f raw -O %s %s %s",
			                 zero ? " --target-is-zero" : "", v->dst_format, qu, dq);
		else
			work = xasprintf("qemu-img compare -f raw -F %s %s %s", v->dst_format, qu,
			                 dq);
		dcmd = xasprintf("%s%s%s"
		                 "i=0; while [ ! -S %s ]; do i=$((i+1)); if [ $i -gt 600 ]; then "
		                 "echo 'no forwarded socket' >&2; exit 1; fi; sleep 0.1; done; "
		                 "%s; rc=$?; rm -rf %s; exit $rc",
		                 is_lvm(v->dst_stype) ? "lvchange -ay " : "",
		                 is_lvm(v->dst_stype) ? dq : "",
		                 is_lvm(v->dst_stype) ? " || exit 1; " : "", qs, work, qd);
		free(work);
		free(qu);
		free(qd);
		free(qs);
	}
	extra_s[0] = "-o";
	extra_s[1] = "ExitOnForwardFailure=yes";
	extra_s[2] = "-L";
	extra_s[3] = fwd_l;
	extra_s[4] = NULL;
	extra_d[0] = "-o";
	extra_d[1] = "ExitOnForwardFailure=yes";
	extra_d[2] = "-R";
	extra_d[3] = fwd_r;
	extra_d[4] = NULL;
	if (!sh.target) {
		/* here: qemu-nbd's own socket is the local end */
		free(lsrc);
		lsrc = xstrdup(ssock);
	}
	if (!dh.target) {
		free(dsock);
		dsock = NULL;
	}
	nc.src_argv = host_argv(&sh, scmd, sh.target ? extra_s : NULL);
	if (dh.target) {
		nc.dst_argv = host_argv(&dh, dcmd, extra_d);
	} else {
		/* here: qemu-img connects to our listening socket directly */
		char *d2 = xstrdup(dcmd), *p;
		while ((p = strstr(d2, ddir)) && strncmp(p + strlen(ddir), "/nbd.sock", 9) == 0) {
			char *n = xasprintf("%.*s%s%s", (int)(p - d2), d2, ldst,
			                    p + strlen(ddir) + 9);
			free(d2);
			d2 = n;
		}
		nc.dst_argv = host_argv(&dh, d2, NULL);
		free(d2);
	}
	nc.local_src = lsrc;
	nc.local_dst = ldst;
	nc.idle_ms = IDLE_MS;
	rc = interrupted ? -1 : relay_nbd(&nc, pr);
	if (interrupted)
		snprintf(nc.why, sizeof nc.why, "interrupted");
	if (rc < 0) {
		log_debug("nbd: source exit %d, target exit %d, why '%s'", nc.src_rc, nc.dst_rc,
		          nc.why);
		if (nc.why[0])
			log_err("%s %s: %s: %s", g->name, v->key,
			        job == NBD_COMPARE ? "verify" : "copy", nc.why);
		else if (nc.dst_rc == 1 && job == NBD_COMPARE)
			log_err("%s %s: verify: the target differs from the source (%s)", g->name,
			        v->key, first_line_of(&nc.dst_out, "the command"));
		else if (nc.dst_rc != 0)
			log_err("%s %s: target: %s", g->name, v->key, first_line_of(&nc.dst_err, "the command"));
		else
			log_err("%s %s: source: %s", g->name, v->key, first_line_of(&nc.src_err, "the command"));
		rmremote(&sh, sdir);
		rmremote(&dh, ddir);
	}
	argv_free(nc.src_argv);
	argv_free(nc.dst_argv);
	buf_free(&nc.src_err);
	buf_free(&nc.dst_err);
	buf_free(&nc.dst_out);
	/* ssh leaves the socket of its -L forward behind */
	unlink(lsrc);
	free(lsrc), free(ldst), free(ssock), free(dsock), free(fwd_l), free(fwd_r);
	free(sq), free(dq), free(scmd), free(dcmd), free(url);
out_dirs:
	free(sdir);
	free(ddir);
	rmdir(ldir);
	return rc;
}

/* A copy through one pipe: scmd's output on the source into dcmd on the
 * target, the source reporting its position on stderr. */
static int
pipe_copy(struct move *m, struct guest *g, struct vol *v, const char *scmd, const char *dcmd,
          struct progress *pr)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	struct pipe_cmd pc = { .src_positions = 1, .idle_ms = IDLE_MS };
	int rc;

	if (m->direct && dh.target) {
		char why[512];
		char *script = direct_script(&dh, scmd, dcmd, why, sizeof why);

		if (!script) {
			log_err("%s %s: --direct: %s", g->name, v->key, why);
			return -1;
		}
		sh.forward_agent = 1;
		pc.src_argv = host_argv(&sh, script, NULL);
		free(script);
		rc = relay_direct(&pc, pr);
		if (rc < 0)
			log_err("%s %s: copy from the source straight to the target: %s", g->name,
			        v->key, pc.why[0] ? pc.why : first_line_of(&pc.src_err, "the command"));
		argv_free(pc.src_argv);
		buf_free(&pc.src_err);
		return rc;
	}
	pc.src_argv = host_argv(&sh, scmd, NULL);
	pc.dst_argv = host_argv(&dh, dcmd, NULL);
	/* through pve-move only to be held to --bwlimit */
	rc = bwlimit_bps ? relay_pipe(&pc, pr) : relay_straight(&pc, pr);
	if (rc < 0) {
		/* a target that stopped reading says why itself */
		int target_says = pc.dst_rc && pc.dst_err.len &&
		                  strcmp(pc.why, "the target stopped reading") == 0;

		if (pc.why[0] && !target_says)
			log_err("%s %s: copy: %s", g->name, v->key, pc.why);
		else if (pc.src_rc && !target_says)
			log_err("%s %s: source: %s", g->name, v->key, first_line_of(&pc.src_err, "the command"));
		else
			log_err("%s %s: target: %s", g->name, v->key, first_line_of(&pc.dst_err, "the command"));
	}
	argv_free(pc.src_argv);
	argv_free(pc.dst_argv);
	buf_free(&pc.src_err);
	buf_free(&pc.dst_err);
	return rc;
}

/* --direct, before anything changes: each source host logs in to its
 * target host the way the copies will. */
int
direct_check(struct move *m, struct guest *g)
{
	struct host seen[16][2];
	size_t nseen = 0;

	for (size_t i = 0; i < g->nvols; i++) {
		struct vol *v = &g->vols[i];
		struct host sh = src_host(m, g, v), dh = dst_host(m, v);
		struct buf out = { 0 }, err = { 0 };
		char why[512], *script;
		size_t k;
		int r;

		/* raw as its data, and a qcow2 file that may go as the file */
		if (v->kind != DK_DISK || !v->method || !dh.target ||
		    (strcmp(v->method, "sparse") != 0 &&
		     (strcmp(v->method, "nbd") != 0 || strcmp(v->format, "qcow2") != 0 ||
		      strcmp(v->dst_format, "qcow2") != 0)))
			continue;
		for (k = 0; k < nseen; k++)
			if (!strcmp(seen[k][0].target ? seen[k][0].target : "", sh.target ? sh.target : "") &&
			    seen[k][0].port == sh.port && !strcmp(seen[k][1].target, dh.target) &&
			    seen[k][1].port == dh.port)
				break;
		if (k < nseen)
			continue;
		if (nseen < 16) {
			seen[nseen][0] = sh;
			seen[nseen++][1] = dh;
		}
		if (!(script = direct_script(&dh, "true", "true", why, sizeof why))) {
			log_err("%s %s: --direct: %s", g->name, v->key, why);
			return EXIT_CONFIG;
		}
		sh.forward_agent = 1;
		r = host_run(&sh, script, RUN_MS, &out, &err);
		free(script);
		if (r < 0)
			log_err("%s %s: --direct: %s cannot log in to %s: %s (it uses the agent "
			        "forwarded from here)", g->name, v->key, sh.target ? sh.target : "this host",
			        dh.target, first_line_of(&err, "ssh"));
		buf_free(&out);
		buf_free(&err);
		if (r < 0)
			return EXIT_UNAVAILABLE;
	}
	return 0;
}

/* raw to raw as its data; a qcow2 file as the file (sparse.c) */
static int
sparse_copy(struct move *m, struct guest *g, struct vol *v, const char *dpath,
            struct progress *pr)
{
	struct host dh = dst_host(m, v);
	/* through pve-move, relay_pipe holds it to --bwlimit; with --direct
	 * the sender does */
	char *scmd = sparse_send_cmd(v, m->direct && dh.target ? bwlimit_bps : 0);
	char *dcmd = sparse_receive_cmd(v, dpath);
	int rc = pipe_copy(m, g, v, scmd, dcmd, pr);

	free(scmd), free(dcmd);
	return rc;
}

/* -n: the commands each host would run, with the temporary directories
 * mktemp makes shown as DIR. */
static void
dry_commands(struct move *m, struct guest *g, struct vol *v)
{
	struct host sh = src_host(m, g, v), dh = dst_host(m, v);
	char *sp = shq(v->path);
	const char *s = sh.target ? sh.target : "(this host)", *d = dh.target ? dh.target : "(this host)";

	if (strcmp(v->method, "zfs") == 0) {
		plan(m, "on %s: zfs snapshot %s@pvekit-move-%u-1 (while it runs), then -2 after the stop",
		     s, v->path, g->dst_vmid);
		plan(m, "on %s: zfs send [-i @pvekit-move-%u-1] ...@pvekit-move-%u-2 | on %s: zfs "
		        "receive -s TARGET (resumed with send -t from the receive token)",
		     s, g->dst_vmid, g->dst_vmid, d);
	} else if (strcmp(v->method, "sparse") == 0) {
		char *sc = sparse_send_cmd(v, m->direct && dh.target ? bwlimit_bps : 0);
		char *rc = sparse_receive_cmd(v, "TARGET");
		plan(m, "on %s: %s", s, sc);
		if (m->direct && dh.target)
			plan(m, "on %s, piped into ssh -A there: on %s: %s (straight from the source "
			        "host, which checks %s's host key as this host knows it)", s, d, rc, d);
		else
			plan(m, "on %s: %s (its data only, through pve-move)", d, rc);
		free(sc);
		free(rc);
	} else {
		plan(m, "on %s: %s%sqemu-nbd --read-only --persistent --format=%s --socket=DIR/nbd.sock %s",
		     s, is_lvm(v->stype) ? "lvchange -ay " : "", is_lvm(v->stype) ? "...; " : "",
		     v->format, sp);
		plan(m, "on %s: qemu-img convert -p -n -W%s -f raw -O %s nbd+unix:///?socket=DIR/nbd.sock "
		        "TARGET (forwarded by ssh -L/-R through pve-move; a qcow2 file without "
		        "backing file or snapshots goes as the file itself instead)",
		     d, strcmp(v->dst_stype, "lvm") ? " --target-is-zero" : "", v->dst_format);
		if (m->verify)
			plan(m, "on %s: qemu-img compare -f raw -F %s nbd+unix:///?socket=DIR/nbd.sock TARGET",
			     d, v->dst_format);
	}
	free(sp);
}

static int
set_on_target(struct move *m, struct guest *g, struct vol *v, struct journal *jl)
{
	struct api_error err;
	struct buf form = { 0 };
	char *val, *path;
	json_t *r;

	if (v->kind == DK_CLOUDINIT)
		val = xasprintf("%s:cloudinit%s", v->dst_storage,
		                strstr(v->opts, "media=cdrom") ? ",media=cdrom" : "");
	else
		val = xasprintf("%s%s", v->dst_volid, v->opts);
	path = xasprintf("/nodes/%s/qemu/%u/config", m->node, g->dst_vmid);
	form_add(&form, v->key, val);
	if (m->dry_run) {
		plan(m, "PUT %s %s %s", m->dst_alias, path, form.data);
		r = json_null();
	} else {
		r = api_call(&m->dst, "PUT", path, form.data, &err);
	}
	free(path);
	buf_free(&form);
	if (!r) {
		log_err("%s: %s (%u): setting %s=%s: %s", m->dst_alias, g->name, g->dst_vmid,
		        v->key, val, err.msg);
		free(val);
		return EXIT_FAILED;
	}
	/* PUT may hand back a task (cloud-init allocation) */
	if (json_is_string(r) && strncmp(json_string_value(r), "UPID:", 5) == 0 &&
	    api_task_wait(&m->dst, json_string_value(r), 600000, &err) < 0) {
		log_err("%s: %s: setting %s: %s", m->dst_alias, g->name, v->key, err.msg);
		json_decref(r);
		free(val);
		return EXIT_FAILED;
	}
	json_decref(r);
	free(val);
	if (!m->dry_run) {
		journal_disk_set(jl, v->key, "state", "done");
		journal_save(jl);
	}
	return 0;
}

int
disk_move(struct move *m, struct guest *g, struct vol *v, struct journal *jl, int stage)
{
	struct progress pr;
	char *dpath = NULL, *what;
	int rc;

	if (v->kind == DK_NONE || (stage == 1 && strcmp(v->method ? v->method : "", "zfs") != 0))
		return 0;
	if (journal_disk_done(jl, v->key, NULL))
		return 0;
	if (v->kind == DK_CDROM) {
		free(v->opts);
		v->opts = xstrdup(",media=cdrom");
		free(v->dst_volid);
		v->dst_volid = xstrdup("none");
		return set_on_target(m, g, v, jl);
	}
	if (v->kind == DK_CLOUDINIT)
		return set_on_target(m, g, v, jl);
	if (m->skip_disks && (strcmp(v->key, "efidisk0") == 0 || strcmp(v->key, "tpmstate0") == 0)) {
		/* no empty form of these: left out */
		log_warn("%s %s: --skip-disks: not copied, not set", g->name, v->key);
		return 0;
	}
	if (m->skip_disks) {
		/* proxmove's --skip-disks: the slot stays, without the volume */
		free(v->dst_volid);
		v->dst_volid = xstrdup("none");
		log_warn("%s %s: --skip-disks: not copied, set to none", g->name, v->key);
		return set_on_target(m, g, v, jl);
	}
	if ((rc = allocate(m, g, v, jl)) != 0)
		return rc;
	if (m->dry_run) {
		plan(m, "copy %s %s: %s %s (%s, %llu bytes) on %s -> %s (%s) on %s via %s%s", g->name,
		     v->key, v->volid, v->path, v->format, (unsigned long long)v->size,
		     v->src_rc->ssh ? v->src_rc->ssh : "this host", v->dst_volid, v->dst_format,
		     v->dst_rc->ssh ? v->dst_rc->ssh : "this host", v->method,
		     m->verify ? ", then verify" : "");
		dry_commands(m, g, v);
		return set_on_target(m, g, v, jl);
	}
	dpath = dst_path(m, v);
	if (!dpath)
		return EXIT_UNAVAILABLE;
	if (strcmp(v->method, "zfs") == 0) {
		rc = zfs_move(m, g, v, dpath, jl, stage);
		if (rc < 0 || stage == 1) {
			free(dpath);
			return rc < 0 ? EXIT_FAILED : 0;
		}
	} else {
		pick_method(m, g, v);
		what = xasprintf("%s %s", g->name, v->key);
		progress_start(&pr, what, strcmp(v->method, "stream") == 0 ? v->file_size : v->size);
		log_info("%s %s: copying %s (%s) to %s (%s) by %s", g->name, v->key, v->volid,
		         v->format, v->dst_volid, v->dst_format, v->method);
		rc = strcmp(v->method, "nbd") == 0 ? nbd_session(m, g, v, dpath, NBD_CONVERT, &pr)
		                                   : sparse_copy(m, g, v, dpath, &pr);
		free(what);
		if (rc < 0) {
			free(dpath);
			return interrupted ? 128 + SIGINT : EXIT_FAILED;
		}
	}
	if (m->verify) {
		what = xasprintf("%s %s verify", g->name, v->key);
		progress_start(&pr, what, v->size);
		rc = nbd_session(m, g, v, dpath, NBD_COMPARE, &pr);
		free(what);
		if (rc < 0) {
			free(dpath);
			return interrupted ? 128 + SIGINT : EXIT_FAILED;
		}
		log_info("%s %s: verified: the target reads as the source", g->name, v->key);
	}
	free(dpath);
	return set_on_target(m, g, v, jl);
}
