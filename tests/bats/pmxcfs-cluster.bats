#!/usr/bin/env bats
# What only a second node shows: two real pmxcfs (Proxmox's own, from
# ../shared/peers/pmxcfs) joined by Debian's corosync, pve1 and pve2, each in
# its own namespaces (start-cluster). The programs run on pve1; pve2 makes
# the changes another node makes.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	load pmxcfs
	pmxcfs_need
	command -v corosync >/dev/null || apt-get install -y -qq corosync >/dev/null 2>&1 ||
		skip "corosync is not installed and apt-get could not install it"
	cluster_start
}

teardown_file() {
	load common
	load pmxcfs
	cluster_stop
}

setup() {
	load common
	load pmxcfs
	load pve-watch-conf
	pvekit_setup
	on pve1 sh -c 'rm -rf /etc/pve/pvekit /etc/pve/nodes/*/qemu-server/* /etc/pve/nodes/*/lxc/*'
	# both see the same empty tree before a test starts
	wait_until 10 bash -c '[ -z "$(nsenter -t '"$PVE2"' -m -u -- ls /etc/pve/nodes/pve1/qemu-server /etc/pve/nodes/pve2/qemu-server | grep conf)" ]'
	PVE=/etc/pve
	STATE=$T/state
	WATCH_WRAP=(nsenter -t "$PVE1" -m -u --)
}

teardown() {
	local rc=0
	watch_teardown || rc=1
	pvekit_teardown
	return $rc
}

# inotify_on NODE DIR: every event in DIR on NODE, in $T/inotify.
inotify_on() {
	start_bg on "$1" inotifywait -m -e create,moved_to,moved_from,delete,close_write,modify \
		--format '%e %f' "$2" >"$T/inotify" 2>"$T/inotify.err"
	wait_until 10 grep -q "Watches established" "$T/inotify.err"
}

@test "a migration made by the other node: no inotify event on this one; the poll sees it" {
	on pve2 pmxcfs-sim create /etc/pve pve2 qemu 200 "$FIXTURES/conf/qemu-plain.conf"
	wait_until 10 on pve1 test -e /etc/pve/nodes/pve2/qemu-server/200.conf
	inotify_on pve1 /etc/pve/nodes/pve1/qemu-server
	watch_start
	# qemu-server on the source: "lock: migrate", then the rename into the
	# target's dir; both on pve2
	on pve2 pmxcfs-sim lock /etc/pve 200 migrate
	on pve2 mv /etc/pve/nodes/pve2/qemu-server/200.conf /etc/pve/nodes/pve1/qemu-server/200.conf
	wait_event "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf"
	grep -qx 'lock: migrate' "$STATE/watch/guests/qemu-server/200.conf"
	# nothing reached inotify on pve1
	run cat "$T/inotify"
	assert_output ""
	# "qm unlock" on the target is a write on pve1: that one is seen here
	on pve1 pmxcfs-sim lock /etc/pve 200 ""
	wait_until 10 grep -q "MOVED_TO 200.conf" "$T/inotify"
	# the same rename made on pve1 raises MOVED_FROM here at once
	on pve1 mv /etc/pve/nodes/pve1/qemu-server/200.conf /etc/pve/nodes/pve2/qemu-server/200.conf
	wait_until 10 grep -q "MOVED_FROM 200.conf" "$T/inotify"
	wait_event "migrate-out 200 qemu pve2 /etc/pve/nodes/pve2/qemu-server/200.conf"
	assert_equal "$(cat "$T/out")" "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf
migrate-out 200 qemu pve2 /etc/pve/nodes/pve2/qemu-server/200.conf"
	no_warnings
}

@test "a guest taken away by the other node (HA recovery): one migrate-out, though the old path lingers here" {
	on pve1 pmxcfs-sim create /etc/pve pve1 qemu 100
	on pve1 pmxcfs-sim create /etc/pve pve1 lxc 101
	wait_until 10 on pve2 test -e /etc/pve/nodes/pve1/lxc/101.conf
	watch_start
	# steal_service: the CRM master on pve2 renames pve1's config
	on pve1 stat /etc/pve/nodes/pve1/qemu-server/100.conf >/dev/null # in pve1's cache now
	on pve2 mv /etc/pve/nodes/pve1/qemu-server/100.conf /etc/pve/nodes/pve2/qemu-server/100.conf
	wait_event "migrate-out 100 qemu pve2 /etc/pve/nodes/pve2/qemu-server/100.conf"
	# pve1's kernel may show the old path for up to a second (FUSE entry
	# cache); listings and .vmlist are fresh
	wait_until 3 bash -c "! nsenter -t $PVE1 -m -u -- test -e /etc/pve/nodes/pve1/qemu-server/100.conf"
	# and a destroy made by the other node
	on pve2 rm /etc/pve/nodes/pve1/lxc/101.conf
	wait_event "destroy 101 lxc - $STATE/watch/destroyed/lxc/101.conf"
	on pve1 pmxcfs-sim create /etc/pve pve1 qemu 999
	wait_event "create 999 qemu - /etc/pve/nodes/pve1/qemu-server/999.conf"
	assert_equal "$(cat "$T/out")" "migrate-out 100 qemu pve2 /etc/pve/nodes/pve2/qemu-server/100.conf
destroy 101 lxc - $STATE/watch/destroyed/lxc/101.conf
create 999 qemu - /etc/pve/nodes/pve1/qemu-server/999.conf"
	no_warnings
}

