#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "proc.h"
#include "procfs.h"

extern char **environ;

/* How often the supervisor repeats SIGKILL while something is left. */
#define KILL_ROUND_MS 50

static ssize_t
read_full(int fd, void *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += n;
	}
	return got;
}

/* In the command's child: its group, descriptors and signals. 0 or -1. */
static int
child_setup(const struct proc_spec *s, const int fd[3])
{
	sigset_t none;

	if ((s->group == PROC_NEW_GROUP && setpgid(0, 0) < 0) ||
	    (s->group == PROC_NEW_SESSION && setsid() < 0))
		return -1;
	for (int i = 0; i < 3; i++)
		if (fd[i] >= 0 && dup2(fd[i], i) < 0)
			return -1;
	if (s->fd_hold > 2 && s->fd_hold != s->fd_keep)
		close(s->fd_hold); /* the supervisor's, never the command's */
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	return 0;
}

/* Starts the command; 0, or the errno of a failed start. vfork(): the
 * supervisor waits until the child has exec'd (or failed, which it leaves
 * in *err), and a large caller's page tables are not copied twice. The
 * supervisor has every signal blocked and no handlers, so nothing runs in
 * the shared memory but this. A function runs in a fork()ed child. */
static int
spawn_command(const struct proc_spec *s, pid_t *pid)
{
	int want[3] = { s->fd_in, s->fd_out, s->fd_err }, fd[3] = { -1, -1, -1 };
	volatile int err = 0;

	/* Copies above the standard fds first, so fd_err may name our fd 1. */
	for (int i = 0; i < 3; i++) {
		if (want[i] == PROC_DEVNULL)
			fd[i] = open("/dev/null", (i ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
		else if (want[i] >= 0)
			fd[i] = fcntl(want[i], F_DUPFD_CLOEXEC, 3);
		if (want[i] != PROC_INHERIT && fd[i] < 0)
			err = errno;
	}
	if (!err && s->fn && (*pid = fork()) == 0) {
		if (child_setup(s, fd) < 0)
			_exit(127);
		_exit(s->fn(s->arg));
	} else if (!err && !s->fn && (*pid = vfork()) == 0) {
		if (child_setup(s, fd) == 0) {
			char *const *envp = s->envp ? s->envp : environ;

			if (s->search_path)
				execvpe(s->path, s->argv, envp);
			else
				execve(s->path, s->argv, envp);
		}
		err = errno;
		_exit(127);
	}
	if (!err && *pid < 0)
		err = errno;
	for (int i = 0; i < 3; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return err;
}

/* The caller's handlers must not run in the supervisor (or in the command's
 * child before exec); it takes its signals with sigtimedwait(). */
static void
drop_handlers(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL &&
		    sa.sa_handler != SIG_IGN)
			signal(sig, SIG_DFL);
	}
}

/* The caller's own descriptors are close-on-exec; the supervisor never
 * execs, so it drops them by hand and keeps only what it needs. */
static void
close_callers_fds(const int *keep, size_t nkeep)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		int flags, kept = 0;

		if (*end || end == de->d_name || fd == dirfd(d))
			continue;
		for (size_t i = 0; i < nkeep; i++)
			kept |= keep[i] == fd;
		flags = fcntl((int)fd, F_GETFD);
		if (!kept && flags >= 0 && (flags & FD_CLOEXEC))
			close((int)fd);
	}
	closedir(d);
}

/* Sends sig to every process below us, found through /proc. */
static void
signal_descendants(int sig)
{
	struct pair {
		pid_t pid, ppid;
	} *all = NULL;
	pid_t *found;
	size_t n = 0, cap = 0, nfound = 1;
	DIR *d = opendir("/proc");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		struct proc_stat st;

		/* A zombie is skipped: no signal reaches it, and its children
		 * were handed to us already. */
		if (*end || end == de->d_name || pid <= 0 || proc_stat_read((pid_t)pid, &st) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			all = xreallocarray(all, cap, sizeof *all);
		}
		all[n].pid = (pid_t)pid;
		all[n++].ppid = st.ppid;
	}
	closedir(d);
	found = xmalloc((n + 1) * sizeof *found);
	found[0] = getpid();
	for (size_t i = 0; i < nfound; i++)
		for (size_t j = 0; j < n; j++)
			if (all[j].ppid == found[i] && all[j].pid != found[0])
				found[nfound++] = all[j].pid;
	for (size_t i = 1; i < nfound; i++)
		kill(found[i], sig);
	free(found);
	free(all);
}

