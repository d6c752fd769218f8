/* run-hooks --events: one event's hooks, run one after the other with the
 * event's environment; the event is finished (out of the journal) once the
 * last has ended. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "events.h"
#include "log.h"

static void finish_event(struct events *evs, struct job *j);

/* The hooks' environment: ours, with the event's PVEKIT_* variables. */
static void
event_env(struct events *evs, const struct event *e, struct child_env *env)
{
	child_env_init(env);
	child_env_set(env, "PVEKIT_EVENT", "%s", guest_event_name(e->kind));
	child_env_set(env, "PVEKIT_VMID", "%u", e->vmid);
	child_env_set(env, "PVEKIT_TYPE", "%s", e->type);
	child_env_set(env, "PVEKIT_NODE", "%s", evs->opt->node);
	child_env_set(env, "PVEKIT_PEER", "%s", e->peer);
	child_env_set(env, "PVEKIT_CONFIG", "%s", e->conf);
}

static void
free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void
job_clear(struct job *j)
{
	child_env_free(&j->env);
	free_strv(j->hooks, j->nhooks);
	free(j->label);
	free(j->hook_label);
	memset(j, 0, sizeof *j);
}

/* The runnable hooks of the event's directory, stat'ed now; 0, or -1
 * when the directory does not exist (said here). */
static int
collect_hooks(struct events *evs, struct job *j)
{
	struct names names;

	if (names_scan(j->dir, &names) < 0) {
		if (errno == ENOENT) {
			log_info("%s: no hooks: %s does not exist", j->label, j->dir);
			return -1;
		}
		log_err("%s: %s: %s", j->label, j->dir, strerror(errno));
		j->failed = 1;
		return 0;
	}
	j->hooks = xcalloc(names.n, sizeof *j->hooks);
	for (size_t k = 0; k < names.n; k++) {
		size_t i = evs->opt->reverse ? names.n - 1 - k : k;
		char *path = xasprintf("%s/%s", j->dir, names.v[i]);

		switch (entry_classify(path)) {
		case ENTRY_RUN:
			j->hooks[j->nhooks++] = path;
			continue;
		case ENTRY_NOSTAT:
			log_err("%s: failed to stat component %s: %s", j->label, path,
			        strerror(errno));
			j->failed = 1;
			break;
		case ENTRY_NOTPLAIN:
			log_err("%s: component %s is not an executable plain file", j->label, path);
			j->failed = 1;
			break;
		case ENTRY_LISTED:
		case ENTRY_SKIP:
			break;
		}
		free(path);
	}
	names_free(&names);
	return 0;
}

/* Starts the job's next hook; finishes the event when none is left. When
 * stopping, an event with hooks left stays unfinished, in the journal. */
static void
advance(struct events *evs, struct job *j)
{
	while (j->next < j->nhooks && !(j->failed && evs->opt->exit_on_error) && !evs->stopping) {
		const char *path = j->hooks[j->next++];
		char *argv[] = { (char *)path, (char *)j->ev->conf, NULL };
		struct hookspec h = {
			.path = path,
			.argv = argv,
			.envp = j->env.v,
			.mode = OUT_LOG,
			.stdin_null = 1,
			.vmid = j->ev->vmid,
			.hold_fd = evs->journal.hooks_fd,
		};
		int rc;

		free(j->hook_label);
		j->hook_label =
		    xasprintf("%s: %s/%s", j->label, j->dirname, strrchr(path, '/') + 1);
		h.label = j->hook_label;
		log_debug("%s: executing %s %s", j->hook_label, path, j->ev->conf);
		rc = hookrun_start(&j->run, &h, evs->opt);
		if (rc < 0)
			log_err("%s: cannot start: %s", j->hook_label, strerror(errno));
		else {
			j->running = 1;
			return;
		}
		j->failed = 1;
	}
	if (evs->stopping && j->next < j->nhooks)
		return;
	finish_event(evs, j);
}

void
start_event(struct events *evs, struct job *j, struct ev_guest *g)
{
	struct event *e = g->head;
	int up = e->kind == GUEST_CREATE || e->kind == GUEST_MIGRATE_IN;
	const char *dir = evs->hook_dirs[up ? 0 : 1];
	int missing;

	g->head = e->next;
	if (!g->head)
		g->tail = NULL;
	g->busy = 1;
	evs->queued--;
	evs->nbusy++;
	j->g = g;
	j->ev = e;
	j->dir = dir;
	j->dirname = up ? "up.d" : "down.d";
	j->label = xasprintf("%s %u %s", strcmp(e->type, "lxc") == 0 ? "CT" : "VM", e->vmid,
	                     guest_event_name(e->kind));
	event_env(evs, e, &j->env);
	missing = collect_hooks(evs, j) < 0;
	if (j->nhooks)
		log_info("%s%s%s: %zu hook%s in %s", j->label,
		         !*e->peer                      ? ""
		         : e->kind == GUEST_MIGRATE_IN  ? " from "
		         : e->kind == GUEST_MIGRATE_OUT ? " to "
		                                        : " peer ",
		         e->peer, j->nhooks, j->nhooks == 1 ? "" : "s", dir);
	else if (!j->failed && !missing)
		log_info("%s: no hooks in %s", j->label, dir);
	advance(evs, j);
}

static void
finish_event(struct events *evs, struct job *j)
{
	struct ev_guest *g = j->g;

	j->running = 0;
	evs->nbusy--;
	evs->hook_failed |= j->failed;
	journal_done(&evs->journal, j->ev->je.seq);
	forget(evs, j->ev);
	g->busy = 0;
	if (g->head && !g->ready)
		make_ready(evs, g);
	job_clear(j);
	compact_journal(evs);
}

void
hook_ended(struct events *evs, struct job *j, const struct proc_status *st)
{
	char what[160];
	double secs = st->ms / 1000.0;
	int code = proc_exit_code(st);

	j->running = 0;
	proc_describe(st, what, sizeof what);
	/* Under systemd a stop sends SIGTERM to every process at once: the hook
	 * or its supervisor may see it before we do. Judge the result only
	 * once a pending stop signal has had its say. */
	take_stop_signals();
	if (stop_signal && !evs->stopping)
		stop(evs);
	if (evs->stopping && (st->aborted || WIFSIGNALED(st->wstatus))) {
		/* Not finished: the event stays in the evs->journal. */
		log_warn("%s: stopped, %s; the event runs again on the next start", j->hook_label,
		         what);
		return;
	}
	if (st->timed_out)
		log_err("%s: timed out after %g s%s, %s (%.3f s)", j->hook_label,
		        evs->opt->timeout_ms / 1000.0, st->killed ? ", killed" : "", what, secs);
	else if (code)
		log_err("%s: %s (%.3f s)", j->hook_label, what, secs);
	else
		log_info("%s: ok (%.3f s)", j->hook_label, secs);
	if (code)
		j->failed = 1;
	advance(evs, j);
}
