#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "log.h"
#include "nodeguests.h"

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

int
node_guests_open(const char *pve_dir, const char *node, struct vmlist *l, struct node_guest **out,
                 size_t *n, char *err, size_t errlen)
{
	char *nodedir = xasprintf("%s/nodes/%s", pve_dir, node);
	struct stat st;
	int from_file, code = 0;

	*out = NULL;
	*n = 0;
	memset(l, 0, sizeof *l);
	if (stat(nodedir, &st) < 0) {
		code = errno == ENOENT ? EXIT_CONFIG : EXIT_UNAVAILABLE;
		snprintf(err, errlen, "%s: %s (see --node)", nodedir, strerror(errno));
	} else if (vmlist_load(pve_dir, l, &from_file, err, errlen) < 0) {
		code = EXIT_UNAVAILABLE;
	} else {
		*n = node_guests_load(pve_dir, node, l, out);
	}
	free(nodedir);
	return code;
}
