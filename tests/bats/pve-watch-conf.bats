#!/usr/bin/env bats
# pve-watch-conf: options, the four events, what is not an event, restarts,
# --once, --initial, --json, the state dir.

bats_require_minimum_version 1.5.0

setup() {
	load common
	load pve-watch-conf
	pvekit_setup
	watch_pve
}

teardown() {
	local rc=0
	watch_teardown || rc=1
	pvekit_teardown
	return $rc
}

@test "usage: -h, -V, unknown options and operands, bad values" {
	run -0 pve-watch-conf -h
	assert_output --partial "usage: pve-watch-conf"
	assert_output --partial "--interval SECS"
	run -0 pve-watch-conf -V
	assert_output --regexp '^pve-watch-conf [0-9]'

	run -64 --separate-stderr pve-watch-conf --bogus
	assert_output ""
	[[ $stderr == *"unrecognized option '--bogus'"* && $stderr == *"usage: pve-watch-conf"* ]]
	run -64 --separate-stderr pve-watch-conf -x
	[[ $stderr == *"invalid option -- 'x'"* ]]
	run -64 --separate-stderr pve-watch-conf --pve-dir "$PVE" extra
	[[ $stderr == *"pve-watch-conf: extra: unexpected argument"* ]]
	run -64 --separate-stderr pve-watch-conf --interval
	[[ $stderr == *"option '--interval' requires an argument"* ]]

	for bad in abc 0 -1 0.001 1e3x 100000; do
		run -64 --separate-stderr pve-watch-conf --pve-dir "$PVE" --state-dir "$STATE" \
			--interval "$bad" --once
		[[ $stderr == *"--interval $bad: want seconds from 0.01 to 86400"* ]]
	done
	run -64 --separate-stderr pve-watch-conf --node "pve 1" --once
	[[ $stderr == *"--node pve 1: not a node name"* ]]
	run -64 --separate-stderr pve-watch-conf --pve-dir "" --once
	[[ $stderr == *"--pve-dir: want a directory path"* ]]
	assert_file_not_exists "$STATE"
}

@test "first run records the map silently; --once prints nothing, keeps copies of this node's guests" {
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-plain.conf"
	pmxcfs-sim create "$PVE" pve1 lxc 101 "$FIXTURES/conf/lxc-debian-002.conf"
	pmxcfs-sim create "$PVE" pve2 qemu 200
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	assert_output ""
	assert_equal "$(cat "$STATE/watch/owners")" "$(printf 'pve-watch-conf 2\nseq 0\n100 qemu pve1\n101 lxc pve1\n200 qemu pve2')"
	assert_files_equal "$STATE/watch/guests/qemu-server/100.conf" "$FIXTURES/conf/qemu-plain.conf"
	assert_files_equal "$STATE/watch/guests/lxc/101.conf" "$FIXTURES/conf/lxc-debian-002.conf"
	assert_file_not_exists "$STATE/watch/guests/qemu-server/200.conf"
	assert_file_permission 600 "$STATE/watch/owners"
	assert_file_permission 700 "$STATE/watch"

	# Nothing changed: a second run prints nothing either.
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	assert_output ""
}

@test "--initial: a create for every guest of this node on the first run only" {
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-regular-vm-efi.conf"
	pmxcfs-sim create "$PVE" pve1 lxc 101 "$FIXTURES/conf/lxc-alpine-001.conf"
	pmxcfs-sim create "$PVE" pve2 qemu 200
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once --initial
	assert_output "$(printf 'create 100 qemu - %s\ncreate 101 lxc - %s' \
		"$(conf pve1 qemu-server 100)" "$(conf pve1 lxc 101)")"
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once --initial
	assert_output ""
}

