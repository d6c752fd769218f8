#!/usr/bin/env bats
# pve-watch-conf as a daemon: readiness, signals, pipes, inotify queue
# overflow, bursts of thousands of changes.

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

# Bytes written to FIFO and not read yet (a second, non-reading open).
fifo_unread() {
	python3 -c 'import array, fcntl, os, sys, termios
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
a = array.array("i", [0]); fcntl.ioctl(fd, termios.FIONREAD, a); print(a[0])' "$1"
}

# Renames every guest config of FROM's TYPE dir to TO's, as migrations do,
# without re-rendering .vmlist (one process for thousands of renames).
move_all() {
	python3 -c 'import os, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for n in os.listdir(src):
    os.rename(os.path.join(src, n), os.path.join(dst, n))' "$PVE/nodes/$1/$3" "$PVE/nodes/$2/$3"
}

# expect_lines EVENT FIRST [STEP] LAST: the watcher printed exactly one EVENT
# line for each VMID of that seq(1) range and nothing else (a duplicate or a
# stray line fails). Ranges, not lists: bats' DEBUG trap makes a function
# called with thousands of arguments crawl.
expect_lines() {
	local event=$1
	shift
	seq "$@" >"$T/want"
	awk '{ print $2 }' "$T/out" | sort -n >"$T/got"
	run awk -v e="$event" '$1 != e' "$T/out"
	assert_output ""
	run diff "$T/want" "$T/got"
	assert_success
}

# settle: more ticks pass, so a late duplicate would show.
settle() { ticks_pass 20; }

@test "Type=notify: READY=1 after the first read, STATUS follows the map, STOPPING=1 on SIGTERM" {
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve2 qemu 200
	watch_start
	grep -qx "STATUS=guests: 1 here, 2 in the cluster (from .vmlist)" "$T/notify"
	pmxcfs-sim migrate "$PVE" 200 pve1
	wait_until 10 grep -qx "STATUS=guests: 2 here, 2 in the cluster (from .vmlist)" "$T/notify"
	echo garbage >"$PVE/.vmlist"
	bump_version
	wait_until 10 grep -q "^STATUS=guests: 2 here, 2 in the cluster (last good map; $PVE/.vmlist: line 1: expected '{')" "$T/notify"
	watch_stop
	assert_equal "$WATCH_RC" 0
	wait_until 5 grep -qx STOPPING=1 "$T/notify"
	# READY=1 came before anything else but STATUS.
	assert_equal "$(grep -v '^STATUS=' "$T/notify" | head -n1)" "READY=1"
}

@test "SIGTERM and SIGINT: clean exit 0 with the map saved" {
	watch_start
	pmxcfs-sim create "$PVE" pve1 lxc 100
	wait_event "create 100 lxc - $(conf pve1 lxc 100)"
	watch_stop
	assert_equal "$WATCH_RC" 0
	assert_equal "$(cat "$STATE/watch/owners")" "$(printf 'pve-watch-conf 2\nseq 1\n100 lxc pve1')"

	watch_start
	pmxcfs-sim migrate "$PVE" 100 pve2
	wait_event "migrate-out 100 lxc pve2 $(conf pve2 lxc 100)"
	kill -INT "$WATCH_PID"
	wait "$WATCH_PID"
	assert_equal "$(cat "$STATE/watch/owners")" "$(printf 'pve-watch-conf 2\nseq 2\n100 lxc pve2')"
}

@test "SIGHUP reads everything again: lost copies come back" {
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-fleecing-section.conf"
	watch_start
	assert_files_equal "$STATE/watch/guests/qemu-server/100.conf" "$FIXTURES/conf/qemu-fleecing-section.conf"
	rm "$STATE/watch/guests/qemu-server/100.conf"
	kill -HUP "$WATCH_PID"
	wait_until 10 test -e "$STATE/watch/guests/qemu-server/100.conf"
	assert_files_equal "$STATE/watch/guests/qemu-server/100.conf" "$FIXTURES/conf/qemu-fleecing-section.conf"
	grep -q "SIGHUP: reading everything again" "$T/err"
	kill -0 "$WATCH_PID"
	assert_equal "$(out_lines)" 0
}

