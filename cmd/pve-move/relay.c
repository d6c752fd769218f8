/* The bytes of a disk pass through pve-move once, between the ssh session
 * to the source host and the one to the target host: counted for the
 * progress line, held back for --bwlimit, and cut short by Ctrl-C or a
 * peer that stops sending. Neither host needs to reach the other (but
 * see relay_direct).
 *
 * relay_pipe: a stream (a volume's data records, zfs send, vzdump) from one
 * command's stdout into the other's stdin.
 * relay_straight: a source that reports its own positions writes into the
 * target's stdin through one pipe, without the hop through us, when there
 * is no --bwlimit to keep.
 * relay_nbd: qemu-nbd on the source, qemu-img on the target, each behind a
 * forwarded Unix socket; we join the two forwards.
 * relay_direct (--direct): the source host sends to the target itself and
 * we only follow its progress. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "move.h"

#define CHUNK (256 * 1024)

volatile sig_atomic_t interrupted;
uint64_t bwlimit_bps;

static void
human(uint64_t n, char *out, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void
progress_start(struct progress *p, const char *what, uint64_t total)
{
	memset(p, 0, sizeof *p);
	p->what = what;
	p->total = total;
	p->start_ms = p->last_ms = mono_ms();
}

void
progress_show(struct progress *p, int force)
{
	static int tty = -1;
	int64_t now = mono_ms(), el = now - p->start_ms;
	uint64_t done = p->done > p->wire ? p->done : p->wire;
	char d[32], t[32], w[48] = "", rate[32], eta[32] = "";
	double bps;

	if (tty < 0)
		tty = isatty(STDERR_FILENO);
	if (!force && now - p->last_ms < (tty ? 500 : 5000))
		return;
	p->last_ms = now;
	if (p->total && done > p->total)
		done = p->total;
	/* with --direct no byte passes here: the rate is the source's */
	bps = el > 0 ? (double)(p->wire ? p->wire : done) * 1000.0 / (double)el : 0;
	human(done, d, sizeof d);
	human(p->total, t, sizeof t);
	if (p->wire || !done) {
		char sent[32];

		human(p->wire, sent, sizeof sent);
		snprintf(w, sizeof w, "%s sent, ", sent);
	}
	human((uint64_t)bps, rate, sizeof rate);
	if (p->total && done && done < p->total && el > 1000) {
		double left = (double)(p->total - done) * (double)el / (double)done / 1000.0;
		snprintf(eta, sizeof eta, " ETA %d:%02d", (int)left / 60, (int)left % 60);
	}
	if (tty && !force)
		fprintf(stderr, "\r%s: %s: %s / %s (%d%%), %s%s/s%s\033[K", log_prog,
		        p->what, d, t, p->total ? (int)(done * 100 / p->total) : 0, w, rate, eta);
	else
		fprintf(stderr, "%s%s: %s: %s / %s (%d%%), %s%s/s%s\n",
		        tty ? "\r\033[K" : "", log_prog, p->what, d, t,
		        p->total ? (int)(done * 100 / p->total) : 0, w, rate, eta);
	fflush(stderr);
}

/* Waits as long as the limit wants after `sent` bytes in `el_ms`. */
static void
throttle(uint64_t sent, int64_t start_ms)
{
	int64_t want_ms, el;

	if (!bwlimit_bps)
		return;
	want_ms = (int64_t)(sent * 1000 / bwlimit_bps);
	el = mono_ms() - start_ms;
	if (want_ms > el)
		sleep_ms(want_ms - el > 1000 ? 1000 : want_ms - el);
}

static char *
find_exec(const char *name)
{
	const char *env = getenv("PATH");
	char *dirs, *save = NULL;

	if (strchr(name, '/'))
		return xstrdup(name);
	dirs = xstrdup(env ? env : "/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *c = xasprintf("%s/%s", d, name);
		if (access(c, X_OK) == 0) {
			free(dirs);
			return c;
		}
		free(c);
	}
	free(dirs);
	return xstrdup(name);
}

static void
spawn(struct proc *p, char **argv, int in, int out, int err)
{
	struct proc_spec s = { 0 };
	char *path = find_exec(argv[0]);

	if (ssh_opts.debug) {
		char *l = argv_line(argv);
		log_debug("run: %s", l);
		free(l);
	}
	s.path = path;
	s.argv = argv;
	s.fd_in = in;
	s.fd_out = out;
	s.fd_err = err;
	s.group = PROC_NEW_GROUP; /* Ctrl-C reaches us, we stop them */
	s.kill_after_ms = 3000;
	if (proc_spawn(p, &s) < 0)
		die(EXIT_OSERR, "%s: %s", argv[0], strerror(errno));
	free(path);
}