@test "create, migrate-out, migrate-in and destroy: exact lines, PEER and CONF" {
	pmxcfs-sim create "$PVE" pve2 lxc 300 "$FIXTURES/conf/lxc-centos6-002.conf"
	watch_start

	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-netdev-multiqueues.conf"
	wait_event "create 100 qemu - $(conf pve1 qemu-server 100)"
	pmxcfs-sim migrate "$PVE" 100 pve3
	wait_event "migrate-out 100 qemu pve3 $(conf pve3 qemu-server 100)"
	pmxcfs-sim migrate "$PVE" 300 pve1
	wait_event "migrate-in 300 lxc pve2 $(conf pve1 lxc 300)"
	pmxcfs-sim edit "$PVE" 300 "memory: 1024"
	pmxcfs-sim destroy "$PVE" 300
	wait_event "destroy 300 lxc - $STATE/watch/destroyed/lxc/300.conf"

	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"create 100 qemu - $(conf pve1 qemu-server 100)" \
		"migrate-out 100 qemu pve3 $(conf pve3 qemu-server 100)" \
		"migrate-in 300 lxc pve2 $(conf pve1 lxc 300)" \
		"destroy 300 lxc - $STATE/watch/destroyed/lxc/300.conf")"
	# migrate-out's CONF is the file under the destination; destroy's is
	# the copy with the last config text (the edit included).
	assert_files_equal "$(conf pve3 qemu-server 100)" "$FIXTURES/conf/qemu-netdev-multiqueues.conf"
	run grep -c '^memory: 1024$' "$STATE/watch/destroyed/lxc/300.conf"
	assert_output 1
	assert_equal "$(grep -v '^memory' "$STATE/watch/destroyed/lxc/300.conf")" \
		"$(grep -v '^memory' "$FIXTURES/conf/lxc-centos6-002.conf")"
	# No copy lingers for a guest that left.
	assert_file_not_exists "$STATE/watch/guests/qemu-server/100.conf"
	assert_file_not_exists "$STATE/watch/guests/lxc/300.conf"
	no_warnings
}

# watch_other NODE: a second watcher, as NODE, on the same tree (stdout in
# $T/out.NODE); returns once it saved its first map.
watch_other() {
	start_bg pve-watch-conf --pve-dir "$PVE" --node "$1" --state-dir "$T/state.$1" \
		--interval 0.1 -v >"$T/out.$1" 2>"$T/err.$1"
	OTHER_PID=$BG_PID
	wait_until 10 test -s "$T/state.$1/watch/owners"
}

@test "a migration read half-way (the guest missing from .vmlist for a while): migrate-out and migrate-in on both sides" {
	# pmxcfs' rename deletes the guest from the map and registers it again
	# under two lock holds (memdb_rename); a read in between misses it. Here
	# that read lasts a second, several polls of both watchers.
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 lxc 200
	watch_start -v
	watch_other pve2
	PMXCFS_SIM_GAP=1 pmxcfs-sim migrate "$PVE" 100 pve2
	PMXCFS_SIM_GAP=1 pmxcfs-sim migrate "$PVE" 200 pve1
	sentinel
	pmxcfs-sim create "$PVE" pve2 qemu 998
	wait_until 20 grep -q "^create 998 " "$T/out.pve2"
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"migrate-out 100 qemu pve2 $(conf pve2 qemu-server 100)" \
		"migrate-in 200 lxc pve2 $(conf pve1 lxc 200)" \
		"create 999 qemu - $(conf pve1 qemu-server 999)")"
	assert_equal "$(cat "$T/out.pve2")" "$(printf '%s\n' \
		"migrate-in 100 qemu pve1 $(conf pve2 qemu-server 100)" \
		"migrate-out 200 lxc pve1 $(conf pve1 lxc 200)" \
		"create 998 qemu - $(conf pve2 qemu-server 998)")"
	# both read the map without the guest, and waited
	grep -q "guest 100: not in the map, but a config of it is still there" "$T/err"
	grep -q "guest 100: not in the map, but a config of it is still there" "$T/err.pve2"
	grep -q "guest 200: not in the map, but a config of it is still there" "$T/err"
	grep -q "guest 200: not in the map, but a config of it is still there" "$T/err.pve2"
}

