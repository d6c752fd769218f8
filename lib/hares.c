#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "hares.h"
#include "hastate.h"
#include "log.h"
#include "parse.h"

#define HA_RESOURCES_MAX (4 * 1024 * 1024)

static int
ha_cmp(const void *a, const void *b)
{
	const struct ha_res *x = a, *y = b;
	return x->vmid < y->vmid ? -1 : x->vmid > y->vmid;
}

int
ha_resources_load(const char *path, struct ha_res **out, size_t *n, char *err, size_t errlen)
{
	struct buf b = { 0 };
	struct ha_res *v = NULL, *cur = NULL;
	size_t nv = 0;
	char *save = NULL, *line;

	*out = NULL;
	*n = 0;
	if (read_file(path, HA_RESOURCES_MAX, &b) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* Sections of other resource types are simply not guests. */
	for (line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char state[16];

		if (line[0] != ' ' && line[0] != '\t') {
			char type[8], id[16];
			uint32_t vmid;
			cur = NULL;
			if (sscanf(line, "%7[a-z]: %15s", type, id) == 2 &&
			    (strcmp(type, "vm") == 0 || strcmp(type, "ct") == 0) &&
			    parse_vmid(id, &vmid) == 0) {
				v = xreallocarray(v, nv + 1, sizeof *v);
				cur = &v[nv++];
				cur->vmid = vmid;
				cur->type = type[0] == 'v' ? GUEST_QEMU : GUEST_LXC;
				snprintf(cur->state, sizeof cur->state, "started");
			}
		} else if (cur && sscanf(line, " state %15s", state) == 1) {
			snprintf(cur->state, sizeof cur->state, "%s",
			         strcmp(state, "enabled") == 0 ? "started" : state);
		}
	}
	buf_free(&b);
	if (nv)
		qsort(v, nv, sizeof *v, ha_cmp);
	*out = v;
	*n = nv;
	return 0;
}

const struct ha_res *
ha_find(const struct ha_res *v, size_t n, uint32_t vmid)
{
	struct ha_res key = { .vmid = vmid };

	return n ? bsearch(&key, v, n, sizeof *v, ha_cmp) : NULL;
}

void
ha_resources_init(struct ha_resources *h, const char *pve_dir)
{
	memset(h, 0, sizeof *h);
	h->path = xasprintf("%s/ha/resources.cfg", pve_dir);
	h->pve_dir = xstrdup(pve_dir);
}

void
ha_resources_refresh(struct ha_resources *h, int force)
{
	struct ha_res *v;
	size_t n;
	char err[sizeof h->err];

	if (!filestamp_changed(h->path, &h->stamp) && !force)
		return;
	if (ha_resources_load(h->path, &v, &n, err, sizeof err) < 0) {
		if (strcmp(err, h->err) != 0)
			log_err("%s", err);
		snprintf(h->err, sizeof h->err, "%s", err);
		return;
	}
	h->err[0] = '\0';
	free(h->v);
	h->v = v;
	h->n = n;
}

void
ha_resources_free(struct ha_resources *h)
{
	free(h->v);
	free(h->path);
	free(h->pve_dir);
	memset(h, 0, sizeof *h);
}

int
ha_decide(const struct ha_resources *h, enum guest_type type, uint32_t vmid, char *sid,
          size_t sidlen, char *why, size_t whylen)
{
	const struct ha_res *r = ha_find(h->v, h->n, vmid);

	sid[0] = '\0';
	if (!r || strcmp(r->state, "ignored") == 0)
		return 0;
	if (strcmp(r->state, "started") != 0) {
		snprintf(why, whylen, "HA requests state %s", r->state);
		return 1;
	}
	/* "ha-manager disarm-ha MODE", read when it matters (the CRM master
	 * rewrites the file every round): in mode ignore qm and pct manage
	 * HA's guests directly, as for "ignored" (and a crm-command would
	 * wait until arm-ha); in mode freeze nobody acts on them. */
	if (h->pve_dir) {
		enum ha_disarm d;
		char mode[32], err[300];
		if (ha_disarm_read(h->pve_dir, &d, mode, sizeof mode, err, sizeof err) < 0)
			log_warn("guest %u: %s: HA taken as armed", vmid, err);
		if (d == HA_DISARM_IGNORE)
			return 0;
		if (d == HA_DISARM_OTHER) {
			snprintf(why, whylen, "HA is disarmed (resource mode %s)", mode);
			return 1;
		}
	}
	snprintf(sid, sidlen, "%s:%u", type == GUEST_QEMU ? "vm" : "ct", vmid);
	return 0;
}
