#!/usr/bin/env bats
# The programs against the real pmxcfs: Proxmox's own (../shared/peers/pmxcfs,
# unmodified) in local mode, one node "pve1" in a private mount and UTS
# namespace whose /etc/pve is the FUSE file system every Proxmox node has.
# Guests change as Proxmox changes them (pmxcfs-sim's file operations, run in
# there); pmxcfs renders .vmlist and .version itself.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	load pmxcfs
	pmxcfs_need
	pmxcfs_start pve1
}

teardown_file() {
	load common
	load pmxcfs
	pmxcfs_stop
}

setup() {
	load common
	load pmxcfs
	load pve-watch-conf
	pvekit_setup
	pve_reset
	PVE=/etc/pve
	STATE=$T/state
	RUN=$T/run
	mkdir -p "$RUN"
	WATCH_WRAP=(nsenter -t "$PMX_PID" -m -u --)
}

teardown() {
	local rc=0
	watch_teardown || rc=1
	pvekit_teardown
	return $rc
}

# bg_pve CMD...: CMD in the background where /etc/pve is the real pmxcfs;
# BG_PID is CMD's own pid (nsenter execs it).
bg_pve() { start_bg nsenter -t "$PMX_PID" -m -u -- "$@"; }

# A guest created on this node; once its line is out, every change made
# before it has been seen.
real_sentinel() {
	sim create pve1 qemu 999
	wait_event "create 999 qemu - /etc/pve/nodes/pve1/qemu-server/999.conf"
}

# counters_of TEXT-CMD...: the "vmlist" counter of .version, then one line
# per guest of .vmlist "VMID NODE TYPE VERSION", sorted.
vmlist_lines() {
	sed -n 's/^"\([0-9]*\)": { "node": "\([^"]*\)", "type": "\([a-z]*\)", "version": \([0-9]*\) }.*/\1 \2 \3 \4/p' | sort -n
}
counter_of() { sed -n 's/.*"vmlist": \([0-9]*\).*/\1/p'; }

# changes CMD...: one run of every kind of change, each made by CMD (which
# takes pmxcfs-sim's command and arguments without DIR).
changes() {
	"$@" create pve1 qemu 100
	"$@" create pve2 lxc 200
	"$@" edit 100 "memory: 4096"
	"$@" snapshot 100 s1
	"$@" lock 200 backup
	"$@" lock 200 ""
	"$@" migrate 100 pve2
	"$@" migrate 200 pve1
	"$@" destroy 200
	"$@" create pve1 qemu 101
}

@test "pmxcfs-sim moves the vmlist counter and each guest's version as pmxcfs does" {
	# pmxcfs counts every vmlist register and delete in "vmlist", and gives
	# each register the next number of a second counter (status.c): a write
	# through a temp file is one register, a rename between node dirs a
	# delete and a register, an unlink a delete.
	local d=$T/simtree r0 s0
	pmxcfs-sim init "$d" pve1 pve2 >/dev/null
	on_sim() { local c=$1; shift; pmxcfs-sim "$c" "$d" "$@"; }
	in_pve mkdir -p /etc/pve/nodes/pve2/qemu-server /etc/pve/nodes/pve2/lxc
	r0=$(in_pve cat /etc/pve/.version | counter_of)
	s0=$(counter_of <"$d/.version")
	changes sim
	changes on_sim
	assert_equal "$(($(counter_of <"$d/.version") - s0))" \
		"$(($(in_pve cat /etc/pve/.version | counter_of) - r0))"
	# the guests' versions, relative to the lowest
	rel() { vmlist_lines | awk 'NR == 1 { b = $4 } { print $1, $2, $3, $4 - b }'; }
	run rel < <(in_pve cat /etc/pve/.vmlist)
	assert_output "100 pve2 qemu 0
101 pve1 qemu 5"
	assert_equal "$(rel <"$d/.vmlist")" "$output"
}