@test "exits as soon as the pipe's reader goes away, even when idle" {
	mkfifo "$T/fifo"
	start_bg bash -c "head -n 1 <'$T/fifo' >'$T/first'"
	READER=$BG_PID
	WATCH_OUT=$T/fifo watch_start
	pmxcfs-sim create "$PVE" pve1 qemu 100
	wait_until 10 grep -qx "create 100 qemu - $(conf pve1 qemu-server 100)" "$T/first"
	# head is gone; the watcher has nothing to write, yet it notices.
	wait "$WATCH_PID"
	grep -q "stdout: the reader went away; exiting" "$T/err"
	assert_equal "$(tail -n1 "$STATE/watch/owners")" "100 qemu pve1"
}

@test "events the reader never took are printed again after a restart" {
	mkfifo "$T/fifo"
	start_bg bash -c "exec sleep 600 <'$T/fifo'" # holds the pipe, never reads
	READER=$BG_PID
	WATCH_OUT=$T/fifo watch_start
	pmxcfs-sim create "$PVE" pve1 qemu 100
	pmxcfs-sim create "$PVE" pve1 lxc 101
	wait_until 10 test "$(fifo_unread "$T/fifo")" -gt 0
	# Kept in the state, unconfirmed, while unread; the second is not
	# written while the pipe holds the first.
	ticks_pass 10
	grep -q "^event 1 [0-9]* create 100 qemu - " "$STATE/watch/owners"
	grep -q "^event 2 [0-9]* create 101 lxc - " "$STATE/watch/owners"
	assert_equal "$(fifo_unread "$T/fifo")" "$(printf 'create 100 qemu - %s\n' "$(conf pve1 qemu-server 100)" | wc -c)"
	kill "$READER"
	wait "$WATCH_PID"
	grep -q "byte(s) of events not taken by the reader; they are printed again on the next start" "$T/err"

	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	assert_output "$(printf '%s\n' "create 100 qemu - $(conf pve1 qemu-server 100)" \
		"create 101 lxc - $(conf pve1 lxc 101)")"
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once
	assert_output ""
}

@test "a reading pipe gets every line and the map is saved once it took them" {
	mkfifo "$T/fifo"
	start_bg bash -c "cat <'$T/fifo' >'$T/out'"
	WATCH_OUT=$T/fifo watch_start
	pmxcfs-sim create "$PVE" pve1 qemu 100
	wait_event "create 100 qemu - $(conf pve1 qemu-server 100)"
	wait_until 10 grep -qx "100 qemu pve1" "$STATE/watch/owners"
}

@test "a non-blocking stdout pipe that fills up: every line still arrives" {
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 lxc 100 2000
	pmxcfs-sim vmlist "$PVE"
	run -0 --separate-stderr python3 -c 'import os, subprocess, sys, time
r, w = os.pipe()
os.set_blocking(w, False)
p = subprocess.Popen(sys.argv[1:], stdout=w)
os.close(w)
time.sleep(0.5)  # let it fill the pipe (2,000 lines, over 64 KiB)
data = b""
while True:
    chunk = os.read(r, 4096)
    if not chunk:
        break
    data += chunk
    time.sleep(0.001)
print(p.wait(), len(data.splitlines()), len(set(data.splitlines())))' \
		pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --once --initial
	assert_output "0 2000 2000"
}

