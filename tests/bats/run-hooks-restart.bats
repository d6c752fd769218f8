# run-hooks --events killed with SIGKILL and started again at once: the
# killed run's hooks die with it (their supervisor follows its parent), the
# restart waits for them instead of failing, and one guest's hooks never
# overlap across the restart. Also with --systemd-run, where a killed
# systemd-run leaves its unit running (the fake PID 1 in
# tests/fakes/pve-bin does as PID 1 does).
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	H=$T/hooks
	S=$T/state
	mkdir -p "$H/up.d" "$H/down.d"
}
teardown() { pvekit_teardown; }

hook() {
	local f=$1
	shift
	printf '#!/bin/sh\n%s\n' "$@" >"$f"
	chmod +x "$f"
}

# events_bg [OPTIONS]: run-hooks --events reading the fifo $T/in, which the
# test writes through fd 7. Sets $pid.
events_bg() {
	[ -p "$T/in" ] || mkfifo "$T/in"
	exec 7<>"$T/in"
	start_bg exec_with_stdin "$T/in" run-hooks --events "$H" --state-dir "$S" --node pve1 "$@" 2>>"$T/err"
	pid=$BG_PID
}

exec_with_stdin() {
	local f=$1
	shift
	exec "$@" <"$f" 7>&-
}

# A hook that logs "start VMID PID", and on SIGTERM "term VMID PID", then
# takes its time to clean up: it ends ("end VMID PID") only once $T/release
# exists. Without a signal it ends when $T/done exists. Its output goes to
# a file: with run-hooks dead, a write to its pipes would end it (SIGPIPE)
# before its clean-up.
slow_hook() {
	hook "$1" 'exec >>'"$T/hook.out"' 2>&1' 'echo "start $PVEKIT_VMID $$" >>'"$T/log" \
		'trap '\''echo "term $PVEKIT_VMID $$" >>'"$T/log"'; while [ ! -e '"$T/release"' ]; do sleep 0.02; done; echo "end $PVEKIT_VMID $$" >>'"$T/log"'; exit 0'\'' TERM' \
		'while [ ! -e '"$T/done"' ]; do sleep 0.02; done' \
		'echo "end $PVEKIT_VMID $$" >>'"$T/log"
}

# no_overlap: in $T/log every "start" comes after the previous run's "end".
no_overlap() {
	awk '$1 == "start" { if (open) { print "overlap: " $0 " while " open " runs"; bad = 1 } open = $3 }
	     $1 == "end" { open = "" }
	     END { exit bad }' "$T/log"
}

@test "SIGKILL mid-hook, restarted at once: the restart waits for the old hook, which ends first; no overlap" {
	slow_hook "$H/up.d/10-slow"
	events_bg --kill-after 60
	echo 'create 100 qemu - /c100' >&7
	wait_until 10 grep -q '^start 100 ' "$T/log"
	kill -KILL "$pid"
	exec 7>&-
	# the supervisor saw its parent die and stopped the hook
	wait_until 10 grep -q '^term 100 ' "$T/log"
	touch "$T/done"
	rm -f "$T/in"
	events_bg --kill-after 60
	exec 7>&-
	# either the replay starts the hook again (the old one still in its
	# SIGTERM handler: an overlap) or the restart waits for it
	wait_until 10 bash -c "[ \$(grep -c '^start 100 ' '$T/log') -ge 2 ] ||
		grep -q 'waiting for the hooks of an earlier run' '$T/err' 2>/dev/null ||
		! kill -0 $pid 2>/dev/null" 2>/dev/null || true
	touch "$T/release"
	rc=0
	wait "$pid" || rc=$?
	cat "$T/log"
	[ "$rc" = 0 ]
	run no_overlap
	assert_success
	[ "$(grep -c '^start 100 ' "$T/log")" = 2 ]
	[ "$(grep -c '^end 100 ' "$T/log")" = 2 ]
}

