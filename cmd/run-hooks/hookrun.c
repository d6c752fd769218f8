/* One running hook: its supervisor (lib/proc) and its output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "run-hooks.h"

/* Longer output lines are logged in pieces of this size. */
#define LINE_MAX_LOG 1536

int
hookrun_start(struct hookrun *r, const struct hookspec *h, const struct opts *o)
{
	struct proc_spec s = {
		.path = h->path,
		.argv = h->argv,
		.envp = h->envp,
		.fd_in = h->stdin_null ? PROC_DEVNULL : PROC_INHERIT,
		.fd_out = PROC_INHERIT,
		.fd_err = PROC_INHERIT,
		.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0,
		.kill_after_ms = o->kill_after_ms,
	};
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, rc, e;

	memset(r, 0, sizeof *r);
	r->fd[0] = r->fd[1] = -1;
	r->proc.fd = -1;
	r->mode = h->mode;
	r->path = h->path;
	if (o->new_session)
		s.group = PROC_NEW_SESSION;
	else if (o->timeout_ms > 0 || o->events)
		s.group = PROC_NEW_GROUP;
	else
		s.group = PROC_SAME_GROUP; /* a terminal's ^C reaches it, as with run-parts */
	if (h->mode != OUT_INHERIT) {
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
			e = errno;
			for (int i = 0; i < 2; i++)
				if (out[i] >= 0)
					close(out[i]);
			errno = e;
			return -1;
		}
		s.fd_out = out[1];
		s.fd_err = err[1];
	}
	rc = proc_spawn(&r->proc, &s);
	e = errno;
	if (h->mode != OUT_INHERIT) {
		close(out[1]);
		close(err[1]);
		if (rc < 0) {
			close(out[0]);
			close(err[0]);
		} else {
			r->fd[0] = out[0];
			r->fd[1] = err[0];
			fcntl(out[0], F_SETFL, O_NONBLOCK);
			fcntl(err[0], F_SETFL, O_NONBLOCK);
		}
	}
	if (rc < 0) {
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
	pfd[2] = (struct pollfd){ .fd = r->proc.fd, .events = POLLIN };
}

/* OUT_LOG: logs the complete lines in partial[stream]; with flush, the
 * rest too. Both streams log at info: many hooks report progress on
 * stderr; their exit status tells whether they failed. */
static void
log_lines(struct hookrun *r, int stream, int flush)
{
	struct buf *b = &r->partial[stream];
	size_t off = 0;

	while (off < b->len) {
		char *nl = memchr(b->data + off, '\n', b->len - off);
		size_t n = nl ? (size_t)(nl - (b->data + off)) : b->len - off;

		if (!nl && n < LINE_MAX_LOG && !flush)
			break;
		if (n > LINE_MAX_LOG)
			n = LINE_MAX_LOG;
		log_info("%s: %.*s", r->label, (int)n, b->data + off);
		off += n;
		if (off < b->len && b->data[off] == '\n')
			off++;
	}
	buf_consume(b, off);
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
}

int
hookrun_handle(struct hookrun *r, const struct pollfd *pfd, struct proc_status *st)
{
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0 && pfd[i].revents)
			read_stream(r, i, 0);
	if (!(pfd[2].fd >= 0 && pfd[2].revents))
		return 0;
	/* The hook has ended, and all it wrote is in the pipes by now. */
	read_stream(r, 0, 1);
	read_stream(r, 1, 1);
	proc_collect(&r->proc, st);
	hookrun_free(r);
	return 1;
}

void
hookrun_abort(struct hookrun *r)
{
	proc_abort(&r->proc);
}