static int
collect(struct proc *p)
{
	struct proc_status st;

	proc_collect(p, &st);
	return proc_exit_code(&st);
}

static void
read_into(int *fd, struct buf *b)
{
	char tmp[4096];
	ssize_t n;

	if (*fd < 0)
		return;
	n = read(*fd, tmp, sizeof tmp);
	if (n > 0) {
		if (b->len < 65536)
			buf_append(b, tmp, (size_t)n);
	} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
		close(*fd);
		*fd = -1;
	}
}

/* Takes the "@OFFSET [SENT]" lines out of a source's stderr into p->done
 * (with sent, p->wire: the bytes it wrote, when they do not pass here);
 * the rest stays for the error message. */
static void
take_positions(struct buf *b, struct progress *p, int sent)
{
	size_t keep = 0, i = 0;

	if (!b->len)
		return;
	while (i < b->len) {
		char *nl = memchr(b->data + i, '\n', b->len - i);
		size_t end = nl ? (size_t)(nl - b->data) + 1 : b->len;

		if (!nl && b->data[i] == '@')
			break; /* the rest of this line comes later */
		if (b->data[i] == '@') {
			char *e;

			p->done = strtoull(b->data + i + 1, &e, 10);
			if (sent && *e == ' ')
				p->wire = strtoull(e + 1, NULL, 10);
		} else {
			memmove(b->data + keep, b->data + i, end - i);
			keep += end - i;
		}
		i = end;
	}
	memmove(b->data + keep, b->data + i, b->len - i);
	b->len = keep + (b->len - i);
	b->data[b->len] = '\0';
}

/* Nothing waits in the pipe from the source: what the target read was
 * all there was so far. */
static int
target_had_all(int fd)
{
	int left = 0;

	return ioctl(fd, FIONREAD, &left) == 0 && left == 0;
}

/* Follows a source that reports its positions, the bytes not passing
 * here: without a target (--direct) it sends to the target itself; with
 * one, its stdout is the target's stdin, one pipe from one command to the
 * other. No position moves for idle_ms: cut. */
static int
follow_positions(struct pipe_cmd *pc, struct progress *p, int with_target)
{
	int se[2], de[2] = { -1, -1 }, data[2] = { -1, -1 }, ok = 1;
	struct proc ps, pd;
	int64_t last = mono_ms();
	uint64_t seen = 0;

	if (pipe2(se, O_CLOEXEC) < 0 ||
	    (with_target && (pipe2(data, O_CLOEXEC) < 0 || pipe2(de, O_CLOEXEC) < 0)))
		die(EXIT_OSERR, "pipe: %s", strerror(errno));
	if (with_target) {
		fcntl(data[0], F_SETPIPE_SZ, 1 << 20);
		spawn(&pd, pc->dst_argv, data[0], PROC_DEVNULL, de[1]);
		close(data[0]);
		close(de[1]);
	}
	spawn(&ps, pc->src_argv, PROC_DEVNULL, with_target ? data[1] : PROC_DEVNULL, se[1]);
	if (with_target)
		close(data[1]);
	close(se[1]);
	while (se[0] >= 0 || de[0] >= 0) {
		struct pollfd f[2] = { { se[0], POLLIN, 0 }, { de[0], POLLIN, 0 } };

		if (poll(f, 2, 1000) < 0 && errno != EINTR)
			break;
		if (interrupted) {
			snprintf(pc->why, sizeof pc->why, "interrupted");
			ok = 0;
			break;
		}
		if (f[0].revents) {
			read_into(&se[0], &pc->src_err);
			take_positions(&pc->src_err, p, 1);
		}
		if (f[1].revents)
			read_into(&de[0], &pc->dst_err);
		if (p->done != seen) {
			seen = p->done;
			last = mono_ms();
		} else if (mono_ms() - last > pc->idle_ms) {
			snprintf(pc->why, sizeof pc->why, "no progress for %llds",
			         (long long)(pc->idle_ms / 1000));
			ok = 0;
			break;
		}
		progress_show(p, 0);
	}
	if (!ok) {
		proc_abort(&ps);
		if (with_target)
			proc_abort(&pd);
	}
	if (se[0] >= 0)
		close(se[0]);
	if (de[0] >= 0)
		close(de[0]);
	pc->src_rc = collect(&ps);
	pc->dst_rc = with_target ? collect(&pd) : 0;
	/* a source cut off by a target that failed: the target says why */
	if (ok && pc->src_rc && pc->dst_rc && pc->dst_err.len &&
	    !strstr(pc->dst_err.data, "the stream broke off"))
		snprintf(pc->why, sizeof pc->why, "the target stopped reading");
	if (ok && pc->src_rc == 0 && pc->dst_rc == 0)
		p->done = p->total;
	progress_show(p, 1);
	return ok && pc->src_rc == 0 && pc->dst_rc == 0 ? 0 : -1;
}

