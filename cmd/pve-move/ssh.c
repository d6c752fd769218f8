/* Commands on the storage hosts: ssh with batch mode, keep-alives and a
 * connect timeout, the user's own host key checking (never turned off), or
 * sh -c here when a storage section has no ssh=. Remote commands are one
 * shell line built with shq(). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "move.h"

struct ssh_opts ssh_opts;

#define LOCAL_MS (20 * 1000) /* ssh -G, ssh-keygen -F: here, no network */

#define MUX_MAX 16
static char *mux_dir;
static struct host mux_hosts[MUX_MAX];
static size_t mux_n;

void
ssh_mux_start(void)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char *tmpl = xasprintf("%s/pve-move-ssh.XXXXXX", rt && *rt == '/' ? rt : "/tmp");

	/* ssh's ControlPath is a Unix socket: its path must stay short */
	if (strlen(tmpl) > 60 || !mkdtemp(tmpl)) {
		log_debug("no ssh connection sharing: %s: %s", tmpl,
		          strlen(tmpl) > 60 ? "path too long" : strerror(errno));
		free(tmpl);
		return;
	}
	mux_dir = tmpl;
	atexit(ssh_mux_stop);
}

/* Remembers h as a host with a master to end. */
static void
mux_note(const struct host *h)
{
	for (size_t i = 0; i < mux_n; i++)
		if (strcmp(mux_hosts[i].target, h->target) == 0 && mux_hosts[i].port == h->port)
			return;
	if (mux_n < MUX_MAX)
		mux_hosts[mux_n++] = (struct host){ .target = xstrdup(h->target), .port = h->port };
}

void
ssh_mux_stop(void)
{
	struct proc_status st;

	if (!mux_dir)
		return;
	for (size_t i = 0; i < mux_n; i++) {
		char *path = xasprintf("ControlPath=%s/%%C", mux_dir), port[16];
		char *argv[16] = { "ssh" }, **a = argv + 1;
		struct proc_spec s = { .path = "ssh", .search_path = 1, .argv = argv,
			               .fd_in = PROC_DEVNULL, .fd_out = PROC_DEVNULL,
			               .fd_err = PROC_DEVNULL, .timeout_ms = 5000,
			               .kill_after_ms = 1000 };

		if (ssh_opts.config) {
			*a++ = "-F";
			*a++ = (char *)ssh_opts.config;
		}
		*a++ = "-o";
		*a++ = path;
		*a++ = "-O";
		*a++ = "exit";
		if (mux_hosts[i].port) {
			snprintf(port, sizeof port, "%d", mux_hosts[i].port);
			*a++ = "-p";
			*a++ = port;
		}
		*a++ = "--";
		*a++ = (char *)mux_hosts[i].target;
		*a = NULL;
		proc_run(&s, &st);
		free(path);
		free((char *)mux_hosts[i].target);
	}
	mux_n = 0;
	/* the masters remove their sockets as they end */
	rmdir(mux_dir);
	free(mux_dir);
	mux_dir = NULL;
}

char *
shq(const char *s)
{
	struct buf b = { 0 };

	buf_puts(&b, "'");
	for (; *s; s++) {
		if (*s == '\'')
			buf_puts(&b, "'\\''");
		else
			buf_append(&b, s, 1);
	}
	buf_puts(&b, "'");
	return b.data;
}