@test "pve-watch-conf on the real pmxcfs: create, edit, snapshot, lock, migrate between node folders, destroy" {
	in_pve mkdir -p /etc/pve/nodes/pve2/qemu-server /etc/pve/nodes/pve2/lxc
	sim create pve2 lxc 200 "$FIXTURES/conf/lxc-debian-004.conf"
	watch_start
	sim create pve1 qemu 100 "$FIXTURES/conf/qemu-plain.conf"
	wait_event "create 100 qemu - /etc/pve/nodes/pve1/qemu-server/100.conf"
	sim edit 100 "memory: 4096"
	sim snapshot 100 before-upgrade
	sim lock 100 backup
	sim lock 100 ""
	wait_until 10 grep -qx '\[before-upgrade\]' "$STATE/watch/guests/qemu-server/100.conf"
	sim migrate 100 pve2
	wait_event "migrate-out 100 qemu pve2 /etc/pve/nodes/pve2/qemu-server/100.conf"
	sim migrate 200 pve1
	wait_event "migrate-in 200 lxc pve2 /etc/pve/nodes/pve1/lxc/200.conf"
	sim edit 200 "cores: 8"
	wait_until 10 grep -qx 'cores: 8' "$STATE/watch/guests/lxc/200.conf"
	sim destroy 200
	wait_event "destroy 200 lxc - $STATE/watch/destroyed/lxc/200.conf"
	real_sentinel
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"create 100 qemu - /etc/pve/nodes/pve1/qemu-server/100.conf" \
		"migrate-out 100 qemu pve2 /etc/pve/nodes/pve2/qemu-server/100.conf" \
		"migrate-in 200 lxc pve2 /etc/pve/nodes/pve1/lxc/200.conf" \
		"destroy 200 lxc - $STATE/watch/destroyed/lxc/200.conf" \
		"create 999 qemu - /etc/pve/nodes/pve1/qemu-server/999.conf")"
	# destroy's CONF is the last config text, the edit included
	assert_equal "$(cat "$STATE/watch/destroyed/lxc/200.conf")" \
		"$(cat "$FIXTURES/conf/lxc-debian-004.conf"; echo "cores: 8")"
	no_warnings
}

@test "pve-watch-conf | run-hooks --events on the real pmxcfs: each hook once, with a readable config" {
	local H=$T/hooks d
	for d in up.d down.d; do
		mkdir -p "$H/$d"
		printf '%s\n' '#!/bin/sh' \
			"echo \"\$PVEKIT_EVENT \$PVEKIT_VMID \${PVEKIT_PEER:--} lock=\$(sed -n 's/^lock: //p' \"\$1\") \$(sed -n 's/^name: //p' \"\$1\")\" >>$T/log" \
			>"$H/$d/10-log"
		chmod +x "$H/$d/10-log"
	done
	in_pve mkdir -p /etc/pve/nodes/pve2/qemu-server
	sim create pve2 qemu 200 "$FIXTURES/conf/qemu-plain.conf"
	start_bg setsid nsenter -t "$PMX_PID" -m -u -- bash -c 'set -o pipefail
		pve-watch-conf --state-dir "$1" --interval 0.1 |
		run-hooks --events "$2" --state-dir "$1"' _ "$T/state" "$H"
	local pipe=$BG_PID
	wait_until 20 test -s "$T/state/watch/owners"
	sim create pve1 qemu 100 "$FIXTURES/conf/qemu-regular-vm-efi.conf"
	# qemu-server's migration: the hook runs while "lock: migrate" holds
	sim migrate 200 pve1 3
	sim migrate 100 pve2
	sim destroy 200
	sim create pve1 lxc 300
	wait_until 30 grep -q "^create 300 " "$T/log"
	run cat "$T/log"
	assert_line -n 0 "create 100 - lock= eficloneclone"
	assert_line -n 1 "migrate-in 200 pve2 lock=migrate apache"
	# the unlock on pve2 follows at once: before or after the hook
	assert_line -n 2 --regexp "^migrate-out 100 pve2 lock=(migrate)? eficloneclone$"
	assert_line -n 3 "destroy 200 - lock= apache"
	assert_line -n 4 "create 300 - lock= "
	assert_equal "${#lines[@]}" 5
	kill -TERM -- -"$pipe"
}