@test "run-hooks killed between forking a hook's supervisor and its PR_SET_PDEATHSIG: the hook never starts" {
	command -v strace >/dev/null || skip "strace is not installed"
	# SIGTERM ignored from its first instruction: a stop cannot beat it
	printf '#!/usr/bin/env -S --ignore-signal=TERM /bin/sh\necho "start $PVEKIT_VMID" >>%s\n' \
		"$T/log" >"$H/up.d/10-rec"
	chmod +x "$H/up.d/10-rec"
	# strace holds each new process at its first prctl (the supervisor's
	# PR_SET_CHILD_SUBREAPER) until the test has killed run-hooks.
	mkfifo "$T/in"
	exec 7<>"$T/in"
	start_bg strace -f -o "$T/strace" -e trace=prctl -e inject=prctl:delay_enter=3s:when=1 \
		bash -c 'exec run-hooks --events "$1" --state-dir "$2" --node pve1 <"$3" 7>&- 2>>"$4"' \
		- "$H" "$S" "$T/in" "$T/err"
	echo 'create 100 qemu - /c100' >&7
	wait_until 20 grep -q 'prctl(PR_SET_CHILD_SUBREAPER' "$T/strace"
	rh=$(awk '$2 ~ /^prctl\(PR_SET_CHILD_SUBREAPER/ { print $1; exit }' "$T/strace")
	parent=$(awk '/^PPid:/ { print $2 }' "/proc/$rh/status")
	kill -KILL "$parent"
	exec 7>&-
	# the supervisor goes on once the delay is over, and ends
	wait_until 20 grep -Eq "^$rh +\+\+\+ exited" "$T/strace" || { cat "$T/strace" "$T/err"; false; }
	assert_file_not_exists "$T/log"
}

@test "restarted while a supervisor of the killed run is held before it could close our descriptors: no exit 75, the replay waits for it" {
	command -v strace >/dev/null || skip "strace is not installed"
	printf '#!/bin/sh\necho "start $PVEKIT_VMID" >>%s\n' "$T/log" >"$H/up.d/10-rec"
	chmod +x "$H/up.d/10-rec"
	mkfifo "$T/in"
	exec 7<>"$T/in"
	start_bg strace -f -o "$T/strace" -e trace=prctl -e inject=prctl:delay_enter=5s:when=1 \
		bash -c 'exec run-hooks --events "$1" --state-dir "$2" --node pve1 <"$3" 7>&- 2>>"$4"' \
		- "$H" "$S" "$T/in" "$T/err"
	echo 'create 100 qemu - /c100' >&7
	wait_until 20 grep -q 'prctl(PR_SET_CHILD_SUBREAPER' "$T/strace"
	rh=$(awk '$2 ~ /^prctl\(PR_SET_CHILD_SUBREAPER/ { print $1; exit }' "$T/strace")
	parent=$(awk '/^PPid:/ { print $2 }' "/proc/$rh/status")
	kill -KILL "$parent"
	exec 7>&-
	# the held supervisor still has every descriptor of the killed run
	kill -0 "$rh"
	run -0 --separate-stderr run-hooks --events "$H" --state-dir "$S" --node pve1 </dev/null
	[[ $stderr == *"$S/run-hooks: waiting for the hooks of an earlier run to end"* ]]
	grep -Eq "^$rh +\+\+\+ exited" "$T/strace"
	# the replay ran it once; the orphaned supervisor started nothing
	assert_equal "$(cat "$T/log")" "start 100"
}

@test "--seq lines: the number is no part of the hook's view; each batch is journaled, then confirmed in STATE/run-hooks/confirmed" {
	hook "$H/up.d/10-rec" 'echo "$PVEKIT_EVENT $PVEKIT_VMID $1" >>'"$T/log"
	printf '%s\n' '7 create 100 qemu - /c/100.conf' 'migrate-in 101 lxc pve2 /c/101.conf' \
		'8 create 102 qemu - /c 2/102.conf' >"$T/in"
	run -0 --separate-stderr run-hooks --events "$H" --state-dir "$S" --node pve1 <"$T/in"
	sort "$T/log" >"$T/log.sorted"
	assert_equal "$(cat "$T/log.sorted")" "$(printf '%s\n' 'create 100 /c/100.conf' 'create 102 /c 2/102.conf' 'migrate-in 101 /c/101.conf')"
	assert_equal "$(cat "$S/run-hooks/confirmed")" 8
	assert_file_permission 600 "$S/run-hooks/confirmed"
	# a lower number never moves it back; a bad one is refused
	printf '%s\n' '3 destroy 100 qemu - /c/100.conf' '0 create 103 qemu - /x' 'x9 create 104 qemu - /x' >"$T/in"
	run -65 --separate-stderr run-hooks --events "$H" --state-dir "$S" --node pve1 <"$T/in"
	assert_equal "$(cat "$S/run-hooks/confirmed")" 8
	[[ $stderr == *'stdin:2: bad sequence number "0 create 103 qemu - /x"; skipped'* ]]
	[[ $stderr == *'stdin:3: unknown event "x9"; skipped'* ]]
}

