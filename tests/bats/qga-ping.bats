#!/usr/bin/env bats
# qga-ping one-shot, against real QEMU guest agents (qemu-ga in unix-listen
# mode, one per simulated guest) and small misbehaving peers.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	RUN=$T/run
	mkdir -p "$RUN"
}
teardown() { pvekit_teardown; }

# The socket file exists before the agent listens: wait for an answer
# before stopping it, or it is refused instead of hung.
agent_up() { wait_until 5 qga-ping -q -t 500 "$1"; }

# A socket file that nobody listens on (what a dead QEMU leaves behind).
dead_socket() {
	python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$1"
}

@test "qga-ping: an answering agent is ok with its round-trip time" {
	start_qga "$RUN/101.qga"
	run -0 --separate-stderr qga-ping --qga-dir "$RUN" 101
	assert_output --regexp '^101 ok [0-9]+\.[0-9]{3}$'
	[ -z "$stderr" ]
}

@test "qga-ping: a hung agent times out (exit 2), and answers again after SIGCONT" {
	start_qga "$RUN/101.qga"
	agent_up "$RUN/101.qga"
	kill -STOP "$QGA_PID"
	run -2 --separate-stderr qga-ping --qga-dir "$RUN" -t 300 101
	assert_output '101 fail timeout'
	[[ $stderr == *"$RUN/101.qga: no reply in 300 ms"* ]]
	kill -CONT "$QGA_PID"
	# the replies meant for the timed-out client come first: skipped
	run -0 qga-ping --qga-dir "$RUN" -t 2000 101
	assert_output --regexp '^101 ok '
}

@test "qga-ping: an agent that accepts no connection is no answer, not busy; one another client holds is busy" {
	start_qga "$RUN/101.qga"
	agent_up "$RUN/101.qga"
	kill -STOP "$QGA_PID"
	# each try leaves a connection the stopped agent never accepts, until
	# its backlog is full and connect(2) says EAGAIN, as for a busy socket
	local i
	for i in 1 2 3 4; do run -2 --separate-stderr qga-ping --qga-dir "$RUN" -t 200 101; done
	assert_output '101 fail timeout'
	assert_equal "$stderr" "qga-ping: $RUN/101.qga: no answer in 200 ms (nothing accepts connections on the socket)"
	kill -CONT "$QGA_PID"

	# stopped before it closed the connection of a client that has left
	start_bg python3 -c 'import socket, sys, time
l = socket.socket(socket.AF_UNIX)
l.bind(sys.argv[1])
l.listen(1)
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
a, _ = l.accept()
c.close()
open(sys.argv[2], "w").close()
time.sleep(60)' "$RUN/103.qga" "$T/left"
	wait_until 5 test -e "$T/left"
	for i in 1 2 3 4; do run -2 --separate-stderr qga-ping --qga-dir "$RUN" -t 200 103; done
	assert_equal "$stderr" "qga-ping: $RUN/103.qga: no answer in 200 ms (nothing accepts connections on the socket)"

	# QEMU serves one client of its agent socket at a time
	start_qemu "$RUN" 102 --qga
	start_bg python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
open(sys.argv[2], "w").close()
time.sleep(60)' "$RUN/102.qga" "$T/held"
	wait_until 5 test -e "$T/held"
	for i in 1 2 3 4; do run -2 --separate-stderr qga-ping --qga-dir "$RUN" -t 200 102; done
	assert_equal "$stderr" "qga-ping: $RUN/102.qga: agent busy (another client) for 200 ms"
}

@test "qga-ping: a restarted agent answers again" {
	start_qga "$RUN/101.qga"
	run -0 qga-ping --qga-dir "$RUN" 101
	kill -TERM "$QGA_PID"
	wait_until 5 bash -c "! kill -0 $QGA_PID"
	run -1 qga-ping -q --qga-dir "$RUN" 101
	assert_output --regexp '^101 fail (no-socket|refused)$'
	start_qga "$RUN/101.qga"
	run -0 qga-ping --qga-dir "$RUN" 101
	assert_output --regexp '^101 ok '
}

