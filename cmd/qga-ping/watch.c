/* qga-ping --watch: the guest-agent heartbeat of every guest this node runs.
 *
 * One poll loop: each guest has its own ping timer (a random phase, then
 * every --interval with a little jitter) and at most one exchange in flight
 * (lib/qga's step API), so a hung agent only ever costs its own --timeout.
 * Every --interval the loop rescans the node (guests.c); commands (--exec,
 * qga-timesync) run as children with a deadline (children.c); the loop
 * never waits for them. The parts are listed in watch.h. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "util.h"
#include "watch.h"

static int
setup(struct watcher *w, const struct watch_opts *o)
{
	sigset_t set;

	memset(w, 0, sizeof *w);
	w->o = o;
	vmlist_current_init(&w->vl, o->pve_dir, NULL);
	ha_resources_init(&w->ha, o->pve_dir);
	w->interval_ms = (int64_t)(o->interval_s * 1000);
	if (getrandom(&w->rng, sizeof w->rng, GRND_NONBLOCK) != sizeof w->rng)
		w->rng = (uint64_t)mono_ms() ^ (uint64_t)getpid() << 32;
	w->rng |= 1;
	raise_nofile_limit();
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	w->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		return EXIT_OSERR;
	}
	return 0;
}

static void
read_signals(struct watcher *w, int64_t now)
{
	struct signalfd_siginfo si;

	while (read(w->sfd, &si, sizeof si) == sizeof si) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			w->stop = 1;
			break;
		case SIGUSR1:
			log_table(w, now);
			break;
		case SIGHUP:
			w->next_scan = now;
			break;
		}
	}
}

static int64_t
next_wakeup(const struct watcher *w)
{
	int64_t wake = w->next_scan;

	for (size_t i = 0; i < w->ng; i++) {
		const struct guest *g = w->g[i];
		int64_t t = g->in_flight ? qga_call_wakeup(&g->call)
		            : g->watched ? g->next_ping
		                         : INT64_MAX;
		if (t < wake)
			wake = t;
		if (g->checking && qmp_call_wakeup(&g->qmp) < wake)
			wake = qmp_call_wakeup(&g->qmp);
	}
	for (size_t i = 0; i < w->nch; i++)
		if (!w->ch[i].termed && w->ch[i].deadline < wake)
			wake = w->ch[i].deadline;
	if (restart_next_deadline(w) < wake)
		wake = restart_next_deadline(w);
	return wake;
}

static void
add_pollfd(struct watcher *w, size_t *n, int fd, short events, enum pfd_kind kind,
           struct guest *g, pid_t child)
{
	w->pfd[*n] = (struct pollfd){ fd, events, 0 };
	w->pfd_kind[*n] = kind;
	w->pfd_guest[*n] = g;
	w->pfd_child[*n] = child;
	(*n)++;
}

/* pfd: the signalfd, the children's result fds, then the guests' calls and
 * restarts. */
static size_t
fill_pollfds(struct watcher *w)
{
	size_t n = 0, need = 4 * w->ng + w->nch + 1;

	if (w->pfd_cap < need) {
		w->pfd_cap = need;
		w->pfd = xreallocarray(w->pfd, w->pfd_cap, sizeof *w->pfd);
		w->pfd_kind = xreallocarray(w->pfd_kind, w->pfd_cap, sizeof *w->pfd_kind);
		w->pfd_guest = xreallocarray(w->pfd_guest, w->pfd_cap, sizeof *w->pfd_guest);
		w->pfd_child = xreallocarray(w->pfd_child, w->pfd_cap, sizeof *w->pfd_child);
	}
	add_pollfd(w, &n, w->sfd, POLLIN, PFD_SIGNAL, NULL, 0);
	for (size_t i = 0; i < w->nch; i++)
		add_pollfd(w, &n, w->ch[i].p.fd, POLLIN, PFD_CHILD, NULL, w->ch[i].p.pid);
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (g->in_flight && qga_call_fd(&g->call) >= 0)
			add_pollfd(w, &n, qga_call_fd(&g->call), qga_call_events(&g->call), PFD_QGA,
			           g, 0);
		if (g->checking && qmp_call_fd(&g->qmp) >= 0)
			add_pollfd(w, &n, qmp_call_fd(&g->qmp), qmp_call_events(&g->qmp), PFD_QMP,
			           g, 0);
		if (g->restarting) {
			add_pollfd(w, &n, g->act.proc.out, POLLIN, PFD_RESTART_OUT, g, 0);
			add_pollfd(w, &n, g->act.proc.fd, POLLIN, PFD_RESTART_DONE, g, 0);
		}
	}
	return n;
}

/* The children whose result is in (a child that ends may start the next
 * --exec of its guest, so they are found by pid, not by slot). */