# A host namespace with vmbr0 (100.128.0.1/24, outside CGNAT: public-looking,
# never routed here) and a guest NIC namespace with MAC and address.
host_bridge() {
	HOSTNS=$(netns_add host)
	ip -n "$HOSTNS" link add vmbr0 address 02:00:00:00:00:01 type bridge
	ip -n "$HOSTNS" link set vmbr0 up
	ip -n "$HOSTNS" addr add 100.128.0.1/24 dev vmbr0
}

guest_nic() { # guest_nic N MAC ADDR...
	local n=$1 mac=$2 ns a
	shift 2
	ns=$(netns_add "g$n")
	ip -n "$HOSTNS" link add "gv$n" type veth peer name eth0 netns "$ns"
	ip -n "$HOSTNS" link set "gv$n" master vmbr0 up
	ip -n "$ns" link set eth0 address "$mac"
	ip -n "$ns" link set eth0 up
	for a in "$@"; do ip -n "$ns" addr add "$a/24" dev eth0; done
}

ping_from_host() {
	local a
	for a in "$@"; do ip netns exec "$HOSTNS" ping -q -c 1 -W 5 "$a" >/dev/null; done
}

# from_arp ARGS: vm-ip-from-arp with the real /etc/pve and the host namespace's
# neighbour table
from_arp() { nsenter -t "$PMX_PID" -m -u --net="/run/netns/$HOSTNS" -- vm-ip-from-arp "$@"; }

@test "vm-ip-from-arp writes its files into the real /etc/pve/pvekit, with the only mode pmxcfs allows there" {
	# pmxcfs refuses every chmod but to 0640 (0600 under priv/): EPERM
	host_bridge
	guest_nic 1 BC:24:11:00:01:00 100.128.0.100
	guest_nic 2 BC:24:11:00:01:01 100.128.0.101
	ping_from_host 100.128.0.100 100.128.0.101
	printf 'name: a\nnet0: virtio=BC:24:11:00:01:00,bridge=vmbr0\n' >"$T/100.conf"
	printf 'name: b\nnet0: virtio=BC:24:11:00:01:01,bridge=vmbr0\n' >"$T/101.conf"
	sim create pve1 qemu 100 "$T/100.conf"
	sim create pve1 qemu 101 "$T/101.conf"
	run -0 from_arp
	assert_line "100 100.128.0.100"
	assert_line "101 100.128.0.101"
	assert_line --partial "/etc/pve/pvekit/failoverip/100: 100.128.0.100 (was: none)"
	run in_pve cat /etc/pve/pvekit/failoverip/100
	assert_output "100.128.0.100"
	run in_pve stat -c '%a %s' /etc/pve/pvekit/failoverip/101
	assert_output "640 14"
	# nothing left behind: no temp file, nothing written again
	run -0 from_arp
	refute_output --partial "was:"
	run in_pve ls -A /etc/pve/pvekit/failoverip
	assert_output "100
101"
	# a destroyed guest loses its file
	sim destroy 101
	run -0 from_arp
	assert_line --partial "/etc/pve/pvekit/failoverip/101: removed, guest 101 no longer exists"
	run in_pve ls -A /etc/pve/pvekit/failoverip
	assert_output "100"
}

# vm VMID NS: a running QEMU guest whose agent is a real qemu-ga in NS.
vm() {
	local vmid=$1 ns=$2 sock=$RUN/$1.qga
	fake_qemu "$RUN" "$vmid"
	mkdir -p "$T/qga-$vmid"
	start_bg ip netns exec "$ns" qemu-ga -m unix-listen -p "$sock" -t "$T/qga-$vmid" -b guest-set-time
	wait_until 10 socat -u OPEN:/dev/null UNIX-CONNECT:"$sock"
}

