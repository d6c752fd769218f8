# Helpers for the suites against the real pmxcfs (tests/bats/pmxcfs*.bats):
# Proxmox's own pmxcfs from ../shared/peers/pmxcfs (a test peer, never part
# of the package), built by the peer's build script into build/pmxcfs-peer
# once, run in a private mount and UTS namespace whose /etc/pve is the real
# FUSE file system (start-local), or as two nodes joined by corosync
# (start-cluster). Every command that should see that /etc/pve runs through
# in_pve (nsenter -t PID -m -u). Where ../shared is absent, as on a user's
# clone, tests/run leaves these files out with one line; run directly, they
# skip. PVEKIT_SHARED overrides where ../shared is.

PMXCFS_PEER=${PVEKIT_SHARED:-$TOP/../shared}/peers/pmxcfs
PMXCFS_OUT=$TOP/build/pmxcfs-peer

# pmxcfs_need: (setup_file) skips without the peer or what it needs; builds it.
pmxcfs_need() {
	[ -x "$PMXCFS_PEER/start-local" ] ||
		skip "the real pmxcfs is not here ($PMXCFS_PEER, as on a user's clone)"
	[ "$(id -u)" = 0 ] || skip "the real pmxcfs needs root"
	[ -c /dev/fuse ] || skip "the real pmxcfs needs /dev/fuse"
	mkdir -p "$PMXCFS_OUT"
	# one build at a time (the suites of two checkouts may run at once)
	flock "$PMXCFS_OUT/.lock" "$PMXCFS_PEER/build" "$PMXCFS_OUT" >&2 ||
		{ echo "pmxcfs: the peer's build failed" >&2; return 1; }
	export PMXCFS_BIN=$PMXCFS_OUT/pmxcfs
}

# pmxcfs_start NODE: a local-mode pmxcfs (one node, quorum forced) with its
# state in the file's temp dir; exports PMX_PID.
pmxcfs_start() {
	PMX_STATE=$BATS_FILE_TMPDIR/pmxcfs
	PMX_PID=$("$PMXCFS_PEER/start-local" "$PMXCFS_BIN" "$PMX_STATE" "$1") || return 1
	export PMX_PID PMX_STATE
}

pmxcfs_stop() {
	[ -z "${PMX_PID:-}" ] || "$PMXCFS_PEER/stop-local" "$PMX_PID"
}

# in_pve CMD...: CMD where /etc/pve is the real pmxcfs (and uname -n its node).
in_pve() { nsenter -t "$PMX_PID" -m -u -- "$@"; }

# pve_reset: no guests, no pvekit files, only this node's dirs (between tests).
pve_reset() {
	in_pve sh -c 'rm -rf /etc/pve/pvekit /etc/pve/nodes/*/qemu-server/* /etc/pve/nodes/*/lxc/*
		for d in /etc/pve/nodes/*; do [ "$d" = /etc/pve/nodes/$(uname -n) ] || rm -rf "$d"; done
		mkdir -p /etc/pve/nodes/$(uname -n)/qemu-server /etc/pve/nodes/$(uname -n)/lxc'
}

# sim CMD ARGS...: pmxcfs-sim's Proxmox-like file operations on the real
# /etc/pve (pmxcfs renders the map itself).
sim() {
	local cmd=$1
	shift
	in_pve pmxcfs-sim "$cmd" /etc/pve "$@"
}

# vmlist_node VMID: the node .vmlist names for VMID (nothing when absent).
vmlist_node() {
	in_pve cat /etc/pve/.vmlist | sed -n "s/^\"$1\": { \"node\": \"\\([^\"]*\\)\".*/\\1/p"
}

# The two-node cluster: one at a time on this machine (its network namespaces
# have fixed names), so it is taken under a lock that waits for another
# checkout's suite to finish with it.
CLUSTER_LOCK=/tmp/pvekit-pmxcfs-cluster.lock

# cluster_start: pve1 and pve2 quorate; exports PVE1 and PVE2 (pmxcfs PIDs)
# and CLUSTER (its directory).
cluster_start() {
	local out
	CLUSTER=$BATS_FILE_TMPDIR/cluster
	exec {CLUSTER_FD}>"$CLUSTER_LOCK"
	flock -w 600 "$CLUSTER_FD" || { echo "cluster: another suite holds $CLUSTER_LOCK" >&2; return 1; }
	out=$("$PMXCFS_PEER/start-cluster" "$PMXCFS_BIN" "$CLUSTER") || return 1
	PVE1=$(awk '$1 == "pve1" { print $2 }' <<<"$out")
	PVE2=$(awk '$1 == "pve2" { print $2 }' <<<"$out")
	export CLUSTER PVE1 PVE2 CLUSTER_FD
}

cluster_stop() {
	[ -z "${CLUSTER:-}" ] || [ ! -e "$CLUSTER/.pmx2-cluster" ] || "$PMXCFS_PEER/stop-cluster" "$CLUSTER" >&2
	[ -z "${CLUSTER_FD:-}" ] || exec {CLUSTER_FD}>&-
}

# on NODE CMD...: CMD on node pve1 or pve2 (mount and UTS namespaces; the
# network namespace too with on_net).
on() {
	local pid
	case $1 in pve1) pid=$PVE1 ;; pve2) pid=$PVE2 ;; *) echo "on: no node $1" >&2; return 1 ;; esac
	shift
	nsenter -t "$pid" -m -u -- "$@"
}

on_net() {
	local pid
	case $1 in pve1) pid=$PVE1 ;; pve2) pid=$PVE2 ;; *) echo "on_net: no node $1" >&2; return 1 ;; esac
	shift
	nsenter -t "$pid" -m -u -n -- "$@"
}

# quorate NODE: .members on NODE says quorate.
quorate() { on "$1" cat /etc/pve/.members | grep -q '"quorate": 1'; }
