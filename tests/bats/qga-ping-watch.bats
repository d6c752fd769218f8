#!/usr/bin/env bats
# qga-ping --watch on a simulated Proxmox node: pmxcfs-sim configs, fake QEMU
# processes with their pid files, and a real qemu-ga per guest at RUN/VMID.qga.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	# what --exec saw, one line per run
	cat >"$T/hook" <<-'EOS'
	#!/bin/sh
	echo "$PVEKIT_EVENT $PVEKIT_VMID $PVEKIT_REASON $PVEKIT_NODE $PVEKIT_UUID $PVEKIT_CONFIG $PVEKIT_MISSES ${PVEKIT_DOWNTIME:--} ${PVEKIT_QEMU_STATUS:--}" >>"$HOOK_LOG"
	EOS
	chmod +x "$T/hook"
	export HOOK_LOG=$T/events
	: >"$HOOK_LOG"
}
teardown() {
	pvekit_teardown
	# the watcher ran in the background: its sanitizer reports (ASan build,
	# leaks at its SIGTERM exit included) land in its stderr
	if grep -qE 'Sanitizer|runtime error' "$T/err" 2>/dev/null; then
		cat "$T/err" >&2
		return 1
	fi
}

# guest VMID [NODE]: a running QEMU guest with its agent (QGA_PID).
guest() {
	pmxcfs-sim create "$PVE" "${2:-pve1}" qemu "$1"
	fake_qemu "$RUN" "$1"
	start_qga "$RUN/$1.qga"
	agent_up "$RUN/$1.qga"
}

# The socket file exists before the agent listens: wait for an answer.
agent_up() { wait_until 5 qga-ping -q -t 500 "$1"; }

watch() {
	start_bg qga-ping --watch -v --pve-dir "$PVE" --node pve1 --qga-dir "$RUN" \
		--interval 0.2 --timeout 150 --threshold 3 --grace 0 --exec "$T/hook" "$@" \
		>"$T/out" 2>"$T/err"
	WATCH_PID=$BG_PID
}

in_out() { grep -qx -- "$1" "$T/out"; }
count() { grep -c -- "$1" "$2" || true; }

@test "watch: follows agent: 1 and agent: enabled=1 guests, not agent: 0 or no agent" {
	guest 101
	guest 102
	pmxcfs-sim edit "$PVE" 102 "agent: enabled=1,fstrim_cloned_disks=1"
	guest 103
	pmxcfs-sim edit "$PVE" 103 "agent: 0"
	guest 104
	f=$(pmxcfs-sim where "$PVE" 104)
	sed -i '/^agent:/d' "$f"
	watch
	wait_until 10 in_out "102 watch running"
	in_out "101 watch running"
	run grep -E '^10[34] ' "$T/out"
	[ -z "$output" ]
}

@test "watch: --qga-dir through a link or with a trailing slash still watches the running guests" {
	guest 101
	ln -s run "$T/varrun"
	start_bg qga-ping --watch -v --pve-dir "$PVE" --node pve1 --qga-dir "$T/varrun/" \
		--interval 0.2 --timeout 150 --threshold 3 --grace 0 --exec "$T/hook" >"$T/out" 2>"$T/err"
	wait_until 10 in_out "101 watch running"
}

@test "watch: a hung agent is declared failed once, --exec runs once per episode and once on recovery" {
	guest 101
	a=$QGA_PID
	guest 102
	uuid=$(sed -n 's/^smbios1: uuid=//p' "$PVE/nodes/pve1/qemu-server/101.conf")
	watch
	wait_until 10 in_out "101 watch running"
	sleep 0.5
	kill -STOP "$a"
	wait_until 10 in_out "101 failed timeout"
	wait_until 10 grep -q "^qga-failed 101 " "$HOOK_LOG"
	# more misses, still one episode
	wait_until 10 bash -c "[ \$(grep -c '101: miss' '$T/err') -ge 8 ]"
	[ "$(count 'qga-failed' "$HOOK_LOG")" -eq 1 ]
	[ "$(count 'failed' "$T/out")" -eq 1 ]
	grep -qx "qga-failed 101 timeout pve1 $uuid $PVE/nodes/pve1/qemu-server/101.conf 3 - unknown" "$HOOK_LOG"
	kill -CONT "$a"
	wait_until 10 grep -q '^101 recovered [0-9.]*$' "$T/out"
	wait_until 10 grep -q "^qga-recovered 101 ok pve1 $uuid " "$HOOK_LOG"
	# a second episode is a second event
	kill -STOP "$a"
	wait_until 10 bash -c "[ \$(grep -c '^qga-failed 101' '$HOOK_LOG') -eq 2 ]"
	kill -CONT "$a"
	wait_until 10 bash -c "[ \$(grep -c '^qga-recovered 101' '$HOOK_LOG') -eq 2 ]"
	# the other guest never missed
	run grep '^102 ' "$T/out"
	assert_output '102 watch running'
}