# The end-to-end pipeline under test: pve-watch-conf --seq into run-hooks,
# both on $S, reading and writing the fifo $T/pipe.
pipeline_setup() {
	make_pve pve1 pve2
	hook "$H/up.d/10-rec" 'echo "start $PVEKIT_VMID" >>'"$T/log"
	run -0 pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$S" --once --seq
}

@test "SIGKILL of run-hooks holding read bytes it has not journaled: the watcher prints them again, the hook runs" {
	command -v strace >/dev/null || skip "strace is not installed"
	pipeline_setup
	mkfifo "$T/pipe"
	exec 7<>"$T/pipe"
	start_bg exec_with_stdin "$T/pipe" run-hooks --events "$H" --state-dir "$S" --node pve1 2>>"$T/err"
	rh=$BG_PID
	start_bg bash -c 'exec pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --interval 0.1 --seq >"$3" 7>&-' \
		- "$PVE" "$S" "$T/pipe" 2>>"$T/err"
	watcher=$BG_PID
	exec 7>&-
	# run-hooks idle in its poll of stdin; from now on every read it makes
	# returns only 30 s after it took the bytes from the pipe
	wait_until 10 grep -q '^271 ' "/proc/$rh/syscall"
	start_bg strace -p "$rh" -o "$T/strace" -e trace=read -e inject=read:delay_exit=30s
	wait_until 10 awk '/^TracerPid:/ { exit !($2 > 0) }' "/proc/$rh/status"
	rchar=$(awk '/^rchar:/ { print $2 }' "/proc/$rh/io")
	pmxcfs-sim create "$PVE" pve1 qemu 100
	# the line left the pipe into run-hooks, which has not journaled it
	wait_until 20 awk -v was="$rchar" '/^rchar:/ { exit !($2 > was) }' "/proc/$rh/io"
	run ! grep -q 'create 100' "$S/run-hooks/journal"
	kill -KILL "$rh"
	wait "$watcher" || true
	grep -q "1 event(s) not confirmed in $S/run-hooks/confirmed; they are printed again on the next start" "$T/err"
	assert_file_not_exists "$T/log"

	run -0 bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --once --seq |
		run-hooks --events "$3" --state-dir "$2" --node pve1' - "$PVE" "$S" "$H"
	assert_equal "$(cat "$T/log")" "start 100"
	assert_equal "$(cat "$S/run-hooks/confirmed")" 1
	# confirmed: the next start prints nothing
	run -0 --separate-stderr pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$S" --once --seq
	assert_output ""
}

@test "pve-watch-conf --seq | run-hooks, killed and restarted over and over: every event's hook runs, none is lost" {
	pipeline_setup
	for round in 1 2 3 4 5; do
		for k in 1 2 3; do pmxcfs-sim create "$PVE" pve1 qemu $((round * 10 + k)); done
		start_bg bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --interval 0.05 --seq |
			run-hooks --events "$3" --state-dir "$2" --node pve1' - "$PVE" "$S" "$H" 2>>"$T/err"
		p=$BG_PID
		sleep 0.$((RANDOM % 5))
		pkill -KILL -P "$p" || true
		wait "$p" || true
	done
	run -0 bash -c 'pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --once --seq |
		run-hooks --events "$3" --state-dir "$2" --node pve1' - "$PVE" "$S" "$H"
	for id in 11 12 13 21 22 23 31 32 33 41 42 43 51 52 53; do
		grep -qx "start $id" "$T/log" || { echo "lost: $id"; cat "$T/log"; false; }
	done
}
