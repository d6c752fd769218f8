/* The steps of one move, as proxmove takes them, so its users recognise
 * them: the target is created as NAME--CREATING without disks, the source
 * stopped and renamed NAME--CLONING, the disks copied and set, the target
 * renamed NAME, the source NAME--MIGRATED with onboot=0 and a line in its
 * description, the target started. The journal records each finished step
 * and disk; --resume goes on from there. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "move.h"

static const char *const step_names[] = { "planned", "created", "synced", "stopped",
	                                  "cloning", "disks",   "renamed", "started" };
enum { S_PLANNED, S_CREATED, S_SYNCED, S_STOPPED, S_CLONING, S_DISKS, S_RENAMED, S_STARTED };

void
plan(struct move *m, const char *fmt, ...)
{
	va_list ap;
	char line[4096], clean[4096];

	(void)m;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	http_redact(line, clean, sizeof clean);
	printf("%s\n", clean);
	fflush(stdout);
}

static int
step_get(struct journal *jl)
{
	const char *s = journal_get(jl, "step");

	for (int i = 0; s && i < (int)ARRAY_LEN(step_names); i++)
		if (strcmp(s, step_names[i]) == 0)
			return i;
	return S_PLANNED;
}

static void
step_set(struct move *m, struct journal *jl, int step)
{
	if (m->dry_run)
		return;
	journal_set(jl, "step", step_names[step]);
	journal_save(jl);
}

/* A write to one cluster: printed in a dry run, else done (and its task
 * followed). Returns the data (new reference) or NULL after a message. */
static json_t *
write_call(struct move *m, struct api *a, const char *method, const char *path,
           const char *form, const char *what)
{
	struct api_error err;
	json_t *r;

	if (m->dry_run) {
		plan(m, "%s %s %s%s%s", method, a->alias, path, form ? " " : "", form ? form : "");
		return json_null();
	}
	r = api_call(a, method, path, form, &err);
	if (!r) {
		log_err("%s: %s: %s", a->alias, what, err.msg);
		return NULL;
	}
	if (json_is_string(r) && strncmp(json_string_value(r), "UPID:", 5) == 0 &&
	    api_task_wait(a, json_string_value(r), 30 * 60 * 1000, &err) < 0) {
		log_err("%s: %s: %s", a->alias, what, err.msg);
		json_decref(r);
		return NULL;
	}
	return r;
}

static int
set_config(struct move *m, struct api *a, const char *node, const char *type, uint32_t vmid,
           const char *form, const char *what)
{
	char *path = xasprintf("/nodes/%s/%s/%u/config", node, type, vmid);
	json_t *r = write_call(m, a, "PUT", path, form, what);

	free(path);
	json_decref(r);
	return r ? 0 : -1;
}

static const char *
name_key(const struct guest *g)
{
	return strcmp(g->type, "lxc") == 0 ? "hostname" : "name";
}

static int
rename_guest(struct move *m, struct api *a, const char *node, struct guest *g, uint32_t vmid,
             const char *suffix)
{
	struct buf f = { 0 };
	char *n = xasprintf("%s%s", g->name, suffix), *what = xasprintf("renaming %u to %s", vmid, n);
	int rc;

	form_add(&f, name_key(g), n);
	rc = set_config(m, a, node, g->type, vmid, f.data, what);
	buf_free(&f);
	free(n);
	free(what);
	return rc;
}

/* The source VMID when the target has it free, else --vmid, else
 * /cluster/nextid. */