int
relay_pipe(struct pipe_cmd *pc, struct progress *p)
{
	int data[2], into[2], se[2], de[2];
	struct proc ps, pd;
	char *buf = xmalloc(CHUNK);
	int64_t last = mono_ms();
	int ok = 1, target_ended = 0;

	if (pipe2(data, O_CLOEXEC) < 0 || pipe2(into, O_CLOEXEC) < 0 || pipe2(se, O_CLOEXEC) < 0 ||
	    pipe2(de, O_CLOEXEC) < 0)
		die(EXIT_OSERR, "pipe: %s", strerror(errno));
	/* big pipes: fewer wake-ups per byte on a busy machine */
	fcntl(data[0], F_SETPIPE_SZ, 1 << 20);
	fcntl(into[0], F_SETPIPE_SZ, 1 << 20);
	spawn(&ps, pc->src_argv, PROC_DEVNULL, data[1], se[1]);
	spawn(&pd, pc->dst_argv, into[0], PROC_DEVNULL, de[1]);
	close(data[1]);
	close(into[0]);
	close(se[1]);
	close(de[1]);
	while (data[0] >= 0) {
		struct pollfd f[3] = { { data[0], POLLIN, 0 }, { se[0], POLLIN, 0 }, { de[0], POLLIN, 0 } };
		int r = poll(f, 3, 1000);

		if (interrupted) {
			snprintf(pc->why, sizeof pc->why, "interrupted");
			ok = 0;
			break;
		}
		if (r < 0 && errno != EINTR)
			break;
		if (f[1].revents) {
			read_into(&se[0], &pc->src_err);
			if (pc->src_positions)
				take_positions(&pc->src_err, p, 0);
		}
		if (f[2].revents)
			read_into(&de[0], &pc->dst_err);
		if (f[0].revents) {
			/* pipe to pipe in the kernel: the bytes are counted, not
			 * copied through here */
			ssize_t n = splice(data[0], NULL, into[1], NULL, CHUNK, SPLICE_F_MOVE);

			if (n < 0 && errno == EINVAL) {
				n = read(data[0], buf, CHUNK);
				if (n > 0 && write_all(into[1], buf, (size_t)n) < 0)
					n = -2;
			}
			if (n == 0) {
				close(data[0]);
				data[0] = -1;
				break;
			}
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno == EPIPE && target_had_all(data[0])) {
				/* the target ended with the stream: a splice at
				 * the source's EOF says EPIPE once no one reads
				 * (our perl's last sync is quick); both exit
				 * codes decide */
				target_ended = 1;
				break;
			}
			if (n < 0) {
				snprintf(pc->why, sizeof pc->why, "%s",
				         n == -2 || errno == EPIPE ? "the target stopped reading"
				                                   : strerror(errno));
				ok = 0;
				break;
			}
			p->wire += (uint64_t)n;
			if (!pc->src_positions)
				p->done = p->wire;
			last = mono_ms();
			throttle(p->wire, p->start_ms);
		} else if (mono_ms() - last > pc->idle_ms) {
			snprintf(pc->why, sizeof pc->why, "no data for %llds",
			         (long long)(pc->idle_ms / 1000));
			ok = 0;
			break;
		}
		progress_show(p, 0);
	}
	close(into[1]);
	if (!ok) {
		proc_abort(&ps);
		proc_abort(&pd);
	}
	if (data[0] >= 0)
		close(data[0]);
	/* the rest of both stderr streams, until the commands end */
	while (se[0] >= 0 || de[0] >= 0) {
		struct pollfd f[2] = { { se[0], POLLIN, 0 }, { de[0], POLLIN, 0 } };

		if (poll(f, 2, 200) < 0 && errno != EINTR)
			break;
		if (interrupted && ok) {
			proc_abort(&ps);
			proc_abort(&pd);
			snprintf(pc->why, sizeof pc->why, "interrupted");
			ok = 0;
		}
		if (f[0].revents) {
			read_into(&se[0], &pc->src_err);
			if (pc->src_positions)
				take_positions(&pc->src_err, p, 0);
		}
		if (f[1].revents)
			read_into(&de[0], &pc->dst_err);
	}
	pc->src_rc = collect(&ps);
	pc->dst_rc = collect(&pd);
	if (target_ended && pc->src_rc && !pc->dst_rc)
		snprintf(pc->why, sizeof pc->why, "the target stopped reading");
	if (ok && pc->src_rc == 0 && pc->dst_rc == 0 && pc->src_positions)
		p->done = p->total;
	free(buf);
	progress_show(p, 1);
	return ok && pc->src_rc == 0 && pc->dst_rc == 0 ? 0 : -1;
}

