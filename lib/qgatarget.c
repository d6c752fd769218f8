#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "guest.h"
#include "guestconf.h"
#include "log.h"
#include "parse.h"
#include "qgatarget.h"
#include "vmlist.h"

int
qga_target_parse(const char *operand, const char *qga_dir, struct qga_target *t)
{
	uint32_t vmid = 0;

	memset(t, 0, sizeof *t);
	if (strchr(operand, '/')) {
		t->path = xstrdup(operand);
	} else if (parse_vmid(operand, &vmid) == 0) {
		t->vmid = vmid;
		t->path = qga_socket_path(qga_dir, vmid);
	} else {
		return -1;
	}
	t->label = xstrdup(operand);
	return 0;
}

static void
targets_add(struct qga_target **v, size_t *n, const struct qga_target *t)
{
	*v = xreallocarray(*v, *n + 1, sizeof **v);
	(*v)[(*n)++] = *t;
}

int
qga_targets_from_args(int argc, char *const argv[], const char *qga_dir, struct qga_target **out,
                      size_t *n, char *err, size_t errlen)
{
	struct qga_target t;
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	for (int i = 0; i < argc; i++) {
		if (qga_target_parse(argv[i], qga_dir, &t) < 0) {
			snprintf(err, errlen, "%s: not a VMID or a socket path", argv[i]);
			return EXIT_USAGE;
		}
		targets_add(out, n, &t);
	}
	if (argc > 0 || isatty(STDIN_FILENO))
		return 0;
	while (getline(&line, &cap, stdin) >= 0) {
		char *s = trim_space(line);
		lineno++;
		if (!*s || *s == '#')
			continue;
		if (qga_target_parse(s, qga_dir, &t) < 0) {
			snprintf(err, errlen, "stdin:%u: not a VMID or a socket path", lineno);
			rc = EXIT_DATAERR;
			break;
		}
		targets_add(out, n, &t);
	}
	free(line);
	return rc;
}

int
qga_targets_local(const char *pve_dir, const char *node, const char *qga_dir,
                  struct qga_target **out, size_t *n, char *err, size_t errlen)
{
	struct vmlist l;
	int from_file;

	*out = NULL;
	*n = 0;
	if (vmlist_load(pve_dir, &l, &from_file, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < l.n; i++) {
		const struct vm_owner *o = &l.e[i];
		struct guest_conf conf;
		struct qga_target t = { 0 };
		char *path;
		int on;

		if (o->type != GUEST_QEMU || strcmp(o->node, node) != 0)
			continue;
		path = guest_conf_path(pve_dir, node, GUEST_QEMU, o->vmid);
		if (guest_conf_load(path, GUEST_QEMU, &conf) < 0) {
			free(path); /* gone since .vmlist was written: not ours any more */
			continue;
		}
		on = guest_conf_agent_enabled(&conf);
		guest_conf_free(&conf);
		free(path);
		if (!on || !qemu_running_pid(qga_dir, o->vmid))
			continue;
		t.vmid = o->vmid;
		t.label = xasprintf("%u", o->vmid);
		t.path = qga_socket_path(qga_dir, o->vmid);
		targets_add(out, n, &t);
	}
	vmlist_free(&l);
	return 0;
}

void
qga_targets_free(struct qga_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].label);
		free(t[i].path);
	}
	free(t);
}

int
qga_targets_get(int all, const char *pve_dir, const char *node, const char *qga_dir, int argc,
                char *const argv[], struct qga_target **out, size_t *n, char *err, size_t errlen)
{
	int rc;

	*out = NULL;
	*n = 0;
	if (all && argc > 0) {
		snprintf(err, errlen, "--all takes no operands");
		return EXIT_USAGE;
	}
	if (!all && argc == 0 && isatty(STDIN_FILENO)) {
		snprintf(err, errlen, "no guests given");
		return EXIT_USAGE;
	}
	if (all)
		return qga_targets_local(pve_dir, node, qga_dir, out, n, err, errlen) < 0
		           ? EXIT_UNAVAILABLE
		           : 0;
	rc = qga_targets_from_args(argc, argv, qga_dir, out, n, err, errlen);
	if (rc) {
		qga_targets_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}
