/* Guest IP addresses: the value type, the public-address filter, and the
 * files the discovery tools keep for the failover hooks:
 *   CONFIG_DIR/failoverip/VMID   one address a line, sorted, IPv4 first
 * written atomically and only when their content changes. */
#ifndef PVEKIT_IPFILE_H
#define PVEKIT_IPFILE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "guestconf.h"
#include "vmlist.h"

#define IPFILE_SUBDIR "failoverip"
#define IPADDR_STRLEN INET6_ADDRSTRLEN

struct ipaddr {
	uint8_t family; /* AF_INET (a[0..3]) or AF_INET6 */
	uint8_t a[16];
};

/* A strict dotted quad or an RFC 4291 IPv6 address; 0 or -1. */
int ipaddr_parse(const char *s, struct ipaddr *out);
/* Canonical text (RFC 5952 for IPv6). */
void ipaddr_format(const struct ipaddr *ip, char out[IPADDR_STRLEN]);
/* "ADDR/LEN" or "ADDR" (LEN is then the full length, 32 or 128), the
 * address as ipaddr_parse takes it, LEN a plain decimal; 0 or -1. */
int ipaddr_parse_net(const char *s, struct ipaddr *out, unsigned *len);
/* The prefix length of a netmask ("255.255.255.248", "ffff:ffff:ffff:ffff::"),
 * or -1 when its ones are not contiguous from the left. */
int ipaddr_mask_len(const struct ipaddr *mask);
/* 1 when ip lies in net/len: the same family and the same first len bits. */
int ipaddr_in_net(const struct ipaddr *ip, const struct ipaddr *net, unsigned len);
/* IPv4 before IPv6, then numeric; a qsort comparator. */
int ipaddr_cmp(const void *a, const void *b);
/* Sorts and drops duplicates; returns the new count. */
size_t ipaddr_sort_unique(struct ipaddr *v, size_t n);

/* fe80::/10 */
int ipaddr_is_ll6(const struct ipaddr *ip);
/* Not public: unspecified, loopback, link-local, RFC 1918, CGNAT 100.64/10,
 * ULA fc00::/7, documentation ranges, multicast, and the rest of the
 * special-purpose blocks that are never routed on the Internet. */
int ipaddr_is_public(const struct ipaddr *ip);

/* One "VMID IP" record, as both discovery tools print them. */
struct vm_ip {
	uint32_t vmid;
	struct ipaddr ip;
};

/* By vmid, then address; a qsort comparator. */
int vm_ip_cmp(const void *a, const void *b);
/* Sorts and drops duplicates; returns the new count. */
size_t vm_ip_sort_unique(struct vm_ip *v, size_t n);
/* Prints the records as "VMID IP" lines on stdout and flushes. */
void vm_ip_print(const struct vm_ip *v, size_t n);

/* Reads DIR/VMID. 0 (an absent file is an empty list), or -1 with errno.
 * A line that is not an address is reported with its number and skipped. */
int ipfile_read(const char *dir, uint32_t vmid, struct ipaddr **out, size_t *n);

enum ipfile_merge {
	/* The file becomes the addresses found now. */
	IPFILE_REPLACE,
	/* Addresses in the file that were not found now stay, unless they were
	 * found on another guest (an address belongs to the guest whose MAC it
	 * was last seen with). */
	IPFILE_KEEP_UNSEEN,
};

struct ipfile_stats {
	unsigned written, unchanged, removed, failed;
};

/* Updates DIR/VMID for every guest in found (sorted by vm_ip_cmp). A guest
 * with nothing found keeps its file: absence of evidence is not a reason to
 * lose a failover IP. With IPFILE_KEEP_UNSEEN the files of the guests in
 * owned (this node's, in vmid order) also lose the addresses found on other
 * guests; a file left empty is removed. Creates DIR when needed. Each
 * change and each failure is logged. 0, or -1 when any change failed. */
int ipfile_update(const char *dir, const struct vm_ip *found, size_t n, enum ipfile_merge merge,
                  const uint32_t *owned, size_t nowned, struct ipfile_stats *st);

/* Removes DIR/VMID for every VMID that is no longer a guest anywhere in
 * the cluster (absent from the vmlist). Other names are left alone.
 * Returns 0, or -1 when DIR could not be read or a removal failed. */
int ipfile_prune(const char *dir, const struct vmlist *l, struct ipfile_stats *st);

/* Both of the above on CONFIG_DIR/failoverip (prune only with a vmlist).
 * 0, or -1 after logging why: pmxcfs refuses writes without quorum, so the
 * caller exits with "try again later". */
int ipfile_sync(const char *config_dir, const struct vm_ip *found, size_t n,
                enum ipfile_merge merge, const uint32_t *owned, size_t nowned,
                const struct vmlist *prune_by);

/* The guests that the vmlist places on node, with their live configs. */
struct node_guest {
	uint32_t vmid;
	enum guest_type type;
	struct guest_conf conf;
};

/* Loads PVE_DIR/nodes/NODE/{qemu-server,lxc}/VMID.conf for every guest of
 * node in l (vmid order). A config that vanished meanwhile (a migration, a
 * destroy) is skipped; an unreadable one and malformed lines are reported
 * with the file name and line. Returns the number of guests. */
size_t node_guests_load(const char *pve_dir, const char *node, const struct vmlist *l,
                        struct node_guest **out);
void node_guests_free(struct node_guest *g, size_t n);

/* Where both discovery tools start: PVE_DIR/nodes/NODE must exist (else
 * exit 78, a wrong --node; 69 when it cannot be looked at), the vmlist is
 * loaded into l (exit 69 without one), then node_guests_load. */
size_t node_guests_open(const char *pve_dir, const char *node, struct vmlist *l,
                        struct node_guest **out);

#endif