@test "a pmxcfs restart (new starttime, every guest renumbered, the counter at 1 again): no events" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 lxc 101
	pmxcfs-sim create "$PVE" pve2 qemu 200
	pmxcfs-sim edit "$PVE" 100 "memory: 4096"
	watch_start
	pmxcfs-sim restart "$PVE"
	# the watcher reads the renumbered map (its counter is lower than before)
	ticks_pass 20
	# and the changes after it, counted from 1 again
	pmxcfs-sim migrate "$PVE" 200 pve1
	wait_event "migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)"
	sentinel
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)" \
		"create 999 qemu - $(conf pve1 qemu-server 999)")"
	no_warnings
}

@test "edits, lock and unlock, a vzdump backup, snapshots: no event" {
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-plain.conf"
	pmxcfs-sim create "$PVE" pve1 lxc 101 "$FIXTURES/conf/lxc-rollback-101.conf"
	watch_start

	pmxcfs-sim edit "$PVE" 100 "memory: 4096"
	pmxcfs-sim edit "$PVE" 100 "net1: virtio=BC:24:11:00:00:01,bridge=vmbr1"
	pmxcfs-sim lock "$PVE" 100 migrate
	pmxcfs-sim lock "$PVE" 100 ""
	pmxcfs-sim lock "$PVE" 101 backup # vzdump: lock backup ... unlock
	pmxcfs-sim lock "$PVE" 101 ""
	pmxcfs-sim snapshot "$PVE" 100 before-upgrade
	pmxcfs-sim snapshot "$PVE" 101 snap2
	sentinel
	assert_equal "$(cat "$T/out")" "create 999 qemu - $(conf pve1 qemu-server 999)"
	# The kept copy follows the edits.
	wait_until 10 grep -qx 'memory: 4096' "$STATE/watch/guests/qemu-server/100.conf"
	wait_until 10 grep -qx '\[before-upgrade\]' "$STATE/watch/guests/qemu-server/100.conf"
}

@test "a change seen only in .vmlist (another node's migration) is found by polling" {
	pmxcfs-sim create "$PVE" pve2 qemu 200
	pmxcfs-sim create "$PVE" pve3 lxc 300
	pmxcfs-sim create "$PVE" pve1 qemu 100
	watch_start

	# Between two other nodes: no event.
	set_owner 300 pve2
	bump_version
	# From another node to this one, this node's dirs untouched: pmxcfs
	# shows it in .vmlist only; the files are written in place, so no
	# inotify event fires.
	set_owner 200 pve1
	bump_version
	wait_event "migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)"
	# And away again to a third node.
	set_owner 100 pve3
	bump_version
	wait_event "migrate-out 100 qemu pve3 $(conf pve3 qemu-server 100)"
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)" \
		"migrate-out 100 qemu pve3 $(conf pve3 qemu-server 100)")"
}

@test ".version gates the read: .vmlist is parsed only when its counter moves" {
	pmxcfs-sim create "$PVE" pve2 qemu 200
	watch_start

	set_owner 200 pve1 # .vmlist changed, counter not
	ticks_pass 20
	assert_equal "$(out_lines)" 0
	bump_version
	wait_event "migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)"

	# Without .version the stat signature of .vmlist gates it.
	rm "$PVE/.version"
	set_owner 200 pve2
	wait_event "migrate-out 200 qemu pve2 $(conf pve2 qemu-server 200)"
}

