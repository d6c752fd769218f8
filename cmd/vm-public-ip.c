/* vm-public-ip: the addresses this node's guests report themselves: QEMU
 * guests through their agent (guest-network-get-interfaces), containers
 * from their network namespace. Public ones only unless --all. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_addr.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest.h"
#include "guestconf.h"
#include "ipfile.h"
#include "log.h"
#include "nl.h"
#include "nodeguests.h"
#include "opt.h"
#include "qga.h"
#include "util.h"
#include "vmlist.h"

#define MAX_ADDRESSES 64     /* per guest, by default (--max-addresses) */
#define MAX_ADDRESSES_LIMIT 65536

struct ct_pid {
	uint32_t vmid;
	pid_t pid;
};

struct opts {
	const char *pve_dir, *node, *config_dir, *run_dir, *cgroup_dir;
	struct ct_pid *ct_pids;
	size_t nct_pids;
	int timeout_ms, all, print_only, prune;
	size_t max_addresses;
};

struct found {
	struct vm_ip *v;
	size_t n, cap;
	unsigned skipped; /* guests that should have answered and did not */
};

static const char usage_text[] =
    "usage: vm-public-ip [-anv] [--timeout SECS] [--run-dir DIR] [--cgroup-dir DIR] "
    "[--ct-pid VMID=PID]\n"
    "                    [--max-addresses N]\n";

static const char help_text[] =
    "Asks every running QEMU guest of this node with the agent enabled for its\n"
    "addresses (guest-network-get-interfaces), reads every running container's\n"
    "addresses from its network namespace, prints \"VMID IP\" lines and writes\n"
    "CONFIG_DIR/failoverip/VMID. Only public addresses unless --all.\n\n"
    "  -a, --all               keep every address (private, link-local, ...)\n"
    "      --timeout SECS      deadline per guest (default 5; \"500ms\" works too)\n"
    "      --max-addresses N   keep at most N addresses a guest (default 64)\n"
    "      --no-prune          keep files of guests that no longer exist\n"
    "  -v, --verbose           only print, write nothing (also -n, --dry-run)\n"
    "      --run-dir DIR       VMID.pid and VMID.qga (default /var/run/qemu-server;\n"
    "                          also --qga-dir)\n"
    "      --cgroup-dir DIR    where lxc/VMID lives (default /sys/fs/cgroup)\n"
    "      --ct-pid VMID=PID   the init process of container VMID (may be repeated)\n"
    "      --config-dir DIR    default /etc/pve/pvekit\n"
    "      --pve-dir DIR       default /etc/pve\n"
    "      --node NAME         default: this host's name\n"
    "  -h, --help              this help\n"
    "  -V, --version           print the version\n";

static void
add_ct_pid(struct opts *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	unsigned long pid;
	uint32_t vmid;
	char *id;

	if (!eq)
		usage_error("--ct-pid %s: want VMID=PID", arg);
	id = xstrndup(arg, eq - arg);
	if (parse_vmid(id, &vmid) < 0 || parse_ulong(eq + 1, 4194304, &pid) < 0 || !pid)
		usage_error("--ct-pid %s: want VMID=PID", arg);
	free(id);
	o->ct_pids = xreallocarray(o->ct_pids, o->nct_pids + 1, sizeof *o->ct_pids);
	o->ct_pids[o->nct_pids++] = (struct ct_pid){ vmid, (pid_t)pid };
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		O_TIMEOUT = 256,
		O_MAX_ADDRESSES,
		O_NO_PRUNE,
		O_RUN_DIR,
		O_CGROUP_DIR,
		O_CT_PID,
		O_CONFIG_DIR,
		O_PVE_DIR,
		O_NODE
	};
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "max-addresses", required_argument, NULL, O_MAX_ADDRESSES },
		{ "no-prune", no_argument, NULL, O_NO_PRUNE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "run-dir", required_argument, NULL, O_RUN_DIR },
		{ "qga-dir", required_argument, NULL, O_RUN_DIR },
		{ "cgroup-dir", required_argument, NULL, O_CGROUP_DIR },
		{ "ct-pid", required_argument, NULL, O_CT_PID },
		{ "config-dir", required_argument, NULL, O_CONFIG_DIR },
		{ "pve-dir", required_argument, NULL, O_PVE_DIR },
		{ "node", required_argument, NULL, O_NODE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	*o = (struct opts){ .pve_dir = "/etc/pve",
		            .config_dir = "/etc/pve/pvekit",
		            .run_dir = RUN_DIR_DEFAULT,
		            .cgroup_dir = CGROUP_DIR_DEFAULT,
		            .node = local_node_name(),
		            .timeout_ms = 5000,
		            .max_addresses = MAX_ADDRESSES,
		            .prune = 1 };
	while ((c = getopt_long(argc, argv, "avnhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->all = 1;
			break;
		case 'v':
		case 'n':
			o->print_only = 1;
			break;
		case O_TIMEOUT:
			o->timeout_ms = (int)opt_duration_ms("--timeout", optarg, 1, 600000);
			break;
		case O_MAX_ADDRESSES:
			o->max_addresses =
			    opt_count("--max-addresses", optarg, 1, MAX_ADDRESSES_LIMIT);
			break;
		case O_NO_PRUNE:
			o->prune = 0;
			break;
		case O_RUN_DIR:
			o->run_dir = optarg;
			break;
		case O_CGROUP_DIR:
			o->cgroup_dir = optarg;
			break;
		case O_CT_PID:
			add_ct_pid(o, optarg);
			break;
		case O_CONFIG_DIR:
			o->config_dir = optarg;
			break;
		case O_PVE_DIR:
			o->pve_dir = optarg;
			break;
		case O_NODE:
			o->node = opt_node(optarg);
			break;
		case 'h':
			opt_help();
		case 'V':
			opt_version();
		default:
			opt_bad();
		}
	}
	opt_no_operands(argc, argv);
}

static void
found_add(struct found *f, uint32_t vmid, const struct ipaddr *ip, int all)
{
	if (!all && !ipaddr_is_public(ip))
		return;
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 64;
		f->v = xreallocarray(f->v, f->cap, sizeof *f->v);
	}
	f->v[f->n++] = (struct vm_ip){ vmid, *ip };
}

