/* Which node owns which guest: pmxcfs's .vmlist, or the same map derived
 * from nodes/NODE/{qemu-server,lxc}/VMID.conf when .vmlist is absent. */
#ifndef PVEKIT_VMLIST_H
#define PVEKIT_VMLIST_H

#include <stddef.h>
#include <stdint.h>

#include "guestconf.h"
#include "node.h"

struct vm_owner {
	uint32_t vmid;
	enum guest_type type;
	char node[NODE_NAME_MAX];
	/* pmxcfs bumps a guest's own version on every write of its config;
	 * 0 when unknown (a scan). */
	uint32_t version;
};

struct vmlist {
	uint64_t version;   /* pmxcfs's counter; 0 when derived from a scan */
	struct vm_owner *e; /* sorted by vmid, vmids unique */
	size_t n;
	/* Entries left out: pmxcfs registers any 32-bit VMID, Proxmox's API and
	 * our tools take at most 999999999. The lowest such VMID, and how many. */
	size_t nskipped;
	uint32_t skipped_vmid;
};

/* Parses .vmlist text. Anything but a complete, valid map is an error
 * (a truncated or empty file must never look like "every guest is gone");
 * only an entry whose VMID is above 999999999 is left out (counted in
 * nskipped), as the rest of the map is good.
 * 0, or -1 with a reason in err ("line N: ..." where a line is known). */
int vmlist_parse(const char *text, size_t len, struct vmlist *out, char *err, size_t errlen);

/* One warning (log_warn) naming the map at path when l left entries out
 * and the last warning was about other ones; silent while they stay. */
void vmlist_warn_skipped(const char *path, const struct vmlist *l);

/* Builds the map from PVE_DIR/nodes/NODE/{qemu-server,lxc}/VMID.conf for every NODE.
 * Only regular files named as pmxcfs counts them (^[1-9][0-9]*\.conf$) are guests.
 * 0, or -1 with a reason in err (PVE_DIR/nodes unreadable). */
int vmlist_scan(const char *pve_dir, struct vmlist *out, char *err, size_t errlen);

/* PVE_DIR/.vmlist if it exists (with vmlist_warn_skipped), else
 * vmlist_scan. Sets *from_file. */
int vmlist_load(const char *pve_dir, struct vmlist *out, int *from_file, char *err, size_t errlen);

/* The "vmlist" counter of PVE_DIR/.version: 0 and *out, or -1 (absent/invalid). */
int pve_version_counter(const char *pve_dir, const char *key, uint64_t *out);

/* A top-level non-negative integer member of a JSON object in text (the
 * .version format): 0 and *out, or -1 (not valid JSON, key absent or not
 * such a number). */
int pve_version_parse(const char *text, size_t len, const char *key, uint64_t *out);

const struct vm_owner *vmlist_find(const struct vmlist *l, uint32_t vmid);
void vmlist_add(struct vmlist *l, const struct vm_owner *o); /* keeps order */
void vmlist_free(struct vmlist *l);

/* A change of a guest's owner as pve-watch-conf prints it and run-hooks
 * --events reads it. */
enum guest_event { GUEST_CREATE, GUEST_DESTROY, GUEST_MIGRATE_IN, GUEST_MIGRATE_OUT };
/* "create", "destroy", "migrate-in", "migrate-out" */
const char *guest_event_name(enum guest_event e);
int guest_event_parse(const char *s, enum guest_event *e); /* 0 or -1 */

/* PVE_DIR/nodes/NODE/{qemu-server,lxc}/VMID.conf */
char *guest_conf_path(const char *pve_dir, const char *node, enum guest_type t, uint32_t vmid);

/* "VMID.conf" as pmxcfs counts it in a guest dir: 0 and *vmid, or -1. */
int guest_conf_name_vmid(const char *name, uint32_t *vmid);

#endif