@test "vm-public-ip writes its files into the real /etc/pve/pvekit" {
	local ns
	ns=$(netns_add agent)
	ip -n "$ns" link add eth0 type veth peer name eth0p
	ip -n "$ns" addr add 100.128.2.100/24 dev eth0
	ip -n "$ns" addr add 10.1.2.3/8 dev eth0
	ip -n "$ns" link set eth0p up
	ip -n "$ns" link set eth0 up
	printf 'agent: 1\nname: web\nnet0: virtio=BC:24:11:00:01:00,bridge=vmbr0\n' >"$T/100.conf"
	sim create pve1 qemu 100 "$T/100.conf"
	vm 100 "$ns"
	mkdir -p "$T/cgroup"
	run -0 in_pve vm-public-ip --run-dir "$RUN" --cgroup-dir "$T/cgroup"
	assert_line "100 100.128.2.100"
	run in_pve cat /etc/pve/pvekit/failoverip/100
	assert_output "100.128.2.100"
	run -0 in_pve vm-public-ip --run-dir "$RUN" --cgroup-dir "$T/cgroup"
	refute_output --partial "was:"
}

# tcpcheck_setup: tcpcheck's folder in the real /etc/pve/pvekit/tcpcheck
# with a fast cadence, the stand-in qm/pct recording into $T/calls, and
# listening and closed loopback ports in OPEN and CLOSED.
tcpcheck_setup() {
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$T/.bg-pids
	export PVEKIT_FAKE_LXC=$T/lxc
	: >"$T/calls"
	in_pve mkdir -p /etc/pve/pvekit/tcpcheck
	printf '%s\n' check_interval=0.1 fail_interval=0.1 fail_threshold=30 recovery_time=0.2 \
		wait_interval=0.2 timeout=0.2 log_interval=60 |
		in_pve sh -c 'cat >/etc/pve/pvekit/tcpcheck/defaults.conf'
	local f=$T/ports
	start_bg "$TOP/bench/tcpcheck-ports" --open 1 --closed 1 >"$f"
	wait_until 20 grep -qx ready "$f"
	OPEN=$(awk '$1 == "open" { print $2 }' "$f")
	CLOSED=$(awk '$1 == "closed" { print $2 }' "$f")
}

@test "tcpcheck --watch on the real pmxcfs: its folder in /etc/pve/pvekit, guests followed across node folders" {
	tcpcheck_setup
	in_pve mkdir -p /etc/pve/nodes/pve2/qemu-server
	sim create pve1 qemu 101
	sim create pve2 qemu 102
	fake_qemu "$RUN" 101
	fake_qemu "$RUN" 102
	printf 'ip=127.0.0.1\nportsall=%s\n' "$OPEN" | in_pve sh -c 'cat >/etc/pve/pvekit/tcpcheck/101.conf'
	printf 'ip=127.0.0.1\nportsall=%s\n' "$OPEN" | in_pve sh -c 'cat >/etc/pve/pvekit/tcpcheck/102.conf'
	bg_pve tcpcheck --watch --run-dir "$RUN" --lxc-dir "$T/lxc" --interval 0.1 >"$T/out" 2>"$T/err"
	wait_until 15 grep -qx '101 healthy up' "$T/out"
	wait_until 15 grep -qx '102 idle on node pve2' "$T/out"
	sim migrate 101 pve2
	wait_until 15 grep -qx '101 idle migrated to pve2' "$T/out"
	sim migrate 102 pve1
	wait_until 15 grep -qx '102 healthy up' "$T/out"
	# a config written as PVE writes (temp file, rename): picked up
	printf 'ip=127.0.0.1\nportsall=%s\n' "$CLOSED" |
		in_pve sh -c 'cat >/etc/pve/pvekit/tcpcheck/102.conf.tmp && mv /etc/pve/pvekit/tcpcheck/102.conf.tmp /etc/pve/pvekit/tcpcheck/102.conf'
	wait_until 15 grep -qx "102 failing 127.0.0.1:$CLOSED closed" "$T/out"
	run cat "$T/calls"
	assert_output ""
}

