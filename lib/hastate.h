/* The cluster-wide state of Proxmox's HA stack that decides who handles an
 * HA resource: PVE_DIR/ha/manager_status, the CRM master's JSON record
 * (pve-ha-manager writes it with encode_json: one line, keys in any order).
 *
 * "ha-manager disarm-ha MODE" puts {"disarm": {"mode": MODE, "state":
 * "disarming"|"disarmed"}} there until "arm-ha". While it is there, the CRM
 * runs no service state machine: a crm-command waits (or is dropped), and
 * qm/pct route nothing through HA in mode "ignore" (vm_is_ha_managed is
 * false: the resources are managed directly), while in mode "freeze" they
 * still do, into a frozen stack. */
#ifndef PVEKIT_HASTATE_H
#define PVEKIT_HASTATE_H

#include <stddef.h>

enum ha_disarm {
	HA_ARMED,         /* no disarm record: HA handles its resources */
	HA_DISARM_IGNORE, /* resources are handled directly, as if not HA's */
	HA_DISARM_OTHER,  /* freeze (or a mode we do not know): nobody acts */
};

/* Reads PVE_DIR/ha/manager_status. An absent or empty file is HA_ARMED (no
 * CRM master ever wrote it; Perl's reader gives {} too). The mode goes to
 * mode (e.g. "freeze"). 0, or -1 with a reason in err (unreadable, not
 * JSON) and *out HA_ARMED. */
int ha_disarm_read(const char *pve_dir, enum ha_disarm *out, char *mode, size_t modelen, char *err,
                   size_t errlen);

#endif