static void
signal_tree(pid_t cmd, enum proc_group group, int sig)
{
	if (group != PROC_SAME_GROUP)
		kill(-cmd, sig);
	signal_descendants(sig);
	if (sig == SIGTERM) {
		/* A stopped process acts on SIGTERM only once continued. */
		if (group != PROC_SAME_GROUP)
			kill(-cmd, SIGCONT);
		signal_descendants(SIGCONT);
	}
}

static _Noreturn void
supervise(const struct proc_spec *s, int status_fd, pid_t caller)
{
	struct proc_status st = { 0 };
	int64_t start = mono_ms(), deadline = -1, kill_at = -1, now;
	int keep[6] = { status_fd, s->fd_in, s->fd_out, s->fd_err, s->fd_keep > 2 ? s->fd_keep : -1,
		        s->fd_hold > 2 ? s->fd_hold : -1 };
	int main_done = 0, stopping = 0;
	sigset_t waitset;
	pid_t cmd = -1;

	/* The caller's death is a stop (SIGTERM, taken below): its command
	 * must not outlive it. A caller that died before the prctl took
	 * effect is seen here instead, and then nothing is started. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != caller) {
		st.aborted = 1;
		st.wstatus = SIGTERM; /* as if killed by it: it did not run */
		goto report;
	}
	drop_handlers();
	signal(SIGCHLD, SIG_DFL);
	close_callers_fds(keep, ARRAY_LEN(keep));
	if (s->timeout_ms > 0)
		deadline = start + s->timeout_ms;

	/* Once it returns, the command's process group or session exists. */
	st.exec_errno = spawn_command(s, &cmd);
	if (st.exec_errno && cmd <= 0) {
		st.wstatus = 127 << 8; /* could not even fork */
		goto report;
	}
	/* The command has its copies: ours would keep its pipes from ending.
	 * The held descriptor stays open until we exit. */
	for (size_t i = 1; i < ARRAY_LEN(keep) - 1; i++)
		if (keep[i] >= 0)
			close(keep[i]);

	sigemptyset(&waitset);
	sigaddset(&waitset, SIGCHLD);
	sigaddset(&waitset, SIGTERM);
	for (;;) {
		struct timespec ts, *tp = NULL;
		int64_t next = -1;
		int ws, sig;
		pid_t w;

		while ((w = waitpid(-1, &ws, WNOHANG)) > 0)
			if (w == cmd) {
				st.wstatus = ws;
				st.ms = mono_ms() - start;
				main_done = 1;
			}
		if (main_done && (!stopping || (w < 0 && errno == ECHILD)))
			break;
		now = mono_ms();
		if (!stopping && deadline >= 0 && now >= deadline) {
			st.timed_out = stopping = 1;
			signal_tree(cmd, s->group, SIGTERM);
			kill_at = now + s->kill_after_ms;
		}
		if (stopping && now >= kill_at) {
			st.killed = 1;
			signal_tree(cmd, s->group, SIGKILL);
			kill_at = now + KILL_ROUND_MS;
		}
		next = stopping ? kill_at : deadline;
		if (next >= 0) {
			int64_t wait = next > now ? next - now : 0;
			ts.tv_sec = wait / 1000;
			ts.tv_nsec = (wait % 1000) * 1000000;
			tp = &ts;
		}
		sig = sigtimedwait(&waitset, NULL, tp);
		if (sig == SIGTERM && !stopping) {
			st.aborted = stopping = 1;
			signal_tree(cmd, s->group, SIGTERM);
			kill_at = mono_ms() + s->kill_after_ms;
		}
	}