char **
host_argv(const struct host *h, const char *cmd, char *const *extra)
{
	char **v = xcalloc(40, sizeof *v);
	size_t n = 0;

	if (!h->target) {
		v[n++] = xstrdup("/bin/sh");
		v[n++] = xstrdup("-c");
		v[n++] = xstrdup(cmd);
		return v;
	}
	v[n++] = xstrdup("ssh");
	if (ssh_opts.config) {
		v[n++] = xstrdup("-F");
		v[n++] = xstrdup(ssh_opts.config);
	}
	v[n++] = xstrdup("-T");
	v[n++] = xstrdup("-o");
	v[n++] = xstrdup("BatchMode=yes");
	v[n++] = xstrdup("-o");
	v[n++] = xstrdup("ConnectTimeout=20");
	v[n++] = xstrdup("-o");
	v[n++] = xstrdup("ServerAliveInterval=10");
	v[n++] = xstrdup("-o");
	v[n++] = xstrdup("ServerAliveCountMax=6");
	if (!ssh_opts.debug) {
		v[n++] = xstrdup("-o");
		v[n++] = xstrdup("LogLevel=ERROR");
	}
	if (ssh_opts.ciphers) {
		v[n++] = xstrdup("-c");
		v[n++] = xstrdup(ssh_opts.ciphers);
	}
	if (h->port) {
		v[n++] = xstrdup("-p");
		v[n++] = xasprintf("%d", h->port);
	}
	if (h->forward_agent)
		v[n++] = xstrdup("-A");
	if (mux_dir && !extra && !h->forward_agent) {
		mux_note(h);
		v[n++] = xstrdup("-o");
		v[n++] = xstrdup("ControlMaster=auto");
		v[n++] = xstrdup("-o");
		v[n++] = xasprintf("ControlPath=%s/%%C", mux_dir);
		v[n++] = xstrdup("-o");
		v[n++] = xstrdup("ControlPersist=30");
	} else if (mux_dir) {
		v[n++] = xstrdup("-o");
		v[n++] = xstrdup("ControlPath=none");
	}
	for (char *const *e = extra; e && *e && n < 36; e++)
		v[n++] = xstrdup(*e);
	v[n++] = xstrdup("--");
	v[n++] = xstrdup(h->target);
	v[n++] = xstrdup(cmd);
	return v;
}

void
argv_free(char **argv)
{
	for (char **p = argv; p && *p; p++)
		free(*p);
	free(argv);
}

char *
argv_line(char *const *argv)
{
	struct buf b = { 0 };

	for (char *const *p = argv; *p; p++) {
		int plain = **p && strspn(*p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                              "0123456789@%+=:,./-_") == strlen(*p);
		char *q = plain ? NULL : shq(*p);

		buf_printf(&b, "%s%s", p == argv ? "" : " ", plain ? *p : q);
		free(q);
	}
	return b.data ? b.data : xstrdup("");
}

/* Reads what is there from fd into b; 0 at EOF. */
static int
drain(int fd, struct buf *b, size_t max)
{
	char tmp[16384];
	ssize_t n = read(fd, tmp, sizeof tmp);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	if (b->len + (size_t)n <= max)
		buf_append(b, tmp, (size_t)n);
	return 1;
}

int
host_run(const struct host *h, const char *cmd, int64_t timeout_ms, struct buf *out,
         struct buf *errout)
{
	char **argv = host_argv(h, cmd, NULL);
	int po[2], pe[2], alive = 2, rc;
	struct proc p;
	struct proc_status st;
	struct proc_spec spec = { 0 };
	char *path;

