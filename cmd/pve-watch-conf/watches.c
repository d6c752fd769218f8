/* inotify as a "look now" hint. pmxcfs reports only what this node's own
 * processes do, so these watches make local changes (a create here, a
 * migration away from here) visible at once; the poll catches the rest.
 *
 * Watched: PVE (for nodes/ appearing), PVE/nodes, PVE/nodes/NODE and the
 * node's two guest dirs. Not .vmlist or .version: pmxcfs renders them on
 * every read and no file operation ever happens on them, so inotify never
 * reports them (changes made by other nodes reach no watch at all; the
 * poll finds them).
 *
 * A watch dies with its dir (IN_IGNORED) or its mount (IN_UNMOUNT, a
 * pve-cluster restart), and a dir may appear later or be mounted over:
 * every sync compares each path's dev/inode with the watched one and
 * re-arms what changed. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "watch.h"

#define DIR_MASK                                                                                   \
	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |     \
	 IN_ONLYDIR)
#define GUEST_MASK (DIR_MASK | IN_CLOSE_WRITE)

void
watches_open(struct watches *ws, const char *pve_dir, const char *node)
{
	memset(ws, 0, sizeof *ws);
	ws->w[W_PVE].path = xstrdup(pve_dir);
	ws->w[W_NODES].path = xasprintf("%s/nodes", pve_dir);
	ws->w[W_NODE].path = xasprintf("%s/nodes/%s", pve_dir, node);
	ws->w[W_QEMU].path = xasprintf("%s/nodes/%s/qemu-server", pve_dir, node);
	ws->w[W_LXC].path = xasprintf("%s/nodes/%s/lxc", pve_dir, node);
	for (int i = 0; i < W_COUNT; i++) {
		ws->w[i].wd = -1;
		ws->w[i].mask = i >= W_QEMU ? GUEST_MASK : DIR_MASK;
	}
	ws->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ws->fd < 0)
		log_warn("inotify: %s; noticing changes by polling only%s", strerror(errno),
		         errno == EMFILE ? " (see fs.inotify.max_user_instances)" : "");
}

static void
unarm(struct watches *ws, struct watch *w)
{
	if (w->wd >= 0)
		inotify_rm_watch(ws->fd, w->wd); /* fails harmlessly when already gone */
	w->wd = -1;
}

int
watches_sync(struct watches *ws)
{
	int armed = 0;

	if (ws->fd < 0)
		return 0;
	for (int i = 0; i < W_COUNT; i++) {
		struct watch *w = &ws->w[i];
		struct stat st;

		if (stat(w->path, &st) < 0 || !S_ISDIR(st.st_mode)) {
			unarm(ws, w);
			continue;
		}
		if (w->wd >= 0 && w->dev == st.st_dev && w->ino == st.st_ino)
			continue;
		unarm(ws, w);
		w->wd = inotify_add_watch(ws->fd, w->path, w->mask);
		if (w->wd < 0) {
			if (!w->warned++)
				log_warn("%s: cannot watch: %s%s", w->path, strerror(errno),
				         errno == ENOSPC ? " (see fs.inotify.max_user_watches)"
				                         : "");
			continue;
		}
		w->warned = 0;
		w->dev = st.st_dev;
		w->ino = st.st_ino;
		armed++;
		log_debug("%s: watching", w->path);
	}
	return armed;
}

static void
add_hint(struct watch_news *news, uint32_t vmid, enum guest_type t)
{
	if (news->nhints == news->caphints) {
		news->caphints = news->caphints ? news->caphints * 2 : 64;
		news->hints = xreallocarray(news->hints, news->caphints, sizeof *news->hints);
	}
	news->hints[news->nhints++] = (struct hint){ vmid, t };
}

static void
handle(struct watches *ws, const char *node, const struct inotify_event *ev,
       struct watch_news *news)
{
	const char *name = ev->len ? ev->name : "";
	struct watch *w = NULL;
	uint32_t vmid;
	int i;

	if (ev->mask & IN_Q_OVERFLOW) {
		news->overflow = 1;
		return;
	}
	for (i = 0; i < W_COUNT; i++)
		if (ws->w[i].wd >= 0 && ws->w[i].wd == ev->wd)
			break;
	if (i == W_COUNT)
		return; /* a watch we already dropped */
	w = &ws->w[i];
	if (ev->mask & (IN_IGNORED | IN_UNMOUNT | IN_DELETE_SELF | IN_MOVE_SELF)) {
		if (ev->mask & IN_IGNORED)
			w->wd = -1;
		else
			unarm(ws, w);
		news->rearm = news->look = 1;
		return;
	}
	switch (i) {
	case W_PVE:
		if (strcmp(name, "nodes") == 0)
			news->rearm = news->look = 1;
		break;
	case W_NODES:
		if (strcmp(name, node) == 0)
			news->rearm = news->look = 1;
		break;
	case W_NODE:
		if (strcmp(name, "qemu-server") == 0 || strcmp(name, "lxc") == 0)
			news->rearm = news->look = 1;
		break;
	default:
		/* Only what pmxcfs counts as a guest: "VMID.conf", never the
		 * "VMID.conf.tmp.PID" that every config write goes through. */
		if (guest_conf_name_vmid(name, &vmid) == 0) {
			add_hint(news, vmid, i == W_QEMU ? GUEST_QEMU : GUEST_LXC);
			news->look = 1;
		}
		break;
	}
}

void
watches_read(struct watches *ws, const char *node, struct watch_news *news)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (ws->fd < 0)
		return;
	for (;;) {
		ssize_t n = read(ws->fd, buf, sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN)
				log_warn("inotify: %s", strerror(errno));
			return;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			handle(ws, node, ev, news);
			p += sizeof *ev + ev->len;
		}
	}
}

void
watches_close(struct watches *ws)
{
	for (int i = 0; i < W_COUNT; i++)
		free(ws->w[i].path);
	if (ws->fd >= 0)
		close(ws->fd);
	ws->fd = -1;
}