/* What one guest reports is guest input, and the file it ends up in lives in
 * the cluster-wide pmxcfs: the addresses of vmid, found from first on, are
 * sorted and cut to the lowest max, saying so. */
static void
found_cap(struct found *f, size_t first, uint32_t vmid, size_t max)
{
	size_t n;

	if (f->n == first) /* nothing (f->v may still be NULL) */
		return;
	n = vm_ip_sort_unique(f->v + first, f->n - first);
	if (n > max) {
		log_warn("guest %u: %zu addresses, more than --max-addresses %zu: kept the first %zu",
		         vmid, n, max, max);
		n = max;
	}
	f->n = first + n;
}

/* --- QEMU guests: the agent --- */

/* One address entry of guest-network-get-interfaces. Windows agents append
 * "%scope" to IPv6 link-local addresses. */
static int
agent_address(json_t *a, struct ipaddr *ip, const char **why)
{
	const char *type = json_string_value(json_object_get(a, "ip-address-type"));
	const char *addr = json_string_value(json_object_get(a, "ip-address"));
	char buf[IPADDR_STRLEN + 16];

	if (!json_is_object(a) || !type || !addr) {
		*why = "an address without ip-address or ip-address-type";
		return -1;
	}
	snprintf(buf, sizeof buf, "%s", addr);
	buf[strcspn(buf, "%")] = '\0';
	if (ipaddr_parse(buf, ip) < 0 ||
	    strcmp(type, ip->family == AF_INET ? "ipv4" : "ipv6") != 0) {
		*why = "an ip-address that does not parse as its ip-address-type";
		return -1;
	}
	return 0;
}

/* Checks the whole reply first: a guest with a malformed answer is skipped,
 * not half-recorded. */
static int
agent_reply(json_t *ret, uint32_t vmid, struct found *f, int all, const char **why)
{
	size_t first = f->n, i, j;
	json_t *ifc, *a;

	if (!json_is_array(ret)) {
		*why = "reply is not an array of interfaces";
		return -1;
	}
	json_array_foreach(ret, i, ifc)
	{
		json_t *addrs = json_object_get(ifc, "ip-addresses");

		if (!json_is_object(ifc)) {
			*why = "an interface that is not an object";
			goto bad;
		}
		if (!addrs)
			continue; /* an interface without addresses */
		if (!json_is_array(addrs)) {
			*why = "ip-addresses is not an array";
			goto bad;
		}
		json_array_foreach(addrs, j, a)
		{
			struct ipaddr ip;
			if (agent_address(a, &ip, why) < 0)
				goto bad;
			found_add(f, vmid, &ip, all);
		}
	}
	return 0;
bad:
	f->n = first;
	return -1;
}

