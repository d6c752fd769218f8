/* The files the discovery tools keep for the failover hooks:
 *   CONFIG_DIR/failoverip/VMID   one address a line, sorted, IPv4 first
 * written atomically and only when their content changes. */
#ifndef PVEKIT_IPFILE_H
#define PVEKIT_IPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "ipaddr.h"
#include "vmlist.h"

#define IPFILE_SUBDIR "failoverip"

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
	unsigned no_quorum; /* of failed: EACCES, pmxcfs without quorum */
	unsigned refused;   /* of failed: EPERM, a mode or operation never allowed */
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
 * the cluster: absent from the vmlist and, with pve_dir, with no config
 * under any node of PVE_DIR/nodes (a map that parses but lacks guests,
 * such as {"version": 9}, removes nothing then). Other names are left
 * alone. Returns 0, or -1 when DIR could not be read or a removal failed. */
int ipfile_prune(const char *dir, const struct vmlist *l, const char *pve_dir,
                 struct ipfile_stats *st);

/* Both of the above on CONFIG_DIR/failoverip (prune only with a vmlist,
 * checked against the configs under pve_dir when it is not NULL).
 * 0, or after logging why: IPFILE_RETRY when a change failed for a reason
 * that passes (pmxcfs refuses writes without quorum with EACCES: exit
 * "try again later"), IPFILE_REFUSED when the file system refused one for
 * good (EPERM: a mode or operation pmxcfs never allows). */
enum { IPFILE_RETRY = -1, IPFILE_REFUSED = -2 };
int ipfile_sync(const char *config_dir, const struct vm_ip *found, size_t n,
                enum ipfile_merge merge, const uint32_t *owned, size_t nowned,
                const struct vmlist *prune_by, const char *pve_dir);

#endif
