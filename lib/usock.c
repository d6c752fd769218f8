#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "usock.h"

enum { U_CLOSED, U_RETRY, U_CONNECTING, U_OPEN };

#define USOCK_RETRY_MS 50 /* backlog full: Proxmox's own clients retry alike */
#define USOCK_READ_CHUNK 16384
#define USOCK_READS_PER_STEP 64

/* Closes the socket; the input stays for the owner to judge. */
static void
disconnect(struct usock *s)
{
	if (s->state == U_CONNECTING || s->state == U_OPEN)
		close(s->fd);
	s->fd = -1;
	s->state = U_CLOSED;
}

void
usock_close(struct usock *s)
{
	disconnect(s);
	buf_free(&s->out);
	buf_free(&s->in);
	s->out_off = s->head = s->scanned = 0;
}

static enum usock_status
fail(struct usock *s, int err, const char *op)
{
	disconnect(s);
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		snprintf(s->why, sizeof s->why, "no such socket");
		return USOCK_NOSOCKET;
	case ECONNREFUSED:
		snprintf(s->why, sizeof s->why, "connection refused");
		return USOCK_REFUSED;
	default:
		snprintf(s->why, sizeof s->why, "%s: %s", op, strerror(err));
		return USOCK_IOERR;
	}
}

static enum usock_status
flush(struct usock *s)
{
	while (s->out_off < s->out.len) {
		ssize_t n = send(s->fd, s->out.data + s->out_off, s->out.len - s->out_off,
		                 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return USOCK_PENDING;
		if (n < 0)
			return fail(s, errno, "write");
		s->out_off += n;
	}
	buf_reset(&s->out);
	s->out_off = 0;
	return USOCK_PENDING;
}

static enum usock_status
try_connect(struct usock *s, int64_t now)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(s->path);

	if (n >= sizeof sa.sun_path) {
		disconnect(s);
		snprintf(s->why, sizeof s->why, "socket path too long");
		return USOCK_IOERR;
	}
	memcpy(sa.sun_path, s->path, n + 1);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return fail(s, errno, "socket");
	s->state = U_CONNECTING;
	if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		s->state = U_OPEN;
		return flush(s);
	}
	if (errno == EINPROGRESS)
		return USOCK_PENDING;
	if (errno == EAGAIN) {
		/* The listener's backlog is full: another client holds the
		 * socket, or nothing accepts (usock_has_client tells which). */
		close(s->fd);
		s->fd = -1;
		s->state = U_RETRY;
		s->retry_ms = now + USOCK_RETRY_MS;
		return USOCK_PENDING;
	}
	return fail(s, errno, "connect");
}

enum usock_status
usock_start(struct usock *s, const char *path, int64_t now_ms, int64_t deadline_ms)
{
	disconnect(s);
	s->out_off = 0;
	buf_reset(&s->in);
	s->head = s->scanned = 0;
	s->why[0] = '\0';
	s->path = path;
	s->deadline_ms = deadline_ms;
	return try_connect(s, now_ms);
}

int
usock_fd(const struct usock *s)
{
	return s->state == U_CONNECTING || s->state == U_OPEN ? s->fd : -1;
}

short
usock_events(const struct usock *s)
{
	if (s->state == U_CONNECTING || (s->state == U_OPEN && s->out_off < s->out.len))
		return POLLOUT;
	return s->state == U_OPEN ? POLLIN : 0;
}

int64_t
usock_wakeup(const struct usock *s)
{
	if (s->state == U_RETRY && s->retry_ms < s->deadline_ms)
		return s->retry_ms;
	return s->deadline_ms;
}

