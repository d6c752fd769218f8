#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "ipfile.h"
#include "log.h"
#include "parse.h"

/* An IP file is a handful of lines; anything larger is not ours. */
#define IPFILE_MAX (64 * 1024)

int
vm_ip_cmp(const void *a, const void *b)
{
	const struct vm_ip *x = a, *y = b;

	if (x->vmid != y->vmid)
		return x->vmid < y->vmid ? -1 : 1;
	return ipaddr_cmp(&x->ip, &y->ip);
}

size_t
vm_ip_sort_unique(struct vm_ip *v, size_t n)
{
	size_t k = 0;

	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, vm_ip_cmp);
	for (size_t i = 1; i < n; i++)
		if (vm_ip_cmp(&v[k], &v[i]) != 0)
			v[++k] = v[i];
	return k + 1;
}

void
vm_ip_print(const struct vm_ip *v, size_t n)
{
	char s[IPADDR_STRLEN];

	for (size_t i = 0; i < n; i++) {
		ipaddr_format(&v[i].ip, s);
		printf("%u %s\n", v[i].vmid, s);
	}
	fflush(stdout);
}

int
ipfile_read(const char *dir, uint32_t vmid, struct ipaddr **out, size_t *n)
{
	char *path = xasprintf("%s/%u", dir, vmid);
	struct buf b = { 0 };
	unsigned lineno = 0;

	*out = NULL;
	*n = 0;
	if (read_file(path, IPFILE_MAX, &b) < 0) {
		int e = errno;
		free(path);
		buf_free(&b);
		errno = e;
		return e == ENOENT ? 0 : -1;
	}
	for (char *line = b.data, *next; line && *line; line = next) {
		struct ipaddr ip;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line += strspn(line, " \t");
		line[strcspn(line, " \t\r")] = '\0';
		if (!*line || *line == '#')
			continue;
		if (ipaddr_parse(line, &ip) < 0) {
			log_warn("%s:%u: not an IP address, ignored", path, lineno);
			continue;
		}
		*out = xreallocarray(*out, *n + 1, sizeof **out);
		(*out)[(*n)++] = ip;
	}
	*n = ipaddr_sort_unique(*out, *n);
	buf_free(&b);
	free(path);
	return 0;
}

/* Every address found in this run, with its guest, sorted by address. */
struct seen {
	struct ipaddr ip;
	uint32_t vmid;
};

static int
seen_cmp(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	int c = ipaddr_cmp(&x->ip, &y->ip);

	if (c)
		return c;
	return x->vmid < y->vmid ? -1 : x->vmid > y->vmid;
}

/* Was ip found on a guest other than vmid? */
static int
seen_elsewhere(const struct seen *s, size_t n, const struct ipaddr *ip, uint32_t vmid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ipaddr_cmp(&s[mid].ip, ip) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && ipaddr_cmp(&s[lo].ip, ip) == 0; lo++)
		if (s[lo].vmid != vmid)
			return 1;
	return 0;
}

static void
format_list(struct buf *b, const struct ipaddr *v, size_t n, const char *sep)
{
	char s[IPADDR_STRLEN];

	for (size_t i = 0; i < n; i++) {
		ipaddr_format(&v[i], s);
		buf_puts(b, s);
		buf_puts(b, sep);
	}
}

/* Why pmxcfs refused a change: EACCES is its answer to every write
 * without quorum (dcdb_send_fuse_message), EPERM a mode or an operation it
 * never allows (cfs_fuse_chmod: only 0640, 0600 under priv/). */
static const char *
refusal(int e)
{
	switch (e) {
	case EACCES:
		return " (pmxcfs refuses writes without quorum)";
	case EPERM:
		return " (a mode or operation the file system never allows)";
	default:
		return "";
	}
}

/* Logs a change not made (what: "write", "remove", "create") and counts it. */
static void
failed(struct ipfile_stats *st, const char *path, const char *what, int e)
{
	log_err("%s: cannot %s: %s%s", path, what, strerror(e), refusal(e));
	st->failed++;
	if (e == EPERM)
		st->refused++;
	else if (e == EACCES)
		st->no_quorum++;
}

static int
write_one(const char *dir, uint32_t vmid, const struct ipaddr *v, size_t n,
          const struct ipaddr *old, size_t nold, struct ipfile_stats *st)
{
	char *path = xasprintf("%s/%u", dir, vmid);
	struct buf text = { 0 }, was = { 0 };
	int rc;

	format_list(&text, v, n, "\n");
	/* 0640: the mode pmxcfs gives (and allows for) every file outside priv/ */
	rc = write_file_if_changed(path, text.data, text.len, 0640);
	if (rc < 0) {
		failed(st, path, "write", errno);
	} else if (rc == 0) {
		st->unchanged++;
	} else {
		format_list(&was, old, nold, " ");
		text.len = 0;
		format_list(&text, v, n, " ");
		if (text.len)
			text.data[--text.len] = '\0';
		if (was.len)
			was.data[--was.len] = '\0';
		log_info("%s: %s (was: %s)", path, text.data, nold ? was.data : "none");
		st->written++;
	}
	buf_free(&text);
	buf_free(&was);
	free(path);
	return rc < 0 ? -1 : 0;
}