	if (ssh_opts.debug) {
		char *l = argv_line(argv);
		log_debug("run: %s", l);
		free(l);
	}
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)
		die(EXIT_OSERR, "pipe: %s", strerror(errno));
	path = argv[0][0] == '/' ? xstrdup(argv[0]) : NULL;
	if (!path) {
		/* proc_spawn does no PATH search */
		const char *env = getenv("PATH");
		char *dirs = xstrdup(env ? env : "/usr/bin:/bin"), *save = NULL;

		for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			char *c = xasprintf("%s/%s", d, argv[0]);
			if (access(c, X_OK) == 0) {
				path = c;
				break;
			}
			free(c);
		}
		free(dirs);
		if (!path)
			path = xstrdup(argv[0]);
	}
	spec.path = path;
	spec.argv = argv;
	spec.fd_in = PROC_DEVNULL;
	spec.fd_out = po[1];
	spec.fd_err = pe[1];
	spec.group = PROC_NEW_GROUP;
	spec.timeout_ms = timeout_ms;
	spec.kill_after_ms = 2000;
	if (proc_spawn(&p, &spec) < 0)
		die(EXIT_OSERR, "%s: %s", argv[0], strerror(errno));
	close(po[1]);
	close(pe[1]);
	while (alive) {
		struct pollfd fds[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };

		if (fds[0].fd < 0 && fds[1].fd < 0)
			break;
		if (poll(fds, 2, 1000) < 0 && errno != EINTR)
			break;
		if (interrupted)
			proc_abort(&p);
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    !drain(fds[i].fd, i ? errout : out, 1 << 20)) {
				close(fds[i].fd);
				if (i)
					pe[0] = -1;
				else
					po[0] = -1;
				alive--;
			}
		}
	}
	if (po[0] >= 0)
		close(po[0]);
	if (pe[0] >= 0)
		close(pe[0]);
	proc_collect(&p, &st);
	rc = proc_exit_code(&st);
	if (st.timed_out && errout)
		buf_puts(errout, "timed out");
	argv_free(argv);
	free(path);
	return rc == 0 ? 0 : -1;
}

const char *
first_line_of(const struct buf *b, const char *dflt)
{
	static char line[300];
	const char *s = b->data ? b->data : "", *e, *best = NULL;

	/* the last non-empty line says most (ssh's own words come last) */
	for (;;) {
		while (*s == '\n' || *s == '\r')
			s++;
		if (!*s)
			break;
		e = s + strcspn(s, "\r\n");
		best = s;
		s = e;
	}
	if (!best) {
		snprintf(line, sizeof line, "%s failed without a message", dflt);
		return line;
	}
	e = best + strcspn(best, "\r\n");
	snprintf(line, sizeof line, "%.*s", (int)(e - best), best);
	http_redact(line, line, sizeof line);
	return line;
}

/* ssh -G's value for key, or NULL. */
static char *
ssh_g_value(const char *out, const char *key)
{
	size_t kl = strlen(key);

	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, key, kl) == 0 && l[kl] == ' ')
			return xstrndup(l + kl + 1, strcspn(l + kl + 1, "\n"));
	return NULL;
}

/* The target's host keys as the admin's known_hosts hold them, each line
 * renamed to "pvekit-target" (the source connects with that
 * HostKeyAlias); @revoked lines go along, @cert-authority ones cannot. */
static int
known_keys(const char *g, struct buf *keys, char *why, size_t whylen)
{
	struct host here = { .label = "this host" };
	struct buf out = { 0 }, err = { 0 }, cmd = { 0 };
	char *alias = ssh_g_value(g, "hostkeyalias"), *name = ssh_g_value(g, "hostname");
	char *port = ssh_g_value(g, "port"), *files[2] = { ssh_g_value(g, "userknownhostsfile"),
		                                           ssh_g_value(g, "globalknownhostsfile") };
	char *look = alias ? xstrdup(alias)
	             : port && strcmp(port, "22") != 0 ? xasprintf("[%s]:%s", name ? name : "", port)
	                                               : xstrdup(name ? name : "");
	char *ql = shq(look);
	int n = 0;

	for (int i = 0; i < 2; i++) {
		char *save = NULL;
		for (char *f = strtok_r(files[i] ? files[i] : "", " ", &save); f;
		     f = strtok_r(NULL, " ", &save)) {
			char *qf = shq(f);
			buf_printf(&cmd, "ssh-keygen -F %s -f %s 2>/dev/null; ", ql, qf);
			free(qf);
		}
	}
	buf_puts(&cmd, "true");
	host_run(&here, cmd.data, LOCAL_MS, &out, &err);
	for (char *l = out.data; l && *l;) {
		char *e = l + strcspn(l, "\n"), *f = l;
		int revoked = strncmp(l, "@revoked ", 9) == 0;

		if (revoked)
			f += 9;
		if (*l != '#' && *l != '@' && e > l) {
			f += strcspn(f, " ");
			buf_printf(keys, "pvekit-target%.*s\n", (int)(e - f), f);
			n++;
		} else if (revoked) {
			f += strcspn(f, " ");
			buf_printf(keys, "@revoked pvekit-target%.*s\n", (int)(e - f), f);
		}
		l = *e ? e + 1 : e;
	}
	if (!n)
		snprintf(why, whylen, "no host key for %s in %s%s%s: --direct hands the source "
		         "the target's key as this host knows it", look, files[0] ? files[0] : "",
		         files[1] ? " " : "", files[1] ? files[1] : "");
	free(alias), free(name), free(port), free(files[0]), free(files[1]), free(look), free(ql);
	buf_free(&out), buf_free(&err), buf_free(&cmd);
	return n ? 0 : -1;
}

