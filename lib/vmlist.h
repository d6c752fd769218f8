/* Which node owns which guest: pmxcfs's .vmlist, or the same map derived
 * from nodes/NODE/{qemu-server,lxc}/VMID.conf when .vmlist is absent. */
#ifndef PVEKIT_VMLIST_H
#define PVEKIT_VMLIST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
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

/* A top-level non-negative integer member of a JSON object in text (the
 * .version format): 0 and *out, or -1 (not valid JSON, key absent or not
 * such a number). */
int pve_version_parse(const char *text, size_t len, const char *key, uint64_t *out);

const struct vm_owner *vmlist_find(const struct vmlist *l, uint32_t vmid);
void vmlist_add(struct vmlist *l, const struct vm_owner *o); /* keeps order */
void vmlist_free(struct vmlist *l);

/* Where the map comes from, read again only when it changed. pmxcfs renders
 * PVE/.vmlist (every guest of the cluster and its node) and PVE/.version
 * ("starttime" of pmxcfs, and counters: "vmlist" moves with every change of
 * the map and starts again when pmxcfs does). A read looks at the small
 * .version and parses .vmlist only when starttime or the counter moved.
 * Without .version the stat stamp of .vmlist gates the read; without
 * .vmlist the map is derived from nodes/{*}/{qemu-server,lxc}, gated by the
 * stamps of those dirs. A stamp of a file changed in the last two seconds
 * is not trusted (whole-second mtimes). */
enum vmlist_from { VMLIST_FROM_NONE, VMLIST_FROM_FILE, VMLIST_FROM_SCAN };

struct vmlist_source {
	const char *pve_dir;
	char *vmlist_path, *version_path, *node_dir;
	enum vmlist_from from;
	int gated;           /* the last read succeeded and left a gate to compare */
	int gate_by_version; /* gate is .version's (starttime, vmlist) */
	uint64_t gate_start, gate_counter;
	uint64_t gate_sig; /* else a stamp signature of .vmlist or of the guest dirs */
	struct buf version_buf;
	char err[512]; /* why there is no usable map */
};

/* With node, PVE_DIR/nodes/NODE must exist for a map to count: /etc/pve
 * without it is pmxcfs not mounted, never "no guests". NULL: no check. */
void vmlist_source_init(struct vmlist_source *s, const char *pve_dir, const char *node);
void vmlist_source_free(struct vmlist_source *s);
/* 1: a fresh map in *out; 0: nothing changed since the last read (out
 * untouched); -1: no usable map now, s->err says why. force skips the gate. */
int vmlist_source_read(struct vmlist_source *s, int force, struct vmlist *out);
/* ".vmlist" or "nodes/ scan" */
const char *vmlist_source_name(const struct vmlist_source *s);

/* The guest list a watcher works from: vmlist_source_read, keeping the last
 * good map while the source is broken, saying so once. */
struct vmlist_current {
	struct vmlist_source src;
	struct vmlist map; /* the last good map */
	int have_map, failing;
};

void vmlist_current_init(struct vmlist_current *c, const char *pve_dir, const char *node);
void vmlist_current_free(struct vmlist_current *c);
/* 1: c->map is new; 0: unchanged (also while the source fails and an
 * older map is kept); -1: no map at all yet. */
int vmlist_refresh(struct vmlist_current *c, int force);

/* A change of a guest's owner as pve-watch-conf prints it and run-hooks
 * --events reads it. */
enum guest_event { GUEST_CREATE, GUEST_DESTROY, GUEST_MIGRATE_IN, GUEST_MIGRATE_OUT };
/* "create", "destroy", "migrate-in", "migrate-out" */
const char *guest_event_name(enum guest_event e);
int guest_event_parse(const char *s, enum guest_event *e); /* 0 or -1 */

/* PVE_DIR/nodes/NODE/{qemu-server,lxc}/VMID.conf */
char *guest_conf_path(const char *pve_dir, const char *node, enum guest_type t, uint32_t vmid);

/* Is there a config of vmid under any node of PVE_DIR/nodes? 1 yes, 0 no,
 * -1 cannot tell (a directory or a file could not be read). pmxcfs moves a
 * config before it changes the map, so a guest missing from .vmlist whose
 * config is still there is not gone (a rename in progress, or a broken map). */
int guest_conf_anywhere(const char *pve_dir, uint32_t vmid);

/* "VMID.conf" as pmxcfs counts it in a guest dir: 0 and *vmid, or -1. */
int guest_conf_name_vmid(const char *name, uint32_t *vmid);

#endif
