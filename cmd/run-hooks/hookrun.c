/* One running hook: its supervisor (lib/proc) and its output. With
 * --systemd-run the supervised command is systemd-run, and the hook runs in
 * a transient unit of PID 1 (lib/sdrun): its deadline is the unit's
 * RuntimeMaxSec, and when systemd-run is given up (stop, or its own
 * deadline), "systemctl stop UNIT" ends the hook's processes before the hook
 * counts as ended, as lib/proc does for a hook of our own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "run-hooks.h"
#include "sdrun.h"

/* Longer output lines are logged in pieces of this size. */
#define LINE_MAX_LOG 1536
/* systemd-run's own deadline beyond the hook's (start-up, the stop): a
 * backstop for a client that hangs, never reached while PID 1 answers. */
#define SDRUN_SLACK_MS (15 * 1000)

static char *
unit_description(const struct hookspec *h)
{
	return h->label ? xasprintf("pvekit hook: %s", h->label)
	                : xasprintf("run-hooks: %s", h->path);
}

int
hookrun_start(struct hookrun *r, const struct hookspec *h, const struct opts *o)
{
	struct proc_spec s = {
		.path = h->path,
		.argv = h->argv,
		.envp = h->envp,
		.fd_in = h->stdin_null ? PROC_DEVNULL : PROC_INHERIT,
		.fd_out = h->mode == OUT_INHERIT ? PROC_INHERIT : PROC_PIPE,
		.fd_err = h->mode == OUT_INHERIT ? PROC_INHERIT : PROC_PIPE,
		.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0,
		.kill_after_ms = o->kill_after_ms,
		.fd_hold = h->hold_fd,
	};
	char **sd = NULL;
	int rc, e;

	memset(r, 0, sizeof *r);
	r->fd[0] = r->fd[1] = -1;
	r->proc.fd = -1;
	r->stopper_fd = -1;
	r->mode = h->mode;
	r->path = h->path;
	r->timeout_ms = s.timeout_ms;
	if (o->systemd_run) {
		const char *base = strrchr(h->path, '/');
		char *desc = unit_description(h);
		struct sdrun_spec sp = {
			.description = desc,
			.runtime_max_ms = s.timeout_ms,
			.stop_timeout_ms = o->kill_after_ms,
			.umask = (int)o->umask,
			.env = h->envp,
			.env_prefix = "PVEKIT_",
		};

		r->unit = sdrun_unit_name("hook", h->vmid, base ? base + 1 : h->path);
		sp.unit = r->unit;
		sd = sdrun_argv(&sp, h->argv);
		free(desc);
		s.path = sd[0];
		s.argv = sd;
		s.envp = NULL;
		if (s.timeout_ms > 0)
			s.timeout_ms += o->kill_after_ms + SDRUN_SLACK_MS;
	}
	if (o->new_session)
		s.group = PROC_NEW_SESSION;
	else if (o->timeout_ms > 0 || o->events)
		s.group = PROC_NEW_GROUP;
	else
		s.group = PROC_SAME_GROUP; /* a terminal's ^C reaches it, as with run-parts */
	rc = proc_spawn(&r->proc, &s);
	e = errno;
	sdrun_free(sd);
	r->fd[0] = r->proc.out;
	r->fd[1] = r->proc.err;
	if (rc < 0) {
		free(r->unit);
		r->unit = NULL;
		errno = e;
		return -1;
	}
	r->label = h->label;
	r->started = mono_ms();
	return 0;
}

void
hookrun_pollfds(const struct hookrun *r, struct pollfd *pfd)
{
	pfd[0] = (struct pollfd){ .fd = r->fd[0], .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = r->fd[1], .events = POLLIN };
	pfd[2] =
	    (struct pollfd){ .fd = r->proc.fd >= 0 ? r->proc.fd : r->stopper_fd, .events = POLLIN };
}

static void
log_line(void *ctx, const char *line, size_t len)
{
	const struct hookrun *r = ctx;

	log_info_bytes(r->label, line, len);
}

/* OUT_LOG: logs the complete lines in partial[stream]; with flush, the
 * rest too. Both streams log at info: many hooks report progress on
 * stderr; their exit status tells whether they failed. */