# corosync_stop NODE / corosync_start NODE: what "systemctl stop corosync"
# does on that node; the new corosync's pid goes where stop-cluster finds it.
corosync_stop() {
	local pid
	pid=$(cat "$CLUSTER/$1/corosync.pid")
	kill -TERM "$pid"
	wait_until 20 bash -c "! kill -0 $pid 2>/dev/null"
}

corosync_start() {
	local pid
	case $1 in pve1) pid=$PVE1 ;; pve2) pid=$PVE2 ;; esac
	setsid nsenter -t "$pid" -m -u -n -i -- corosync -f </dev/null >>"$CLUSTER/$1/corosync.out" 2>&1 3>&- &
	echo $! >"$CLUSTER/$1/corosync.pid"
}

@test "quorum lost (the other node's corosync stopped): every program keeps reading, writes fail saying quorum, nothing is lost" {
	local hostns ns
	# a guest NIC with an address in pve1's neighbour table
	hostns=$(netns_add host)
	ip -n "$hostns" link add vmbr0 address 02:00:00:00:00:01 type bridge
	ip -n "$hostns" link set vmbr0 up
	ip -n "$hostns" addr add 100.128.0.1/24 dev vmbr0
	ns=$(netns_add g1)
	ip -n "$hostns" link add gv1 type veth peer name eth0 netns "$ns"
	ip -n "$hostns" link set gv1 master vmbr0 up
	ip -n "$ns" link set eth0 address BC:24:11:00:01:00
	ip -n "$ns" link set eth0 up
	ip -n "$ns" addr add 100.128.0.100/24 dev eth0
	ip netns exec "$hostns" ping -q -c 1 -W 5 100.128.0.100 >/dev/null
	printf 'agent: 1\nname: a\nnet0: virtio=BC:24:11:00:01:00,bridge=vmbr0\n' >"$T/100.conf"
	on pve1 pmxcfs-sim create /etc/pve pve1 qemu 100 "$T/100.conf"
	on pve2 pmxcfs-sim create /etc/pve pve2 qemu 200
	# guest 100 runs here: its agent, its tcpcheck config in /etc/pve/pvekit
	RUN=$T/run
	mkdir -p "$RUN"
	fake_qemu "$RUN" 100
	start_qga "$RUN/100.qga"
	wait_until 5 qga-ping -q -t 500 "$RUN/100.qga"
	start_bg "$TOP/bench/tcpcheck-ports" --open 1 >"$T/ports"
	wait_until 20 grep -qx ready "$T/ports"
	on pve1 mkdir -p /etc/pve/pvekit/tcpcheck
	printf 'ip=127.0.0.1\nportsall=%s\ncheck_interval=0.1\nfail_interval=0.1\n' \
		"$(awk '$1 == "open" { print $2 }' "$T/ports")" |
		on pve1 sh -c 'cat >/etc/pve/pvekit/tcpcheck/100.conf'
	watch_start
	start_bg on pve1 tcpcheck --watch --run-dir "$RUN" --lxc-dir "$T/lxc" --interval 0.1 >"$T/tcpcheck" 2>"$T/tcpcheck.err"
	start_bg on pve1 qga-ping --watch --qga-dir "$RUN" --interval 0.2 --timeout 500 --grace 0 >"$T/qga" 2>"$T/qga.err"
	wait_until 15 grep -qx '100 healthy up' "$T/tcpcheck"
	wait_until 15 grep -qx '100 watch running' "$T/qga"

	corosync_stop pve2
	wait_until 30 bash -c "nsenter -t $PVE1 -m -u -- cat /etc/pve/.members | grep -q '\"quorate\": 0'"
	# reading goes on: the map, the configs, the neighbours, the agents
	run -0 on pve1 cat /etc/pve/.vmlist
	assert_output --partial '"200": { "node": "pve2"'
	run -0 on pve1 pve-watch-conf --state-dir "$T/once" --once
	run -0 on pve1 qga-ping --all --qga-dir "$RUN"
	run -0 on pve1 vm-public-ip -v --run-dir "$RUN" --cgroup-dir "$T/none"
	# writing fails, and says why
	run -75 nsenter -t "$PVE1" -m -u --net="/run/netns/$hostns" -- vm-ip-from-arp
	assert_line "100 100.128.0.100"
	assert_line "vm-ip-from-arp: /etc/pve/pvekit/failoverip: cannot create: Permission denied (pmxcfs refuses writes without quorum)"
	assert_line "vm-ip-from-arp: /etc/pve/pvekit/failoverip: 1 change(s) not made; pmxcfs refuses writes without quorum, retry later"
	run -1 on pve1 mkdir /etc/pve/pvekit/new
	assert_output --partial "Permission denied"

	corosync_start pve2
	wait_until 60 quorate pve1
	wait_until 60 quorate pve2
	# nothing lost: the watcher still follows, the run again writes
	on pve2 mv /etc/pve/nodes/pve2/qemu-server/200.conf /etc/pve/nodes/pve1/qemu-server/200.conf
	wait_event "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf"
	run -0 nsenter -t "$PVE1" -m -u --net="/run/netns/$hostns" -- vm-ip-from-arp
	run -0 on pve2 cat /etc/pve/pvekit/failoverip/100
	assert_output "100.128.0.100"
	assert_equal "$(cat "$T/out")" "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf"
	no_warnings
	# the watchers went on all along, with nothing to say about it
	assert_equal "$(cat "$T/tcpcheck")" "100 grace watching 127.0.0.1
100 healthy up"
	assert_equal "$(cat "$T/qga")" "100 watch running"
	run cat "$T/tcpcheck.err" "$T/qga.err"
	refute_output --partial quorum
	refute_output --partial "Permission denied"
}