static int
pick_vmid(struct move *m, struct guest *g, struct journal *jl)
{
	struct api_error err;
	json_t *r;
	char *path;
	unsigned long id;

	if (journal_get_int(jl, "dst_vmid", 0)) {
		g->dst_vmid = (uint32_t)journal_get_int(jl, "dst_vmid", 0);
		g->vmid_fixed = 1;
		return 0;
	}
	if (m->vmid_opt) {
		path = xasprintf("/cluster/nextid?vmid=%u", m->vmid_opt);
		r = api_call(&m->dst, "GET", path, NULL, &err);
		free(path);
		if (!r) {
			log_err("%s: VMID %u: %s", m->dst_alias, m->vmid_opt, err.msg);
			return EXIT_DATAERR;
		}
		json_decref(r);
		g->dst_vmid = m->vmid_opt;
		g->vmid_fixed = 1;
		return 0;
	}
	path = xasprintf("/cluster/nextid?vmid=%u", g->vmid);
	r = api_call(&m->dst, "GET", path, NULL, &err);
	free(path);
	if (r) {
		json_decref(r);
		g->dst_vmid = g->vmid;
		return 0;
	}
	if (err.status != 400) {
		log_err("%s: VMID %u: %s", m->dst_alias, g->vmid, err.msg);
		return EXIT_UNAVAILABLE;
	}
	r = api_call(&m->dst, "GET", "/cluster/nextid", NULL, &err);
	/* an integer or a string, as versions differ */
	if (!r || !((json_is_string(r) && parse_ulong(json_string_value(r), 999999999, &id) == 0) ||
	            (json_is_integer(r) && (id = (unsigned long)json_integer_value(r))))) {
		log_err("%s: next free VMID: %s", m->dst_alias, r ? "not a number" : err.msg);
		json_decref(r);
		return EXIT_UNAVAILABLE;
	}
	json_decref(r);
	g->dst_vmid = (uint32_t)id;
	log_info("%s: VMID %u is taken on %s: %s gets %u", g->name, g->vmid, m->dst_alias,
	         g->name, g->dst_vmid);
	return 0;
}

static int
ensure_pool(struct move *m, struct guest *g)
{
	struct api_error err;
	json_t *l, *e, *r;
	size_t i;
	struct buf f = { 0 };

	if (!g->pool)
		return 0;
	l = api_call(&m->dst, "GET", "/pools", NULL, &err);
	if (!l) {
		log_err("%s: pools: %s", m->dst_alias, err.msg);
		return -1;
	}
	json_array_foreach(l, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "poolid"));
		if (id && strcmp(id, g->pool) == 0) {
			json_decref(l);
			return 0;
		}
	}
	json_decref(l);
	form_add(&f, "poolid", g->pool);
	r = write_call(m, &m->dst, "POST", "/pools", f.data, "creating the pool");
	buf_free(&f);
	json_decref(r);
	return r ? 0 : -1;
}

static int
create_target(struct move *m, struct guest *g, struct journal *jl)
{
	struct api_error err;
	const char *k;
	json_t *v;

	if (ensure_pool(m, g) < 0)
		return EXIT_FAILED;
	for (int attempt = 0;; attempt++) {
		struct buf f = { 0 };
		char num[16], *n = xasprintf("%s--CREATING", g->name), *path;
		json_t *r;

		snprintf(num, sizeof num, "%u", g->dst_vmid);
		form_add(&f, "vmid", num);
		form_add(&f, "name", n);
		if (g->pool)
			form_add(&f, "pool", g->pool);
		json_object_foreach(g->create, k, v)
		{
			form_add(&f, k, json_string_value(v));
		}
		free(n);
		path = xasprintf("/nodes/%s/qemu", m->node);
		if (m->dry_run) {
			plan(m, "POST %s %s %s", m->dst_alias, path, f.data);
			free(path);
			buf_free(&f);
			return 0;
		}
		r = api_call(&m->dst, "POST", path, f.data, &err);
		free(path);
		buf_free(&f);
		if (!r && strstr(err.msg, "already exists") && !g->vmid_fixed && attempt < 5) {
			/* taken meanwhile: the next free one */
			json_t *id = api_call(&m->dst, "GET", "/cluster/nextid", NULL, &err);
			unsigned long nid = 0;
			if (!id || !((json_is_string(id) &&
			              parse_ulong(json_string_value(id), 999999999, &nid) == 0) ||
			             (json_is_integer(id) && (nid = (unsigned long)json_integer_value(id))))) {
				json_decref(id);
				log_err("%s: next free VMID: %s", m->dst_alias, err.msg);
				return EXIT_UNAVAILABLE;
			}
			json_decref(id);
			log_warn("%s: VMID %u was taken meanwhile on %s; trying %lu", g->name,
			         g->dst_vmid, m->dst_alias, nid);
			g->dst_vmid = (uint32_t)nid;
			continue;
		}
		if (!r) {
			log_err("%s: creating %s--CREATING (%u) on %s: %s", m->dst_alias, g->name,
			        g->dst_vmid, m->node, err.msg);
			return EXIT_FAILED;
		}
		if (json_is_string(r) &&
		    api_task_wait(&m->dst, json_string_value(r), 10 * 60 * 1000, &err) < 0) {
			json_decref(r);
			log_err("%s: creating %s--CREATING (%u): %s", m->dst_alias, g->name,
			        g->dst_vmid, err.msg);
			return EXIT_FAILED;
		}
		json_decref(r);
		break;
	}
	journal_set_int(jl, "dst_vmid", g->dst_vmid);
	step_set(m, jl, S_CREATED);
	log_info("%s: created %s--CREATING (%u) on %s/%s", g->name, g->name, g->dst_vmid,
	         m->dst_alias, m->node);
	return 0;
}