/* One guest's file: found[0..nfound) are its addresses of this run. */
static int
update_one(const char *dir, uint32_t vmid, const struct vm_ip *found, size_t nfound,
           enum ipfile_merge merge, const struct seen *seen, size_t nseen, int *dir_ok,
           struct ipfile_stats *st)
{
	struct ipaddr *old = NULL, *v;
	size_t nold = 0, nv = 0;
	int rc = 0;

	if (ipfile_read(dir, vmid, &old, &nold) < 0) {
		/* Keep what we cannot read: no blind overwrite. */
		log_err("%s/%u: cannot read: %m", dir, vmid);
		st->failed++;
		return -1;
	}
	v = xcalloc(nfound + nold, sizeof *v);
	for (size_t k = 0; k < nfound; k++)
		v[nv++] = found[k].ip;
	if (merge == IPFILE_KEEP_UNSEEN)
		for (size_t k = 0; k < nold; k++)
			if (!seen_elsewhere(seen, nseen, &old[k], vmid))
				v[nv++] = old[k];
	nv = ipaddr_sort_unique(v, nv);
	if (!nfound && nv == nold) {
		/* nothing found, nothing taken away: the file stays as it is */
	} else if (!nv) {
		char *path = xasprintf("%s/%u", dir, vmid);
		if (unlink(path) < 0 && errno != ENOENT) {
			failed(st, path, "remove", errno);
			rc = -1;
		} else {
			log_info("%s: removed, its addresses were all seen on other guests", path);
			st->removed++;
		}
		free(path);
	} else if (!*dir_ok && mkdir_p(dir, 0755) < 0) {
		failed(st, dir, "create", errno);
		rc = -1;
	} else {
		*dir_ok = 1;
		rc = write_one(dir, vmid, v, nv, old, nold, st);
	}
	free(v);
	free(old);
	return rc;
}

int
ipfile_update(const char *dir, const struct vm_ip *found, size_t n, enum ipfile_merge merge,
              const uint32_t *owned, size_t nowned, struct ipfile_stats *st)
{
	struct seen *seen = xcalloc(n, sizeof *seen);
	size_t i = 0, o = 0;
	int rc = 0, dir_ok = 0;

	for (size_t k = 0; k < n; k++)
		seen[k] = (struct seen){ found[k].ip, found[k].vmid };
	qsort(seen, n, sizeof *seen, seen_cmp);
	if (merge != IPFILE_KEEP_UNSEEN)
		nowned = 0;

	/* found and owned are both in vmid order: walk their union. */
	while (i < n || o < nowned) {
		uint32_t vmid =
		    i < n && (o >= nowned || found[i].vmid <= owned[o]) ? found[i].vmid : owned[o];
		size_t j = i;

		while (j < n && found[j].vmid == vmid)
			j++;
		while (o < nowned && owned[o] <= vmid)
			o++;
		if (update_one(dir, vmid, found + i, j - i, merge, seen, n, &dir_ok, st) < 0)
			rc = -1;
		i = j;
	}
	free(seen);
	return rc;
}

int
ipfile_prune(const char *dir, const struct vmlist *l, const char *pve_dir,
             struct ipfile_stats *st)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		if (errno == ENOENT)
			return 0;
		log_err("%s: cannot read: %m", dir);
		return -1;
	}
	while ((errno = 0, de = readdir(d))) {
		uint32_t vmid;

		if (parse_vmid(de->d_name, &vmid) < 0 || vmlist_find(l, vmid))
			continue;
		if (pve_dir && guest_conf_anywhere(pve_dir, vmid) != 0) {
			log_warn("%s/%s: kept: guest %u is missing from the owner map, but a config "
			         "of it is still there",
			         dir, de->d_name, vmid);
			continue;
		}
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			int e = errno;
			char *path = xasprintf("%s/%s", dir, de->d_name);

			failed(st, path, "remove", e);
			free(path);
			rc = -1;
			continue;
		}
		log_info("%s/%s: removed, guest %u no longer exists", dir, de->d_name, vmid);
		st->removed++;
	}
	if (errno) {
		log_err("%s: cannot read: %m", dir);
		rc = -1;
	}
	closedir(d);
	return rc;
}

int
ipfile_sync(const char *config_dir, const struct vm_ip *found, size_t n, enum ipfile_merge merge,
            const uint32_t *owned, size_t nowned, const struct vmlist *prune_by,
            const char *pve_dir)
{
	char *dir = xasprintf("%s/%s", config_dir, IPFILE_SUBDIR);
	struct ipfile_stats st = { 0 };
	int rc = 0;

	if (ipfile_update(dir, found, n, merge, owned, nowned, &st) < 0)
		rc = IPFILE_RETRY;
	if (prune_by && ipfile_prune(dir, prune_by, pve_dir, &st) < 0)
		rc = IPFILE_RETRY;
	if (st.refused) {
		log_err("%s: %u change(s) refused by the file system (not for want of quorum: "
		        "retrying will not help)",
		        dir, st.refused);
		rc = IPFILE_REFUSED;
	}
	if (rc && st.failed > st.refused)
		log_err("%s: %u change(s) not made; %s, retry later", dir, st.failed - st.refused,
		        st.no_quorum ? "pmxcfs refuses writes without quorum"
		                     : "pmxcfs may lack quorum");
	else if (rc && !st.failed)
		log_err("%s: not every change was made; pmxcfs may lack quorum, retry later", dir);
	free(dir);
	return rc;
}