@test "watch: a locked guest is never declared failed" {
	guest 101
	pmxcfs-sim lock "$PVE" 101 backup
	watch
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 10 bash -c "[ \$(grep -c 'while locked (backup)' '$T/err') -ge 6 ]"
	refute grep -q failed "$T/out"
	[ ! -s "$HOOK_LOG" ]
	pmxcfs-sim lock "$PVE" 101 ""
	wait_until 10 in_out "101 failed timeout"
}

# qemu_guest VMID [-S]: a guest run by a real QEMU whose agent socket
# accepts and never answers, as a paused or hung guest's does.
qemu_guest() {
	pmxcfs-sim create "$PVE" pve1 qemu "$1"
	start_qemu "$RUN" "$@" --qga
}

@test "watch: a paused guest (QEMU says so on its monitor) is not a failure, until it runs again" {
	qemu_guest 101
	run qmp "$RUN/101.qmp" stop query-status
	assert_line -n 1 --partial '"status": "paused"'
	watch
	wait_until 10 in_out "101 watch running"
	wait_until 10 grep -q "101: agent silent, QEMU reports 'paused': not a failure" "$T/err"
	# asked again after every --threshold misses (each answer starts them
	# again from zero), still no failure
	wait_until 10 bash -c "[ \$(grep -c '101: miss 3:' '$T/err') -ge 3 ]"
	refute grep -q failed "$T/out"
	[ ! -s "$HOOK_LOG" ]
	# the same silence while QEMU runs the guest is a failure
	qmp "$RUN/101.qmp" cont
	wait_until 10 in_out "101 failed timeout"
	wait_until 10 grep -q "^qga-failed 101 " "$HOOK_LOG"
	grep -q "^qga-failed 101 timeout pve1 .* 3 - running$" "$HOOK_LOG"
	grep -q "101: guest agent failed 3 times in a row (QEMU running): $RUN/101.qga: " "$T/err"
}

@test "watch: a guest QEMU holds in prelaunch (started with -S) is not a failure" {
	qemu_guest 101 -S
	watch --json
	wait_until 10 grep -q '"vmid":101,"event":"watch"' "$T/out"
	wait_until 10 grep -q "101: agent silent, QEMU reports 'prelaunch': not a failure" "$T/err"
	wait_until 10 bash -c "[ \$(grep -c '101: miss 3:' '$T/err') -ge 2 ]"
	refute grep -q '"event":"failed"' "$T/out"
	[ ! -s "$HOOK_LOG" ]
}

@test "watch: a hung QEMU, its monitor silent too, is a failure (qemu status unknown)" {
	qemu_guest 101
	watch --json
	wait_until 10 grep -q '"vmid":101,"event":"watch"' "$T/out"
	# its main loop stuck: both sockets still accept, nothing answers
	kill -STOP "$QEMU_PID"
	wait_until 10 grep -q '"event":"failed"' "$T/out"
	grep '"event":"failed"' "$T/out" | jq -e '.qemu_status == "unknown" and .reason == "timeout"'
	grep -qE "101: $RUN/101\.qmp: (no greeting in 150 ms|no answer in 150 ms \(nothing accepts connections on the socket\))" "$T/err"
	grep -q "^qga-failed 101 timeout .* unknown$" "$HOOK_LOG"
}

