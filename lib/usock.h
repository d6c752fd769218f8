/* One short exchange on a Unix stream socket, with a deadline: the transport
 * under lib/qga and lib/qmp, which keep only their protocols.
 *
 * QEMU's agent and monitor sockets take one client at a time and Proxmox's
 * own tools use them too. So an exchange connects (again every 50 ms while
 * the listener's backlog is full: another client holds the socket, or the
 * listener is stopped), sends
 * what its owner queued in out, collects what it reads in in and tells the
 * owner after each chunk (a bounded number of chunks per step, so a chatty
 * peer cannot keep a step from its deadline), and closes the socket the
 * moment a result is known: the owner has its answer (usock_close), the
 * peer hung up, an error, or the one deadline for the whole exchange.
 *
 * Non-blocking, for a poll loop: usock_fd, usock_events and usock_wakeup say
 * what to wait for, usock_step advances. A zeroed struct usock is closed and
 * empty; usock_close leaves it so. */
#ifndef PVEKIT_USOCK_H
#define PVEKIT_USOCK_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* What an exchange has to report to its owner. */
enum usock_status {
	USOCK_PENDING = 0, /* nothing: connecting, sending, waiting, or closed by the owner */
	USOCK_NOSOCKET,    /* no socket file (ENOENT, ENOTDIR) */
	USOCK_REFUSED,     /* a socket file nobody listens on (ECONNREFUSED) */
	USOCK_IOERR,       /* the socket, connect, read or write failed otherwise */
	USOCK_EOF,         /* the peer closed its end after everything it sent was read */
	USOCK_BUSY,        /* the deadline passed while the backlog stayed full */
	USOCK_TIMEOUT,     /* the deadline passed on an open connection */
};

struct usock {
	/* What is still to be sent: the owner appends (buf_puts, ...) before
	 * usock_start or while the exchange runs; it goes out as soon as the
	 * socket takes it. Without a socket it only collects. */
	struct buf out;
	/* Why, after USOCK_NOSOCKET, USOCK_REFUSED or USOCK_IOERR, without the
	 * path: "no such socket", "read: Connection reset by peer", ... */
	char why[96];
	/* private */
	struct buf in;
	size_t head;    /* in[0..head) is consumed */
	size_t scanned; /* in[head..scanned) holds no '\n' */
	size_t out_off;
	const char *path;
	int fd, state;
	int64_t deadline_ms, retry_ms;
};

/* Told after each chunk read was added to the input. */
typedef void usock_read_fn(void *owner, int64_t now_ms);

/* Connects to path (kept as a pointer: it must outlive the exchange) and
 * sends out; the exchange ends at deadline_ms. Input left from a previous
 * exchange is dropped. */
enum usock_status usock_start(struct usock *s, const char *path, int64_t now_ms,
                              int64_t deadline_ms);
/* poll(2) interest: fd and events; fd -1 while waiting on a timer or closed. */
int usock_fd(const struct usock *s);
short usock_events(const struct usock *s);
/* When the exchange next needs usock_step without I/O (a retry or the deadline). */
int64_t usock_wakeup(const struct usock *s);
/* Advances on revents (0 for a timer), calling on_read(owner, now_ms) after
 * each chunk read. Any status but USOCK_PENDING has closed the socket. */
enum usock_status usock_step(struct usock *s, short revents, int64_t now_ms, usock_read_fn *on_read,
                             void *owner);
/* Closes the socket and drops the input and what was not sent; why stays.
 * The exchange closes the socket by itself on any status but USOCK_PENDING,
 * keeping the input for its owner to judge. */
void usock_close(struct usock *s);

/* After USOCK_BUSY: a full backlog is no proof of another client, since a
 * listener that accepts nothing (a stopped QEMU or agent) fills it with the
 * connections of earlier tries. Has the listener of the socket file path
 * accepted a connection whose client is still there (sock_diag: a socket
 * bound to that file, accepted, with a live peer)? 1 yes, 0 no, -1 not
 * known (no listener seen in this network namespace). */
int usock_has_client(const char *path);

/* The input, as read and not yet consumed. usock_input adds bytes as if
 * they had been read: how a protocol is driven without a socket (fuzzing).
 * usock_unread gives the bytes not consumed yet, usock_skip consumes n of
 * them, usock_line the next complete line (its end and trailing blanks
 * cut, *len its length; NULL while none is complete; valid until the next
 * input). A long line is searched once, however many reads it takes. */
void usock_input(struct usock *s, const void *data, size_t len);
const char *usock_unread(const struct usock *s, size_t *len);
void usock_skip(struct usock *s, size_t n);
const char *usock_line(struct usock *s, size_t *len);

#endif
