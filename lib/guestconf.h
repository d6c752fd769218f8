/* The one parser for Proxmox guest configs (qemu-server and lxc).
 *
 * Only the live config counts: the lines before the first line that starts
 * with '[' (snapshots, [PENDING], [pve:pending], [special:*] follow).
 * '#' lines are the description and are skipped. Every other line must be
 * "key: value" (lxc also takes raw "lxc.x.y = value"); a line that is not is
 * counted as malformed and skipped, as Proxmox does. */
#ifndef PVEKIT_GUESTCONF_H
#define PVEKIT_GUESTCONF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum guest_type { GUEST_QEMU, GUEST_LXC };

const char *guest_type_name(enum guest_type t);          /* "qemu", "lxc" */
int guest_type_parse(const char *s, enum guest_type *t); /* 0 or -1 */
const char *guest_type_dir(enum guest_type t);           /* "qemu-server", "lxc" */

struct guest_kv {
	char *key, *value; /* in the conf's text */
	unsigned line;
};

struct guest_nic {
	unsigned index; /* N of netN */
	char model[24]; /* qemu NIC model, "veth" for lxc */
	char bridge[64];
	uint8_t mac[6];
	int has_mac;
	unsigned line;
};

struct guest_conf {
	enum guest_type type;
	char *text; /* the live lines, cut in place */
	struct guest_kv *kv;
	size_t nkv;
	struct guest_nic *nics;
	size_t nnics;
	unsigned nbad;      /* malformed live lines, and netN with an unparsable MAC */
	unsigned first_bad; /* line number of the first one */
};

/* Parses text; never fails on content (see nbad). */
void guest_conf_parse(const char *text, size_t len, enum guest_type type, struct guest_conf *out);

/* Reads and parses path. -1 with errno (ENOENT, EISDIR, EACCES, EFBIG,
 * EINVAL for anything but a regular file). */
int guest_conf_load(const char *path, enum guest_type type, struct guest_conf *out);

/* Configs are small; pmxcfs itself caps a file at 1 MiB. */
#define GUEST_CONF_MAX (1024 * 1024)

/* Reads a config file's text, as guest_conf_load does: read_file (a
 * regular file, so that a FIFO or device under that name can never block)
 * of at most GUEST_CONF_MAX. 0, or -1 with errno as guest_conf_load. */
int guest_conf_read(const char *path, struct buf *out);

void guest_conf_free(struct guest_conf *c);

/* The value of key in the live config (the last one wins), or NULL. */
const char *guest_conf_get(const struct guest_conf *c, const char *key);

/* "agent: 1", "agent: enabled=1,fstrim_cloned_disks=1" -> 1; missing or 0 -> 0. */
int guest_conf_agent_enabled(const struct guest_conf *c);

/* The lock value ("backup", "migrate", ...) or NULL. */
const char *guest_conf_lock(const struct guest_conf *c);

/* smbios1 uuid=... into out (37 bytes); 0 or -1 when absent/invalid. */
int guest_conf_smbios_uuid(const struct guest_conf *c, char out[37]);

/* Property strings "a=1,b=2,positional": copies the value of key into out.
 * With key NULL, the first token without '=' (the positional value).
 * 0 found, -1 not found or does not fit. */
int prop_get(const char *props, const char *key, char *out, size_t outlen);

/* "bc:24:11:2c:69:ec" (any case) -> 6 bytes; 0 or -1. */
int mac_parse(const char *s, uint8_t mac[6]);
/* 6 bytes -> "BC:24:11:2C:69:EC" (Proxmox's own spelling); out has 18 bytes. */
void mac_format(const uint8_t mac[6], char out[18]);

/* The 14 QEMU NIC models Proxmox knows (research/proxmox.md §2.2). */
int qemu_nic_model(const char *name);

#endif