int
relay_straight(struct pipe_cmd *pc, struct progress *p)
{
	return follow_positions(pc, p, 1);
}

int
relay_direct(struct pipe_cmd *pc, struct progress *p)
{
	return follow_positions(pc, p, 0);
}

static int
unix_listen(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof a.sun_path)
		return -1;
	strcpy(a.sun_path, path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof a.sun_path)
		return -1;
	strcpy(a.sun_path, path);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* qemu-img -p prints "    (12.34/100%)\r": the last one seen. */
static void
parse_percent(const struct buf *out, struct progress *p)
{
	const char *s = out->data, *last = NULL;

	for (const char *q = s; q && (q = strchr(q, '(')); q++)
		last = q;
	if (last) {
		double pct = strtod(last + 1, NULL);
		if (pct > 0 && pct <= 100)
			p->done = (uint64_t)((double)p->total * pct / 100.0);
	}
}

/* One joined connection: the target's qemu-img (c) and the source's
 * qemu-nbd (s). Returns when either side closes. */
static int
join(struct nbd_cmd *nc, int c, int s, struct proc *pd, int *se, int *de, int dout,
     struct progress *p)
{
	char *buf = xmalloc(CHUNK);
	int64_t last = mono_ms();
	int ok = 1;

	for (;;) {
		struct pollfd f[5] = { { c, POLLIN, 0 },   { s, POLLIN, 0 },    { *se, POLLIN, 0 },
			               { *de, POLLIN, 0 }, { dout, POLLIN, 0 } };
		int r = poll(f, 5, 1000);

		if (interrupted) {
			snprintf(nc->why, sizeof nc->why, "interrupted");
			ok = 0;
			break;
		}
		if (r < 0 && errno != EINTR)
			break;
		if (f[2].revents)
			read_into(se, &nc->src_err);
		if (f[3].revents)
			read_into(de, &nc->dst_err);
		if (f[4].revents) {
			char tmp[512];
			ssize_t n = read(dout, tmp, sizeof tmp);
			if (n > 0) {
				if (nc->dst_out.len > 4096)
					buf_consume(&nc->dst_out, nc->dst_out.len - 1024);
				buf_append(&nc->dst_out, tmp, (size_t)n);
				parse_percent(&nc->dst_out, p);
			}
		}
		if (f[0].revents) {
			ssize_t n = read(c, buf, CHUNK);
			if (n <= 0)
				break; /* qemu-img is done (or gone) */
			if (write_all(s, buf, (size_t)n) < 0) {
				snprintf(nc->why, sizeof nc->why, "the source connection broke");
				ok = 0;
				break;
			}
			last = mono_ms();
		}
		if (f[1].revents) {
			ssize_t n = read(s, buf, CHUNK);
			if (n <= 0) {
				/* qemu-nbd answers a disconnect by closing, maybe
				 * before qemu-img closes its end; and a source that
				 * broke off makes qemu-img fail. Its exit status
				 * decides. */
				shutdown(c, SHUT_WR);
				while (read(c, buf, CHUNK) > 0)
					;
				break;
			}
			if (write_all(c, buf, (size_t)n) < 0) {
				snprintf(nc->why, sizeof nc->why, "the target connection broke");
				ok = 0;
				break;
			}
			p->wire += (uint64_t)n;
			last = mono_ms();
			throttle(p->wire, p->start_ms);
		}
		if (!f[0].revents && !f[1].revents && mono_ms() - last > nc->idle_ms) {
			snprintf(nc->why, sizeof nc->why, "no data for %llds",
			         (long long)(nc->idle_ms / 1000));
			ok = 0;
			break;
		}
		progress_show(p, 0);
	}
	(void)pd;
	free(buf);
	return ok;
}

