/* Where the owner map comes from.
 *
 * pmxcfs renders PVE/.vmlist (every guest of the cluster and its node) and
 * PVE/.version (counters; "vmlist" moves with every change of that map). A
 * tick reads the small .version and parses .vmlist only when its counter
 * moved. Without .version the stat signature of .vmlist gates the read;
 * without .vmlist the map is derived from nodes/{*}/{qemu-server,lxc}, gated by
 * the stat signatures of those dirs. PVE/nodes/NODE must exist in every
 * case: /etc/pve without it is pmxcfs not mounted, never "no guests". */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "watch.h"

#define VMLIST_MAX (64 * 1024 * 1024)
#define VERSION_MAX (1024 * 1024)

/* Kernel file timestamps are coarse: a file changed less than this long ago
 * may change again under the same timestamp, so its stat signature is not
 * trusted to skip a read until it has settled. */
#define SETTLE_NS (2 * 1000000000LL)

void
source_init(struct source *s, const char *pve_dir, const char *node)
{
	memset(s, 0, sizeof *s);
	s->pve_dir = pve_dir;
	s->node = node;
	s->vmlist_path = xasprintf("%s/.vmlist", pve_dir);
	s->version_path = xasprintf("%s/.version", pve_dir);
	s->node_dir = xasprintf("%s/nodes/%s", pve_dir, node);
}

void
source_free(struct source *s)
{
	free(s->vmlist_path);
	free(s->version_path);
	free(s->node_dir);
	buf_free(&s->version_buf);
}

const char *
source_name(const struct source *s)
{
	return s->mode == SOURCE_SCAN ? "nodes/ scan" : ".vmlist";
}

static uint64_t
mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

/* A hash of what a change to a file or dir alters; returns whether it settled. */
static uint64_t
stat_sig(const struct stat *st, int64_t now, int *settled)
{
	int64_t m = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	uint64_t h =
	    mix(mix(mix(mix(1, (uint64_t)m), (uint64_t)st->st_size), st->st_ino), st->st_dev);

	if (now - m < SETTLE_NS)
		*settled = 0;
	return h;
}

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Signature of nodes/, nodes/N, nodes/N/qemu-server and nodes/N/lxc: a
 * guest config added, removed or renamed changes one of their mtimes. The
 * sum makes it independent of readdir order. */
static int
scan_signature(const struct source *s, uint64_t *sig, int *settled)
{
	static const char *const sub[] = { "", "/qemu-server", "/lxc" };
	char *nodes = xasprintf("%s/nodes", s->pve_dir);
	int64_t now = real_ns();
	struct dirent *de;
	struct stat st;
	uint64_t h;
	DIR *d;

	*settled = 1;
	if (stat(nodes, &st) < 0 || !(d = opendir(nodes))) {
		free(nodes);
		return -1;
	}
	h = stat_sig(&st, now, settled);
	while ((de = readdir(d))) {
		if (!node_name_valid(de->d_name))
			continue;
		for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
			char *p = xasprintf("%s/%s%s", nodes, de->d_name, sub[i]);
			uint64_t e = mix(name_hash(de->d_name), i);

			e = stat(p, &st) == 0 ? mix(e, stat_sig(&st, now, settled)) : mix(e, errno);
			h += e;
			free(p);
		}
	}
	closedir(d);
	free(nodes);
	*sig = h;
	return 0;
}

static int
fail(struct source *s, const char *path, const char *reason)
{
	snprintf(s->err, sizeof s->err, "%s: %s", path, reason);
	s->gated = 0;
	return -1;
}

static int
read_scan(struct source *s, int force, struct vmlist *out)
{
	char msg[300];
	uint64_t sig;
	int settled;

	if (scan_signature(s, &sig, &settled) < 0) {
		char *nodes = xasprintf("%s/nodes", s->pve_dir);
		int rc = fail(s, nodes, strerror(errno));

		free(nodes);
		return rc;
	}
	if (!force && s->gated && s->mode == SOURCE_SCAN && sig == s->gate_sig)
		return 0;
	if (vmlist_scan(s->pve_dir, out, msg, sizeof msg) < 0) {
		snprintf(s->err, sizeof s->err, "%s", msg);
		s->gated = 0;
		return -1;
	}
	s->mode = SOURCE_SCAN;
	s->gate_by_version = 0;
	s->gate_sig = sig;
	s->gated = settled;
	return 1;
}

int
source_read(struct source *s, int force, struct vmlist *out)
{
	uint64_t start = 0, counter = 0, sig = 0;
	char msg[300];
	struct buf b = { 0 };
	int have_version, settled = 1;
	struct stat st;

	if (stat(s->node_dir, &st) < 0)
		return fail(s, s->node_dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(s, s->node_dir, strerror(ENOTDIR));

	have_version =
	    read_file(s->version_path, VERSION_MAX, &s->version_buf) == 0 &&
	    pve_version_parse(s->version_buf.data, s->version_buf.len, "vmlist", &counter) == 0;
	if (have_version &&
	    pve_version_parse(s->version_buf.data, s->version_buf.len, "starttime", &start) < 0)
		start = 0;
	if (have_version && !force && s->gated && s->gate_by_version && s->mode == SOURCE_VMLIST &&
	    start == s->gate_start && counter == s->gate_counter)
		return 0;

	if (stat(s->vmlist_path, &st) < 0) {
		if (errno != ENOENT)
			return fail(s, s->vmlist_path, strerror(errno));
		return read_scan(s, force, out);
	}
	if (!have_version) {
		sig = stat_sig(&st, real_ns(), &settled);
		if (!force && s->gated && !s->gate_by_version && s->mode == SOURCE_VMLIST &&
		    sig == s->gate_sig)
			return 0;
	}
	if (read_file(s->vmlist_path, VMLIST_MAX, &b) < 0) {
		buf_free(&b);
		return fail(s, s->vmlist_path, strerror(errno));
	}
	if (vmlist_parse(b.data, b.len, out, msg, sizeof msg) < 0) {
		buf_free(&b);
		return fail(s, s->vmlist_path, msg);
	}
	buf_free(&b);
	vmlist_warn_skipped(s->vmlist_path, out);
	s->mode = SOURCE_VMLIST;
	s->gate_by_version = have_version;
	if (have_version) {
		s->gate_start = start;
		s->gate_counter = counter;
		/* A .vmlist older than the counter that sent us here is read again. */
		s->gated = out->version >= counter;
	} else {
		s->gate_sig = sig;
		s->gated = settled;
	}
	return 1;
}