@test "a restart prints exactly the events missed while down, and nothing twice" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 qemu 101
	pmxcfs-sim create "$PVE" pve2 lxc 200
	pmxcfs-sim create "$PVE" pve1 qemu 102
	watch_start
	pmxcfs-sim create "$PVE" pve1 lxc 103
	wait_event "create 103 lxc - $(conf pve1 lxc 103)"
	watch_stop
	assert_equal "$WATCH_RC" 0

	pmxcfs-sim destroy "$PVE" 100
	pmxcfs-sim migrate "$PVE" 101 pve3
	pmxcfs-sim migrate "$PVE" 200 pve1
	pmxcfs-sim create "$PVE" pve1 qemu 104
	pmxcfs-sim destroy "$PVE" 102
	pmxcfs-sim create "$PVE" pve1 lxc 102 # same VMID, new type
	pmxcfs-sim create "$PVE" pve3 qemu 105 # never here
	: >"$T/out"
	watch_start
	sentinel
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"destroy 100 qemu - $STATE/watch/destroyed/qemu-server/100.conf" \
		"migrate-out 101 qemu pve3 $(conf pve3 qemu-server 101)" \
		"destroy 102 qemu - $STATE/watch/destroyed/qemu-server/102.conf" \
		"create 102 lxc - $(conf pve1 lxc 102)" \
		"create 104 qemu - $(conf pve1 qemu-server 104)" \
		"migrate-in 200 lxc pve2 $(conf pve1 lxc 200)" \
		"create 999 qemu - $(conf pve1 qemu-server 999)")"
	grep -qx 'name: vm100' "$STATE/watch/destroyed/qemu-server/100.conf"
	watch_stop

	: >"$T/out"
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	assert_output ""
}

@test "--json: one object per line with event, vmid, type, node, peer, config, time" {
	pmxcfs-sim create "$PVE" pve2 qemu 200
	watch_start --json
	pmxcfs-sim create "$PVE" pve1 lxc 100
	pmxcfs-sim migrate "$PVE" 200 pve1
	pmxcfs-sim destroy "$PVE" 100
	wait_until 20 out_has 3

	run jq -c '[.event, .vmid, .type, .node, .peer, .config]' "$T/out"
	assert_output "$(printf '%s\n' \
		"[\"create\",100,\"lxc\",\"pve1\",null,\"$(conf pve1 lxc 100)\"]" \
		"[\"migrate-in\",200,\"qemu\",\"pve1\",\"pve2\",\"$(conf pve1 qemu-server 200)\"]" \
		"[\"destroy\",100,\"lxc\",\"pve1\",null,\"$STATE/watch/destroyed/lxc/100.conf\"]")"
	run jq -r '.time' "$T/out"
	for t in "${lines[@]}"; do
		[[ $t =~ ^20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]{3}Z$ ]]
	done
	run jq -e 'keys == ["config","event","node","peer","time","type","vmid"]' "$T/out"
	assert_success
}

@test "state dir: unusable is 71, taken by another watcher is 71, corrupt is 65" {
	touch "$T/file"
	run -71 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$T/file" --once
	[[ $stderr == *"$T/file/watch/guests/qemu-server: Not a directory"* ]]

	watch_start
	run -71 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	[[ $stderr == *"$STATE/watch/lock: another pve-watch-conf uses this state dir"* ]]
	watch_stop

	printf 'pve-watch-conf 1\n100 qemu pve1\nnot a line\n' >"$STATE/watch/owners"
	run -65 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	[[ $stderr == *"$STATE/watch/owners line 3: want \"VMID qemu|lxc NODE\"; remove it to start afresh"* ]]
	printf 'something else\n' >"$STATE/watch/owners"
	run -65 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	[[ $stderr == *"owners line 1: not \"pve-watch-conf 1\""* ]]
}

@test "relative --pve-dir and --state-dir give absolute CONF paths" {
	cd "$T"
	run -0 pve-watch-conf --pve-dir pve/ --node pve1 --state-dir state --once
	pmxcfs-sim create "$PVE" pve1 qemu 100
	run -0 --separate-stderr pve-watch-conf --pve-dir ./pve// --node pve1 --state-dir state --once
	assert_output "create 100 qemu - $T/./pve/nodes/pve1/qemu-server/100.conf"
}
