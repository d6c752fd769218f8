#!/usr/bin/env bats
# qga-timesync against a real qemu-ga (which refuses guest-set-time: this
# machine's clock is never set) and against qga-recorder, a stand-in agent
# with a simulated guest clock that records the time it is sent.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	RUN=$T/run
	mkdir -p "$RUN"
}
teardown() { pvekit_teardown; }

agent_up() { wait_until 5 qga-ping -q -t 500 "$1"; }

recorder() { # VMID OFFSET_MS
	start_bg qga-recorder --offset-ms "$2" --log "$T/agent.log" "$RUN/$1.qga"
	REC_PID=$BG_PID
	wait_until 5 test -S "$RUN/$1.qga"
	agent_up "$RUN/$1.qga"
	: >"$T/agent.log"
}

@test "qga-timesync: a right clock is ok (real agent)" {
	start_qga "$RUN/101.qga"
	run -0 --separate-stderr qga-timesync --qga-dir "$RUN" 101
	assert_output --regexp '^101 -?[0-9]+ ok$'
	# the same host clock on both sides: a few ms at most
	[ "${output#101 }" != "$output" ]
	d=$(awk '{ print ($2 < 0 ? -$2 : $2) }' <<<"$output")
	[ "$d" -lt 500 ]
}

@test "qga-timesync: a clock off by 7 s is measured as 7 s and set to the host's time in ns" {
	recorder 101 -7000
	run -0 --separate-stderr qga-timesync --qga-dir "$RUN" 101
	assert_output --regexp '^101 -[0-9]+ fixed$'
	d=$(awk '{ print $2 }' <<<"$output")
	[ "$d" -le -6950 ] && [ "$d" -ge -7050 ]
	run jq -c 'select(.execute == "guest-set-time")' "$T/agent.log"
	[ "${#lines[@]}" -eq 1 ]
	# the time sent is the host's, taken right before sending
	jq -e '(.arguments.time | type) == "number" and ((.arguments.time - .host_ns) | fabs) < 1e9' <<<"${lines[0]}"
	# and the guest clock is right now
	run -0 qga-timesync --qga-dir "$RUN" 101
	assert_output --regexp '^101 -?[0-9]+ ok$'
}

@test "qga-timesync: a clock ahead is fixed too; --max-drift decides" {
	recorder 101 2500
	run -0 qga-timesync --max-drift 3000 --qga-dir "$RUN" 101
	assert_output --regexp '^101 2[45][0-9][0-9] ok$'
	refute grep -q guest-set-time "$T/agent.log"
	run -0 qga-timesync --max-drift 2000 --qga-dir "$RUN" 101
	assert_output --regexp '^101 2[45][0-9][0-9] fixed$'
	grep -q guest-set-time "$T/agent.log"
}

@test "qga-timesync: -n only reports a clock that is off (exit 1)" {
	recorder 101 5000
	run -1 qga-timesync -n --qga-dir "$RUN" 101
	assert_output --regexp '^101 (49[5-9][0-9]|50[0-4][0-9]) off$'
	grep -q guest-get-time "$T/agent.log"
	refute grep -q guest-set-time "$T/agent.log"
}

@test "qga-timesync: an agent that refuses guest-set-time is reported unfixed (exit 1)" {
	start_qga "$RUN/101.qga"
	agent_up "$RUN/101.qga"
	# --max-drift 0: set every clock, so the real agent is asked
	run -1 --separate-stderr qga-timesync --max-drift 0 --qga-dir "$RUN" 101
	assert_output --regexp '^101 -?[0-9]+ unfixed error$'
	[[ $stderr == *"Command guest-set-time has been disabled"* ]]
}