static void
ask_agents(const struct opts *o, const struct node_guest *g, size_t ng, struct found *f)
{
	static const char cmd[] = "{\"execute\":\"guest-network-get-interfaces\"}";
	struct qga_call *calls = xcalloc(ng ? ng : 1, sizeof *calls);
	uint32_t *vmids = xcalloc(ng ? ng : 1, sizeof *vmids);
	size_t n = 0;

	for (size_t i = 0; i < ng; i++) {
		if (g[i].type != GUEST_QEMU)
			continue;
		if (!guest_conf_agent_enabled(&g[i].conf)) {
			log_debug("guest %u: agent not enabled", g[i].vmid);
			continue;
		}
		if (!qemu_running_pid(o->run_dir, g[i].vmid)) {
			log_debug("guest %u: not running", g[i].vmid);
			continue;
		}
		char *sock = qga_socket_path(o->run_dir, g[i].vmid);
		qga_call_init(&calls[n], sock, cmd, o->timeout_ms);
		vmids[n++] = g[i].vmid;
		free(sock);
	}
	qga_run(calls, n, open_files_budget(QGA_FD_RESERVE));
	for (size_t i = 0; i < n; i++) {
		const char *why;
		size_t first = f->n;

		if (calls[i].result != QGA_OK) {
			log_warn("guest %u: %s", vmids[i], calls[i].detail);
			f->skipped++;
		} else if (agent_reply(calls[i].ret, vmids[i], f, o->all, &why) < 0) {
			log_warn(
			    "guest %u: %s: unexpected answer to guest-network-get-interfaces: %s",
			    vmids[i], calls[i].path, why);
			f->skipped++;
		} else {
			found_cap(f, first, vmids[i], o->max_addresses);
		}
		qga_call_cleanup(&calls[i]);
	}
	free(calls);
	free(vmids);
}

/* --- containers: their network namespace --- */

/* The CT's init process: given with --ct-pid, or found in its cgroup. 0
 * when the CT is not running. */
static pid_t
ct_init_pid(const struct opts *o, uint32_t vmid)
{
	for (size_t i = 0; i < o->nct_pids; i++)
		if (o->ct_pids[i].vmid == vmid)
			return o->ct_pids[i].pid;
	return lxc_init_pid(o->cgroup_dir, vmid);
}

static void
read_containers(const struct opts *o, const struct node_guest *g, size_t ng, struct found *f)
{
	for (size_t i = 0; i < ng; i++) {
		struct nl_ifaddr *a;
		size_t n;
		char path[64], err[256];
		pid_t pid;
		int fd;

		if (g[i].type != GUEST_LXC)
			continue;
		if (!(pid = ct_init_pid(o, g[i].vmid))) {
			log_debug("guest %u: not running", g[i].vmid);
			continue;
		}
		snprintf(path, sizeof path, "/proc/%ld/ns/net", (long)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			log_warn("guest %u: %s: %m", g[i].vmid, path);
			f->skipped++;
			continue;
		}
		if (nl_addr_dump(fd, &a, &n, err, sizeof err) < 0) {
			log_warn("guest %u: %s: %s", g[i].vmid, path, err);
			f->skipped++;
		} else {
			size_t first = f->n;
			for (size_t k = 0; k < n; k++)
				if (!(a[k].flags & IFA_F_DADFAILED))
					found_add(f, g[i].vmid, &a[k].ip, o->all);
			found_cap(f, first, g[i].vmid, o->max_addresses);
			free(a);
		}
		close(fd);
	}
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct vmlist l = { 0 };
	struct node_guest *g;
	struct found f = { 0 };
	size_t ng;
	int rc = 0, code;
	char err[512];

	log_init("vm-public-ip");
	opt_usage(usage_text, help_text);
	parse_args(argc, argv, &o);

	if ((code = node_guests_open(o.pve_dir, o.node, &l, &g, &ng, err, sizeof err)))
		die(code, "%s", err);

	read_containers(&o, g, ng, &f);
	ask_agents(&o, g, ng, &f);
	f.n = vm_ip_sort_unique(f.v, f.n);
	vm_ip_print(f.v, f.n);
	if (!o.print_only) {
		int r = ipfile_sync(o.config_dir, f.v, f.n, IPFILE_REPLACE, NULL, 0,
		                    o.prune ? &l : NULL, o.pve_dir);

		if (r < 0)
			rc = r == IPFILE_REFUSED ? EXIT_CANTCREAT : EXIT_TEMPFAIL;
	}
	if (!rc && f.skipped)
		rc = 1;

	free(f.v);
	free(o.ct_pids);
	node_guests_free(g, ng);
	vmlist_free(&l);
	return rc;
}