static int
stop_source(struct move *m, struct guest *g)
{
	struct api_error err;
	char *path;
	json_t *r;
	int64_t until;
	char form[64];

	if (!g->running)
		return 0;
	snprintf(form, sizeof form, "forceStop=1&timeout=%lld",
	         (long long)(m->shutdown_timeout_ms / 1000));
	path = xasprintf("/nodes/%s/%s/%u/status/shutdown", g->node, g->type, g->vmid);
	r = write_call(m, &m->src, "POST", path, form, "shutting the guest down");
	free(path);
	if (!r)
		return EXIT_FAILED;
	json_decref(r);
	if (m->dry_run)
		return 0;
	path = xasprintf("/nodes/%s/%s/%u/status/current", g->node, g->type, g->vmid);
	until = mono_ms() + m->shutdown_timeout_ms + 30000;
	for (;;) {
		const char *st;

		r = api_call(&m->src, "GET", path, NULL, &err);
		st = r ? json_string_value(json_object_get(r, "status")) : NULL;
		if (st && strcmp(st, "stopped") == 0) {
			json_decref(r);
			break;
		}
		json_decref(r);
		if (mono_ms() > until || interrupted) {
			log_err("%s: %s (%u) did not stop", m->src_alias, g->name, g->vmid);
			free(path);
			return EXIT_FAILED;
		}
		sleep_ms(1000);
	}
	free(path);
	log_info("%s: stopped %s (%u) on %s", g->name, g->name, g->vmid, m->src_alias);
	return 0;
}

static int
wait_before_stop(struct move *m, struct guest *g)
{
	char line[64];

	if (!m->wait_before_stop || m->dry_run)
		return 0;
	fprintf(stderr, "%s: %s: the first sync is done; the guest stops next. Resume [y]? ",
	        log_prog, g->name);
	fflush(stderr);
	if (!fgets(line, sizeof line, stdin) || (line[0] != '\n' && line[0] != 'y' && line[0] != 'Y')) {
		log_err("%s: stopped before the shutdown; --resume goes on from here", g->name);
		return EXIT_FAILED;
	}
	return 0;
}

static int
finish(struct move *m, struct guest *g, struct journal *jl, int step)
{
	char *path;
	struct buf f = { 0 };
	time_t now = time(NULL);
	struct tm tm;
	json_t *r;

	if (step < S_RENAMED) {
		char stamp[64];
		const char *desc;

		if (rename_guest(m, &m->dst, m->node, g, g->dst_vmid, "") < 0)
			return EXIT_FAILED;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
		desc = json_string_value(json_object_get(g->config, "description"));
		{
			char *n = xasprintf("%s--MIGRATED", g->name);
			char *d = xasprintf("%s%s%s UTC: moved to %s/%s as %u by pve-move", desc ? desc : "",
			                    desc && *desc && desc[strlen(desc) - 1] != '\n' ? "\n" : "",
			                    stamp, m->dst_alias, m->node, g->dst_vmid);
			form_add(&f, name_key(g), n);
			form_add(&f, "onboot", "0");
			form_add(&f, "description", d);
			free(n);
			free(d);
		}
		if (set_config(m, &m->src, g->node, g->type, g->vmid, f.data,
		               "marking the source --MIGRATED") < 0) {
			buf_free(&f);
			return EXIT_FAILED;
		}
		buf_free(&f);
		step_set(m, jl, S_RENAMED);
		if (!m->dry_run)
			log_info("%s: %s (%u) on %s is now %s--MIGRATED; %s (%u) on %s is %s", g->name,
		         g->name, g->vmid, m->src_alias, g->name, g->name, g->dst_vmid, m->dst_alias,
		         g->name);
	}
	if (m->skip_start || m->skip_disks) {
		log_info("%s: not started (--skip-%s)", g->name, m->skip_disks ? "disks" : "start");
		return 0;
	}
	path = xasprintf("/nodes/%s/%s/%u/status/start", m->node, g->type, g->dst_vmid);
	r = write_call(m, &m->dst, "POST", path, NULL, "starting the moved guest");
	free(path);
	if (!r)
		return EXIT_FAILED;
	json_decref(r);
	step_set(m, jl, S_STARTED);
	if (!m->dry_run)
		log_info("%s: started on %s/%s", g->name, m->dst_alias, m->node);
	return 0;
}

