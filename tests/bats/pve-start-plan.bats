#!/usr/bin/env bats
# pve-start-plan on a simulated node: pmxcfs-sim for /etc/pve, the stand-in
# qm/pct (tests/fakes/pve-bin) whose calls land in $T/calls, real qemu-ga
# agents that a start brings up after a delay (the stand-in's on-start
# hook), and ports that a real listener opens late. Ports live in a network
# namespace of the test's own, so any port number is free there.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$T/.bg-pids
	export PVEKIT_FAKE_LXC=$T/lxc PVEKIT_FAKE_PVE=$PVE
	: >"$T/calls"
	CONF=$T/pvekit
	mkdir -p "$CONF/tcpcheck"
	# on-start hook: "VMID SECS" lines in $T/agents bring up that guest's
	# agent SECS after its start; "VMID port SECS PORT" a listener.
	: >"$T/agents"
	cat >"$T/on-start" <<-'EOF'
		#!/bin/bash
		vmid=$1
		while read -r id what a b; do
			[ "$id" = "$vmid" ] || continue
			case $what in
			agent)
				mkdir -p "$T/qga-$id"
				setsid bash -c "sleep $a; echo 'agent $id up' >>'$T/calls';
					exec ${NS:+ip netns exec $NS} qemu-ga -m unix-listen -p '$RUN/$id.qga' \
					-t '$T/qga-$id' -b guest-set-time" </dev/null >/dev/null 2>&1 &
				echo $! >>"$PVEKIT_FAKE_PIDS" ;;
			port)
				setsid bash -c "sleep $a; echo 'port $b up' >>'$T/calls';
					exec ip netns exec $NS socat TCP-LISTEN:$b,fork,reuseaddr /dev/null" \
					</dev/null >/dev/null 2>&1 &
				echo $! >>"$PVEKIT_FAKE_PIDS" ;;
			barrier)
				# this start returns only once every start named in $a was called
				for _ in $(seq 500); do
					ok=1
					for other in ${a//,/ }; do grep -qx "qm start $other" "$T/calls" || ok=0; done
					[ $ok = 1 ] && break
					sleep 0.02
				done
				[ $ok = 1 ] || { echo "barrier: not all of $a started" >&2; exit 1; } ;;
			esac
		done <"$T/agents"
	EOF
	chmod +x "$T/on-start"
	export PVEKIT_FAKE_ON_START=$T/on-start T RUN
}

teardown() {
	pvekit_teardown
}

qemu_guest() { # VMID [KEY: VALUE]...
	local id=$1
	shift
	pmxcfs-sim create "$PVE" pve1 qemu "$id"
	for kv in "$@"; do pmxcfs-sim edit "$PVE" "$id" "$kv"; done
}

plan() {
	cat >"$T/plan"
}

run_plan() {
	run --separate-stderr pve-start-plan -c "$T/plan" --pve-dir "$PVE" --node pve1 \
		--run-dir "$RUN" --lxc-dir "$T/lxc" --config-dir "$CONF" "$@"
}

# line NUMBER of $T/calls matching REGEX (fails when none)
line_of() {
	grep -nE "$1" "$T/calls" | head -n1 | cut -d: -f1 | grep .
}

@test "pve-start-plan: malformed lines are FILE:LINE errors, exit 78, and nothing starts" {
	qemu_guest 101
	plan <<-EOF
		# a comment
		start 101
		start
		wait agent
		wait port 101 http
		wait port 101 99999 10
		wait agent 101 -3
		delay soon
		launch 101
		wait for 101
		start 101;reboot
	EOF
	run_plan
	[ "$status" -eq 78 ]
	assert_equal "$output" ""
	for l in 3 4 5 6 7 8 9 10 11; do
		grep -q "^pve-start-plan: $T/plan:$l: " <<<"$stderr" || { echo "no error for line $l: $stderr"; false; }
	done
	[ "$(grep -c "$T/plan:" <<<"$stderr")" -eq 9 ]
	grep -qx "pve-start-plan: $T/plan:11: not a VMID" <<<"$stderr"
	rm "$T/plan"
	mkfifo "$T/plan"
	run_plan
	[ "$status" -eq 78 ]
	assert_equal "$stderr" "pve-start-plan: $T/plan: not a regular file"
	[ ! -s "$T/calls" ]
}

@test "pve-start-plan: a plan on stdin with a bad line exits 65 (bad input data)" {
	qemu_guest 101
	run --separate-stderr pve-start-plan -c - --pve-dir "$PVE" --node pve1 --run-dir "$RUN" \
		<<<$'start 101\ndelay x'
	[ "$status" -eq 65 ]
	assert_equal "$stderr" "pve-start-plan: stdin:2: delay wants seconds"
	[ ! -s "$T/calls" ]
}