@test "watch: a QEMU that quits is not a failure; one killed (stale pid file, refusing sockets) is not watched" {
	local -A qemu agent
	for id in 101 102; do
		pmxcfs-sim create "$PVE" pve1 qemu $id
		start_qemu "$RUN" $id
		qemu[$id]=$QEMU_PID
		start_qga "$RUN/$id.qga"
		agent[$id]=$QGA_PID
		agent_up "$RUN/$id.qga"
	done
	# killed with its agent: a dead pid in the pid file, sockets that refuse
	# (once reaped: this machine's init leaves zombies for a while)
	kill -KILL "${qemu[102]}" "${agent[102]}"
	wait_until 10 test ! -e "/proc/${qemu[102]}"
	run ! qmp "$RUN/102.qmp" query-status
	assert_output --partial 'ConnectionRefusedError'
	watch
	wait_until 10 in_out "101 watch running"
	qmp "$RUN/101.qmp" quit
	kill "${agent[101]}" # the agent goes with its guest
	wait_until 10 in_out "101 unwatch stopped"
	test ! -e "$RUN/101.qmp"
	refute grep -q failed "$T/out"
	refute grep -q '^102 ' "$T/out"
	[ ! -s "$HOOK_LOG" ]
}

@test "watch: a guest that stops is not a failure" {
	guest 101
	a=$QGA_PID
	watch
	wait_until 10 in_out "101 watch running"
	kill -STOP "$a"
	kill "$(cat "$RUN/101.pid")"
	wait_until 10 in_out "101 unwatch stopped"
	sleep 1
	refute grep -q failed "$T/out"
	[ ! -s "$HOOK_LOG" ]
}

@test "watch: a guest migrating out is dropped, one migrating in is picked up after its grace" {
	guest 101
	a=$QGA_PID
	guest 105 pve2
	b=$QGA_PID
	kill -STOP "$b"
	watch --json --grace 1
	wait_until 10 grep -q '"vmid":101,"event":"watch"' "$T/out"
	refute grep -q '"vmid":105' "$T/out"
	pmxcfs-sim migrate "$PVE" 101 pve2
	wait_until 10 grep -q '"vmid":101,"event":"unwatch","reason":"migrated"' "$T/out"
	kill -STOP "$a"
	pmxcfs-sim migrate "$PVE" 105 pve1
	wait_until 10 grep -q '"vmid":105,"event":"watch","reason":"migrate-in"' "$T/out"
	grep '"vmid":105,"event":"watch"' "$T/out" | jq -e '.grace > 0.5'
	wait_until 10 grep -q '"vmid":105,"event":"failed"' "$T/out"
	grep -q '105: timeout in the grace period' "$T/err"
	grep '"event":"failed"' "$T/out" | jq -e '.vmid == 105 and .reason == "timeout" and .misses == 3 and .node == "pve1"'
	refute grep -q '"vmid":101,"event":"failed"' "$T/out"
}

@test "watch: a guest that starts later is picked up, the grace of a fresh QEMU applies" {
	pmxcfs-sim create "$PVE" pve1 qemu 101
	watch --grace 30
	sleep 0.5
	# an agent that never answers this QEMU (a guest still booting)
	start_qga "$RUN/101.qga"
	agent_up "$RUN/101.qga"
	kill -STOP "$QGA_PID"
	fake_qemu "$RUN" 101
	wait_until 10 in_out "101 watch start"
	wait_until 10 bash -c "[ \$(grep -c '101: timeout in the grace period' '$T/err') -ge 4 ]"
	refute grep -q failed "$T/out"
}

@test "watch: an agent that answers again after a gap gets its clock set (qga-timesync)" {
	pmxcfs-sim create "$PVE" pve1 qemu 101
	fake_qemu "$RUN" 101
	start_bg qga-recorder --offset-ms -30000 --log "$T/agent.log" "$RUN/101.qga"
	rec=$BG_PID
	wait_until 5 test -S "$RUN/101.qga"
	pmxcfs-sim lock "$PVE" 101 suspending
	watch --timesync-gap 1
	wait_until 10 grep -q '"guest-ping"' "$T/agent.log"
	kill -STOP "$rec"
	wait_until 10 bash -c "[ \$(grep -c 'while locked' '$T/err') -ge 7 ]"
	kill -CONT "$rec"
	wait_until 10 grep -q '^101 timesync [0-9.]*$' "$T/out"
	wait_until 10 grep -q '"guest-set-time"' "$T/agent.log"
	wait_until 10 grep -q '^101 -[0-9]* fixed$' "$T/err"
	refute grep -q failed "$T/out"
}