/* proxmove left NAME--CLONING on the source and NAME--CREATING on the
 * target, and no journal: adopt them. A disk proxmove set on the target
 * was copied whole (it sets a disk only after its copy). */
static int
adopt_leftovers(struct move *m, struct guest *g, struct journal *jl)
{
	struct api_error err;
	json_t *res = api_call(&m->dst, "GET", "/cluster/resources?type=vm", NULL, &err), *e, *c;
	char *want = xasprintf("%s--CREATING", g->name), *path;
	size_t i;
	uint32_t id = 0;
	const char *node = NULL;

	json_array_foreach(res, i, e)
	{
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && strcmp(n, want) == 0) {
			id = (uint32_t)json_integer_value(json_object_get(e, "vmid"));
			node = json_string_value(json_object_get(e, "node"));
		}
	}
	if (!id) {
		log_info("%s: %s is %s on %s and %s has no %s: starting over", g->name, g->name,
		         g->cur_name, m->src_alias, m->dst_alias, want);
		json_decref(res);
		free(want);
		return S_STOPPED;
	}
	if (node && strcmp(node, m->node) != 0)
		log_warn("%s: %s is on node %s, not %s", g->name, want, node, m->node);
	g->dst_vmid = id;
	g->vmid_fixed = 1;
	journal_set_int(jl, "dst_vmid", id);
	path = xasprintf("/nodes/%s/qemu/%u/config", node ? node : m->node, id);
	c = api_call(&m->dst, "GET", path, NULL, &err);
	free(path);
	for (i = 0; i < g->nvols; i++) {
		const char *have = json_string_value(json_object_get(c, g->vols[i].key));
		if (have && strncmp(have, "none", 4) != 0 && g->vols[i].kind == DK_DISK) {
			journal_disk_set(jl, g->vols[i].key, "state", "done");
			log_info("%s: %s (%s) was copied by proxmove: kept", g->name, g->vols[i].key,
			         have);
		}
	}
	log_info("%s: proxmove's leftovers: %s (%u) on %s and %s (%u) on %s: copying the "
	         "remaining disks into %u",
	         g->name, g->cur_name, g->vmid, m->src_alias, want, id, m->dst_alias, id);
	json_decref(c);
	json_decref(res);
	free(want);
	return S_CLONING;
}

static int
announce(struct move *m, struct guest *g)
{
	for (size_t i = 0; i < g->nwarnings; i++)
		log_warn("%s: %s", g->name, g->warnings[i]);
	if (m->dry_run)
		plan(m, "move %s %s (%u) from %s/%s to %s/%s as %u%s%s", g->type, g->name, g->vmid,
		     m->src_alias, g->node, m->dst_alias, m->node, g->dst_vmid,
		     g->running ? " (running: it stops for the copy)" : "",
		     m->native ? " by remote_migrate" : "");
	return 0;
}

