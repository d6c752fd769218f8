/* This node's guests with their live configs, for the discovery tools
 * (vm-ip-from-arp, vm-public-ip): the vmlist says which guests the node
 * owns, their configs are read (in parallel threads for thousands). */
#ifndef PVEKIT_NODEGUESTS_H
#define PVEKIT_NODEGUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "guestconf.h"
#include "vmlist.h"

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

/* Where both discovery tools start: PVE_DIR/nodes/NODE must exist, the
 * vmlist is loaded into l, then node_guests_load. 0, or the exit code with
 * the reason in err: 78 (EXIT_CONFIG) for a node dir that does not exist
 * (a wrong --node), 69 when it cannot be looked at or there is no vmlist. */
int node_guests_open(const char *pve_dir, const char *node, struct vmlist *l,
                     struct node_guest **out, size_t *n, char *err, size_t errlen);

#endif
