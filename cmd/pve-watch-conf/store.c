/* What the watcher keeps under STATE/watch:
 *
 *   owners                        the state: a header line, "seq N" (the last
 *                                 number given to an event), the owner map
 *                                 the numbered events lead to ("VMID TYPE
 *                                 NODE" lines), "held VMID SINCE_MS" lines
 *                                 (a mass disappearance held back) and
 *                                 "event SEQ TIME_MS EVENT VMID TYPE PEER
 *                                 CONF" lines (events not confirmed yet),
 *                                 written whole, atomically
 *   guests/{qemu-server,lxc}/VMID.conf     a copy of each of this node's guests
 *   destroyed/{qemu-server,lxc}/VMID.conf  the copy a destroy event hands out,
 *                                 kept DESTROYED_KEEP_SECS after the event
 *   lock                          one watcher per state dir
 *
 * The copies keep pmxcfs's layout so a hook that takes the VMID from the
 * file name ("100.conf") works on them as on the live file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "watch.h"

#define STATE_HEADER "pve-watch-conf 2"
#define STATE_HEADER_V1 "pve-watch-conf 1" /* the map only: read, never written */
#define STATE_MAX (64 * 1024 * 1024)

static const char *const subdirs[] = {
	"guests/qemu-server",
	"guests/lxc",
	"destroyed/qemu-server",
	"destroyed/lxc",
};

int
store_open(struct store *s, const char *state_dir, char *err, size_t errlen)
{
	char *lock;

	memset(s, 0, sizeof *s);
	s->lock_fd = -1;
	s->dir = xasprintf("%s/watch", state_dir);
	s->owners = xasprintf("%s/owners", s->dir);
	for (size_t i = 0; i < ARRAY_LEN(subdirs); i++) {
		char *p = xasprintf("%s/%s", s->dir, subdirs[i]);

		if (mkdir_p(p, 0700) < 0) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	lock = xasprintf("%s/lock", s->dir);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s: %s", lock,
		         errno == EWOULDBLOCK ? "another pve-watch-conf uses this state dir"
		                              : strerror(errno));
		free(lock);
		return -1;
	}
	free(lock);
	if (access(s->dir, W_OK) < 0) {
		snprintf(err, errlen, "%s: %s", s->dir, strerror(errno));
		return -1;
	}
	return 0;
}

void
store_close(struct store *s)
{
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->dir);
	free(s->owners);
	memset(s, 0, sizeof *s);
	s->lock_fd = -1;
}