@test "qga-timesync: an unreadable clock fails: exit 1, or 2 when an agent timed out" {
	start_qga "$RUN/102.qga"
	agent_up "$RUN/102.qga"
	run -1 --separate-stderr qga-timesync --qga-dir "$RUN" 101 102
	assert_line -n 0 '101 - fail no-socket'
	assert_line -n 1 --regexp '^102 -?[0-9]+ ok$'
	kill -STOP "$QGA_PID"
	run -2 --separate-stderr qga-timesync -t 300 --qga-dir "$RUN" 102
	assert_output '102 - fail timeout'
	kill -CONT "$QGA_PID"
}

# clock VMID NS: a stand-in agent whose guest-get-time always answers NS.
clock() {
	start_bg qga-recorder --time "$2" --log "$T/agent.log" "$RUN/$1.qga"
	wait_until 5 test -S "$RUN/$1.qga"
	agent_up "$RUN/$1.qga"
}

@test "qga-timesync: a guest clock of INT64_MIN, INT64_MAX or before 1970 is refused, never set (exit 65)" {
	clock 101 -9223372036854775808
	clock 102 9223372036854775807
	clock 103 -1
	clock 104 9214646400000000000
	start_qga "$RUN/105.qga"
	agent_up "$RUN/105.qga"
	: >"$T/agent.log"
	run -65 --separate-stderr qga-timesync --max-drift 0 --qga-dir "$RUN" 101 102 103 104 105
	assert_line -n 0 '101 - fail bad-time'
	assert_line -n 1 '102 - fail bad-time'
	assert_line -n 2 '103 - fail bad-time'
	assert_line -n 3 '104 - fail bad-time'
	# the real agent is still asked and set (it refuses: unfixed)
	assert_line -n 4 --regexp '^105 -?[0-9]+ unfixed error$'
	[[ $stderr == *"qga-timesync: $RUN/101.qga: guest-get-time returned -9223372036854775808 ns: not a time from 1970 to 2261, clock left alone"* ]]
	[[ $stderr == *"qga-timesync: $RUN/102.qga: guest-get-time returned 9223372036854775807 ns: not a time from 1970 to 2261, clock left alone"* ]]
	refute grep -q guest-set-time "$T/agent.log"
	run -65 --separate-stderr qga-timesync --json --qga-dir "$RUN" 101
	jq -e '.status == "fail" and .reason == "bad-time" and (has("drift_ms") | not)' <<<"$output"
	# -n and the exit status: 65 wins over a timeout (2) and a failure (1)
	run -65 qga-timesync -n -t 300 --qga-dir "$RUN" 101 199
	assert_line '199 - fail no-socket'
}

@test "qga-timesync: the drift of a clock at the ends of the range has the right sign" {
	clock 101 1000000000
	clock 102 9214645000000000000
	run -0 --separate-stderr qga-timesync --qga-dir "$RUN" 101 102
	# 1970-01-01T00:00:01Z: far behind; 2261-12-31: far ahead
	assert_line -n 0 --regexp '^101 -1[0-9]{12} fixed$'
	assert_line -n 1 --regexp '^102 7[0-9]{12} fixed$'
	[ "$(grep -c guest-set-time "$T/agent.log")" -eq 2 ]
}

@test "qga-timesync: --wait waits for the agent to come up" {
	start_bg qga-timesync -v --wait 20 -t 300 --qga-dir "$RUN" 101 >"$T/out" 2>"$T/err"
	ts=$BG_PID
	wait_until 10 grep -q 'not answering yet' "$T/err"
	start_qga "$RUN/101.qga"
	rc=0
	wait "$ts" || rc=$?
	[ "$rc" -eq 0 ]
	run cat "$T/out"
	assert_output --regexp '^101 -?[0-9]+ ok$'
}

@test "qga-timesync: --all and --json" {
	make_pve
	pmxcfs-sim create "$PVE" pve1 qemu 101
	pmxcfs-sim create "$PVE" pve1 qemu 102
	pmxcfs-sim edit "$PVE" 102 "agent: 0"
	fake_qemu "$RUN" 101
	fake_qemu "$RUN" 102
	recorder 101 -4000
	start_qga "$RUN/102.qga"
	run -0 qga-timesync --all --json --pve-dir "$PVE" --node pve1 --qga-dir "$RUN"
	[ "${#lines[@]}" -eq 1 ]
	jq -e '.vmid == 101 and .status == "fixed" and .drift_ms < -3900 and .drift_ms > -4100' <<<"${lines[0]}"
}