/* --direct: the script the source host runs so that its data goes
 * straight to the target: scmd piped into an ssh of its own that runs
 * dcmd there. It logs in with the admin's agent (the source session is
 * ssh -A) and checks the target's host key against a known_hosts made
 * from this host's own, in a 0700 directory removed at the end: nothing
 * is trusted on first use and no check is turned off. NULL with why when
 * this host does not know the target. */
char *
direct_script(const struct host *dh, const char *scmd, const char *dcmd, char *why,
              size_t whylen)
{
	struct host here = { .label = "this host" };
	struct buf g = { 0 }, err = { 0 }, keys = { 0 }, s = { 0 };
	char *cmd, *qc = ssh_opts.config ? shq(ssh_opts.config) : NULL, *qt = shq(dh->target);
	char *user = NULL, *name = NULL, *port = NULL, pflag[24] = "";

	if (dh->port)
		snprintf(pflag, sizeof pflag, " -p %d", dh->port);
	cmd = xasprintf("ssh%s%s -G%s -- %s", qc ? " -F " : "", qc ? qc : "", pflag, qt);
	if (host_run(&here, cmd, LOCAL_MS, &g, &err) < 0) {
		snprintf(why, whylen, "ssh -G %s: %s", dh->target, first_line_of(&err, "ssh -G"));
	} else if (known_keys(g.data ? g.data : "", &keys, why, whylen) == 0) {
		char *qk = shq(keys.data), *qd = shq(dcmd), *qu, *qn;

		user = ssh_g_value(g.data, "user");
		name = ssh_g_value(g.data, "hostname");
		port = ssh_g_value(g.data, "port");
		qu = shq(user ? user : "root");
		qn = shq(name ? name : dh->target);
		buf_printf(&s, "d=$(umask 077 && mktemp -d /tmp/pve-move.XXXXXXXX) || exit 1; "
		               "trap 'rm -rf \"$d\"' EXIT; trap 'exit 1' HUP INT TERM PIPE; "
		               "printf %%s %s >\"$d/known_hosts\" || exit 1; (%s) | ssh -T "
		               "-o BatchMode=yes -o StrictHostKeyChecking=yes "
		               "-o UserKnownHostsFile=\"$d/known_hosts\" "
		               "-o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=pvekit-target "
		               "-o ConnectTimeout=20 -o ServerAliveInterval=10 "
		               "-o ServerAliveCountMax=6 -o LogLevel=ERROR",
		           qk, scmd);
		if (ssh_opts.ciphers) {
			char *qciph = shq(ssh_opts.ciphers);
			buf_printf(&s, " -c %s", qciph);
			free(qciph);
		}
		buf_printf(&s, " -p %s -l %s -- %s %s", port ? port : "22", qu, qn, qd);
		free(qk), free(qd), free(qu), free(qn);
	}
	free(cmd), free(qc), free(qt), free(user), free(name), free(port);
	buf_free(&g), buf_free(&err), buf_free(&keys);
	return s.data;
}