@test "qga-ping: a missing socket and a refused one are told apart (exit 1)" {
	dead_socket "$RUN/102.qga"
	run -1 --separate-stderr qga-ping --qga-dir "$RUN" 101 102
	assert_line -n 0 '101 fail no-socket'
	assert_line -n 1 '102 fail refused'
	[[ $stderr == *"$RUN/101.qga: no such socket"* ]]
	[[ $stderr == *"$RUN/102.qga: connection refused"* ]]
}

@test "qga-ping: a peer that is not an agent is garbage" {
	start_bg qga-recorder --mode garbage "$RUN/101.qga"
	wait_until 5 test -S "$RUN/101.qga"
	run -1 --separate-stderr qga-ping --qga-dir "$RUN" -t 300 101
	assert_output '101 fail garbage'
	[[ $stderr == *"not the agent protocol"* ]]
}

@test "qga-ping: a peer that floods without a sync reply is garbage, at once" {
	start_bg qga-recorder --mode flood "$RUN/101.qga"
	wait_until 5 test -S "$RUN/101.qga"
	run -1 --separate-stderr qga-ping --qga-dir "$RUN" -t 30000 101
	assert_output '101 fail garbage'
	# judged on the bytes, not by waiting for the deadline
	[[ $stderr == *"$RUN/101.qga: more than 65536 bytes without a sync reply"* ]]
}

@test "qga-ping: sync replies with another id are wrong-id" {
	start_bg qga-recorder --mode wrong-id "$RUN/101.qga"
	wait_until 5 test -S "$RUN/101.qga"
	run -1 --separate-stderr qga-ping --qga-dir "$RUN" -t 300 101
	assert_output '101 fail wrong-id'
	[[ $stderr == *"none with our id"* ]]
}

@test "qga-ping: an agent that refuses guest-ping is an agent error" {
	mkdir -p "$T/state"
	start_bg qemu-ga -m unix-listen -p "$RUN/101.qga" -t "$T/state" -b guest-ping,guest-set-time
	wait_until 5 test -S "$RUN/101.qga"
	run -1 --separate-stderr qga-ping --qga-dir "$RUN" 101
	assert_output '101 fail error'
	[[ $stderr == *"Command guest-ping has been disabled"* ]]
}

@test "qga-ping: exit 2 when any agent timed out, else 1 when any failed" {
	start_qga "$RUN/101.qga"
	a=$QGA_PID
	start_qga "$RUN/102.qga"
	agent_up "$RUN/102.qga"
	kill -STOP "$QGA_PID"
	run -1 qga-ping -q --qga-dir "$RUN" 101 103
	run -2 --separate-stderr qga-ping -q --qga-dir "$RUN" -t 200 101 102 103
	assert_line -n 0 --regexp '^101 ok '
	assert_line -n 1 '102 fail timeout'
	assert_line -n 2 '103 fail no-socket'
	[ -z "$stderr" ]
	kill -0 "$a"
}

@test "qga-ping: VMID and path operands, and operands on stdin" {
	start_qga "$RUN/101.qga"
	run -0 qga-ping --qga-dir "$RUN" 101 "$RUN/101.qga"
	assert_line -n 0 --regexp '^101 ok '
	assert_line -n 1 --regexp "^$RUN/101.qga ok "
	run -0 bash -c "printf '101\n\n# a comment\n  %s  \n' '$RUN/101.qga' | qga-ping --qga-dir '$RUN'"
	assert_line -n 0 --regexp '^101 ok '
	assert_line -n 1 --regexp "^$RUN/101.qga ok "
	[ "${#lines[@]}" -eq 2 ]
	run -65 --separate-stderr bash -c "printf '101\nvm 7\n' | qga-ping --qga-dir '$RUN'"
	[ -z "$output" ]
	[[ $stderr == *"stdin:2: not a VMID or a socket path"* ]]
	run -64 --separate-stderr qga-ping --qga-dir "$RUN" 0101
	[[ $stderr == *"0101: not a VMID or a socket path"* ]]
}

@test "qga-ping: forty guests at once, the ten hung ones delay no other" {
	for i in $(seq 101 140); do start_qga "$RUN/$i.qga"; done
	for i in $(seq 101 110); do agent_up "$RUN/$i.qga"; done
	for i in $(seq 101 110); do pkill -STOP -f "$RUN/$i.qga"; done
	run -2 qga-ping -q --qga-dir "$RUN" -t 1500 $(seq 101 140)
	[ "$(grep -c ' fail timeout$' <<<"$output")" -eq 10 ]
	[ "$(grep -c ' ok ' <<<"$output")" -eq 30 ]
	# every answer came before the deadline the hung agents ran into
	awk '$2 == "ok" && $3 >= 1500 { bad = 1 } END { exit bad }' <<<"$output"
	for i in $(seq 101 110); do pkill -CONT -f "$RUN/$i.qga"; done
}