@test "qga-ping --watch on the real pmxcfs: agent guests followed, a locked guest never failed" {
	sim create pve1 qemu 101
	fake_qemu "$RUN" 101
	start_qga "$RUN/101.qga"
	wait_until 5 qga-ping -q -t 500 "$RUN/101.qga"
	local qga=$QGA_PID
	printf '#!/bin/sh\necho "$PVEKIT_EVENT $PVEKIT_VMID" >>%s\n' "$T/events" >"$T/hook"
	chmod +x "$T/hook"
	bg_pve qga-ping --watch --qga-dir "$RUN" --interval 0.2 --timeout 150 --threshold 3 --grace 0 \
		--exec "$T/hook" >"$T/out" 2>"$T/err"
	wait_until 10 grep -qx '101 watch running' "$T/out"
	# a backup holds the guest: a silent agent is no failure then
	sim lock 101 backup
	sleep 0.5
	kill -STOP "$qga"
	sleep 1.5
	refute grep -q failed "$T/out"
	sim lock 101 ""
	wait_until 10 grep -q '^101 failed' "$T/out"
	wait_until 10 grep -qx 'qga-failed 101' "$T/events"
	kill -CONT "$qga"
}

@test "pmxcfs' limits: a config of 1 MiB (the most it holds) is read whole; past that writes fail, symlinks cannot be made" {
	# 1 MiB exactly: the live section, then a long snapshot section
	{
		cat "$FIXTURES/conf/qemu-plain.conf"
		printf '\n[big]\n'
		yes 'description: padding padding padding padding padding padding padding' | head -c $((1024 * 1024))
	} | head -c $((1024 * 1024)) >"$T/big.conf"
	assert_equal "$(stat -c %s "$T/big.conf")" 1048576
	watch_start
	sim create pve1 qemu 100 "$T/big.conf"
	wait_event "create 100 qemu - /etc/pve/nodes/pve1/qemu-server/100.conf"
	wait_until 10 test -e "$STATE/watch/guests/qemu-server/100.conf"
	assert_files_equal "$STATE/watch/guests/qemu-server/100.conf" "$T/big.conf"
	# one byte more does not fit
	run in_pve sh -c 'printf x >>/etc/pve/nodes/pve1/qemu-server/100.conf'
	assert_failure
	run in_pve stat -c %s /etc/pve/nodes/pve1/qemu-server/100.conf
	assert_output 1048576
	run in_pve ln -s 100.conf /etc/pve/nodes/pve1/qemu-server/101.conf
	assert_failure
	assert_output --partial "Function not implemented"
	no_warnings
}

@test "a VMID above 999999999 in the real .vmlist: skipped with one warning by every reader" {
	# pmxcfs registers any 32-bit VMID; only Proxmox's API stops at 999999999
	sim create pve1 qemu 100
	sim create pve1 qemu 4294967295
	wait_until 10 bash -c "nsenter -t $PMX_PID -m -u -- cat /etc/pve/.vmlist | grep -q 4294967295"
	watch_start
	sim create pve1 qemu 101
	wait_event "create 101 qemu - /etc/pve/nodes/pve1/qemu-server/101.conf"
	run grep -c "guest 4294967295 skipped: a VMID above 999999999" "$T/err"
	assert_output 1
	run -0 --separate-stderr in_pve vm-public-ip -v --run-dir "$RUN" --cgroup-dir "$T/none"
	assert_equal "$stderr" "vm-public-ip: /etc/pve/.vmlist: guest 4294967295 skipped: a VMID above 999999999 is not a Proxmox guest ID"
	sim destroy 4294967295
}