@test "watch: READY=1 after the first round, SIGUSR1 logs a table, SIGTERM ends it with 0" {
	guest 101
	socat -u UNIX-RECV:"$T/notify" OPEN:"$T/notify.log",creat,append 3>&- &
	echo $! >>"$T/.bg-pids"
	wait_until 5 test -S "$T/notify"
	NOTIFY_SOCKET=$T/notify watch
	wait_until 10 grep -q 'READY=1' "$T/notify.log"
	grep -q 'STATUS=watching 1 guests, 0 failed' "$T/notify.log"
	kill -USR1 "$WATCH_PID"
	wait_until 10 grep -q '101: ok misses=0 last_answer=[0-9.]*s-ago lock=- pid=[0-9]' "$T/err"
	kill -TERM "$WATCH_PID"
	rc=0
	wait "$WATCH_PID" || rc=$?
	[ "$rc" -eq 0 ]
}

@test "watch: an --exec command that hangs is terminated after --exec-timeout" {
	guest 101
	printf '#!/bin/sh\necho started >>"%s"\nexec sleep 60\n' "$T/hang.log" >"$T/hang"
	chmod +x "$T/hang"
	start_bg qga-ping --watch -v --pve-dir "$PVE" --node pve1 --qga-dir "$RUN" --interval 0.2 \
		--timeout 150 --threshold 2 --grace 0 --exec "$T/hang" --exec-timeout 0.5 \
		>"$T/out" 2>"$T/err"
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 10 in_out "101 failed timeout"
	wait_until 10 grep -q 'still running after its timeout, terminating it' "$T/err"
	wait_until 10 grep -q 'killed by signal 15 (timed out)' "$T/err"
	# the loop went on pinging while the command hung
	grep -q started "$T/hang.log"
	[ "$(grep -c '101: miss' "$T/err")" -ge 4 ]
}

@test "watch: a missing .vmlist and no nodes dir is exit 69" {
	run -69 --separate-stderr qga-ping --watch --pve-dir "$T/nothing" --node pve1 --qga-dir "$RUN"
	[[ $stderr == *"$T/nothing"* ]]
}

@test "watch: a pmxcfs restart (new starttime, the vmlist counter back where it was) is a new guest list" {
	guest 101
	watch
	wait_until 10 in_out "101 watch running"
	pmxcfs_restart "$WATCH_PID" "$PVE" 101 pve2
	wait_until 10 in_out "101 unwatch migrated"
}

@test "watch: an edit in place that keeps inode, size and mtime is seen while the mtime is not in the past" {
	# pmxcfs keeps the inode on an in-place write and has whole-second
	# mtimes; a clock ahead (another node's) keeps the mtime in the future
	guest 101
	local f=$PVE/nodes/pve1/qemu-server/101.conf ahead=$(($(date +%s) + 3600)) ino
	touch -d "@$ahead" "$f"
	ino=$(stat -c %i "$f")
	watch
	wait_until 10 in_out "101 watch running"
	sed 's/^agent: 1$/agent: 0/' "$f" >"$T/off"
	cat "$T/off" 1<>"$f"
	touch -d "@$ahead" "$f"
	assert_equal "$(stat -c '%i %Y' "$f")" "$ino $ahead"
	wait_until 10 in_out "101 unwatch agent-off"
	sed 's/^agent: 0$/agent: 1/' "$T/off" 1<>"$f"
	touch -d "@$ahead" "$f"
	wait_until 10 in_out "101 watch start"
}

# escape_cmd: an --exec command that leaves a grandchild in a session of its
# own (its pid in $T/grand; "sleep $TAG", so pgrep finds it) and then hangs.
escape_cmd() {
	TAG="$((86400 + RANDOM)).47"
	printf '#!/bin/sh\nsetsid sleep %s </dev/null >/dev/null 2>&1 &\necho $! >"%s"\nexec sleep 60\n' \
		"$TAG" "$T/grand" >"$T/escape"
	chmod +x "$T/escape"
}