static void
log_lines(struct hookrun *r, int stream, int flush)
{
	buf_take_lines(&r->partial[stream], LINE_MAX_LOG, flush, log_line, r);
}

static void
output(struct hookrun *r, int stream, const char *p, size_t n)
{
	int to = stream ? STDERR_FILENO : STDOUT_FILENO;

	switch (r->mode) {
	case OUT_REPORT:
		if (!r->header_done) {
			char *h = xasprintf("%s:\n", r->path);
			write_all(to, h, strlen(h));
			free(h);
			r->header_done = 1;
		}
		write_all(to, p, n);
		break;
	case OUT_LOG:
		buf_append(&r->partial[stream], p, n);
		log_lines(r, stream, 0);
		break;
	case OUT_INHERIT:
		break;
	}
}

/* Reads what the stream has now; closes it at EOF (or, with drain, when
 * nothing more is there: a leftover background process may hold it open). */
static void
read_stream(struct hookrun *r, int stream, int drain)
{
	char buf[8192];
	int rounds = 0;

	while (r->fd[stream] >= 0) {
		ssize_t n = read(r->fd[stream], buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			output(r, stream, buf, n);
		/* A drain is bounded: a leftover could write forever. */
		if (n > 0 && !(drain && ++rounds >= 128))
			continue;
		if (n < 0 && errno == EAGAIN && !drain)
			return;
		close(r->fd[stream]);
		r->fd[stream] = -1;
	}
}

static void
hookrun_free(struct hookrun *r)
{
	for (int i = 0; i < 2; i++) {
		if (r->mode == OUT_LOG)
			log_lines(r, i, 1);
		buf_free(&r->partial[i]);
		if (r->fd[i] >= 0)
			close(r->fd[i]);
		r->fd[i] = -1;
	}
	free(r->unit);
	r->unit = NULL;
}

/* systemd-run was given up, so its unit may still run: stop it (lib/sdrun:
 * the stopper outlives the SIGTERM of our own unit's stop). 0 when the
 * stopper runs. */
static int
stopper_start(struct hookrun *r)
{
	r->stopper_fd = sdrun_stop_start(r->unit, &r->stopper_pid);
	if (r->stopper_fd < 0)
		log_err("%s: cannot stop %s: %s", r->label ? r->label : r->path, r->unit,
		        strerror(errno));
	return r->stopper_fd < 0 ? -1 : 0;
}

static void
stopper_ended(struct hookrun *r)
{
	char err[300];

	if (sdrun_stop_end(r->stopper_fd, r->stopper_pid, r->unit, err, sizeof err) < 0)
		log_err("%s: %s", r->label ? r->label : r->path, err);
	r->stopper_fd = -1;
}

int
hookrun_handle(struct hookrun *r, const struct pollfd *pfd, struct proc_status *st)
{
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0 && pfd[i].revents)
			read_stream(r, i, 0);
	if (!(pfd[2].fd >= 0 && pfd[2].revents))
		return 0;
	if (r->proc.fd >= 0) {
		proc_collect(&r->proc, &r->st);
		if (r->unit && r->st.exec_errno)
			log_err("%s: systemd-run: %s", r->label ? r->label : r->path,
			        strerror(r->st.exec_errno));
		/* systemd-run returns normally only once its unit is gone. */
		if (r->unit &&
		    (r->aborting || r->st.aborted || r->st.timed_out || r->st.lost ||
		     WIFSIGNALED(r->st.wstatus)) &&
		    stopper_start(r) == 0)
			return 0;
	} else {
		stopper_ended(r);
	}
	/* PID 1 stopped the unit at its RuntimeMaxSec: systemd-run exits 1,
	 * and only the time tells it from the hook's own "exit 1". */
	if (r->unit && r->timeout_ms > 0 && !r->st.timed_out && proc_exit_code(&r->st) &&
	    r->st.ms >= r->timeout_ms)
		r->st.timed_out = 1;
	/* The hook has ended, and all it wrote is in the pipes by now. */
	read_stream(r, 0, 1);
	read_stream(r, 1, 1);
	*st = r->st;
	hookrun_free(r);
	return 1;
}

void
hookrun_abort(struct hookrun *r)
{
	r->aborting = 1;
	if (r->proc.fd >= 0)
		proc_abort(&r->proc);
}