@test "the rename window, for real: renames between node folders under concurrent reads; the watcher reports migrations only" {
	# memdb_rename deletes the guest from the map and registers it again
	# under two lock holds: a read of .vmlist in between lacks the guest.
	in_pve mkdir -p /etc/pve/nodes/pve2/qemu-server
	sim create pve1 qemu 100
	watch_start -v --interval 0.01
	# at least 600 renames; on, up to 10 s, until a read has hit the window
	in_pve python3 - 600 10 >"$T/window" <<'PY'
import multiprocessing, os, sys, time

N, SECS = int(sys.argv[1]), float(sys.argv[2])
A, B = "/etc/pve/nodes/pve1/qemu-server/100.conf", "/etc/pve/nodes/pve2/qemu-server/100.conf"

def reader(stop, reads, missing):
    while not stop.is_set():
        with open("/etc/pve/.vmlist") as f:
            text = f.read()
        with reads.get_lock():
            reads.value += 1
        if '"100":' not in text:
            with missing.get_lock():
                missing.value += 1

stop = multiprocessing.Event()
reads, missing = multiprocessing.Value("l", 0), multiprocessing.Value("l", 0)
procs = [multiprocessing.Process(target=reader, args=(stop, reads, missing)) for _ in range(3)]
for p in procs:
    p.start()
end, i = time.time() + SECS, 0
while i < N or (time.time() < end and not missing.value) or i % 2:
    os.rename(A, B) if i % 2 == 0 else os.rename(B, A)
    i += 1
stop.set()
for p in procs:
    p.join()
print(i, reads.value, missing.value)
PY
	read -r renames reads missing <"$T/window"
	echo "# $renames renames: $missing of $reads concurrent reads of .vmlist lacked the guest;" \
		"the watcher read the map without it $(grep -c 'guest 100: not in the map' "$T/err") times" >&3
	[ "$reads" -gt 0 ]
	# an even number of renames ends where it began (pve1); a sentinel
	# closes the events
	real_sentinel
	run grep -v '^create 999 ' "$T/out"
	refute_output --partial destroy
	refute_output --regexp '^create'
	# migrate-out and migrate-in alternate, the last one brings it back here
	run bash -c "grep -v '^create 999 ' '$T/out' | cut -d' ' -f1 | uniq -d"
	assert_output ""
	run bash -c "grep -v '^create 999 ' '$T/out' | tail -n1 | cut -d' ' -f1"
	[ -z "$output" ] || assert_output migrate-in
}

@test "pve-cluster restarted under the running watcher: /etc/pve gone a while, the guests renumbered, no events" {
	# an instance of its own, so that the others keep theirs
	local pid
	pid=$("$PMXCFS_PEER/start-local" "$PMXCFS_BIN" "$T/pmx" pve1)
	kill_at_teardown "$pid"
	nsenter -t "$pid" -m -u -- mkdir -p /etc/pve/nodes/pve2/qemu-server
	nsenter -t "$pid" -m -u -- pmxcfs-sim create /etc/pve pve1 qemu 100
	nsenter -t "$pid" -m -u -- pmxcfs-sim create /etc/pve pve2 qemu 200
	local before
	before=$(nsenter -t "$pid" -m -u -- cat /etc/pve/.version | sed -n 's/.*"starttime": \([0-9]*\).*/\1/p')
	WATCH_WRAP=(nsenter -t "$pid" -m -u --)
	watch_start
	# systemctl restart pve-cluster: pmxcfs stops (its FUSE mount with it)
	# and starts again in the same mount namespace
	"$PMXCFS_PEER/stop-local" "$pid"
	wait_until 10 grep -q "; no events until it is readable again" "$T/err"
	sleep 1 # a new starttime
	# a pmxcfs that did not get to unmount leaves its dead mount behind
	nsenter -t "$WATCH_PID" -m -- umount -l /etc/pve 2>/dev/null || true
	start_bg nsenter -t "$WATCH_PID" -m -u -- "$PMXCFS_BIN" -l -f
	kill_at_teardown "$BG_PID"
	local npid=$BG_PID
	wait_until 20 nsenter -t "$npid" -m -u -- test -e /etc/pve/nodes/pve1/qemu-server/100.conf
	wait_until 20 grep -q "owner map readable again" "$T/err"
	run nsenter -t "$npid" -m -u -- cat /etc/pve/.version
	refute_output --partial "\"starttime\": $before,"
	nsenter -t "$npid" -m -u -- pmxcfs-sim migrate /etc/pve 200 pve1
	wait_event "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf"
	assert_equal "$(cat "$T/out")" "migrate-in 200 qemu pve2 /etc/pve/nodes/pve1/qemu-server/200.conf"
	run grep -c . "$T/err"
	assert_output 3 # the start line, the warning, the line that it is good again
	kill "$WATCH_PID"
	"$PMXCFS_PEER/stop-local" "$npid"
}