@test "watch: an --exec command's setsid'd grandchild is killed with it at --exec-timeout" {
	guest 101
	escape_cmd
	watch --exec "$T/escape" --exec-timeout 0.5
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 10 in_out "101 failed timeout"
	wait_until 10 pgrep -f "slee[p] $TAG"
	pgrep -f "slee[p] $TAG" >>"$T/.kill-pids" || true # should it outlive the test
	wait_until 10 grep -q 'killed by signal 15 (timed out)' "$T/err"
	wait_until 5 bash -c "! pgrep -f 'slee[p] $TAG'"
}

@test "watch: SIGTERM ends a running --exec command, its setsid'd grandchild included" {
	guest 101
	escape_cmd
	watch --exec "$T/escape" --exec-timeout 60
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 10 in_out "101 failed timeout"
	wait_until 10 pgrep -f "slee[p] $TAG"
	pgrep -f "slee[p] $TAG" >>"$T/.kill-pids" || true # should it outlive the test
	kill -TERM "$WATCH_PID"
	rc=0
	wait "$WATCH_PID" || rc=$?
	[ "$rc" -eq 0 ]
	wait_until 5 bash -c "! pgrep -f 'slee[p] $TAG'"
}

# restart_setup: the qm/pct/ha-manager stand-ins (tests/fakes/pve-bin), their
# calls in $T/calls; "qm start" starts a new QEMU stand-in and, through
# $T/on-start, a new real agent on RUN/VMID.qga in place of the stopped one.
restart_setup() {
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$T/.bg-pids
	export PVEKIT_FAKE_LXC=$T/lxc PVEKIT_FAKE_SHUTDOWN=ok
	export PVEKIT_FAKE_ON_START=$T/on-start RUN T
	: >"$T/calls"
	cat >"$T/on-start" <<-'EOS'
	#!/bin/bash
	sock=$RUN/$1.qga dir=$RUN/.qga-$1.qga
	rm -f "$sock"
	setsid qemu-ga -m unix-listen -p "$sock" -t "$dir" -b guest-set-time </dev/null >/dev/null 2>&1 &
	echo $! >>"$T/.bg-pids"
	echo $! >"$T/agent-$1"
	EOS
	chmod +x "$T/on-start"
}

@test "watch --restart: a guest whose agent stays silent is restarted once through qm; its new agent answers" {
	restart_setup
	guest 101
	guest 102
	pid=$(cat "$RUN/101.pid")
	watch --restart --restart-wait 1
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID" # 102's agent: 101's answers on
	wait_until 10 in_out "102 failed timeout"
	wait_until 10 in_out "102 restart start"
	wait_until 20 in_out "102 restart ok"
	run cat "$T/calls"
	assert_output "qm shutdown 102 --timeout 1
qm start 102"
	grep -q "102: guest agent failed: restarting the guest: qm shutdown 102 --timeout 1, qm stop if still running, qm start" "$T/err"
	# the new QEMU and its new agent: watched again, no second restart
	wait_until 10 in_out "102 watch start"
	sleep 1
	[ "$(count '^102 restart start' "$T/out")" -eq 1 ]
	[ "$(cat "$RUN/101.pid")" = "$pid" ]
	refute grep -q '^101 ' <(grep -v '^101 watch running' "$T/out")
	# --exec still runs beside it
	grep -q "^qga-failed 102 " "$HOOK_LOG"
}

@test "watch --restart: HA-managed guests restart through ha-manager; another HA state holds" {
	restart_setup
	guest 101
	a=$QGA_PID
	guest 102
	b=$QGA_PID
	mkdir -p "$PVE/ha"
	printf 'vm: 101\n\tstate started\n\nvm: 102\n\tstate stopped\n' >"$PVE/ha/resources.cfg"
	watch --restart --restart-wait 1 --json
	wait_until 10 grep -q '"vmid":102,"event":"watch"' "$T/out"
	kill -STOP "$a" "$b"
	wait_until 20 grep -q '"vmid":101,"event":"restart","result":"ok"' "$T/out"
	wait_until 10 grep -q '"vmid":102,"event":"restart","result":"held","detail":"HA requests state stopped"' "$T/out"
	run cat "$T/calls"
	assert_output "ha-manager crm-command stop vm:101 1
ha-manager set vm:101 --state started"
}

