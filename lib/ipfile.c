#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipfile.h"
#include "log.h"
#include "util.h"

/* An IP file is a handful of lines; anything larger is not ours. */
#define IPFILE_MAX (64 * 1024)

int
ipaddr_parse(const char *s, struct ipaddr *out)
{
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, s, out->a) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (strchr(s, ':') && inet_pton(AF_INET6, s, out->a) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -1;
}

void
ipaddr_format(const struct ipaddr *ip, char out[IPADDR_STRLEN])
{
	if (!inet_ntop(ip->family, ip->a, out, IPADDR_STRLEN))
		snprintf(out, IPADDR_STRLEN, "?");
}

int
ipaddr_parse_net(const char *s, struct ipaddr *out, unsigned *len)
{
	char addr[IPADDR_STRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long l;

	if (n >= sizeof addr)
		return -1;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (ipaddr_parse(addr, out) < 0)
		return -1;
	if (!slash) {
		*len = out->family == AF_INET ? 32 : 128;
		return 0;
	}
	if (parse_ulong(slash + 1, out->family == AF_INET ? 32 : 128, &l) < 0)
		return -1;
	*len = (unsigned)l;
	return 0;
}

int
ipaddr_mask_len(const struct ipaddr *mask)
{
	unsigned bytes = mask->family == AF_INET ? 4 : 16, len = 0, i = 0;

	for (; i < bytes && mask->a[i] == 0xff; i++)
		len += 8;
	if (i < bytes) {
		uint8_t b = mask->a[i++];
		while (b & 0x80) {
			len++;
			b = (uint8_t)(b << 1);
		}
		if (b)
			return -1;
	}
	for (; i < bytes; i++)
		if (mask->a[i])
			return -1;
	return (int)len;
}

int
ipaddr_cmp(const void *a, const void *b)
{
	const struct ipaddr *x = a, *y = b;

	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	return memcmp(x->a, y->a, x->family == AF_INET ? 4 : 16);
}

size_t
ipaddr_sort_unique(struct ipaddr *v, size_t n)
{
	size_t k = 0;

	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, ipaddr_cmp);
	for (size_t i = 1; i < n; i++)
		if (ipaddr_cmp(&v[k], &v[i]) != 0)
			v[++k] = v[i];
	return k + 1;
}

/* Is ip inside prefix/len? prefix is in network byte order. */
static int
in_prefix(const struct ipaddr *ip, const uint8_t *prefix, unsigned len)
{
	unsigned bytes = len / 8, bits = len % 8;

	if (memcmp(ip->a, prefix, bytes) != 0)
		return 0;
	if (!bits)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (ip->a[bytes] & mask) == (prefix[bytes] & mask);
}

int
ipaddr_in_net(const struct ipaddr *ip, const struct ipaddr *net, unsigned len)
{
	return ip->family == net->family && len <= (ip->family == AF_INET ? 32u : 128u) &&
	       in_prefix(ip, net->a, len);
}

int
ipaddr_is_ll6(const struct ipaddr *ip)
{
	static const uint8_t ll[] = { 0xfe, 0x80 };

	return ip->family == AF_INET6 && in_prefix(ip, ll, 10);
}

struct prefix {
	uint8_t a[16];
	unsigned len;
};

