/* Guests that the new map lacks. A destroy is a guest gone from the whole
 * cluster, so the map alone does not make one:
 *
 * - pmxcfs renames a guest config (a migration, an HA recovery) by deleting
 *   the guest from the map and registering it again under two separate
 *   lock holds (memdb.c memdb_rename), so a read can land in between and
 *   miss it; a map can also be wrong in a way that still parses (a
 *   .vmlist of {"version": 9} with every config still there). pmxcfs moves
 *   the file before it touches the map, so while a config of the guest is
 *   under some node the last map's entry stands, and the next read says
 *   where it went.
 * - Many of this node's guests gone at once, configs and all, is more
 *   likely a broken view of pmxcfs than many destroys: a mass disappearance
 *   (at least MASS_MIN guests and at least half of this node's) is warned
 *   about and held for --hold; a guest still gone then is reported
 *   destroyed, one that came back never was. The hold's start is saved with
 *   the state, so a restart or a --once run later goes on counting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watch.h"

#define MASS_MIN 2

static int
here(const struct watcher *w, const struct vm_owner *e)
{
	return strcmp(e->node, w->o.node) == 0;
}

static struct held *
held_find(const struct watcher *w, uint32_t vmid)
{
	for (size_t i = 0; i < w->nheld; i++)
		if (w->held[i].vmid == vmid)
			return &w->held[i];
	return NULL;
}

static int
cmp_held(const void *a, const void *b)
{
	const struct held *x = a, *y = b;

	return x->vmid < y->vmid ? -1 : x->vmid > y->vmid;
}

/* "100, 101, 102 and 3 more" */
static void
name_some(char *out, size_t len, const uint32_t *v, size_t n)
{
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && i < 5 && off < len; i++)
		off += snprintf(out + off, len - off, "%s%u", i ? ", " : "", v[i]);
	if (n > 5 && off < len)
		snprintf(out + off, len - off, " and %zu more", n - 5);
}

void
vanish_hold(struct watcher *w, struct vmlist *new)
{
	const struct vmlist *old = &w->cur;
	uint32_t *gone = xcalloc(old->n + 1, sizeof *gone); /* here, missing, no config */
	struct vm_owner *keep = NULL;
	size_t ngone = 0, nmissing = 0, nhere = 0, nkeep = 0, nconf, nfresh = 0, nheld = 0;
	int64_t now = real_ns() / 1000000, wake = 0;

	for (size_t i = 0; i < old->n; i++) {
		const struct vm_owner *e = &old->e[i];
		int conf;

		nhere += here(w, e);
		if (vmlist_find(new, e->vmid))
			continue;
		nmissing += here(w, e);
		/* A scan is the config tree itself: nothing to ask it again. */
		conf = w->src.from == VMLIST_FROM_FILE ? guest_conf_anywhere(w->o.pve_dir, e->vmid) : 0;
		if (conf != 0) {
			log_debug("guest %u: not in the map, but a config of it is still there%s; "
			          "waiting for the next read",
			          e->vmid, conf < 0 ? " (or cannot be looked for)" : "");
			keep = xreallocarray(keep, nkeep + 1, sizeof *keep);
			keep[nkeep++] = *e;
		} else if (here(w, e)) {
			gone[ngone++] = e->vmid;
		}
	}
	if (nmissing >= MASS_MIN && nmissing * 2 >= nhere && !w->suspicious) {
		w->suspicious = 1;
		log_warn("%zu of this node's %zu guests are missing from the owner map at once: "
		         "suspicious; none is reported destroyed while a config of it is on some "
		         "node, nor before --hold has passed",
		         nmissing, nhere);
	} else if (!nmissing && w->suspicious) {
		w->suspicious = 0;
		log_info("owner map: no guest of this node is missing any more");
	}

	/* A new mass disappearance starts its hold; one already held goes on. */
	nconf = nkeep;
	for (size_t i = 0; i < ngone; i++)
		nfresh += !held_find(w, gone[i]);
	if (w->o.hold_ms > 0 && nfresh >= MASS_MIN && nfresh * 2 >= nhere) {
		uint32_t *fresh = xcalloc(nfresh, sizeof *fresh);
		char names[128];
		size_t k = 0;

		for (size_t i = 0; i < ngone; i++) {
			if (held_find(w, gone[i]))
				continue;
			fresh[k++] = gone[i];
			w->held = xreallocarray(w->held, w->nheld + 1, sizeof *w->held);
			w->held[w->nheld++] = (struct held){ gone[i], now };
		}
		qsort(w->held, w->nheld, sizeof *w->held, cmp_held);
		name_some(names, sizeof names, fresh, nfresh);
		log_warn("guests %s: gone from the map and from every node's configs, with "
		         "%zu of this node's %zu guests at once; holding them for %g s before "
		         "they count as destroyed",
		         names, nfresh, nhere, w->o.hold_ms / 1000.0);
		free(fresh);
		w->dirty = 1;
	}

	/* Each held guest: still within its hold (stays in the map), confirmed
	 * (its destroy goes out now), or back (in the map, or a config of it
	 * is: never gone). */
	for (size_t i = 0; i < w->nheld; i++) {
		struct held *h = &w->held[i];
		const struct vm_owner *e = vmlist_find(old, h->vmid);
		int missing = e && here(w, e) && !vmlist_find(new, h->vmid);
		int64_t left = h->since_ms + w->o.hold_ms - now;

		for (size_t k = 0; k < nconf && missing; k++)
			missing = keep[k].vmid != h->vmid;
		if (missing && left > 0) {
			keep = xreallocarray(keep, nkeep + 1, sizeof *keep);
			keep[nkeep++] = *e;
			if (!wake || left < wake)
				wake = left;
			w->held[nheld++] = *h;
			continue;
		}
		if (missing)
			log_warn("guest %u: still gone after --hold (%g s): reporting it destroyed",
			         h->vmid, w->o.hold_ms / 1000.0);
		else
			log_info("guest %u: back; it was never destroyed", h->vmid);
		w->dirty = 1;
	}
	w->nheld = nheld;
	w->hold_wake = wake ? mono_ms() + wake : 0;
	for (size_t i = 0; i < nkeep; i++)
		vmlist_add(new, &keep[i]);
	free(keep);
	free(gone);
}
