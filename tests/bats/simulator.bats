#!/usr/bin/env bats
# tests/fakes/pmxcfs-sim shows what pmxcfs shows (pve-cluster src/pmxcfs:
# status.c, memdb.c, cfs-plug-func.c) and is no kinder: these pin it.
# tests/bats/pmxcfs-local.bats compares it with the real pmxcfs.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
}

teardown() { pvekit_teardown; }

counter() { sed -n 's/.*"vmlist": \([0-9]*\).*/\1/p' "$PVE/.version"; }
starttime() { sed -n 's/.*"starttime": \([0-9]*\).*/\1/p' "$PVE/.version"; }
# version VMID: the guest's own version in .vmlist
version() { sed -n "s/^\"$1\": { .*\"version\": \\([0-9]*\\) }.*/\\1/p" "$PVE/.vmlist"; }

@test "pmxcfs-sim: no inotify event ever names .vmlist or .version (pmxcfs renders them on read)" {
	start_bg inotifywait -m -e create,moved_to,moved_from,delete,close_write,modify,attrib \
		--format '%e %f' "$PVE" >"$T/events" 2>"$T/inw.err"
	local inw=$BG_PID
	wait_until 10 grep -q "Watches established" "$T/inw.err"
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 lxc 200
	pmxcfs-sim edit "$PVE" 100 "memory: 4096"
	pmxcfs-sim lock "$PVE" 100 backup
	pmxcfs-sim lock "$PVE" 100 ""
	pmxcfs-sim snapshot "$PVE" 100 s1
	pmxcfs-sim migrate "$PVE" 100 pve2
	PMXCFS_SIM_GAP=0.1 pmxcfs-sim migrate "$PVE" 200 pve1
	pmxcfs-sim destroy "$PVE" 200
	pmxcfs-sim vmlist "$PVE"
	pmxcfs-sim restart "$PVE"
	cat "$PVE/.vmlist" "$PVE/.version" >/dev/null
	# a marker event, so that every earlier one is in the file
	touch "$PVE/marker"
	wait_until 10 grep -q marker "$T/events"
	kill "$inw"
	run grep -v marker "$T/events"
	assert_output ""
	grep -q '"100": { "node": "pve2", "type": "qemu", "version": 1 }' "$PVE/.vmlist"
}

@test "pmxcfs-sim: starttime stays until a restart; a restart renumbers every guest and starts the counter at 1" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 qemu 101
	pmxcfs-sim create "$PVE" pve2 lxc 200
	local start c
	start=$(starttime)
	c=$(counter)
	sleep 1.1
	pmxcfs-sim edit "$PVE" 100 "memory: 4096"
	assert_equal "$(starttime)" "$start"
	assert_equal "$(counter)" $((c + 1))
	pmxcfs-sim restart "$PVE"
	[ "$(starttime)" -gt "$start" ]
	assert_equal "$(counter)" 1
	run bash -c "sed -n 's/.*\"version\": \\([0-9]*\\) }.*/\\1/p' '$PVE/.vmlist' | sort -n | tr '\n' ' '"
	assert_output "1 2 3 "
	# the next change counts on from there
	pmxcfs-sim edit "$PVE" 101 "cores: 4"
	assert_equal "$(counter)" 2
	assert_equal "$(version 101)" 4
}

@test "pmxcfs-sim: each guest has its own version, apart from the vmlist counter" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 lxc 200
	local c v100 v200
	c=$(counter) v100=$(version 100) v200=$(version 200)
	# a write (temp file and rename): one register
	pmxcfs-sim edit "$PVE" 100 "memory: 4096"
	assert_equal "$(counter)" $((c + 1))
	assert_equal "$(version 200)" "$v200"
	assert_equal "$(version 100)" $((v200 + 1))
	# a destroy: one delete, no version moves
	pmxcfs-sim create "$PVE" pve1 qemu 101
	c=$(counter)
	pmxcfs-sim destroy "$PVE" 101
	assert_equal "$(counter)" $((c + 1))
	# a migration: two writes of the lock, a rename (delete and register),
	# the unlock on the target
	c=$(counter) v100=$(version 100)
	pmxcfs-sim migrate "$PVE" 200 pve1
	assert_equal "$(counter)" $((c + 5))
	assert_equal "$(version 200)" $((v100 + 5)) # 101 took one
	assert_equal "$(version 100)" "$v100"
	# no change, no new map
	c=$(counter)
	pmxcfs-sim vmlist "$PVE"
	assert_equal "$(counter)" "$c"
}

@test "pmxcfs-sim: migrate is lock, rename, pause, unlock; PMXCFS_SIM_GAP shows the rename half-way" {
	pmxcfs-sim create "$PVE" pve2 qemu 200 "$FIXTURES/conf/qemu-plain.conf"
	start_bg env PMXCFS_SIM_GAP=1 pmxcfs-sim migrate "$PVE" 200 pve1 1
	local mig=$BG_PID
	# half-way: the file moved, the map without the guest
	wait_until 10 bash -c "! grep -q '\"200\"' '$PVE/.vmlist'"
	test -e "$PVE/nodes/pve1/qemu-server/200.conf"
	grep -qx 'lock: migrate' "$PVE/nodes/pve1/qemu-server/200.conf"
	# then registered on pve1, still locked until the unlock
	wait_until 10 grep -q '"200": { "node": "pve1"' "$PVE/.vmlist"
	grep -qx 'lock: migrate' "$PVE/nodes/pve1/qemu-server/200.conf"
	wait "$mig"
	assert_files_equal "$PVE/nodes/pve1/qemu-server/200.conf" "$FIXTURES/conf/qemu-plain.conf"
}
