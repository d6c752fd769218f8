/* The guests an agent tool (qga-ping, qga-timesync) works on: its
 * operands (VMIDs or socket paths), one per line on stdin, or with --all
 * every agent-enabled running VM of this node. */
#ifndef PVEKIT_QGATARGET_H
#define PVEKIT_QGATARGET_H

#include <stddef.h>
#include <stdint.h>

/* An operand of the agent tools: a VMID, whose socket is QGA_DIR/VMID.qga,
 * or a socket path (anything with a '/'), used as it is. */
struct qga_target {
	char *label;   /* what the output shows: the operand as given */
	uint32_t vmid; /* 0 for a path operand */
	char *path;
};

/* 0, or -1 when the operand is neither a VMID nor a path. */
int qga_target_parse(const char *operand, const char *qga_dir, struct qga_target *t);

/* The operands, or when there are none and stdin is not a terminal, one per
 * line on stdin (blank and '#' lines skipped). Returns 0, EXIT_USAGE for a
 * bad operand or EXIT_DATAERR for a bad stdin line, with the reason in err. */
int qga_targets_from_args(int argc, char *const argv[], const char *qga_dir,
                          struct qga_target **out, size_t *n, char *err, size_t errlen);

/* Every QEMU guest that NODE owns (PVE_DIR/.vmlist), that runs (its pid file
 * in QGA_DIR) and whose live config enables the agent, in VMID order.
 * 0, or -1 with the reason in err. */
int qga_targets_local(const char *pve_dir, const char *node, const char *qga_dir,
                      struct qga_target **out, size_t *n, char *err, size_t errlen);

void qga_targets_free(struct qga_target *t, size_t n);

/* The guests of a one-shot agent tool: with all, qga_targets_local; else
 * qga_targets_from_args. 0, or the exit code with the reason in err:
 * EXIT_USAGE for --all with operands, no guests on a terminal or a bad
 * operand, EXIT_DATAERR for a bad stdin line, EXIT_UNAVAILABLE for an
 * unreadable .vmlist. */
int qga_targets_get(int all, const char *pve_dir, const char *node, const char *qga_dir, int argc,
                    char *const argv[], struct qga_target **out, size_t *n, char *err,
                    size_t errlen);

#endif