int
ipaddr_is_public(const struct ipaddr *ip)
{
	static const struct prefix v4[] = {
		{ { 0 }, 8 },             /* "this network" */
		{ { 10 }, 8 },            /* RFC 1918 */
		{ { 100, 64 }, 10 },      /* CGNAT, RFC 6598 */
		{ { 127 }, 8 },           /* loopback */
		{ { 169, 254 }, 16 },     /* link-local */
		{ { 172, 16 }, 12 },      /* RFC 1918 */
		{ { 192, 0, 0 }, 24 },    /* IETF protocol assignments */
		{ { 192, 0, 2 }, 24 },    /* TEST-NET-1 */
		{ { 192, 168 }, 16 },     /* RFC 1918 */
		{ { 198, 18 }, 15 },      /* benchmarking, RFC 2544 */
		{ { 198, 51, 100 }, 24 }, /* TEST-NET-2 */
		{ { 203, 0, 113 }, 24 },  /* TEST-NET-3 */
		{ { 224 }, 4 },           /* multicast */
		{ { 240 }, 4 },           /* reserved, and the broadcast address */
	};
	static const struct prefix v6[] = {
		{ { 0x20, 0x01, 0x0d, 0xb8 }, 32 }, /* documentation, RFC 3849 */
		{ { 0x3f, 0xff }, 20 },             /* documentation, RFC 9637 */
		{ { 0x20, 0x01, 0x00, 0x02 }, 48 }, /* benchmarking, RFC 5180 */
	};
	static const uint8_t global[] = { 0x20 };

	if (ip->family == AF_INET) {
		for (size_t i = 0; i < ARRAY_LEN(v4); i++)
			if (in_prefix(ip, v4[i].a, v4[i].len))
				return 0;
		return 1;
	}
	/* Only global unicast (2000::/3) is routed; that leaves out ::, ::1,
	 * v4-mapped, fc00::/7, fe80::/10, ff00::/8 and the rest. */
	if (!in_prefix(ip, global, 3))
		return 0;
	for (size_t i = 0; i < ARRAY_LEN(v6); i++)
		if (in_prefix(ip, v6[i].a, v6[i].len))
			return 0;
	return 1;
}

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

static int
write_one(const char *dir, uint32_t vmid, const struct ipaddr *v, size_t n,
          const struct ipaddr *old, size_t nold, struct ipfile_stats *st)
{
	char *path = xasprintf("%s/%u", dir, vmid);
	struct buf text = { 0 }, was = { 0 };
	int rc;

	format_list(&text, v, n, "\n");
	rc = write_file_if_changed(path, text.data, text.len, 0644);
	if (rc < 0) {
		log_err("%s: cannot write: %m", path);
		st->failed++;
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
			log_err("%s: cannot remove: %m", path);
			st->failed++;
			rc = -1;
		} else {
			log_info("%s: removed, its addresses were all seen on other guests", path);
			st->removed++;
		}
		free(path);
	} else if (!*dir_ok && mkdir_p(dir, 0755) < 0) {
		log_err("%s: cannot create: %m", dir);
		st->failed++;
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
ipfile_prune(const char *dir, const struct vmlist *l, struct ipfile_stats *st)
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
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			log_err("%s/%s: cannot remove: %m", dir, de->d_name);
			st->failed++;
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
            const uint32_t *owned, size_t nowned, const struct vmlist *prune_by)
{
	char *dir = xasprintf("%s/%s", config_dir, IPFILE_SUBDIR);
	struct ipfile_stats st = { 0 };
	int rc = 0;

	if (ipfile_update(dir, found, n, merge, owned, nowned, &st) < 0)
		rc = -1;
	if (prune_by && ipfile_prune(dir, prune_by, &st) < 0)
		rc = -1;
	if (rc)
		log_err("%s: %u change(s) not made; pmxcfs may lack quorum, retry later", dir,
		        st.failed);
	free(dir);
	return rc;
}

/* Below this many guests one thread reads them all; above, reading and
 * parsing spread over the CPUs (at most LOAD_THREADS_MAX). */
#define LOAD_THREADS_FROM 512
#define LOAD_THREADS_MAX 4

struct load_job {
	const char *pve_dir, *node;
	const struct vmlist *l;
	const int *dirfd;     /* GUEST_QEMU, GUEST_LXC */
	struct node_guest *g; /* indexed like l->e */
	unsigned char *ok;
	size_t first, step;
};

