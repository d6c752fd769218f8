/* Waiting until guests are ready: a guest agent that answers guest-ping, or
 * a TCP port that accepts a connection. Each target is tried again and
 * again, quietly, until it is ready or the one deadline passes; a try never
 * outlives the deadline, so the wait never does either. What pve-start-plan's
 * waits, qga-ping --wait and tcpcheck --wait share.
 *
 * A try that fails at once (no agent socket yet, nobody listening, a
 * connection refused) is repeated retry_ms after it began; one that used its
 * whole time (a guest still booting: its agent socket exists but nothing
 * answers, a SYN without a reply) is repeated at once. An agent try closes
 * the socket as soon as it has its answer (lib/qga), so Proxmox's own use
 * of it waits at most one try. */
#ifndef PVEKIT_READY_H
#define PVEKIT_READY_H

#include <stdint.h>
#include <sys/socket.h>

#include "qga.h"

struct ready {
	/* set by the caller (ready_agent or ready_port) */
	const char *agent;           /* agent socket path, or NULL for a port */
	struct sockaddr_storage addr; /* the port's address */
	socklen_t addrlen;
	/* Targets with the same group above 0 are one: when one is ready, all
	 * are (a name with several addresses is up when one of them answers). */
	unsigned group;
	/* results */
	int ok;             /* ready */
	int64_t ms;         /* when it became ready, in ms after the wait began */
	int64_t rtt_us;     /* the round trip of the try that succeeded */
	unsigned tries;
	int timed_out;      /* its last try got no answer in its time */
	int result;         /* agents: the enum qga_result of its last try */
	char why[256];      /* why it was not ready at its last try */
	/* private */
	int busy, fd;
	int64_t try_start, try_start_us, next_try, try_end;
	struct qga_call call;
};

/* Sets up t for an agent (path kept as a pointer) or a port. */
void ready_agent(struct ready *t, const char *path);
void ready_port(struct ready *t, const struct sockaddr *sa, socklen_t len);

/* Tries every target until all are ready or wait_ms has passed; one try
 * lasts at most try_ms (and ends at the deadline). Returns how many are not
 * ready. The targets need no cleanup afterwards. */
size_t ready_wait(struct ready *t, size_t n, int64_t wait_ms, int try_ms, int retry_ms);

/* Defaults that suit both booting guests and the tests' late agents. */
#define READY_TRY_MS 1000
#define READY_RETRY_MS 50

#endif