# conf64 PORT: a tcpcheck guest config of exactly 64 bytes.
conf64() {
	local text
	text=$(printf 'ip=127.0.0.1\nportsall=%s\nfail_threshold=30\n#' "$1")
	printf '%s%*s\n' "$text" $((63 - ${#text})) ""
}

# in_place FILE < TEXT: TEXT written over FILE's first bytes, in place (the
# inode stays), on the real pmxcfs.
in_place() { in_pve sh -c 'cat 1<>"$1"' _ "$1"; }

# second_starts: returns early in a second of the clock.
second_starts() { wait_until 3 bash -c '[ "$(date +%N)" -lt 150000000 ]'; }

@test "tcpcheck --watch on the real pmxcfs: an edit in place within the second of the one it read is seen" {
	# pmxcfs keeps the inode and has whole-second mtimes: a same-size edit
	# in place within one second leaves inode, size and mtime as they were
	tcpcheck_setup
	sim create pve1 qemu 101
	fake_qemu "$RUN" 101
	local f=/etc/pve/pvekit/tcpcheck/101.conf st0 st1 same=0 n
	conf64 "$OPEN" | in_pve sh -c "cat >$f"
	bg_pve tcpcheck --watch --run-dir "$RUN" --lxc-dir "$T/lxc" --interval 0.1 >"$T/out" 2>"$T/err"
	wait_until 15 grep -qx '101 healthy up' "$T/out"
	for _ in 1 2 3 4 5 6; do
		n=$(grep -c '^101 failing' "$T/out" || true)
		second_starts
		conf64 "$CLOSED" | in_place "$f"
		st0=$(in_pve stat -c '%i %s %Y' "$f")
		wait_until 15 bash -c "[ \$(grep -c '^101 failing' '$T/out') -gt $n ]"
		conf64 "$OPEN" | in_place "$f"
		st1=$(in_pve stat -c '%i %s %Y' "$f")
		# the second write, after tcpcheck read the first, in its second
		if [ "$st0" = "$st1" ]; then
			same=1
			break
		fi
		wait_until 15 bash -c "[ \$(grep -c '^101 healthy recovered' '$T/out') -ge \$(grep -c '^101 failing' '$T/out') ]"
	done
	[ "$same" = 1 ] || skip "the machine is too busy to write, read and write again within one second"
	wait_until 15 bash -c "[ \$(grep -c '^101 healthy recovered' '$T/out') -gt $n ]"
	run cat "$T/calls"
	assert_output ""
}

@test "qga-ping --watch on the real pmxcfs: an edit in place within the second of the one it read is seen" {
	sim create pve1 qemu 101
	fake_qemu "$RUN" 101
	start_qga "$RUN/101.qga"
	wait_until 5 qga-ping -q -t 500 "$RUN/101.qga"
	local f=/etc/pve/nodes/pve1/qemu-server/101.conf st0 st1 same=0 n
	in_pve cat "$f" >"$T/on"
	sed 's/^agent: 1$/agent: 0/' "$T/on" >"$T/off"
	bg_pve qga-ping --watch --qga-dir "$RUN" --interval 0.1 --timeout 150 --threshold 3 --grace 0 \
		>"$T/out" 2>"$T/err"
	wait_until 10 grep -qx '101 watch running' "$T/out"
	for _ in 1 2 3 4 5 6; do
		n=$(grep -c '^101 unwatch agent-off' "$T/out" || true)
		second_starts
		in_place "$f" <"$T/off"
		st0=$(in_pve stat -c '%i %s %Y' "$f")
		wait_until 15 bash -c "[ \$(grep -c '^101 unwatch agent-off' '$T/out') -gt $n ]"
		in_place "$f" <"$T/on"
		st1=$(in_pve stat -c '%i %s %Y' "$f")
		if [ "$st0" = "$st1" ]; then
			same=1
			break
		fi
		wait_until 15 bash -c "[ \$(grep -c '^101 watch start' '$T/out') -gt $n ]"
	done
	[ "$same" = 1 ] || skip "the machine is too busy to write, read and write again within one second"
	wait_until 15 bash -c "[ \$(grep -c '^101 watch start' '$T/out') -gt $n ]"
}