# ha_disarmed MODE: the HA stack disarmed cluster-wide (ha-manager
# disarm-ha MODE), as the CRM master writes ha/manager_status, 101 an HA
# resource in state started.
ha_disarmed() {
	mkdir -p "$PVE/ha"
	printf 'vm: 101\n\tstate started\n' >"$PVE/ha/resources.cfg"
	printf '{"service_status":{"vm:101":{"node":"pve1","state":"started"}},"disarm":{"state":"disarmed","mode":"%s"},"master_node":"pve1"}\n' "$1" \
		>"$PVE/ha/manager_status"
}

@test "watch --restart: HA disarmed in mode ignore restarts through qm, as qm itself would" {
	restart_setup
	export PVEKIT_FAKE_PVE=$PVE
	guest 101
	ha_disarmed ignore
	watch --restart --restart-wait 1
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 20 in_out "101 restart ok"
	run cat "$T/calls"
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
}

@test "watch --restart: HA disarmed in mode freeze holds the restart" {
	restart_setup
	export PVEKIT_FAKE_PVE=$PVE
	guest 101
	ha_disarmed freeze
	watch --restart --restart-wait 1
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 10 in_out "101 restart held"
	grep -q "101: guest agent failed; not restarting it: HA is disarmed (resource mode freeze)" "$T/err"
	run cat "$T/calls"
	assert_output ""
}

# restarted_once [silent]: guest 101 watched with --max-restarts 1, its
# agent silenced and the guest restarted once; the new agent's pid in
# $T/agent-101. With "silent" the new QEMU's agent socket accepts and never
# answers, as QEMU's does while no agent runs in the guest: no ping to the
# new guest is ever answered.
restarted_once() {
	restart_setup
	if [ "${1:-}" = silent ]; then
		cat >"$T/on-start" <<-'EOS'
		#!/bin/bash
		rm -f "$RUN/$1.qga"
		setsid socat -u "UNIX-LISTEN:$RUN/$1.qga,fork" /dev/null </dev/null >/dev/null 2>&1 &
		echo $! >>"$T/.bg-pids"
		echo $! >"$T/agent-$1"
		EOS
	fi
	guest 101
	watch --restart --restart-wait 1 --max-restarts 1 --restart-window 3600
	wait_until 10 in_out "101 watch running"
	kill -STOP "$QGA_PID"
	wait_until 20 in_out "101 restart ok"
	wait_until 10 test -s "$T/agent-101"
}

@test "watch --restart --max-restarts 1: the second failure within the window is held, not restarted" {
	restarted_once
	wait_until 10 in_out "101 watch start"
	agent_up "$RUN/101.qga"
	kill -STOP "$(cat "$T/agent-101")"
	wait_until 10 bash -c "grep -c '^101 failed timeout' '$T/out' | grep -qx 2"
	wait_until 10 in_out "101 restart held"
	grep -q "101: guest agent failed; not restarting it: 1 restarts within 3600 s (--max-restarts 1)" "$T/err"
	[ "$(count '^qm start' "$T/calls")" -eq 1 ]
}

@test "watch --restart: a restarted guest whose new agent never answers fails again, and --max-restarts holds it" {
	# Never heard by the watcher: the failure of the old QEMU must not hide
	# one of the new.
	restarted_once silent
	wait_until 10 in_out "101 watch start"
	wait_until 10 bash -c "grep -c '^101 failed timeout' '$T/out' | grep -qx 2"
	wait_until 10 in_out "101 restart held"
	run grep -c '^101 recovered' "$T/out"
	assert_output 0
	[ "$(count '^qm start' "$T/calls")" -eq 1 ]
}

@test "--restart and its options need --watch and --restart" {
	run -64 qga-ping --restart 101
	assert_output --partial "qga-ping: --restart needs --watch"
	run -64 qga-ping --watch --max-restarts 2
	assert_output --partial "need --restart"
	run -64 qga-ping --watch --restart --max-restarts 0
	assert_output --partial "--max-restarts 0"
}
