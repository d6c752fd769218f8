#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sdrun.h"
#include "util.h"

extern char **environ;

#define UNIT_TAG_MAX 64

/* NAME on $PATH, as execvp would find it; else NAME itself (the exec then
 * fails with ENOENT, reported by the caller). */
static char *
path_find(const char *name)
{
	const char *path = getenv("PATH"), *p, *end;

	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = path; *p; p = *end ? end + 1 : end) {
		char *f;

		end = strchrnul(p, ':');
		if (end == p)
			continue;
		f = xasprintf("%.*s/%s", (int)(end - p), p, name);
		if (access(f, X_OK) == 0)
			return f;
		free(f);
	}
	return xstrdup(name);
}

static void
unit_part(struct buf *b, const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i]; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':';
		buf_append(b, ok ? &c : "_", 1);
	}
}

char *
sdrun_unit_name(const char *kind, uint32_t vmid, const char *tag)
{
	static unsigned long n;
	struct buf b = { 0 };

	buf_puts(&b, "pvekit-");
	unit_part(&b, kind, UNIT_TAG_MAX);
	if (vmid)
		buf_printf(&b, "-%u", vmid);
	if (tag) {
		buf_puts(&b, "-");
		unit_part(&b, tag, UNIT_TAG_MAX);
	}
	buf_printf(&b, "-%ld-%lu.service", (long)getpid(), ++n);
	return b.data;
}

/* D-Bus carries only valid UTF-8, and PID 1 refuses control characters in
 * an environment value: such bytes (guest-controlled text in an agent's
 * error, say) become '?'. */
static char *
env_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	struct buf b = { 0 };

	buf_append(&b, "", 0);
	while (*p) {
		size_t len = 0;

		if (*p < 0x80)
			len = (*p >= 0x20 && *p != 0x7f) || *p == '\t' || *p == '\n';
		else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
			len = 2;
		else if ((*p & 0xf0) == 0xe0)
			len = 3;
		else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
			len = 4;
		for (size_t i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				len = 0;
		/* overlong 3- and 4-byte forms, surrogates, above U+10FFFF */
		if ((len == 3 &&
		     ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) ||
		    (len == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))))
			len = 0;
		if (len) {
			buf_append(&b, p, len);
			p += len;
		} else {
			buf_puts(&b, "?");
			p++;
		}
	}
	return b.data;
}

/* "$" -> "$$": PID 1 expands $NAME and ${NAME} in a transient ExecStart. */
static char *
dollar_escape(const char *s)
{
	struct buf b = { 0 };

	buf_append(&b, "", 0);
	for (; *s; s++) {
		if (*s == '$')
			buf_append(&b, "$", 1);
		buf_append(&b, s, 1);
	}
	return b.data;
}

static void
push(char ***v, size_t *n, char *s)
{
	*v = xreallocarray(*v, *n + 2, sizeof **v);
	(*v)[(*n)++] = s;
	(*v)[*n] = NULL;
}

char **
sdrun_argv(const struct sdrun_spec *s, char *const argv[])
{
	char *const *env = s->env ? s->env : environ;
	size_t plen = s->env_prefix ? strlen(s->env_prefix) : 0;
	char **v = NULL;
	size_t n = 0;

	push(&v, &n, path_find("systemd-run"));
	push(&v, &n, xstrdup("--quiet"));
	push(&v, &n, xstrdup("--wait"));
	push(&v, &n, xstrdup("--pipe"));
	push(&v, &n, xstrdup("--collect"));
	push(&v, &n, xstrdup("--no-ask-password"));
	push(&v, &n, xstrdup("--service-type=exec"));
	if (s->unit)
		push(&v, &n, xasprintf("--unit=%s", s->unit));
	if (s->description) {
		char *d = env_clean(s->description);
		push(&v, &n, xasprintf("--description=%s", d));
		free(d);
	}
	if (s->runtime_max_ms > 0)
		push(&v, &n,
		     xasprintf("--property=RuntimeMaxSec=%lldms", (long long)s->runtime_max_ms));
	if (s->stop_timeout_ms > 0)
		push(&v, &n,
		     xasprintf("--property=TimeoutStopSec=%lldms", (long long)s->stop_timeout_ms));
	if (s->umask >= 0)
		push(&v, &n, xasprintf("--property=UMask=%04o", (unsigned)s->umask));
	for (size_t i = 0; s->env_prefix && env[i]; i++) {
		const char *eq = strchr(env[i], '=');
		char *val;

		if (strncmp(env[i], s->env_prefix, plen) != 0 || !eq)
			continue;
		val = env_clean(eq + 1);
		push(&v, &n, xasprintf("--setenv=%.*s=%s", (int)(eq - env[i]), env[i], val));
		free(val);
	}
	push(&v, &n, xstrdup("--"));
	for (size_t i = 0; argv[i]; i++)
		push(&v, &n, dollar_escape(argv[i]));
	return v;
}

int
sdrun_stop_start(const char *unit, pid_t *pid)
{
	char *path = path_find("systemctl");
	char *const argv[] = { path, "--no-ask-password", "stop", (char *)unit, NULL };
	sigset_t all, old;
	int fd, e;

	/* Nothing of ours may run in the child before the exec. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	*pid = fork();
	if (*pid == 0) {
		int null = open("/dev/null", O_RDWR);
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, sig == SIGTERM || sig == SIGHUP ? SIG_IGN : SIG_DFL);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		for (int i = 0; i < 3 && null >= 0; i++)
			dup2(null, i);
		execv(path, argv);
		_exit(127);
	}
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	free(path);
	if (*pid < 0) {
		errno = e;
		return -1;
	}
	fd = (int)syscall(SYS_pidfd_open, *pid, 0);
	if (fd < 0) {
		e = errno;
		kill(*pid, SIGKILL);
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = e;
		return -1;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

int
sdrun_stop_end(int pidfd, pid_t pid, const char *unit, char *err, size_t errlen)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	close(pidfd);
	/* 5: "not loaded": the unit has ended and is gone already */
	if (WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 5))
		return 0;
	if (WIFSIGNALED(st))
		snprintf(err, errlen, "systemctl stop %s: killed by signal %d", unit, WTERMSIG(st));
	else
		snprintf(err, errlen, "systemctl stop %s: exit status %d%s", unit, WEXITSTATUS(st),
		         WEXITSTATUS(st) == 127 ? " (systemctl not found)" : "");
	return -1;
}

int
sdrun_stop(const char *unit, int64_t timeout_ms, char *err, size_t errlen)
{
	int64_t end = mono_ms() + timeout_ms;
	pid_t pid;
	int fd = sdrun_stop_start(unit, &pid);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (fd < 0) {
		snprintf(err, errlen, "systemctl stop %s: %s", unit, strerror(errno));
		return -1;
	}
	for (;;) {
		int64_t left = end - mono_ms();
		int n = poll(&p, 1, left <= 0 ? 0 : left > 60000 ? 60000 : (int)left);

		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			break;
		if (n == 0 && left <= 0) {
			kill(pid, SIGKILL);
			sdrun_stop_end(fd, pid, unit, err, errlen);
			snprintf(err, errlen,
			         "systemctl stop %s: still running after %lld ms, killed", unit,
			         (long long)timeout_ms);
			return -1;
		}
	}
	return sdrun_stop_end(fd, pid, unit, err, errlen);
}

void
sdrun_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}