report:
	while (write(status_fd, &st, sizeof st) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void
close_pair(int fd[2])
{
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

/* The PROC_PIPE and PROC_TO_OUT descriptors of s, as pipes: *run is s with
 * the write ends in their place. 0, or -1 with errno. */
static int
make_pipes(const struct proc_spec *s, struct proc_spec *run, int out[2], int err[2])
{
	*run = *s;
	if (s->fd_out == PROC_PIPE) {
		if (pipe2(out, O_CLOEXEC) < 0)
			return -1;
		run->fd_out = out[1];
	}
	if (s->fd_err == PROC_PIPE) {
		if (pipe2(err, O_CLOEXEC) < 0)
			return -1;
		run->fd_err = err[1];
	} else if (s->fd_err == PROC_TO_OUT) {
		run->fd_err = run->fd_out == PROC_INHERIT ? STDOUT_FILENO : run->fd_out;
	}
	return 0;
}

int
proc_spawn(struct proc *p, const struct proc_spec *s)
{
	struct proc_spec run;
	sigset_t all, old;
	pid_t caller = getpid(), pid = -1;
	int fd[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, e;

	p->fd = p->out = p->err = -1;
	if (make_pipes(s, &run, out, err) < 0 || pipe2(fd, O_CLOEXEC) < 0)
		goto fail;
	/* A function child starts with a copy of our stdio buffers. */
	if (s->fn)
		fflush(NULL);
	/* The supervisor keeps every signal blocked and takes SIGCHLD and
	 * SIGTERM with sigtimedwait(); nothing may slip in before that. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(fd[0]);
		supervise(&run, fd[1], caller);
	}
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = e;
	if (pid < 0)
		goto fail;
	close(fd[1]);
	if (out[1] >= 0)
		close(out[1]);
	if (err[1] >= 0)
		close(err[1]);
	p->pid = pid;
	p->fd = fd[0];
	p->out = out[0];
	p->err = err[0];
	if (p->out >= 0)
		fcntl(p->out, F_SETFL, O_NONBLOCK);
	if (p->err >= 0)
		fcntl(p->err, F_SETFL, O_NONBLOCK);
	return 0;
fail:
	e = errno;
	close_pair(fd);
	close_pair(out);
	close_pair(err);
	errno = e;
	return -1;
}

void
proc_abort(const struct proc *p)
{
	if (p->fd >= 0)
		kill(p->pid, SIGTERM);
}

void
proc_collect(struct proc *p, struct proc_status *st)
{
	ssize_t n;
	int ws = 0;

	memset(st, 0, sizeof *st);
	n = read_full(p->fd, st, sizeof *st);
	close(p->fd);
	p->fd = -1;
	while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof *st) {
		memset(st, 0, sizeof *st);
		st->wstatus = ws;
		st->lost = 1;
	}
}

int
proc_run(const struct proc_spec *s, struct proc_status *st)
{
	struct proc p;

	if (proc_spawn(&p, s) < 0)
		return -1;
	proc_collect(&p, st);
	if (p.out >= 0)
		close(p.out);
	if (p.err >= 0)
		close(p.err);
	return 0;
}

int
proc_exit_code(const struct proc_status *st)
{
	if (st->exec_errno)
		return st->exec_errno == ENOENT ? 127 : 126;
	if (WIFSIGNALED(st->wstatus))
		return 128 + WTERMSIG(st->wstatus);
	if (WIFEXITED(st->wstatus) && WEXITSTATUS(st->wstatus))
		return WEXITSTATUS(st->wstatus);
	return st->timed_out || st->aborted ? 128 + SIGTERM : 0;
}

const char *
proc_describe(const struct proc_status *st, char *buf, size_t len)
{
	if (st->exec_errno)
		snprintf(buf, len, "could not be executed: %s", strerror(st->exec_errno));
	else if (WIFSIGNALED(st->wstatus))
		snprintf(buf, len, "exited because of uncaught signal %d", WTERMSIG(st->wstatus));
	else if (WIFEXITED(st->wstatus) && WEXITSTATUS(st->wstatus))
		snprintf(buf, len, "exited with return code %d", WEXITSTATUS(st->wstatus));
	else if (st->timed_out || st->aborted)
		snprintf(buf, len, "exited with return code 0 after SIGTERM");
	else
		snprintf(buf, len, "exited with return code 0");
	return buf;
}