@test "pve-start-plan: -n prints what it would do; running, onboot and foreign guests are skipped" {
	qemu_guest 101
	qemu_guest 102
	qemu_guest 103 "onboot: 1"
	qemu_guest 104
	pmxcfs-sim create "$PVE" pve2 qemu 150
	fake_qemu "$RUN" 102
	echo "ip=192.0.2.7" >"$CONF/tcpcheck/104.conf"
	plan <<-EOF
		start 101 102 103 150   # group one
		wait agent 101 30
		delay 2
		start 104
		wait port 104 443
	EOF
	run_plan -n
	[ "$status" -eq 0 ]
	assert_equal "$output" "start 101 dry-run qm start 101
start 102 skipped running
start 103 skipped onboot
start 150 skipped not-here
wait agent 101 30 dry-run 30
delay 2 dry-run
start 104 dry-run qm start 104
wait port 104 443 dry-run 120 192.0.2.7 tcpcheck"
	grep -qx "pve-start-plan: $T/plan:1: guest 150 is not on this node: skipped" <<<"$stderr"
	grep -qx "pve-start-plan: left to Proxmox (onboot=1, started by pve-guests): 103" <<<"$stderr"
	[ ! -s "$T/calls" ]
}

@test "pve-start-plan: a start line starts its guests in parallel, the next group only once their agents answer" {
	qemu_guest 101
	qemu_guest 102
	qemu_guest 103
	# 101's start returns only when 102's was called too, and the other way
	# round: run one after the other, the first would fail at its barrier.
	cat >"$T/agents" <<-EOF
		101 barrier 101,102
		102 barrier 101,102
		101 agent 1.0
		102 agent 0.5
		103 agent 0.2
	EOF
	plan <<-EOF
		start 101 102
		wait agent 101 30
		wait agent 102 30
		start 103
		wait agent 103 30
	EOF
	run_plan
	echo "$output"; echo "$stderr"; cat "$T/calls"
	[ "$status" -eq 0 ]
	assert_line --index 0 --regexp '^start 10[12] ok [0-9.]+$'
	assert_line --index 1 --regexp '^start 10[12] ok [0-9.]+$'
	assert_line --index 2 --regexp '^wait agent 101 30 ready [0-9.]+$'
	assert_line --index 3 --regexp '^wait agent 102 30 ready [0-9.]+$'
	assert_line --index 4 --regexp '^start 103 ok [0-9.]+$'
	assert_line --index 5 --regexp '^wait agent 103 30 ready [0-9.]+$'
	# the second group starts after both agents of the first came up
	[ "$(line_of '^agent 101 up')" -lt "$(line_of '^qm start 103')" ]
	[ "$(line_of '^agent 102 up')" -lt "$(line_of '^qm start 103')" ]
	# and each wait ended when its agent answered, long before its 30 s
	for w in 101 102 103; do
		s=$(awk -v w="$w" '$1 == "wait" && $3 == w { print $6 }' <<<"$output")
		[ -n "$s" ]
		awk -v s="$s" 'BEGIN { exit !(s < 10) }'
	done
}

@test "pve-start-plan: a wait past its deadline is reported and the plan goes on; --strict stops there" {
	qemu_guest 101
	qemu_guest 102
	plan <<-EOF
		start 101
		wait agent 101 0.5
		start 102
	EOF
	run_plan
	[ "$status" -eq 2 ]
	assert_equal "$output" "$(printf 'start 101 ok %s\nwait agent 101 0.5 timeout 0.50\nstart 102 ok %s' \
		"$(sed -n 1p <<<"$output" | awk '{ print $4 }')" "$(sed -n 3p <<<"$output" | awk '{ print $4 }')")"
	grep -q "^pve-start-plan: wait agent 101 0.5: not ready after 0.5 s: .*101.qga" <<<"$stderr"
	grep -qx "qm start 102" "$T/calls"

	qm stop 101 && qm stop 102 && : >"$T/calls"
	run_plan --strict
	[ "$status" -eq 2 ]
	assert_line --index 1 "wait agent 101 0.5 timeout 0.50"
	[ "${#lines[@]}" -eq 2 ]
	grep -q "^pve-start-plan: --strict: stopping after $T/plan:2" <<<"$stderr"
	refute grep -q "qm start 102" "$T/calls"
}

@test "pve-start-plan: a failed start is reported, its waits fail at once, the rest runs (exit 1)" {
	qemu_guest 101
	qemu_guest 102
	plan <<-EOF
		start 101
		wait agent 101 60
		wait port 101 22 60
		start 102
	EOF
	PVEKIT_FAKE_START_RC=1 run_plan
	[ "$status" -eq 1 ]
	assert_line --index 0 --regexp '^start 101 failed [0-9.]+$'
	assert_line --index 1 "wait agent 101 60 failed not-started"
	assert_line --index 2 "wait port 101 22 60 failed not-started"
	assert_line --index 3 --regexp '^start 102 failed [0-9.]+$'
	grep -qx "pve-start-plan: start 101: qm start 101: start failed: fake failure" <<<"$stderr"
}

@test "pve-start-plan: already running guests are skipped, not started again" {
	qemu_guest 101
	qemu_guest 102
	fake_qemu "$RUN" 101
	plan <<<"start 101 102"
	run_plan
	[ "$status" -eq 0 ]
	assert_line --index 0 "start 101 skipped running"
	assert_line --index 1 --regexp '^start 102 ok '
	assert_equal "$(cat "$T/calls")" "qm start 102"
}

