#!/usr/bin/env bats
# qga-ping --wait: real qemu-ga agents that come up late, one that never
# does, and a hung agent (a real QEMU's agent socket with nothing behind it).
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	RUN=$T/run
	mkdir -p "$RUN"
}

teardown() {
	pvekit_teardown
}

# late_agent VMID SECS: a real agent on RUN/VMID.qga, SECS after $T/go exists
late_agent() {
	mkdir -p "$T/qga-$1"
	start_bg bash -c "until [ -e '$T/go' ]; do sleep 0.02; done; sleep $2
		exec qemu-ga -m unix-listen -p '$RUN/$1.qga' -t '$T/qga-$1' -b guest-set-time"
}

@test "qga-ping --wait: ends as soon as every agent answers, agents that come up late included" {
	late_agent 101 0.5
	late_agent 102 1
	# not there yet: a ping without --wait fails
	run -1 qga-ping -q --qga-dir "$RUN" 101 102
	assert_output "101 fail no-socket
102 fail no-socket"
	touch "$T/go"
	# as soon as: a wait that went on to its 60 s would be ended by timeout(1)
	run -0 --separate-stderr timeout 20 qga-ping --wait 60 --qga-dir "$RUN" 101 102
	assert_line --index 0 --regexp '^101 ok [0-9.]+$'
	assert_line --index 1 --regexp '^102 ok [0-9.]+$'
	assert_equal "${#lines[@]}" 2
	assert_equal "$stderr" "" # quietly: the failed tries say nothing
}

@test "qga-ping --wait: at the deadline exits 2 naming the agents that never answered" {
	late_agent 101 0
	touch "$T/go"
	run -2 --separate-stderr qga-ping --wait 1 --qga-dir "$RUN" 101 103 104
	assert_line --index 0 --regexp '^101 ok [0-9.]+$'
	assert_line --index 1 "103 fail no-socket"
	assert_line --index 2 "104 fail no-socket"
	assert_equal "${stderr_lines[-1]}" "qga-ping: not answering after 1 s: 103 104"
	grep -qx "qga-ping: $RUN/103.qga: no such socket.*" <<<"$stderr"
	# -q: only the line that names them
	run -2 --separate-stderr qga-ping -q --wait 0.5 --qga-dir "$RUN" 103
	assert_equal "$stderr" "qga-ping: not answering after 0.5 s: 103"
}

@test "qga-ping --wait: a hung agent holds it to the deadline, never longer, whatever -t says" {
	start_qemu "$RUN" 105 --qga
	# one try may take 10 s; the wait is 1 s: timeout(1) would end it at 8
	run -2 --separate-stderr timeout 8 qga-ping --wait 1 -t 10000 --qga-dir "$RUN" 105
	assert_output "105 fail timeout"
	assert_equal "${stderr_lines[-1]}" "qga-ping: not answering after 1 s: 105"
}

@test "qga-ping --wait: --json lines, and not with --watch" {
	late_agent 101 0
	touch "$T/go"
	run -2 --separate-stderr qga-ping --json --wait 1 --qga-dir "$RUN" 101 103
	jq -e 'select(.target == "101") | .status == "ok" and (.rtt_ms | type) == "number"' <<<"${lines[0]}"
	jq -e '.target == "103" and .status == "fail" and .reason == "no-socket"
		and (.detail | contains("no such socket"))' <<<"${lines[1]}"
	run -64 --separate-stderr qga-ping --watch --wait 5
	assert_equal "${stderr_lines[0]}" "qga-ping: --wait is for one-shot pings, not --watch"
	run -64 --separate-stderr qga-ping --wait 0 101
	assert_equal "${stderr_lines[0]}" "qga-ping: --wait 0: want seconds from 0.01 to 1000000000"
}