int
move_guest(struct move *m, const char *arg)
{
	struct guest g;
	struct journal jl = { 0 };
	int code = 0, step, has_journal, lxc;
	const char *suffix;

	if (guest_find(m, arg, &g, &code) < 0)
		goto out;
	lxc = strcmp(g.type, "lxc") == 0;
	if (journal_open(&jl, m->state_dir, m->src_alias, g.vmid) < 0) {
		code = EXIT_OSERR;
		goto out;
	}
	has_journal = journal_get(&jl, "step") != NULL;
	step = step_get(&jl);
	suffix = g.cur_name + strlen(g.name);
	if (strcmp(suffix, "--MIGRATED") == 0 && (!has_journal || step >= S_STARTED)) {
		log_info("%s: already moved (%s on %s): nothing to do", g.name, g.cur_name,
		         m->src_alias);
		journal_remove(&jl);
		goto out;
	}
	if (has_journal && !m->resume) {
		log_err("%s: an interrupted move (%s, step %s): run again with --resume", g.name,
		        jl.path, step_names[step]);
		code = EXIT_DATAERR;
		goto out;
	}
	if (*suffix && !has_journal && !m->resume) {
		log_err("%s: it is %s on %s, left by an interrupted move: run again with --resume",
		        g.name, g.cur_name, m->src_alias);
		code = EXIT_DATAERR;
		goto out;
	}
	if (guest_prepare(m, &g, &code) < 0)
		goto out;
	if (m->native && (code = native_check(m, &g)) != 0)
		goto out;
	if (m->direct && !m->native && (code = direct_check(m, &g)) != 0)
		goto out;
	if (strcmp(suffix, "--CLONING") == 0 && !has_journal)
		step = adopt_leftovers(m, &g, &jl);
	if ((code = pick_vmid(m, &g, &jl)) != 0)
		goto out;
	if (has_journal)
		log_info("%s: resuming at step '%s' (journal %s)", g.name, step_names[step], jl.path);
	announce(m, &g);
	if (!m->dry_run) {
		journal_set(&jl, "name", g.name);
		journal_set(&jl, "type", g.type);
		journal_set(&jl, "source", m->src_alias);
		journal_set(&jl, "target", m->dst_alias);
		journal_set(&jl, "node", m->node);
		if (!has_journal) {
			journal_set_int(&jl, "was_running", g.running);
			step_set(m, &jl, S_PLANNED);
		}
	}
	if (m->native) {
		if (step < S_DISKS && (code = native_move(m, &g, &jl)) != 0)
			goto out;
		if (step < S_DISKS)
			step = S_DISKS;
		m->skip_start = 1; /* remote_migrate starts it when it ran */
		code = finish(m, &g, &jl, step);
		goto done;
	}
	if (!lxc && step < S_CREATED) {
		if ((code = create_target(m, &g, &jl)) != 0)
			goto out;
		step = S_CREATED;
	}
	if (!lxc && step < S_SYNCED && g.running) {
		for (size_t i = 0; i < g.nvols; i++)
			if ((code = disk_move(m, &g, &g.vols[i], &jl, 1)) != 0)
				goto out;
		if ((code = wait_before_stop(m, &g)) != 0)
			goto out;
		step_set(m, &jl, S_SYNCED);
	}
	if (step < S_STOPPED) {
		if ((code = stop_source(m, &g)) != 0)
			goto out;
		step_set(m, &jl, S_STOPPED);
	}
	if (step < S_CLONING) {
		if (rename_guest(m, &m->src, g.node, &g, g.vmid, "--CLONING") < 0) {
			code = EXIT_FAILED;
			goto out;
		}
		step_set(m, &jl, S_CLONING);
	}
	if (step < S_DISKS) {
		if (lxc) {
			code = restore_ct(m, &g, &jl);
		} else {
			for (size_t i = 0; i < g.nvols && !code; i++)
				code = disk_move(m, &g, &g.vols[i], &jl, 2);
			for (size_t i = 0; i < g.nvols && !code && !m->dry_run; i++)
				if (g.vols[i].method && strcmp(g.vols[i].method, "zfs") == 0)
					disk_zfs_cleanup(m, &g, &g.vols[i], &jl);
		}
		if (code)
			goto out;
		step_set(m, &jl, S_DISKS);
	}
	code = finish(m, &g, &jl, step);
done:
	if (!code && !m->dry_run) {
		journal_remove(&jl);
		log_info("%s: moved to %s/%s as %u", g.name, m->dst_alias, m->node, g.dst_vmid);
	}
out:
	if (code && code != EXIT_USAGE && jl.path && !m->dry_run && journal_get(&jl, "step") &&
	    access(jl.path, F_OK) == 0)
		log_err("%s: the move stopped at step '%s'; pve-move --resume goes on from there",
		        g.name ? g.name : arg, journal_get(&jl, "step"));
	journal_close(&jl);
	guest_free(&g);
	return code;
}