static void *
load_worker(void *arg)
{
	const struct load_job *j = arg;
	struct buf text = { 0 }; /* one buffer for every file */

	for (size_t i = j->first; i < j->l->n; i += j->step) {
		const struct vm_owner *o = &j->l->e[i];
		int dirfd = j->dirfd[o->type == GUEST_LXC];
		struct node_guest *g = &j->g[i];
		char name[32];

		if (strcmp(o->node, j->node) != 0 || dirfd < 0)
			continue;
		/* Relative to the directory: no path walk per file. */
		snprintf(name, sizeof name, "%u.conf", o->vmid);
		if (read_file_at(dirfd, name, GUEST_CONF_MAX, &text) < 0) {
			if (errno != ENOENT)
				log_warn("%s/nodes/%s/%s/%s: cannot read: %m", j->pve_dir, j->node,
				         guest_type_dir(o->type), name);
			continue;
		}
		g->vmid = o->vmid;
		g->type = o->type;
		guest_conf_parse(text.data, text.len, o->type, &g->conf);
		if (g->conf.nbad)
			log_warn("%s/nodes/%s/%s/%s:%u: malformed line ignored (%u in this file)",
			         j->pve_dir, j->node, guest_type_dir(o->type), name,
			         g->conf.first_bad, g->conf.nbad);
		j->ok[i] = 1;
	}
	buf_free(&text);
	return NULL;
}

size_t
node_guests_load(const char *pve_dir, const char *node, const struct vmlist *l,
                 struct node_guest **out)
{
	struct load_job jobs[LOAD_THREADS_MAX];
	pthread_t tid[LOAD_THREADS_MAX];
	int dirfd[2] = { -1, -1 };
	size_t n = 0, mine = 0, nthreads = 1, started = 1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct node_guest *g = xcalloc(l->n, sizeof *g);
	unsigned char *ok = xcalloc(l->n, 1);

	for (int t = 0; t < 2; t++) {
		char *dir = xasprintf("%s/nodes/%s/%s", pve_dir, node, guest_type_dir(t));
		dirfd[t] = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd[t] < 0 && errno != ENOENT)
			log_warn("%s: cannot open: %m", dir);
		free(dir);
	}
	for (size_t i = 0; i < l->n; i++)
		mine += strcmp(l->e[i].node, node) == 0;
	if (mine >= LOAD_THREADS_FROM && ncpu > 1)
		nthreads = ncpu < LOAD_THREADS_MAX ? (size_t)ncpu : LOAD_THREADS_MAX;
	for (size_t t = 0; t < LOAD_THREADS_MAX; t++)
		jobs[t] = (struct load_job){ pve_dir, node, l, dirfd, g, ok, t, nthreads };
	while (started < nthreads &&
	       pthread_create(&tid[started], NULL, load_worker, &jobs[started]) == 0)
		started++;
	/* This thread does its own share, and those no thread could be made for. */
	load_worker(&jobs[0]);
	for (size_t t = started; t < nthreads; t++)
		load_worker(&jobs[t]);
	for (size_t t = 1; t < started; t++)
		pthread_join(tid[t], NULL);
	for (size_t i = 0; i < l->n; i++)
		if (ok[i])
			g[n++] = g[i];
	for (int t = 0; t < 2; t++)
		if (dirfd[t] >= 0)
			close(dirfd[t]);
	free(ok);
	*out = g;
	return n;
}

void
node_guests_free(struct node_guest *g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		guest_conf_free(&g[i].conf);
	free(g);
}

size_t
node_guests_open(const char *pve_dir, const char *node, struct vmlist *l, struct node_guest **out)
{
	char *nodedir = xasprintf("%s/nodes/%s", pve_dir, node), err[256];
	struct stat st;
	int from_file;

	if (stat(nodedir, &st) < 0)
		die(errno == ENOENT ? EXIT_CONFIG : EXIT_UNAVAILABLE, "%s: %m (see --node)",
		    nodedir);
	free(nodedir);
	if (vmlist_load(pve_dir, l, &from_file, err, sizeof err) < 0)
		die(EXIT_UNAVAILABLE, "%s", err);
	return node_guests_load(pve_dir, node, l, out);
}