@test "a full state disk: events still flow, one warning for the copies, one for the map" {
	command -v unshare >/dev/null || skip "unshare is not installed"
	# A 64 KiB tmpfs as the state dir, in a mount namespace of the watcher's
	# own: nothing outside sees it; /proc/PID/root shows it.
	mkdir -p "$STATE"
	printf '#!/bin/sh\nmount -t tmpfs -o size=64k tmpfs "$1" || exit 1\nshift\nexec "$@"\n' >"$T/small-disk"
	chmod +x "$T/small-disk"
	WATCH_WRAP=(unshare -m --propagation private "$T/small-disk" "$STATE")
	watch_start
	inside=/proc/$WATCH_PID/root$STATE
	wait_until 5 test -e "$inside/watch/owners"

	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 qemu 1000 100
	pmxcfs-sim vmlist "$PVE"
	wait_until 30 out_has 100
	settle
	expect_lines create 1000 1099
	wait_until 10 grep -q "config copies are not kept until it works again" "$T/err"
	assert_equal "$(grep -c "config copies are not kept" "$T/err")" 1
	grep -q "No space left on device" "$T/err"
	run grep -c "owners: No space left on device; retrying" "$T/err"
	assert [ "$output" -le 1 ]

	# Room again: a full read writes the copies and the map.
	rm -f "$inside"/watch/guests/qemu-server/10[0-9][0-9].conf
	pmxcfs-sim destroy "$PVE" 1000
	wait_event "destroy 1000 qemu - -"
	for id in $(seq 1001 1099); do rm "$PVE/nodes/pve1/qemu-server/$id.conf"; done
	pmxcfs-sim vmlist "$PVE"
	wait_until 30 out_has 200
	pmxcfs-sim create "$PVE" pve1 lxc 999
	wait_event "create 999 lxc - $(conf pve1 lxc 999)"
	wait_until 10 test -e "$inside/watch/guests/lxc/999.conf"
	wait_until 10 grep -qx "999 lxc pve1" "$inside/watch/owners"
}

@test "inotify queue overflow: one warning, everything read again, nothing lost or doubled" {
	q=$(cat /proc/sys/fs/inotify/max_queued_events)
	n=$((q + 1000))
	watch_start
	kill -STOP "$WATCH_PID"
	# Each new file is IN_CREATE + IN_CLOSE_WRITE: far more than the queue holds.
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 qemu 1000 "$n"
	pmxcfs-sim vmlist "$PVE"
	kill -CONT "$WATCH_PID"
	wait_until 180 out_has "$n"
	wait_until 10 grep -q "inotify: event queue overflowed; reading everything again" "$T/err"
	settle
	expect_lines create 1000 $((1000 + n - 1))
	assert_equal "$(grep -c overflowed "$T/err")" 1
}

@test "a burst of 5,000 changes landing at once: exactly one event each" {
	# every guest of the node destroyed at once is a mass disappearance:
	# warned about, and here not held
	watch_start --hold 0
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 qemu 10000 5000
	pmxcfs-sim vmlist "$PVE"
	wait_until 120 out_has 5000
	settle
	expect_lines create 10000 14999

	: >"$T/out"
	move_all pve1 pve2 qemu-server
	pmxcfs-sim vmlist "$PVE"
	wait_until 120 out_has 5000
	settle
	expect_lines migrate-out 10000 14999
	grep -qx "migrate-out 12345 qemu pve2 $(conf pve2 qemu-server 12345)" "$T/out"

	: >"$T/out"
	move_all pve2 pve1 qemu-server
	pmxcfs-sim vmlist "$PVE"
	wait_until 120 out_has 5000
	settle
	expect_lines migrate-in 10000 14999
	grep -qx "migrate-in 12345 qemu pve2 $(conf pve1 qemu-server 12345)" "$T/out"

	: >"$T/out"
	find "$PVE/nodes/pve1/qemu-server" -name '*.conf' -delete
	pmxcfs-sim vmlist "$PVE"
	wait_until 120 out_has 5000
	settle
	expect_lines destroy 10000 14999
	assert_equal "$(ls "$STATE/watch/destroyed/qemu-server" | wc -l)" 5000
	assert_equal "$(ls "$STATE/watch/guests/qemu-server" | wc -l)" 0
	run grep -v "^pve-watch-conf: $PVE: node pve1: " "$T/err"
	assert_output "pve-watch-conf: 5000 of this node's 5000 guests are missing from the owner map at once: suspicious; none is reported destroyed while a config of it is on some node, nor before --hold has passed"
}

@test "changes rendered one by one as they happen: exactly one event each" {
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve2 lxc 500 300
	pmxcfs-sim vmlist "$PVE"
	watch_start
	for id in $(seq 500 799); do
		pmxcfs-sim migrate "$PVE" "$id" pve1
	done
	wait_until 60 out_has 300
	settle
	expect_lines migrate-in 500 799

	: >"$T/out"
	for id in $(seq 500 2 799); do
		pmxcfs-sim destroy "$PVE" "$id"
	done
	wait_until 60 out_has 150
	settle
	expect_lines destroy 500 2 799
	no_warnings
}
