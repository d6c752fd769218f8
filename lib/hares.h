/* Proxmox HA resources (PVE_DIR/ha/resources.cfg): which guests the HA
 * manager owns, and the state it is asked to keep them in. A guest under HA
 * is restarted through ha-manager, never behind its back with qm or pct. */
#ifndef PVEKIT_HARES_H
#define PVEKIT_HARES_H

#include <stddef.h>
#include <stdint.h>

#include "filestamp.h"
#include "guestconf.h"

struct ha_res {
	uint32_t vmid;
	enum guest_type type;
	char state[16]; /* started, stopped, disabled, ignored ("enabled" = started) */
};

/* Reads the file: 0 (an absent file is no resources), -1 with err. */
int ha_resources_load(const char *path, struct ha_res **out, size_t *n, char *err, size_t errlen);
const struct ha_res *ha_find(const struct ha_res *v, size_t n, uint32_t vmid);

/* The resources a watcher works from: read again when the file changed,
 * the last good list kept while it is unreadable (said once). */
struct ha_resources {
	char *path;
	char *pve_dir; /* for ha/manager_status (lib/hastate) */
	struct ha_res *v;
	size_t n;
	struct filestamp stamp;
	char err[300];
};

void ha_resources_init(struct ha_resources *h, const char *pve_dir);
void ha_resources_refresh(struct ha_resources *h, int force);
void ha_resources_free(struct ha_resources *h);

/* Who restarts guest vmid: 0 with *sid "" (not under HA, "ignored", or the
 * HA stack disarmed with "ha-manager disarm-ha ignore": plain qm/pct) or
 * the HA id in sid ("vm:101", "ct:110"); 1 when HA asks for a state other
 * than started, or is disarmed in mode freeze, with the reason in why. */
int ha_decide(const struct ha_resources *h, enum guest_type type, uint32_t vmid, char *sid,
              size_t sidlen, char *why, size_t whylen);

#endif
