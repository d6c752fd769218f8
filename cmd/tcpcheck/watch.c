/* --watch: one process, one epoll loop, every guest of this node (the
 * parts are listed in watch.h). State changes are printed on stdout, one
 * line each:
 *   VMID STATE REASON
 * with STATE one of idle grace healthy failing acting held gave-up. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "util.h"
#include "watch.h"

static void
begin_quit(struct watcher *w)
{
	if (w->quitting) {
		for (size_t i = 0; i < w->n; i++)
			if (w->g[i]->acting)
				action_abort(&w->g[i]->act);
		log_info("terminated %d running actions", w->nacting);
		/* Each is collected once it and all it started are gone. */
		return;
	}
	w->quitting = 1;
	for (size_t i = 0; i < w->n; i++) {
		cancel_check(w, w->g[i]);
		unschedule(w, w->g[i]);
	}
	if (w->nacting)
		log_info("exiting once %d running actions finish (signal again to terminate them)",
		         w->nacting);
}

static void
handle_signals(struct watcher *w)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof si) == sizeof si) {
		switch (si.ssi_signo) {
		case SIGHUP:
			log_info("SIGHUP: re-reading everything");
			w->force_scan = 1;
			break;
		case SIGUSR1:
			status_table(w);
			break;
		case SIGUSR2:
			w->node_maint = !w->node_maint;
			log_info("node-local maintenance %s (SIGUSR2)",
			         w->node_maint ? "on" : "off");
			notify_status(w);
			break;
		case SIGTERM:
		case SIGINT:
			begin_quit(w);
			break;
		}
	}
}

static int
setup(struct watcher *w, const struct watch_opts *o)
{
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;

	memset(w, 0, sizeof *w);
	w->o = o;
	w->epfd = w->sigfd = -1;
	w->due.key = guest_due_key;
	w->due.slot = guest_due_slot;
	w->seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	vmlist_current_init(&w->vl, o->pve_dir, NULL);
	w->mvmm_path = xasprintf("%s/mvmm.conf", o->config_dir);
	w->defaults_path = xasprintf("%s/defaults.conf", o->config_dir);
	w->maint_path = xasprintf("%s/maintenance", o->config_dir);
	ha_resources_init(&w->ha, o->pve_dir);
	watchconf_defaults(&w->defaults, o->timeout_ms);

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	w->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->sigfd < 0 || w->epfd < 0 ||
	    prober_init(&w->pr, open_files_budget(PROBE_FD_RESERVE)) < 0)
		return -1;
	w->ev_signal.kind = EV_SIGNAL;
	w->ev_prober.kind = EV_PROBER;
	ev.data.ptr = &w->ev_signal;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->sigfd, &ev) < 0)
		return -1;
	ev.data.ptr = &w->ev_prober;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, prober_fd(&w->pr), &ev) < 0)
		return -1;
	return 0;
}

static void
teardown(struct watcher *w)
{
	while (w->n)
		remove_guest(w, w->n - 1);
	free(w->g);
	heap_free(&w->due);
	prober_free(&w->pr);
	watchconf_free(&w->defaults);
	vmlist_current_free(&w->vl);
	ha_resources_free(&w->ha);
	free(w->lxc);
	free(w->mvmm_path);
	free(w->defaults_path);
	free(w->maint_path);
	if (w->sigfd >= 0)
		close(w->sigfd);
	if (w->epfd >= 0)
		close(w->epfd);
}

int
watch_main(const struct watch_opts *o)
{
	struct epoll_event ev[64];
	struct watcher watcher, *w = &watcher;

	if (setup(w, o) < 0) {
		log_err("setup: %s", strerror(errno));
		teardown(w);
		return EXIT_OSERR;
	}
	log_info("watching the guests of node %s (configs in %s)%s", o->node, o->config_dir,
	         o->dry_run ? ", dry run: no actions" : "");
	scan(w, 1);
	w->next_scan = mono_ms() + (int64_t)(o->interval * 1000);
	sd_notify_msg("READY=1");

	while (!w->quitting || w->nacting) {
		int64_t now = mono_ms(), wake;
		int n;

		if (!w->quitting) {
			if (now >= w->next_scan || w->force_scan) {
				scan(w, w->force_scan);
				w->force_scan = 0;
				w->next_scan = now + (int64_t)(o->interval * 1000);
			}
			run_due(w, now);
		}
		enforce_action_deadlines(w, now);

		wake = w->quitting ? now + 1000 : w->next_scan;
		struct guest *top = heap_top(&w->due);
		if (top && top->next_check < wake)
			wake = top->next_check;
		if (prober_next_deadline(&w->pr) < wake)
			wake = prober_next_deadline(&w->pr);
		if (next_action_deadline(w) < wake)
			wake = next_action_deadline(w);
		wake -= mono_ms();
		n = epoll_wait(w->epfd, ev, (int)ARRAY_LEN(ev),
		               wake < 0       ? 0
		               : wake > 60000 ? 60000
		                              : (int)wake);
		for (int i = 0; i < n; i++) {
			struct evsrc *src = ev[i].data.ptr;
			if (src->kind == EV_SIGNAL)
				handle_signals(w);
			else if (src->kind == EV_ACTION_OUTPUT && src->g->acting)
				relay_output(src->g);
		}
		/* Last: a finished action may free its guest (gone meanwhile). */
		for (int i = 0; i < n; i++) {
			struct evsrc *src = ev[i].data.ptr;
			if (src->kind == EV_ACTION_DONE && src->g->acting)
				action_finished(w, src->g);
		}
		prober_poll(&w->pr, 0);
	}
	log_info("exiting");
	teardown(w);
	return 0;
}
