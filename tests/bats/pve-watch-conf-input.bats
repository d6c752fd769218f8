#!/usr/bin/env bats
# pve-watch-conf and bad input: broken .vmlist, a vanished /etc/pve, odd
# files in the guest dirs, the nodes/ scan, Proxmox's own config text.

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

# broken_case TEXT REASON: .vmlist becomes TEXT (as pmxcfs would show it,
# counter bumped); one warning naming the file and REASON, no event while
# guest 100 is destroyed and 200 arrives; then a good .vmlist brings exactly
# those events.
broken_case() {
	local text=$1 reason=$2
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 lxc 200
	watch_start -v

	printf '%s' "$text" >"$PVE/.vmlist"
	bump_version
	wait_until 10 grep -qF "pve-watch-conf: $PVE/.vmlist: $reason; no events until it is readable again" "$T/err"
	PMXCFS_SIM_DEFER=1 pmxcfs-sim destroy "$PVE" 100
	PMXCFS_SIM_DEFER=1 pmxcfs-sim migrate "$PVE" 200 pve1
	ticks_pass 20
	assert_equal "$(out_lines)" 0
	run grep -c "no events until it is readable again" "$T/err"
	assert_output 1

	pmxcfs-sim vmlist "$PVE"
	wait_until 20 grep -q "owner map readable again (from .vmlist)" "$T/err"
	sentinel
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"destroy 100 qemu - $STATE/watch/destroyed/qemu-server/100.conf" \
		"migrate-in 200 lxc pve2 $(conf pve1 lxc 200)" \
		"create 999 qemu - $(conf pve1 qemu-server 999)")"
}

@test "broken .vmlist: empty" {
	broken_case "" "empty"
}

@test "broken .vmlist: truncated" {
	broken_case $'{\n"version": 9,\n"ids": {\n"100": { "node": "pve1", "type": "qemu", "version": 3 },\n"200": { "node": "pv' \
		"line 5: truncated string"
}

@test "broken .vmlist: not JSON" {
	broken_case $'<html>503 pmxcfs restarting</html>\n' "line 1: expected '{'"
}

@test "broken .vmlist: a guest id that is not a number" {
	broken_case $'{\n"version": 9,\n"ids": {\n"100": { "node": "pve1", "type": "qemu", "version": 3 },\n"2x0": { "node": "pve2", "type": "lxc", "version": 1 }}\n\n}\n' \
		'line 5: guest id "2x0" is not a number'
}

@test "broken .vmlist: a bad node name or type" {
	broken_case $'{"version": 9, "ids": {"100": {"node": "pve1", "type": "qemu"},\n"200": {"node": "../x", "type": "lxc"}}}' \
		'line 2: guest 200: bad "node"'
}

@test "a .vmlist entry with a VMID above 999999999: skipped with one warning, the rest goes on" {
	# pmxcfs registers any 32-bit VMID (memdb.c name_is_vm_config); only
	# Proxmox's API stops at 999999999.
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 qemu 4294967295
	watch_start
	pmxcfs-sim create "$PVE" pve3 qemu 1000000000
	pmxcfs-sim migrate "$PVE" 100 pve2
	wait_event "migrate-out 100 qemu pve2 $(conf pve2 qemu-server 100)"
	sentinel
	run grep -v "^pve-watch-conf: $PVE: node pve1: " "$T/err"
	assert_output "pve-watch-conf: $PVE/.vmlist: guest 4294967295 skipped: a VMID above 999999999 is not a Proxmox guest ID
pve-watch-conf: $PVE/.vmlist: 2 guests skipped (VMID 1000000000 and more): a VMID above 999999999 is not a Proxmox guest ID"
}

@test "nodes/ missing while .vmlist is fine: no events, not 'every guest is gone'" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 lxc 101
	watch_start
	mv "$PVE/nodes" "$T/nodes.away"
	wait_until 10 grep -qF "pve-watch-conf: $PVE/nodes/pve1: No such file or directory; no events until it is readable again" "$T/err"
	# And .vmlist missing too: still nothing.
	mv "$PVE/.vmlist" "$T/vmlist.away"
	ticks_pass 20
	assert_equal "$(out_lines)" 0
	mv "$T/nodes.away" "$PVE/nodes"
	mv "$T/vmlist.away" "$PVE/.vmlist"
	wait_until 20 grep -q "owner map readable again" "$T/err"
	sentinel
	assert_equal "$(cat "$T/out")" "create 999 qemu - $(conf pve1 qemu-server 999)"
}