@test "qga-timesync-hookscript: post-start starts qga-timesync detached and returns at once" {
	start_qga "$RUN/101.qga"
	agent_up "$RUN/101.qga"
	kill -STOP "$QGA_PID"
	export PVEKIT_QGA_DIR=$RUN PVEKIT_TIMESYNC_LOG=$T/hook.log
	hs=$TOP/share/hooks/qga-timesync-hookscript
	run -0 "$hs" 101 pre-start
	run -0 "$hs" 101 post-stop
	[ ! -e "$T/hook.log" ]
	# the agent is hung: qga-timesync is still waiting when the hook returned
	run -0 "$hs" 101 post-start
	pgrep -f "qga-timesync --qga-dir $RUN --wait 60 101"
	pid=$(pgrep -f "qga-timesync --qga-dir $RUN --wait 60 101")
	echo "$pid" >>"$T/.bg-pids"
	# in a session of its own, so Proxmox's task is not waiting on it
	[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ]
	kill -CONT "$QGA_PID"
	wait_until 20 grep -q '^101 -\?[0-9]* ok$' "$T/hook.log"
}

@test "qga-timesync-hookscript: a live-migration target and a container are skipped at once" {
	# the tool is a recorder: every start it would get is one line
	printf '#!/bin/sh\necho "$*" >>"%s"\n' "$T/calls" >"$T/tool"
	chmod +x "$T/tool"
	# /etc/pve as pmxcfs shows it: lxc and qemu-server link to this node's folders
	make_pve pve1 pve2
	ln -s nodes/pve1/lxc "$PVE/lxc"
	ln -s nodes/pve1/qemu-server "$PVE/qemu-server"
	printf 'hostname: ct110\n' >"$T/110.conf"
	pmxcfs-sim create "$PVE" pve1 lxc 110 "$T/110.conf"
	printf 'agent: 1\n' >"$T/vm.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 101 "$T/vm.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 102 "$T/vm.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 103 "$T/vm.conf"
	pmxcfs-sim create "$PVE" pve2 qemu 104 "$T/vm.conf"
	pmxcfs-sim lock "$PVE" 103 migrate
	pmxcfs-sim lock "$PVE" 102 suspended
	export PVEKIT_PVE_DIR=$PVE PVEKIT_QGA_DIR=$RUN PVEKIT_TIMESYNC=$T/tool PVEKIT_TIMESYNC_LOG=$T/hook.log
	hs=$TOP/share/hooks/qga-timesync-hookscript
	# qm start 104 --migratedfrom pve2 on this node: the config is still pve2's
	run -0 env PVE_MIGRATED_FROM=pve2 "$hs" 104 post-start
	assert_output ""
	# pct start 110
	run -0 "$hs" 110 post-start
	assert_output ""
	# the target of qm remote-migrate: no PVE_MIGRATED_FROM, lock: migrate
	run -0 "$hs" 103 post-start
	# a hibernated VM resuming (lock: suspended) and a plain start are synced
	run -0 "$hs" 102 post-start
	run -0 "$hs" 101 post-start
	wait_until 10 grep -q ' 101$' "$T/calls"
	wait_until 10 grep -q ' 102$' "$T/calls"
	run cat "$T/calls"
	assert_line "--qga-dir $RUN --wait 60 101"
	assert_line "--qga-dir $RUN --wait 60 102"
	[ "${#lines[@]}" -eq 2 ]
}

@test "qga-timesync: usage, help and version" {
	run -0 qga-timesync -h
	assert_output --partial 'usage: qga-timesync'
	run -0 qga-timesync -V
	run -64 qga-timesync --max-drift x 101
	run -64 qga-timesync --all 101
	run -64 qga-timesync nope
}