static enum usock_status
receive(struct usock *s, int64_t now, usock_read_fn *on_read, void *owner)
{
	char chunk[USOCK_READ_CHUNK];

	/* The owner closes the exchange from on_read once it has its answer. */
	for (int reads = 0; reads < USOCK_READS_PER_STEP && s->state == U_OPEN; reads++) {
		ssize_t n = read(s->fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return fail(s, errno, "read");
		if (n == 0) {
			disconnect(s);
			return USOCK_EOF;
		}
		usock_input(s, chunk, n);
		on_read(owner, now);
	}
	return USOCK_PENDING;
}

enum usock_status
usock_step(struct usock *s, short revents, int64_t now_ms, usock_read_fn *on_read, void *owner)
{
	enum usock_status st = USOCK_PENDING;
	int err = 0;
	socklen_t len = sizeof err;

	switch (s->state) {
	case U_RETRY:
		if (now_ms >= s->retry_ms && now_ms < s->deadline_ms)
			st = try_connect(s, now_ms);
		break;
	case U_CONNECTING:
		if (!revents)
			break;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			return fail(s, err, "connect");
		s->state = U_OPEN;
		st = flush(s);
		break;
	case U_OPEN:
		if (revents & (POLLIN | POLLERR | POLLHUP))
			st = receive(s, now_ms, on_read, owner);
		/* what the bytes just read asked for goes out at once */
		if (st == USOCK_PENDING && s->state == U_OPEN && s->out_off < s->out.len)
			st = flush(s);
		break;
	default:
		return USOCK_PENDING;
	}
	if (st == USOCK_PENDING && s->state != U_CLOSED && now_ms >= s->deadline_ms) {
		st = s->state == U_RETRY ? USOCK_BUSY : USOCK_TIMEOUT;
		disconnect(s);
	}
	return st;
}

void
usock_input(struct usock *s, const void *data, size_t len)
{
	if (s->head) {
		buf_consume(&s->in, s->head);
		s->scanned = s->scanned > s->head ? s->scanned - s->head : 0;
		s->head = 0;
	}
	buf_append(&s->in, data, len);
}

const char *
usock_unread(const struct usock *s, size_t *len)
{
	*len = s->in.len - s->head;
	return s->in.data ? s->in.data + s->head : "";
}

void
usock_skip(struct usock *s, size_t n)
{
	s->head += n < s->in.len - s->head ? n : s->in.len - s->head;
}

const char *
usock_line(struct usock *s, size_t *len)
{
	size_t from = s->scanned > s->head ? s->scanned : s->head;
	const char *line, *nl = NULL;
	size_t n;

	if (from < s->in.len)
		nl = memchr(s->in.data + from, '\n', s->in.len - from);
	if (!nl) {
		s->scanned = s->in.len;
		return NULL;
	}
	line = s->in.data + s->head;
	n = nl - line;
	s->head += n + 1;
	while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	*len = n;
	return line;
}

/* Reads one sock_diag dump of the Unix sockets of this network namespace
 * and looks at those bound to the file (dev, ino). */
static int
scan_clients(int nl, dev_t dev, ino_t ino)
{
	static char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
	int listener = 0, client = 0;

	for (;;) {
		ssize_t n = recv(nl, buf, sizeof buf, 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			const struct unix_diag_msg *m = NLMSG_DATA(h);
			const struct unix_diag_vfs *vfs = NULL;
			uint32_t peer = 0;
			struct rtattr *a;
			int len;

			if (h->nlmsg_type == NLMSG_DONE)
				return client ? 1 : listener ? 0 : -1;
			if (h->nlmsg_type == NLMSG_ERROR)
				return -1;
			len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
			for (a = (struct rtattr *)(m + 1); len > 0 && RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type == UNIX_DIAG_VFS && RTA_PAYLOAD(a) >= sizeof *vfs)
					vfs = RTA_DATA(a);
				else if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof peer)
					memcpy(&peer, RTA_DATA(a), sizeof peer);
			}
			/* the kernel's dev_t: major << 20 | minor */
			if (!vfs || vfs->udiag_vfs_ino != ino ||
			    makedev(vfs->udiag_vfs_dev >> 20, vfs->udiag_vfs_dev & 0xfffff) != dev)
				continue;
			if (m->udiag_state == 10) /* TCP_LISTEN */
				listener = 1;
			/* Accepted (an embryo in the backlog has no inode yet) and
			 * its client still there (a client that left is inode 0). */
			else if (m->udiag_state == 1 && m->udiag_ino && peer)
				client = 1;
		}
	}
}

int
usock_has_client(const char *path)
{
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req = {
		.h = { .nlmsg_len = sizeof req,
		       .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.r = { .sdiag_family = AF_UNIX,
		       .udiag_states = ~0u,
		       .udiag_show = UDIAG_SHOW_VFS | UDIAG_SHOW_PEER },
	};
	struct timeval tv = { .tv_sec = 1 };
	struct stat st;
	int nl, rc;

	if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -1;
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -1;
	setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	rc = send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req ? scan_clients(nl, st.st_dev, st.st_ino)
	                                                          : -1;
	close(nl);
	return rc;
}