static int
parse_owner_line(char *line, struct vm_owner *o)
{
	char *vmid = strtok(line, " "), *type = strtok(NULL, " "), *node = strtok(NULL, " ");

	memset(o, 0, sizeof *o);
	if (!vmid || !type || !node || strtok(NULL, " ") || parse_vmid(vmid, &o->vmid) < 0 ||
	    guest_type_parse(type, &o->type) < 0 || !node_name_valid(node))
		return -1;
	memcpy(o->node, node, strlen(node) + 1);
	return 0;
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* "SEQ TIME_MS EVENT VMID TYPE PEER CONF" (CONF and PEER "-": none). */
static int
parse_event_line(char *line, struct pending *p)
{
	char *f[6], *rest = line;
	uint64_t t;

	memset(p, 0, sizeof *p);
	for (int i = 0; i < 6; i++) {
		char *sp = strchr(rest, ' ');

		if (!sp || sp == rest)
			return -1;
		*sp = '\0';
		f[i] = rest;
		rest = sp + 1;
	}
	if (!*rest || parse_u64(f[0], &p->seq) < 0 || p->seq == 0 || parse_u64(f[1], &t) < 0 ||
	    t > INT64_MAX || guest_event_parse(f[2], &p->ev.kind) < 0 ||
	    parse_vmid(f[3], &p->ev.vmid) < 0 || guest_type_parse(f[4], &p->ev.type) < 0 ||
	    (strcmp(f[5], "-") != 0 && !node_name_valid(f[5])))
		return -1;
	p->time_ms = (int64_t)t;
	if (strcmp(f[5], "-") != 0)
		snprintf(p->ev.peer, sizeof p->ev.peer, "%s", f[5]);
	if (strcmp(rest, "-") != 0)
		p->conf = xstrdup(rest);
	return 0;
}

static int
parse_held_line(char *line, struct held *h)
{
	char *sp = strchr(line, ' ');
	uint64_t t;

	if (!sp)
		return -1;
	*sp = '\0';
	if (parse_vmid(line, &h->vmid) < 0 || parse_u64(sp + 1, &t) < 0 || t > INT64_MAX)
		return -1;
	h->since_ms = (int64_t)t;
	return 0;
}

void
pending_free(struct pending *p)
{
	free(p->conf);
	p->conf = NULL;
}

void
saved_free(struct saved *sv)
{
	for (size_t i = 0; i < sv->nbox; i++)
		pending_free(&sv->box[i]);
	free(sv->box);
	free(sv->held);
	vmlist_free(&sv->map);
	memset(sv, 0, sizeof *sv);
}

/* Which part of the file a line belongs to; they come in this order. */
enum part { P_HEADER, P_SEQ, P_MAP, P_HELD, P_EVENTS };

int
store_load(struct store *s, struct saved *out, int *found, char *err, size_t errlen)
{
	struct buf b = { 0 };
	size_t cap = 0;
	unsigned lineno = 0;
	enum part part = P_HEADER;
	int v1 = 0;
	char *p, *nl;

	memset(out, 0, sizeof *out);
	*found = 0;
	if (read_file(s->owners, STATE_MAX, &b) < 0) {
		int e = errno;

		buf_free(&b);
		if (e == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", s->owners, strerror(e));
		return -1;
	}
	for (p = b.data; p < b.data + b.len; p = nl + 1) {
		struct vm_owner o;

		lineno++;
		nl = memchr(p, '\n', b.data + b.len - p);
		if (!nl) {
			snprintf(err, errlen, "%s line %u: truncated", s->owners, lineno);
			goto fail;
		}
		*nl = '\0';
		if (strlen(p) != (size_t)(nl - p)) {
			snprintf(err, errlen, "%s line %u: NUL byte", s->owners, lineno);
			goto fail;
		}
		if (part == P_HEADER) {
			v1 = strcmp(p, STATE_HEADER_V1) == 0;
			if (!v1 && strcmp(p, STATE_HEADER) != 0) {
				snprintf(err, errlen, "%s line 1: not \"%s\" or \"%s\"", s->owners,
				         STATE_HEADER_V1, STATE_HEADER);
				goto fail;
			}
			part = v1 ? P_MAP : P_SEQ;
			continue;
		}
		if (part == P_SEQ) {
			if (strncmp(p, "seq ", 4) != 0 || parse_u64(p + 4, &out->seq) < 0) {
				snprintf(err, errlen, "%s line %u: want \"seq N\"", s->owners, lineno);
				goto fail;
			}
			part = P_MAP;
			continue;
		}
		if (!v1 && strncmp(p, "held ", 5) == 0 && part <= P_HELD) {
			struct held h;

			if (parse_held_line(p + 5, &h) < 0 ||
			    (out->nheld && h.vmid <= out->held[out->nheld - 1].vmid)) {
				snprintf(err, errlen, "%s line %u: want \"held VMID MS\", in order",
				         s->owners, lineno);
				goto fail;
			}
			out->held = xreallocarray(out->held, out->nheld + 1, sizeof *out->held);
			out->held[out->nheld++] = h;
			part = P_HELD;
			continue;
		}
		if (!v1 && strncmp(p, "event ", 6) == 0) {
			struct pending e;

			if (parse_event_line(p + 6, &e) < 0 || e.seq > out->seq ||
			    (out->nbox && e.seq <= out->box[out->nbox - 1].seq)) {
				pending_free(&e);
				snprintf(err, errlen,
				         "%s line %u: want \"event SEQ MS EVENT VMID TYPE PEER CONF\", "
				         "in order",
				         s->owners, lineno);
				goto fail;
			}
			out->box = xreallocarray(out->box, out->nbox + 1, sizeof *out->box);
			out->box[out->nbox++] = e;
			part = P_EVENTS;
			continue;
		}
		if (part != P_MAP || parse_owner_line(p, &o) < 0) {
			snprintf(err, errlen, "%s line %u: want \"VMID qemu|lxc NODE\"", s->owners,
			         lineno);
			goto fail;
		}
		if (out->map.n && o.vmid <= out->map.e[out->map.n - 1].vmid) {
			snprintf(err, errlen, "%s line %u: guest %u out of order", s->owners,
			         lineno, o.vmid);
			goto fail;
		}
		if (out->map.n == cap) {
			cap = cap ? cap * 2 : 64;
			out->map.e = xreallocarray(out->map.e, cap, sizeof *out->map.e);
		}
		out->map.e[out->map.n++] = o;
	}
	if (lineno == 0) {
		snprintf(err, errlen, "%s: empty", s->owners);
		goto fail;
	}
	if (part == P_SEQ) {
		snprintf(err, errlen, "%s line 2: want \"seq N\"", s->owners);
		goto fail;
	}
	buf_free(&b);
	*found = 1;
	return 0;
fail:
	buf_free(&b);
	saved_free(out);
	return -2;
}

int
store_save(struct store *s, const struct saved *sv)
{
	const struct vmlist *m = &sv->map;
	struct buf b = { 0 };
	int rc;

	buf_grow(&b, m->n * 24 + sv->nbox * 128 + 64);
	buf_printf(&b, STATE_HEADER "\nseq %" PRIu64 "\n", sv->seq);
	for (size_t i = 0; i < m->n; i++)
		buf_printf(&b, "%u %s %s\n", m->e[i].vmid, guest_type_name(m->e[i].type),
		           m->e[i].node);
	for (size_t i = 0; i < sv->nheld; i++)
		buf_printf(&b, "held %u %" PRId64 "\n", sv->held[i].vmid, sv->held[i].since_ms);
	for (size_t i = 0; i < sv->nbox; i++) {
		const struct pending *p = &sv->box[i];

		buf_printf(&b, "event %" PRIu64 " %" PRId64 " %s %u %s %s %s\n", p->seq, p->time_ms,
		           guest_event_name(p->ev.kind), p->ev.vmid, guest_type_name(p->ev.type),
		           p->ev.peer[0] ? p->ev.peer : "-", p->conf ? p->conf : "-");
	}
	rc = write_file_if_changed(s->owners, b.data, b.len, 0600);
	buf_free(&b);
	return rc < 0 ? -1 : 0;
}

char *
store_copy_path(const struct store *s, enum guest_type t, uint32_t vmid)
{
	return xasprintf("%s/guests/%s/%u.conf", s->dir, guest_type_dir(t), vmid);
}

static char *
destroyed_path(const struct store *s, enum guest_type t, uint32_t vmid)
{
	return xasprintf("%s/destroyed/%s/%u.conf", s->dir, guest_type_dir(t), vmid);
}

int
store_refresh_copy(struct store *s, const char *live, enum guest_type t, uint32_t vmid,
                   int *live_failed)
{
	struct buf text = { 0 };
	char *path = store_copy_path(s, t, vmid);
	int rc, e;

	/* A copy is a cache of pmxcfs, not a record: written atomically (a
	 * hook never reads half a file), but not synced. */
	*live_failed = 0;
	if (guest_conf_read(live, &text) < 0) {
		*live_failed = 1;
		rc = -1;
	} else {
		rc = write_copy_if_changed(path, text.data, text.len, 0600);
	}
	e = errno;
	buf_free(&text);
	free(path);
	errno = e;
	return rc;
}

char *
store_retire_copy(struct store *s, enum guest_type t, uint32_t vmid)
{
	char *from = store_copy_path(s, t, vmid), *to = destroyed_path(s, t, vmid);
	int moved = rename(from, to) == 0, e = errno;

	free(from);
	/* Not there: this event was cut short by a restart after the move. */
	if (!moved && !(e == ENOENT && access(to, R_OK) == 0)) {
		free(to);
		return NULL;
	}
	utimensat(AT_FDCWD, to, NULL, 0); /* the retention counts from the event */
	return to;
}

void
store_drop_copy(struct store *s, enum guest_type t, uint32_t vmid)
{
	char *p = store_copy_path(s, t, vmid);

	if (unlink(p) < 0 && errno != ENOENT)
		log_warn("%s: %s", p, strerror(errno));
	free(p);
}

static void
prune_dir(const char *dir, enum guest_type t, const struct vmlist *cur, const char *node,
          time_t older_than)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		log_warn("%s: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		uint32_t vmid;
		struct stat st;
		int drop;

		if (guest_conf_name_vmid(de->d_name, &vmid) < 0)
			continue;
		if (cur) {
			const struct vm_owner *o = vmlist_find(cur, vmid);

			drop = !o || o->type != t || strcmp(o->node, node) != 0;
		} else {
			drop = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			       st.st_mtime < older_than;
		}
		if (drop && unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			log_warn("%s/%s: %s", dir, de->d_name, strerror(errno));
	}
	closedir(d);
}

void
store_prune(struct store *s, const struct vmlist *cur, const char *node)
{
	time_t cutoff = time(NULL) - DESTROYED_KEEP_SECS;

	for (size_t i = 0; i < ARRAY_LEN(subdirs); i++) {
		char *p = xasprintf("%s/%s", s->dir, subdirs[i]);
		enum guest_type t = i % 2 ? GUEST_LXC : GUEST_QEMU;

		prune_dir(p, t, i < 2 ? cur : NULL, node, cutoff);
		free(p);
	}
}
