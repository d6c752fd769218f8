#!/usr/bin/env bats
# pve-watch-conf: an event is kept until its reader has it. Without --seq a
# pipe holds one line at a time and a line counts once the reader took it;
# with --seq the lines are numbered and kept until run-hooks' confirmation
# file (STATE/run-hooks/confirmed) names them. A mass disappearance from
# the owner map is held, not reported.

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

once() {
	pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once "$@"
}

@test "| head -n 1 with three creates pending: the two it never took come on the next run" {
	run -0 once
	for id in 100 101 102; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	run -0 --separate-stderr bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --once | head -n 1' - "$PVE" "$STATE"
	assert_output "create 100 qemu - $(conf pve1 qemu-server 100)"
	run -0 --separate-stderr once
	assert_output "$(printf '%s\n' "create 101 qemu - $(conf pve1 qemu-server 101)" \
		"create 102 qemu - $(conf pve1 qemu-server 102)")"
	run -0 --separate-stderr once
	assert_output ""
}

@test "a reader that takes one line at a time and dies: each line it took is done, the rest comes again" {
	run -0 once
	for id in 100 101 102 103; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	# bash's read takes a pipe byte by byte: two whole lines, nothing more
	run -0 --separate-stderr bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --once |
		{ read -r a; read -r b; printf "%s\n%s\n" "$a" "$b"; }' - "$PVE" "$STATE"
	assert_output "$(printf '%s\n' "create 100 qemu - $(conf pve1 qemu-server 100)" \
		"create 101 qemu - $(conf pve1 qemu-server 101)")"
	run -0 --separate-stderr once
	assert_output "$(printf '%s\n' "create 102 qemu - $(conf pve1 qemu-server 102)" \
		"create 103 qemu - $(conf pve1 qemu-server 103)")"
}

@test "--seq: numbered lines, kept until run-hooks' confirmation file names them; a restart replays only the rest" {
	run -0 once --seq
	for id in 100 101 102; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	run -0 --separate-stderr once --seq
	assert_output "$(printf '%s\n' "1 create 100 qemu - $(conf pve1 qemu-server 100)" \
		"2 create 101 qemu - $(conf pve1 qemu-server 101)" \
		"3 create 102 qemu - $(conf pve1 qemu-server 102)")"
	[[ $stderr == *"3 event(s) not confirmed in $STATE/run-hooks/confirmed; they are printed again on the next start"* ]]
	# read by the pipe, yet not confirmed: all three again, same numbers
	run -0 --separate-stderr bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --once --seq | cat' - "$PVE" "$STATE"
	assert_equal "$(echo "$output" | cut -d' ' -f1,2,3 | tr '\n' ,)" "1 create 100,2 create 101,3 create 102,"
	mkdir -p "$STATE/run-hooks"
	echo 2 >"$STATE/run-hooks/confirmed"
	pmxcfs-sim destroy "$PVE" 100
	run -0 --separate-stderr once --seq
	assert_output "$(printf '%s\n' "3 create 102 qemu - $(conf pve1 qemu-server 102)" \
		"4 destroy 100 qemu - $STATE/watch/destroyed/qemu-server/100.conf")"
	echo 4 >"$STATE/run-hooks/confirmed"
	run -0 --separate-stderr once --seq
	assert_output ""
	run -0 --separate-stderr once --seq --json
	assert_output ""
	pmxcfs-sim create "$PVE" pve1 lxc 105
	run -0 --separate-stderr once --seq --json
	[[ $output == '{"seq":5,"event":"create","vmid":105,"type":"lxc",'* ]]
}

@test "--seq: numbers go on from the confirmed one when the state was lost; a bad confirmation file is one warning" {
	mkdir -p "$STATE/run-hooks"
	echo 41 >"$STATE/run-hooks/confirmed"
	run -0 once --seq
	pmxcfs-sim create "$PVE" pve1 qemu 100
	run -0 --separate-stderr once --seq
	assert_output "42 create 100 qemu - $(conf pve1 qemu-server 100)"
	echo 'forty-two' >"$STATE/run-hooks/confirmed"
	run -0 --separate-stderr once --seq
	assert_output "42 create 100 qemu - $(conf pve1 qemu-server 100)"
	[[ $stderr == *"$STATE/run-hooks/confirmed: not a sequence number; waiting for a good one"* ]]
}

@test "--seq, running: an event is dropped from the state once confirmed, not before" {
	WATCH_OUT=$T/out watch_start --seq
	pmxcfs-sim create "$PVE" pve1 qemu 100
	wait_event "1 create 100 qemu - $(conf pve1 qemu-server 100)"
	wait_until 10 grep -q '^event 1 ' "$STATE/watch/owners"
	ticks_pass 5
	grep -q '^event 1 ' "$STATE/watch/owners"
	mkdir -p "$STATE/run-hooks"
	echo 1 >"$STATE/run-hooks/confirmed.tmp"
	mv "$STATE/run-hooks/confirmed.tmp" "$STATE/run-hooks/confirmed"
	wait_until 10 bash -c "! grep -q '^event ' '$STATE/watch/owners'"
	kill -TERM "$WATCH_PID"
	wait "$WATCH_PID"
	run -0 --separate-stderr once --seq
	assert_output ""
}

@test ".vmlist listing no guest while their configs are still there: no destroy, nothing saved as gone" {
	for id in 100 101 102; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	run -0 once
	cp "$PVE/.vmlist" "$T/vmlist.good"
	rm -f "$PVE/.vmlist"
	echo '{"version": 9}' >"$PVE/.vmlist"
	run -0 --separate-stderr once
	assert_output ""
	grep -qx '100 qemu pve1' "$STATE/watch/owners"
	[[ $stderr == *"3 of this node's 3 guests are missing from the owner map at once: suspicious"* ]]
}

@test "a mass disappearance (configs gone too) is held for --hold, then reported; a guest back meanwhile never was gone" {
	for id in 100 101 102 103; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	run -0 once --hold 3600
	for id in 100 101 102; do pmxcfs-sim destroy "$PVE" $id; done
	pmxcfs-sim vmlist "$PVE"
	run -0 --separate-stderr once --hold 3600
	assert_output ""
	[[ $stderr == *"guests 100, 101, 102: gone from the map and from every node's configs, with 3 of this node's 4 guests at once; holding them for 3600 s"* ]]
	grep -qx 'held 100 [0-9]*' "$STATE/watch/owners"
	# one comes back: it was never destroyed
	pmxcfs-sim create "$PVE" pve1 qemu 100
	run -0 --separate-stderr once --hold 3600
	assert_output ""
	[[ $stderr == *"guest 100: back; it was never destroyed"* ]]
	# the hold runs out (a shorter --hold on a later run counts from the saved start)
	run -0 --separate-stderr once --hold 0.01
	assert_output "$(printf '%s\n' "destroy 101 qemu - $STATE/watch/destroyed/qemu-server/101.conf" \
		"destroy 102 qemu - $STATE/watch/destroyed/qemu-server/102.conf")"
	run -0 --separate-stderr once --hold 3600
	assert_output ""
}

@test "one guest destroyed of many is no mass disappearance: reported at once" {
	for id in 100 101 102 103; do pmxcfs-sim create "$PVE" pve1 qemu $id; done
	run -0 once
	pmxcfs-sim destroy "$PVE" 101
	run -0 --separate-stderr once
	assert_output "destroy 101 qemu - $STATE/watch/destroyed/qemu-server/101.conf"
}
