/* rtnetlink helpers on libmnl: the neighbour table (IPv4 and IPv6), the
 * addresses of a network namespace, and asking the kernel to resolve
 * addresses (ARP / neighbour discovery) without raw sockets.
 * Every exchange with the kernel has a receive deadline (NL_TIMEOUT_MS). */
#ifndef PVEKIT_NL_H
#define PVEKIT_NL_H

#include <stddef.h>
#include <stdint.h>

#include "ipaddr.h"

#define NL_TIMEOUT_MS 5000

/* A neighbour with a 6-byte link-layer address in a usable state:
 * REACHABLE, STALE, DELAY, PROBE, PERMANENT or NOARP (INCOMPLETE and
 * FAILED entries have no valid address and are left out). */
struct nl_neigh {
	struct ipaddr ip;
	uint8_t mac[6];
	uint16_t state; /* NUD_* */
	int ifindex;
};

/* Dumps the neighbour tables of this namespace (AF_UNSPEC: ARP and ND).
 * 0, or -1 with a reason in err. */
int nl_neigh_dump(struct nl_neigh **out, size_t *n, char *err, size_t errlen);

/* An interface address (IFA_LOCAL when set, else IFA_ADDRESS). */
struct nl_ifaddr {
	struct ipaddr ip;
	int ifindex;
	uint8_t prefixlen, scope;
	uint32_t flags; /* IFA_F_* */
};

/* Dumps the addresses of the network namespace netns_fd (an open
 * /proc/PID/ns/net), or of our own with -1. The foreign namespace is
 * entered only by a short-lived thread that opens the netlink socket
 * there, so this process never leaves its own namespace.
 * 0, or -1 with a reason in err. */
int nl_addr_dump(int netns_fd, struct nl_ifaddr **out, size_t *n, char *err, size_t errlen);

enum nl_probe_state {
	NL_PROBE_PENDING,
	NL_PROBE_RESOLVED, /* the neighbour answered (or had a static entry) */
	NL_PROBE_FAILED,   /* the kernel gave up: nobody has that address */
	NL_PROBE_TIMEOUT,  /* no answer before the deadline */
	NL_PROBE_OFFLINK,  /* routed through a gateway: not a neighbour */
	NL_PROBE_LOCAL,    /* an address of this host */
	NL_PROBE_NOROUTE,  /* no route, or the kernel refused */
};

struct nl_probe {
	struct ipaddr ip;
	int ifindex;
	enum nl_probe_state state;
	char detail[96];
};

const char *nl_probe_state_name(enum nl_probe_state s);

/* Makes the kernel resolve every address at once and waits for the
 * answers until timeout_ms (one deadline for all). Per address: look up
 * the route; if it is on-link and has no usable neighbour entry yet,
 * RTM_NEWNEIGH with NTF_USE starts ARP or neighbour solicitation exactly
 * as outgoing traffic would (no packet to the guest, no raw socket).
 * Static (PERMANENT/NOARP) and REACHABLE entries are never touched.
 * Needs CAP_NET_ADMIN. 0, or -1 with a reason in err. */
int nl_probe(struct nl_probe *p, size_t n, int timeout_ms, char *err, size_t errlen);

#endif