@test "qga-ping: --json" {
	start_qga "$RUN/101.qga"
	run -1 qga-ping -q --json --qga-dir "$RUN" 101 102
	jq -e 'select(.target == "101") | .vmid == 101 and .status == "ok" and (.rtt_ms | type) == "number"' <<<"${lines[0]}"
	jq -e '.vmid == 102 and .status == "fail" and .reason == "no-socket" and (.detail | test("no such socket"))' <<<"${lines[1]}"
}

@test "qga-ping: --all pings the running agent-enabled guests of this node" {
	make_pve
	pmxcfs-sim create "$PVE" pve1 qemu 101
	pmxcfs-sim create "$PVE" pve1 qemu 102
	pmxcfs-sim edit "$PVE" 102 "agent: 0"
	pmxcfs-sim create "$PVE" pve1 qemu 103
	pmxcfs-sim create "$PVE" pve2 qemu 104
	pmxcfs-sim create "$PVE" pve1 lxc 105
	for i in 101 102 104; do fake_qemu "$RUN" $i; start_qga "$RUN/$i.qga"; done
	run -0 qga-ping --all --pve-dir "$PVE" --node pve1 --qga-dir "$RUN"
	assert_output --regexp '^101 ok [0-9.]+$'
}

@test "qga-ping: a running guest is found whatever the spelling of --qga-dir (/run for /var/run, a trailing slash)" {
	make_pve
	pmxcfs-sim create "$PVE" pve1 qemu 101
	pmxcfs-sim create "$PVE" pve1 qemu 102
	# Proxmox starts QEMU with -pidfile /var/run/qemu-server/VMID.pid, and
	# /var/run links to /run: here varrun links to run
	ln -s run "$T/varrun"
	fake_qemu "$T/varrun" 101
	fake_qemu "$T/varrun" 102
	start_qga "$RUN/101.qga"
	start_qga "$RUN/102.qga"
	agent_up "$RUN/102.qga"
	kill -STOP "$QGA_PID" # 102's agent hangs: --all must say so
	local dir
	for dir in "$T/varrun" "$RUN" "$RUN/" "$T/varrun/" "$T/varrun//"; do
		run -2 --separate-stderr qga-ping --all --pve-dir "$PVE" --node pve1 --qga-dir "$dir" -t 300
		assert_line --regexp '^101 ok [0-9.]+$'
		assert_line '102 fail timeout'
	done
	run -2 --separate-stderr qga-timesync --all -n --pve-dir "$PVE" --node pve1 --qga-dir "$RUN/" -t 300
	assert_line --regexp '^101 -?[0-9]+ ok$'
	assert_line --regexp '^102 '
	run -1 --separate-stderr vm-public-ip -v --all --pve-dir "$PVE" --node pve1 --run-dir "$RUN/" --timeout 0.3
	assert_line "101 127.0.0.1"
	[[ $stderr == "vm-public-ip: guest 102: $RUN//102.qga: "* ]] # hung: no reply, or busy
	# a pid file that names a live QEMU started with another pid file: not
	# running, and said once per run, naming both files
	mkdir "$T/other"
	cp "$RUN/101.pid" "$T/other/101.pid"
	run -0 --separate-stderr qga-ping --all --pve-dir "$PVE" --node pve1 --qga-dir "$T/other"
	assert_output ""
	[ "$stderr" = "qga-ping: $T/other/101.pid: pid $(cat "$RUN/101.pid") runs with -pidfile $T/varrun/101.pid, another file: not taken as running" ]
}

@test "qga-ping: usage, help and version" {
	run -0 qga-ping -h
	assert_output --partial 'usage: qga-ping'
	run -0 qga-ping -V
	assert_output --regexp '^qga-ping [0-9]'
	run -64 qga-ping -t 0 101
	run -64 qga-ping --watch 101
	run -64 qga-ping --interval x --watch
	run -64 qga-ping --bogus
}