static void
collect_children(struct watcher *w, size_t npfd)
{
	for (size_t k = 1; k < npfd; k++) {
		if (w->pfd_kind[k] != PFD_CHILD || !w->pfd[k].revents)
			continue;
		for (size_t i = 0; i < w->nch; i++)
			if (w->ch[i].p.pid == w->pfd_child[k]) {
				child_ended(w, i);
				break;
			}
	}
}

/* Restarts: their output, then (a finished one has said all) their end. */
static void
step_restarts(struct watcher *w, size_t npfd)
{
	for (size_t k = 1; k < npfd; k++)
		if (w->pfd_kind[k] == PFD_RESTART_OUT && w->pfd[k].revents &&
		    w->pfd_guest[k]->restarting)
			restart_output(w->pfd_guest[k]);
	for (size_t k = 1; k < npfd; k++)
		if (w->pfd_kind[k] == PFD_RESTART_DONE && w->pfd[k].revents &&
		    w->pfd_guest[k]->restarting)
			restart_finished(w, w->pfd_guest[k]);
}

static void
step_calls(struct watcher *w, size_t npfd, int64_t now)
{
	for (size_t k = 1; k < npfd; k++) {
		if (!w->pfd[k].revents)
			continue;
		if (w->pfd_kind[k] == PFD_QMP)
			qmp_call_step(&w->pfd_guest[k]->qmp, w->pfd[k].revents, now);
		else if (w->pfd_kind[k] == PFD_QGA)
			qga_call_step(&w->pfd_guest[k]->call, w->pfd[k].revents, now);
	}
	for (size_t i = 0; i < w->ng; i++) {
		struct guest *g = w->g[i];
		if (g->checking) {
			if (!qmp_call_done(&g->qmp) && qmp_call_wakeup(&g->qmp) <= now)
				qmp_call_step(&g->qmp, 0, now);
			if (qmp_call_done(&g->qmp))
				on_qmp(w, g);
		}
		if (!g->in_flight)
			continue;
		if (!qga_call_done(&g->call) && qga_call_wakeup(&g->call) <= now)
			qga_call_step(&g->call, 0, now);
		if (qga_call_done(&g->call))
			on_result(w, g, now);
	}
}

static void
teardown(struct watcher *w)
{
	/* Every command and what it started ends with us. */
	w->stop = 1;
	stop_children(w);
	for (size_t i = 0; i < w->ng; i++)
		if (w->g[i]->restarting)
			action_abort(&w->g[i]->act);
	while (w->ng)
		guest_remove(w, w->ng - 1);
	free(w->g);
	free(w->ch);
	free(w->pfd);
	free(w->pfd_kind);
	free(w->pfd_guest);
	free(w->pfd_child);
	vmlist_current_free(&w->vl);
	ha_resources_free(&w->ha);
	close(w->sfd);
}

int
watch_run(const struct watch_opts *o)
{
	struct watcher w;
	int rc;

	if ((rc = setup(&w, o)))
		return rc;
	if (scan(&w, mono_ms()) < 0) {
		teardown(&w);
		return EXIT_UNAVAILABLE;
	}
	w.next_scan = mono_ms() + w.interval_ms;
	if ((o->exec_cmd || o->restart) && !o->systemd_run && getenv("INVOCATION_ID"))
		log_warn("%s without --systemd-run: %s inside this service's sandbox (see "
		         "qga-ping(8), The command)",
		         o->exec_cmd ? "--exec" : "--restart",
		         o->exec_cmd ? "the command runs" : "qm and ha-manager run");
	log_info("watching the guest agents of node %s every %g s (timeout %d ms, threshold %u)",
	         o->node, o->interval_s, o->timeout_ms, o->threshold);
	while (!w.stop) {
		int64_t now = mono_ms();
		if (now >= w.next_scan) {
			scan(&w, now);
			w.next_scan = now + w.interval_ms;
		}
		start_pings(&w, now);
		if (!w.ready && w.first_pending == 0) {
			w.ready = 1;
			sd_notify_msg("READY=1");
		}
		size_t npfd = fill_pollfds(&w);
		int64_t wait = next_wakeup(&w) - now;
		if (poll(w.pfd, npfd,
		         wait < 0       ? 0
		         : wait > 60000 ? 60000
		                        : (int)wait) < 0 &&
		    errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			teardown(&w);
			return EXIT_OSERR;
		}
		now = mono_ms();
		if (w.pfd[0].revents)
			read_signals(&w, now);
		collect_children(&w, npfd);
		step_calls(&w, npfd, now);
		step_restarts(&w, npfd);
		expire_children(&w, now);
		restart_expire(&w, now);
	}
	sd_notify_msg("STOPPING=1");
	teardown(&w);
	return 0;
}
