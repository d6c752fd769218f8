/* What the watcher keeps under STATE/watch:
 *
 *   owners                        the owner map the printed events left,
 *                                 "VMID TYPE NODE" lines after a header line
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "watch.h"

#define STATE_HEADER "pve-watch-conf 1"
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

int
store_load(struct store *s, struct vmlist *out, int *found, char *err, size_t errlen)
{
	struct buf b = { 0 };
	size_t cap = 0;
	unsigned lineno = 0;
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
		if (lineno == 1) {
			if (strcmp(p, STATE_HEADER) != 0) {
				snprintf(err, errlen, "%s line 1: not \"%s\"", s->owners,
				         STATE_HEADER);
				goto fail;
			}
			continue;
		}
		if (parse_owner_line(p, &o) < 0) {
			snprintf(err, errlen, "%s line %u: want \"VMID qemu|lxc NODE\"", s->owners,
			         lineno);
			goto fail;
		}
		if (out->n && o.vmid <= out->e[out->n - 1].vmid) {
			snprintf(err, errlen, "%s line %u: guest %u out of order", s->owners,
			         lineno, o.vmid);
			goto fail;
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 64;
			out->e = xreallocarray(out->e, cap, sizeof *out->e);
		}
		out->e[out->n++] = o;
	}
	if (lineno == 0) {
		snprintf(err, errlen, "%s: empty", s->owners);
		goto fail;
	}
	buf_free(&b);
	*found = 1;
	return 0;
fail:
	buf_free(&b);
	vmlist_free(out);
	return -2;
}

int
store_save(struct store *s, const struct vmlist *m)
{
	struct buf b = { 0 };
	int rc;

	buf_grow(&b, m->n * 24 + 32);
	buf_puts(&b, STATE_HEADER "\n");
	for (size_t i = 0; i < m->n; i++)
		buf_printf(&b, "%u %s %s\n", m->e[i].vmid, guest_type_name(m->e[i].type),
		           m->e[i].node);
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
