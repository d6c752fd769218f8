/* vm-power: guest power for an ssh key, as its forced command. */
#ifndef VM_POWER_H
#define VM_POWER_H

#include <stdint.h>

/* Who called, for the audit line. */
struct caller {
	char key[128];  /* --key-name, else the key's comment in authorized_keys, else "-" */
	char fp[64];    /* "SHA256:..." as sshd logs it, or "" without ExposeAuthInfo */
	char from[64];  /* the client's address (SSH_CONNECTION), or "-" */
};

/* What the call was and how it ended. */
struct audit {
	char command[160];    /* SSH_ORIGINAL_COMMAND, made printable */
	const char *verb;     /* NULL until known */
	uint32_t vmid;        /* 0 until known */
	const char *outcome;  /* ok, failed, timeout, refused */
	char detail[300];
};

/* Fills c from --key-name (may be NULL), SSH_USER_AUTH with the
 * authorized_keys file that names the key, and SSH_CONNECTION. */
void caller_identify(struct caller *c, const char *key_name, const char *authorized_keys);

/* One audit line to the journal (its native socket at path), with fields;
 * to standard error when the journal does not take it. */
void audit_send(const char *journal, const struct caller *c, const struct audit *a);

/* s made printable (anything else as \xNN), cut to fit out. */
void printable(const char *s, char *out, size_t len);

#endif