int
relay_nbd(struct nbd_cmd *nc, struct progress *p)
{
	int sin[2], sout[2], se[2], de[2], dout[2], lfd = -1, ok = 1;
	struct proc ps, pd;
	int started_dst = 0;
	int64_t until;

	if (pipe2(sin, O_CLOEXEC) < 0 || pipe2(sout, O_CLOEXEC) < 0 || pipe2(se, O_CLOEXEC) < 0 ||
	    pipe2(de, O_CLOEXEC) < 0 || pipe2(dout, O_CLOEXEC) < 0)
		die(EXIT_OSERR, "pipe: %s", strerror(errno));
	/* the source's stdin stays open while we need qemu-nbd: its EOF
	 * stops it */
	spawn(&ps, nc->src_argv, sin[0], sout[1], se[1]);
	close(sin[0]);
	close(sout[1]);
	close(se[1]);
	/* "ready" once qemu-nbd listens */
	until = mono_ms() + 60000;
	{
		struct buf rd = { 0 };
		while (!strstr(rd.data ? rd.data : "", "ready\n")) {
			struct pollfd f[2] = { { sout[0], POLLIN, 0 }, { se[0], POLLIN, 0 } };

			if (interrupted || mono_ms() > until || sout[0] < 0) {
				snprintf(nc->why, sizeof nc->why, "%s",
				         interrupted ? "interrupted" : "qemu-nbd did not start");
				ok = 0;
				break;
			}
			if (poll(f, 2, 500) < 0 && errno != EINTR)
				break;
			if (f[1].revents)
				read_into(&se[0], &nc->src_err);
			if (f[0].revents)
				read_into(&sout[0], &rd);
		}
		buf_free(&rd);
	}
	if (ok) {
		lfd = unix_listen(nc->local_dst);
		if (lfd < 0) {
			snprintf(nc->why, sizeof nc->why, "%s: %s", nc->local_dst, strerror(errno));
			ok = 0;
		}
	}
	if (ok) {
		spawn(&pd, nc->dst_argv, PROC_DEVNULL, dout[1], de[1]);
		started_dst = 1;
		/* each connection of the target's qemu-img comes through the
		 * forward; a convert makes one, and a compare one */
		for (;;) {
			struct pollfd f[4] = { { lfd, POLLIN, 0 }, { pd.fd, POLLIN, 0 }, { de[0], POLLIN, 0 }, { se[0], POLLIN, 0 } };

			if (interrupted) {
				snprintf(nc->why, sizeof nc->why, "interrupted");
				ok = 0;
				break;
			}
			if (poll(f, 4, 1000) < 0 && errno != EINTR)
				break;
			if (f[2].revents)
				read_into(&de[0], &nc->dst_err);
			if (f[3].revents)
				read_into(&se[0], &nc->src_err);
			if (f[0].revents) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), s;

				if (c < 0)
					continue;
				s = unix_connect(nc->local_src);
				if (s < 0) {
					snprintf(nc->why, sizeof nc->why, "%s: %s", nc->local_src,
					         strerror(errno));
					ok = 0;
					close(c);
					break;
				}
				ok = join(nc, c, s, &pd, &se[0], &de[0], dout[0], p);
				close(c);
				close(s);
				if (!ok)
					break;
				continue;
			}
			if (f[1].revents)
				break; /* the target command ended */
		}
	}
	if (!ok) {
		proc_abort(&ps);
		if (started_dst)
			proc_abort(&pd);
	}
	close(de[1]);
	close(dout[1]);
	close(sin[1]);
	if (lfd >= 0) {
		close(lfd);
		unlink(nc->local_dst);
	}
	/* the rest of the messages and qemu-img's last words */
	while (se[0] >= 0 || de[0] >= 0 || sout[0] >= 0 || dout[0] >= 0) {
		struct pollfd f[4] = { { se[0], POLLIN, 0 }, { de[0], POLLIN, 0 }, { sout[0], POLLIN, 0 }, { dout[0], POLLIN, 0 } };
		struct buf junk = { 0 };

		if (poll(f, 4, 200) < 0 && errno != EINTR)
			break;
		if (interrupted && ok) {
			proc_abort(&ps);
			if (started_dst)
				proc_abort(&pd);
			snprintf(nc->why, sizeof nc->why, "interrupted");
			ok = 0;
		}
		if (f[0].revents)
			read_into(&se[0], &nc->src_err);
		if (f[1].revents)
			read_into(&de[0], &nc->dst_err);
		if (f[2].revents)
			read_into(&sout[0], &junk);
		if (f[3].revents)
			read_into(&dout[0], &nc->dst_out);
		buf_free(&junk);
	}
	nc->dst_rc = started_dst ? collect(&pd) : -1;
	nc->src_rc = collect(&ps);
	if (ok && nc->dst_rc == 0)
		p->done = p->total;
	progress_show(p, 1);
	return ok && nc->dst_rc == 0 && nc->src_rc == 0 ? 0 : -1;
}