# The inode numbers the watcher's inotify fd watches (from /proc fdinfo).
watched_inodes() {
	local fd
	for fd in /proc/"$WATCH_PID"/fd/*; do
		[ "$(readlink "$fd")" = "anon_inode:inotify" ] || continue
		sed -n 's/^inotify wd:[0-9a-f]* ino:\([0-9a-f]*\) .*/\1/p' "/proc/$WATCH_PID/fdinfo/${fd##*/}" |
			while read -r hex; do echo $((16#$hex)); done
	done
}

watching() { watched_inodes | grep -qx "$(stat -c %i "$1")"; }

@test "a vanished pve dir (pve-cluster stopped): no events; back: the missed ones, watches re-armed" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 qemu 101
	watch_start
	watching "$PVE/nodes/pve1/qemu-server"

	# /etc/pve without pmxcfs is an empty directory.
	mv "$PVE" "$T/pve.away"
	mkdir "$PVE"
	wait_until 10 grep -qF "$PVE/nodes/pve1: No such file or directory; no events" "$T/err"
	ticks_pass 20
	assert_equal "$(out_lines)" 0
	pmxcfs-sim destroy "$T/pve.away" 101

	rmdir "$PVE"
	mv "$T/pve.away" "$PVE"
	wait_until 20 grep -q "owner map readable again" "$T/err"
	wait_event "destroy 101 qemu - $STATE/watch/destroyed/qemu-server/101.conf"
	wait_until 10 watching "$PVE"
	wait_until 10 watching "$PVE/nodes/pve1/qemu-server"
	wait_until 10 watching "$PVE/nodes/pve1/lxc"
	sentinel
	assert_equal "$(cat "$T/out")" "$(printf '%s\n' \
		"destroy 101 qemu - $STATE/watch/destroyed/qemu-server/101.conf" \
		"create 999 qemu - $(conf pve1 qemu-server 999)")"
	run grep -c "no events until it is readable again" "$T/err"
	assert_output 1
}

@test "a guest dir that appears later is watched; a replaced one is re-armed" {
	rmdir "$PVE/nodes/pve1/lxc"
	watch_start
	run ! watching "$PVE/nodes/pve1/lxc" 2>/dev/null
	pmxcfs-sim create "$PVE" pve1 lxc 100
	wait_event "create 100 lxc - $(conf pve1 lxc 100)"
	wait_until 10 watching "$PVE/nodes/pve1/lxc"
	mv "$PVE/nodes/pve1/qemu-server" "$T/qs.old"
	mkdir "$PVE/nodes/pve1/qemu-server"
	wait_until 10 watching "$PVE/nodes/pve1/qemu-server"
	sentinel
}

@test "odd names in the guest dirs are not guests: spaces, newlines, temp files, dirs" {
	d=$PVE/nodes/pve1/qemu-server
	pmxcfs-sim create "$PVE" pve1 qemu 100
	watch_start
	for name in "1 00.conf" $'10\n1.conf' "abc.conf" "100.conf.tmp.4242" "0100.conf" \
		"102.conf~" ".103.conf" "104.CONF" $'105.conf\n' "1234567890.conf"; do
		echo "memory: 512" >"$d/$name"
	done
	mkdir "$d/106.conf" "$PVE/nodes/pve 4" "$PVE/nodes/pve1/lxc/107.conf"
	mkfifo "$d/108.conf.tmp.1"
	rm "$PVE/.vmlist" "$PVE/.version" # the nodes/ scan must skip them too
	wait_until 20 grep -q "owner map now from nodes/ scan" "$T/err"
	PMXCFS_SIM_DEFER=1 pmxcfs-sim create "$PVE" pve1 qemu 999
	wait_event "create 999 qemu - $(conf pve1 qemu-server 999)"
	assert_equal "$(cat "$T/out")" "create 999 qemu - $(conf pve1 qemu-server 999)"
	run grep -v -e "node pve1: " -e "owner map now from" "$T/err"
	assert_output ""
}

@test "a config that is a FIFO or a directory: no hang, one clear warning, events still right" {
	d=$PVE/nodes/pve1/qemu-server
	watch_start
	# In .vmlist pmxcfs lists the guest; its file cannot be read.
	mkfifo "$d/150.conf"
	pmxcfs-sim vmlist "$PVE"
	wait_event "create 150 qemu - $d/150.conf"
	wait_until 10 grep -qF "pve-watch-conf: $d/150.conf: not a regular file; keeping the previous copy, if any" "$T/err"
	rm "$d/150.conf"
	pmxcfs-sim vmlist "$PVE"
	wait_event "destroy 150 qemu - -"
	grep -qF "guest 150: no copy of its config was kept; its destroy has none" "$T/err"

	# In a scan a directory named like a config is no guest at all.
	rm "$PVE/.vmlist" "$PVE/.version"
	mkdir "$d/151.conf"
	PMXCFS_SIM_DEFER=1 pmxcfs-sim create "$PVE" pve1 qemu 999
	wait_event "create 999 qemu - $d/999.conf"
	assert_equal "$(grep -c 151 "$T/out")" 0
}

@test "nodes/ scan without .vmlist: every event, CONF and copies as with .vmlist" {
	rm "$PVE/.vmlist" "$PVE/.version"
	export PMXCFS_SIM_DEFER=1
	pmxcfs-sim create "$PVE" pve2 qemu 200
	watch_start
	pmxcfs-sim create "$PVE" pve1 lxc 100 "$FIXTURES/conf/lxc-debian-004.conf"
	wait_event "create 100 lxc - $(conf pve1 lxc 100)"
	pmxcfs-sim migrate "$PVE" 200 pve1
	wait_event "migrate-in 200 qemu pve2 $(conf pve1 qemu-server 200)"
	pmxcfs-sim migrate "$PVE" 200 pve3
	wait_event "migrate-out 200 qemu pve3 $(conf pve3 qemu-server 200)"
	pmxcfs-sim edit "$PVE" 100 "cores: 8"
	wait_until 10 grep -qx "cores: 8" "$STATE/watch/guests/lxc/100.conf"
	pmxcfs-sim destroy "$PVE" 100
	wait_event "destroy 100 lxc - $STATE/watch/destroyed/lxc/100.conf"
	grep -qx "cores: 8" "$STATE/watch/destroyed/lxc/100.conf"
	assert_equal "$(out_lines)" 4
	assert [ ! -e "$PVE/.vmlist" ]
}

@test "Proxmox's own config text: --initial creates and destroys keep it byte for byte" {
	n=100
	for f in "$FIXTURES"/conf/*.conf; do
		case ${f##*/} in lxc-*) type=lxc ;; *) type=qemu ;; esac
		PMXCFS_SIM_DEFER=1 pmxcfs-sim create "$PVE" pve1 $type $n "$f"
		echo "$n $type $f" >>"$T/guests"
		n=$((n + 1))
	done
	pmxcfs-sim vmlist "$PVE"
	# every guest destroyed at once below: a mass disappearance, not held
	watch_start --initial --hold 0
	wait_until 20 out_has 10
	assert_equal "$(out_lines)" 10
	while read -r id type f; do
		dir=$([ $type = lxc ] && echo lxc || echo qemu-server)
		grep -qxF "create $id $type - $(conf pve1 $dir $id)" "$T/out"
		PMXCFS_SIM_DEFER=1 pmxcfs-sim destroy "$PVE" $id
	done <"$T/guests"
	pmxcfs-sim vmlist "$PVE"
	wait_until 20 out_has 20
	assert_equal "$(out_lines)" 20
	while read -r id type f; do
		dir=$([ $type = lxc ] && echo lxc || echo qemu-server)
		grep -qxF "destroy $id $type - $STATE/watch/destroyed/$dir/$id.conf" "$T/out"
		assert_files_equal "$STATE/watch/destroyed/$dir/$id.conf" "$f"
	done <"$T/guests"
	run grep -v "^pve-watch-conf: $PVE: node pve1: " "$T/err"
	assert_output "pve-watch-conf: 10 of this node's 10 guests are missing from the owner map at once: suspicious; none is reported destroyed while a config of it is on some node, nor before --hold has passed"
}
