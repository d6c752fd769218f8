/* pve-start-plan: the plan file and its steps. */
#ifndef PVE_START_PLAN_H
#define PVE_START_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "guestconf.h"

enum step_kind { STEP_START, STEP_WAIT_AGENT, STEP_WAIT_PORT, STEP_DELAY };

/* A guest as the plan names it: a VMID, or a name (the config's name:)
 * that plan_resolve turns into one. */
struct guest_ref {
	uint32_t vmid; /* 0 until a name is resolved; stays 0 when not here */
	char *name;    /* as written when it was a name, else NULL */
	const struct plan_guest *g; /* this node's guest, or NULL */
};

struct step {
	enum step_kind kind;
	unsigned line;
	char *text; /* the step as written, words joined by one space */
	struct guest_ref *guests; /* start: one or more; waits: one, or none
	                             for a port at an address */
	size_t nguests;
	struct sockaddr_storage addr; /* wait port: an address in the plan */
	socklen_t addrlen;            /* 0: the guest's address */
	uint16_t port;
	double secs;  /* delay; a wait's deadline (< 0: the default) */
};

struct plan {
	struct step *steps;
	size_t n;
};

/* This node's guests, for names and checks. */
struct plan_guest {
	uint32_t vmid;
	enum guest_type type;
	struct guest_conf conf;
	int start_failed; /* a start step of this run failed */
};

/* Parses the plan text; every bad line is reported as "NAME:LINE: reason".
 * Returns how many lines were bad (the plan is then unusable). */
unsigned plan_parse(const char *text, size_t len, const char *name, struct plan *p);
/* Points every guest reference at this node's guest (g, n in vmid order)
 * and resolves names; a name that two guests here carry is reported like a
 * bad line. Returns how many such errors. */
unsigned plan_resolve(struct plan *p, const char *name, struct plan_guest *g, size_t n);
void plan_free(struct plan *p);

#endif