@test "pve-start-plan: containers start through pct, skipped when LXC's command socket says running" {
	pmxcfs-sim create "$PVE" pve1 lxc 200
	pmxcfs-sim create "$PVE" pve1 lxc 201
	pct start 201 && : >"$T/calls"
	plan <<<"start 200 201"
	run_plan
	[ "$status" -eq 0 ]
	assert_line --index 0 "start 201 skipped running"
	assert_line --index 1 --regexp '^start 200 ok '
	assert_equal "$(cat "$T/calls")" "pct start 200"
}

@test "pve-start-plan: guests by name (VMMonitor's lists name them); a name two guests share is an error" {
	qemu_guest 101 "name: web"
	qemu_guest 102 "name: db"
	plan <<<"start db web"
	run_plan
	[ "$status" -eq 0 ]
	assert_line --index 0 --regexp '^start (db|web) ok '
	assert_equal "$(sort "$T/calls")" "qm start 101
qm start 102"

	qemu_guest 103 "name: web"
	: >"$T/calls"
	run_plan
	[ "$status" -eq 78 ]
	assert_equal "$stderr" "pve-start-plan: $T/plan:1: web: 2 guests of this node have that name; use the VMID"
	[ ! -s "$T/calls" ]
}

@test "pve-start-plan: wait port on a port that opens late: tcpcheck's ip=, an address in the plan, a deadline" {
	NS=$(netns_add plan)
	export NS
	qemu_guest 101
	echo "ip=127.0.0.1" >"$CONF/tcpcheck/101.conf"
	cat >"$T/agents" <<-EOF
		101 port 0.8 8443
	EOF
	plan <<-EOF
		start 101
		wait port 101 8443 30
		wait port 127.0.0.1 8443 5
		wait port ::1 8444 0.6
	EOF
	run ip netns exec "$NS" pve-start-plan -c "$T/plan" --pve-dir "$PVE" --node pve1 \
		--run-dir "$RUN" --config-dir "$CONF"
	echo "$output"; cat "$T/calls"
	[ "$status" -eq 2 ]
	assert_line --index 1 --regexp '^wait port 101 8443 30 ready [0-9.]+$'
	assert_line --index 2 --regexp '^wait port 127.0.0.1 8443 5 ready 0.[0-9]+$'
	assert_line --index 3 "wait port ::1 8444 0.6 timeout 0.60"
	assert_line --index 4 --regexp "wait port ::1 8444 0.6: not ready after 0.6 s: Connection refused"
	# it waited for the listener
	[ "$(line_of '^port 8443 up')" -ge 1 ]
	s=$(awk '$1 == "wait" && $3 == "101" { print $7 }' <<<"$output")
	awk -v s="$s" 'BEGIN { exit !(s >= 0.7 && s < 10) }'
}

@test "pve-start-plan: wait port finds a guest's address through its agent when nothing else names it" {
	NS=$(netns_add agentaddr)
	export NS
	ip -n "$NS" link add vmbr0 type bridge
	ip -n "$NS" addr add 192.0.2.10/24 dev vmbr0
	ip -n "$NS" link set vmbr0 up
	qemu_guest 101
	cat >"$T/agents" <<-EOF
		101 agent 0.3
		101 port 0.6 8080
	EOF
	plan <<-EOF
		start 101
		wait port 101 8080 30
	EOF
	run --separate-stderr ip netns exec "$NS" pve-start-plan -v -c "$T/plan" --pve-dir "$PVE" --node pve1 \
		--run-dir "$RUN" --config-dir "$CONF"
	echo "$output"; cat "$T/calls"
	[ "$status" -eq 0 ]
	assert_line --index 1 --regexp '^wait port 101 8080 30 ready [0-9.]+$'
	grep -qx "pve-start-plan: guest 101: address 192.0.2.10 from its agent" <<<"$stderr"
}

@test "pve-start-plan: the man page's jq line turns VMMonitor's vmStartupCommands into a plan that runs" {
	qemu_guest 101 "name: vm1"
	qemu_guest 102 "name: vm2"
	qemu_guest 103 "name: vm3"
	# VMMonitor's config.json.sample shape
	cat >"$T/config.json" <<-'EOF'
		{ "listener": { "enabled": false, "port": 10000 },
		  "monitor": { "enabled": true },
		  "startup": { "enabled": true,
		    "vmStartupCommands": ["start vm1", "start vm2", "delay 5", "suspend", "# db next",
		                          "start vm3"] } }
	EOF
	cmd=$(grep "^jq -r '.startup.vmStartupCommands" "$TOP/man/pve-start-plan.8")
	[ -n "$cmd" ]
	cmd=${cmd% > /etc/pvekit/start-plan}
	(cd "$T" && eval "$cmd") >"$T/plan"
	assert_equal "$(cat "$T/plan")" "start vm1 vm2
delay 5
start vm3"
	run_plan -n
	[ "$status" -eq 0 ]
	assert_equal "$output" "start vm1 dry-run qm start 101
start vm2 dry-run qm start 102
delay 5 dry-run
start vm3 dry-run qm start 103"
}
