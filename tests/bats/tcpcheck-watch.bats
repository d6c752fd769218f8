#!/usr/bin/env bats
# tcpcheck --watch on a simulated Proxmox node: pmxcfs-sim for /etc/pve,
# fake_qemu processes the running check accepts, real loopback ports, and
# recording stand-ins for qm/pct/ha-manager (tests/fakes/pve-bin) whose calls
# land in $T/calls. Intervals are fractions of a second.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$T/.bg-pids
	export PVEKIT_FAKE_LXC=$T/lxc
	: >"$T/calls"
	CONF=$T/tcpcheck
	mkdir -p "$CONF"
	# Fast cadence; qm's --timeout is whole seconds, so wait_interval 0.2
	# becomes "--timeout 1".
	cat >"$CONF/defaults.conf" <<-EOF
		check_interval=0.1
		fail_interval=0.1
		fail_threshold=0.3
		recovery_time=0.2
		wait_interval=0.2
		timeout=0.2
		log_interval=60
	EOF
}

teardown() {
	pvekit_teardown
}

# ports ARGS...: starts bench/tcpcheck-ports ARGS, fills OPEN CLOSED HOLE.
ports() {
	local f=$T/ports.$RANDOM
	start_bg "$TOP/bench/tcpcheck-ports" "$@" >"$f"
	PORTS_PID=$BG_PID
	wait_until 20 grep -qx ready "$f"
	mapfile -t OPEN < <(awk '$1 == "open" { print $2 }' "$f")
	mapfile -t CLOSED < <(awk '$1 == "closed" { print $2 }' "$f")
	mapfile -t HOLE < <(awk '$1 == "blackhole" { print $2 }' "$f")
}

# open_port PORT: a listener on PORT (LISTEN_PID); close_port: stop it.
open_port() {
	ports --port "$1"
	LISTEN_PID=$PORTS_PID
}

close_port() {
	kill "$LISTEN_PID"
	wait_until 5 bash -c "! kill -0 $LISTEN_PID"
}

# guest VMID KEY=VALUE...: a qemu guest on pve1 (this node), running, with
# its tcpcheck config.
guest() {
	local id=$1
	shift
	pmxcfs-sim create "$PVE" pve1 qemu "$id"
	fake_qemu "$RUN" "$id"
	printf '%s\n' "$@" >"$CONF/$id.conf"
}

start_watch() {
	start_bg tcpcheck --watch --config-dir "$CONF" --pve-dir "$PVE" --node pve1 \
		--run-dir "$RUN" --lxc-dir "$T/lxc" --interval 0.1 "$@" >"$T/out" 2>"$T/err"
	WATCH_PID=$BG_PID
}

# seen REGEX: a transition line matching REGEX appears on stdout.
seen() {
	wait_until "${WAIT:-15}" grep -qE "$1" "$T/out" || {
		echo "--- stdout" >&2; cat "$T/out" >&2
		echo "--- stderr" >&2; cat "$T/err" >&2
		echo "--- calls" >&2; cat "$T/calls" >&2
		return 1
	}
}

calls() {
	cat "$T/calls"
}

# wakeups_pass N: the watcher woke up N more times (voluntary context
# switches), rather than sleeping for a guessed time.
wakeups_pass() {
	local before
	before=$(awk '/^voluntary_ctxt_switches:/ { print $2 }' "/proc/$WATCH_PID/status")
	wait_until 20 awk -v want=$((before + $1)) \
		'/^voluntary_ctxt_switches:/ { exit !($2 >= want) }' "/proc/$WATCH_PID/status"
}

@test "a healthy guest: grace, healthy, no action" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	start_watch
	seen '^101 grace watching 127\.0\.0\.1$'
	seen '^101 healthy up$'
	sleep 0.6 # several check cycles, two fail_thresholds
	run calls
	assert_output ""
	run cat "$T/out"
	assert_equal "${#lines[@]}" 2
}

@test "a failing guest: after fail_threshold, qm shutdown, stop, start, then grace" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	local pid
	pid=$(cat "$RUN/101.pid")
	start_watch --json
	seen '"state":"acting"'
	seen '"reason":"action exited 0"'
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm help stop
qm stop 101 --overrule-shutdown 1
qm start 101"
	# a new QEMU
	refute [ "$(cat "$RUN/101.pid")" = "$pid" ]
	run jq -r '.state' "$T/out"
	assert_equal "$(head -n 4 <<<"$output" | tr '\n' ' ')" "grace failing acting grace "
	# failing only after the first grace, acting only after fail_threshold
	run jq -rs '(.[1].time - .[0].time >= 0.2) and (.[2].time - .[1].time >= 0.25)' "$T/out"
	assert_output true
	run jq -rs '.[1].reason' "$T/out"
	assert_output "127.0.0.1:${CLOSED[0]} closed"
}

@test "recovery_time: after the action, failures do not count until the grace ends" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" recovery_time=0.8 max_actions=5
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch --json
	seen '"reason":"action exited 0"'
	wait_until 20 bash -c "[ \$(grep -c '\"state\":\"failing\"' '$T/out') -ge 2 ]"
	run jq -rs '[.[] | select(.state == "failing" or .reason == "action exited 0") | .time]
		| (.[2] - .[1] >= 0.75)' "$T/out"
	assert_output true
	run jq -rs 'map(select(.state == "failing")) | length' "$T/out"
	assert_output 2
}

@test "a guest that recovers before fail_threshold is left alone" {
	ports --closed 1
	local port=${CLOSED[0]}
	guest 101 ip=127.0.0.1 "portsall=$port" fail_threshold=1.5
	start_watch
	seen "^101 failing 127\.0\.0\.1:$port closed$"
	# the watcher waits while the listener starts (slow under load): the
	# port is open before it looks again, however long that took
	kill -STOP "$WATCH_PID"
	open_port "$port"
	kill -CONT "$WATCH_PID"
	seen '^101 healthy recovered after [0-9.]+s$'
	run calls
	assert_output ""
}

@test "lock: backup holds the action; once unlocked it acts" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	pmxcfs-sim lock "$PVE" 101 backup
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen '^101 held lock: backup$'
	sleep 0.4
	run calls
	assert_output ""
	pmxcfs-sim lock "$PVE" 101 ""
	seen '^101 acting failing for'
	seen '^101 grace action exited 0$'
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
}

@test "maintenance: the cluster-wide file, maintenance=1, and the SIGUSR2 toggle" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	guest 102 ip=127.0.0.1 "portsall=${CLOSED[0]}" maintenance=1
	touch "$CONF/maintenance"
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen "^101 held maintenance \(cluster-wide: $CONF/maintenance\)$"
	seen '^102 held maintenance \(cluster-wide'
	kill -USR2 "$WATCH_PID"
	wait_until 5 grep -q 'node-local maintenance on (SIGUSR2)' "$T/err"
	rm "$CONF/maintenance"
	seen '^101 held maintenance \(node-local, SIGUSR2\)$'
	run calls
	assert_output ""
	kill -USR2 "$WATCH_PID"
	seen '^101 acting '
	seen '^102 held maintenance \(maintenance=1\)$'
	seen '^101 grace action exited 0$'
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
}

@test "max_actions: gives up loudly, stays given up while failing, re-arms once healthy" {
	ports --closed 1
	local port=${CLOSED[0]}
	guest 101 ip=127.0.0.1 "portsall=$port" max_actions=1 action_window=1.5
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen '^101 grace action exited 0$'
	seen '^101 gave-up 1 actions within 1.5s \(max_actions=1\)$'
	grep -q 'giving up after 1 actions' "$T/err"
	sleep 1.6 # the window has passed: still no action while it keeps failing
	assert_equal "$(grep -c '^qm start' "$T/calls")" 1
	open_port "$port"
	seen '^101 healthy recovered; actions re-armed$'
	close_port
	WAIT=20 seen '^101 failing .*closed$'
	wait_until 20 bash -c "[ \$(grep -c '^qm start' '$T/calls') -ge 2 ]"
}

@test "HA-managed guests restart through ha-manager, never qm; other HA states hold" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	guest 102 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	mkdir -p "$PVE/ha"
	printf 'vm: 101\n\tstate started\n\tmax_restart 1\n\nvm: 102\n\tstate stopped\n' \
		>"$PVE/ha/resources.cfg"
	local pid
	pid=$(cat "$RUN/101.pid")
	start_watch
	seen '^101 acting failing for [0-9.]+s: .*; ha-manager crm-command stop vm:101 1, then set vm:101 --state started$'
	seen '^101 grace action exited 0$'
	seen '^102 held HA requests state stopped$'
	run calls
	assert_output "ha-manager crm-command stop vm:101 1
ha-manager set vm:101 --state started"
	refute [ "$(cat "$RUN/101.pid")" = "$pid" ]
}

@test "HA disarmed (ha-manager disarm-ha): mode ignore restarts through qm, mode freeze holds" {
	export PVEKIT_FAKE_PVE=$PVE PVEKIT_FAKE_SHUTDOWN=ok
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" max_actions=1
	mkdir -p "$PVE/ha"
	printf 'vm: 101\n\tstate started\n' >"$PVE/ha/resources.cfg"
	# as the CRM master writes it (encode_json: one line, keys in any order)
	printf '%s\n' '{"service_status":{"vm:101":{"node":"pve1","state":"started","uid":"Xk3l0pPq9d1n6Jm2bYvT8w"}},"disarm":{"state":"disarmed","mode":"ignore"},"master_node":"pve1","node_status":{"pve1":"online"},"timestamp":1764950000}' \
		>"$PVE/ha/manager_status"
	start_watch
	# ignore: HA hands its resources back, qm acts on them directly (a
	# crm-command would wait until arm-ha)
	seen '^101 acting failing for [0-9.]+s: .*; qm shutdown 101 --timeout 1, qm stop if still running, qm start$'
	seen '^101 grace action exited 0$'
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
	kill "$WATCH_PID"
	wait_until 5 bash -c "! kill -0 $WATCH_PID"
	: >"$T/calls"
	# freeze: HA keeps them and does nothing with them: nobody acts
	sed -i 's/"mode":"ignore"/"mode":"freeze"/' "$PVE/ha/manager_status"
	start_watch
	seen '^101 held HA is disarmed \(resource mode freeze\)$'
	run calls
	assert_output ""
	# armed again (arm-ha deletes the record): through HA as before
	sed -i 's/,"disarm":{"state":"disarmed","mode":"freeze"}//' "$PVE/ha/manager_status"
	seen '^101 acting failing for [0-9.]+s: .*; ha-manager crm-command stop vm:101 1, then set vm:101 --state started$'
}

@test "the fallback stop overrules a shutdown task that holds the config lock (PVE 8.2+); qm help stop is asked once" {
	export PVEKIT_FAKE_LOCK_WAIT=1
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" max_actions=2
	# someone's shutdown of 101 waits for a guest that ignores it, holding
	# the config lock meanwhile (qm's vm_stop runs under lock_config)
	start_bg env PVEKIT_FAKE_QUIET=1 qm shutdown 101 --timeout 600
	wait_until 5 test -s "$RUN/task-qmshutdown-101"
	start_watch
	seen '^101 grace action exited 0$'
	grep -q "^tcpcheck: guest 101: overruled qmshutdown tasks: UPID:fake:" "$T/err"
	# the guest still fails: a second action, with the answer kept
	wait_until 20 bash -c "[ \$(grep -c '^qm start 101\$' '$T/calls') -ge 2 ]"
	run calls
	assert_line -n 0 "qm shutdown 101 --timeout 1"
	assert_line -n 1 "qm help stop"
	assert_line -n 2 "qm stop 101 --overrule-shutdown 1"
	assert_line -n 3 "qm start 101"
	assert_line -n 4 "qm shutdown 101 --timeout 1"
	assert_line -n 5 "qm stop 101 --overrule-shutdown 1"
	assert_line -n 6 "qm start 101"
	[ "$(grep -c '^qm help stop$' "$T/calls")" -eq 1 ]
}

@test "before PVE 8.2 (no --overrule-shutdown in qm help stop) the fallback stop is the plain one" {
	export PVEKIT_FAKE_PVE_VERSION=8.1
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" max_actions=1
	start_watch
	seen '^101 grace action exited 0$'
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm help stop
qm stop 101
qm start 101"
	grep -q "^tcpcheck: guest 101: qm stop has no --overrule-shutdown here (before PVE 8.2): a plain stop$" "$T/err"
}

@test "only guests this node owns and runs are watched" {
	ports --closed 1
	pmxcfs-sim create "$PVE" pve2 qemu 102
	fake_qemu "$RUN" 102 # a stale process must not make it ours
	pmxcfs-sim create "$PVE" pve1 qemu 103
	printf 'ip=127.0.0.1\nportsall=%s\n' "${CLOSED[0]}" >"$CONF/102.conf"
	printf 'ip=127.0.0.1\nportsall=%s\n' "${CLOSED[0]}" >"$CONF/103.conf"
	printf 'ip=127.0.0.1\nportsall=%s\n' "${CLOSED[0]}" >"$CONF/104.conf"
	start_watch
	seen '^102 idle on node pve2$'
	seen '^103 idle not running$'
	seen '^104 idle no such guest in the cluster$'
	sleep 0.6
	run calls
	assert_output ""
	run grep -c . "$T/out"
	assert_output 3
}

@test "migrations in and out are followed without a restart" {
	ports --open 1
	pmxcfs-sim create "$PVE" pve2 qemu 104
	printf 'ip=127.0.0.1\nportsall=%s\n' "${OPEN[0]}" >"$CONF/104.conf"
	start_watch
	seen '^104 idle on node pve2$'
	fake_qemu "$RUN" 104 # the target QEMU starts before the config moves
	pmxcfs-sim migrate "$PVE" 104 pve1
	seen '^104 grace migrated from pve2$'
	seen '^104 healthy up$'
	pmxcfs-sim migrate "$PVE" 104 pve2
	seen '^104 idle migrated to pve2$'
	run calls
	assert_output ""
}

@test "guests that start and stop are picked up; a restart behind our back is a new grace" {
	ports --open 1
	pmxcfs-sim create "$PVE" pve1 qemu 101
	printf 'ip=127.0.0.1\nportsall=%s\n' "${OPEN[0]}" >"$CONF/101.conf"
	start_watch
	seen '^101 idle not running$'
	PVEKIT_FAKE_QUIET=1 qm start 101
	seen '^101 grace started$'
	seen '^101 healthy up$'
	PVEKIT_FAKE_QUIET=1 qm stop 101
	seen '^101 idle not running$'
	PVEKIT_FAKE_QUIET=1 qm start 101
	seen '^101 grace started$'
	local old
	old=$(cat "$RUN/101.pid")
	kill "$old"
	wait_until 5 bash -c "! kill -0 $old"
	PVEKIT_FAKE_QUIET=1 qm start 101
	seen "^101 (grace restarted \(pid [0-9]+\)|idle not running)$"
}

@test "config changes are picked up without a restart; SIGHUP forces a re-read" {
	ports --open 1 --closed 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}" fail_threshold=30
	start_watch
	seen '^101 healthy up$'
	printf 'ip=127.0.0.1\nportsall=%s\nfail_threshold=30\n' "${CLOSED[0]}" >"$CONF/101.conf.tmp"
	mv "$CONF/101.conf.tmp" "$CONF/101.conf"
	seen "^101 failing 127\.0\.0\.1:${CLOSED[0]} closed$"
	# An mtime well in the past (a settled file), then the same size, the
	# same inode, the same mtime: invisible to the stat check...
	# (stopped meanwhile, so no scan falls between the write and the touch)
	local ts
	ts=$(($(date +%s) - 60))
	touch -d "@$ts" "$CONF/101.conf"
	wakeups_pass 20 # scans take the settled stamp
	kill -STOP "$WATCH_PID"
	printf 'ip=127.0.0.1\nportsall=%s\nfail_threshold=30\n' "${OPEN[0]}" >"$CONF/101.conf"
	touch -d "@$ts" "$CONF/101.conf"
	kill -CONT "$WATCH_PID"
	sleep 0.4
	refute grep -q '^101 healthy recovered' "$T/out"
	# ...until SIGHUP.
	kill -HUP "$WATCH_PID"
	seen '^101 healthy recovered after'
}

# conf64 PORT: a guest config of exactly 64 bytes, whatever the port's length.
conf64() {
	local text
	text=$(printf 'ip=127.0.0.1\nportsall=%s\nfail_threshold=30\n#' "$1")
	printf '%s%*s\n' "$text" $((63 - ${#text})) ""
}

@test "an edit in place that keeps inode, size and mtime is seen while the mtime is not in the past: the content is compared" {
	# pmxcfs keeps the inode on an in-place write and has whole-second
	# mtimes: an edit within the second of the last one keeps all three.
	# So does a file whose mtime is ahead of this clock (another node's).
	ports --open 1 --closed 1
	local ahead=$(($(date +%s) + 3600))
	guest 101
	conf64 "${OPEN[0]}" >"$CONF/101.conf"
	touch -d "@$ahead" "$CONF/101.conf"
	local ino
	ino=$(stat -c %i "$CONF/101.conf")
	start_watch
	seen '^101 healthy up$'
	conf64 "${CLOSED[0]}" 1<>"$CONF/101.conf"
	touch -d "@$ahead" "$CONF/101.conf"
	assert_equal "$(stat -c '%i %s %Y' "$CONF/101.conf")" "$ino 64 $ahead"
	seen "^101 failing 127\.0\.0\.1:${CLOSED[0]} closed$"
	conf64 "${OPEN[0]}" 1<>"$CONF/101.conf"
	touch -d "@$ahead" "$CONF/101.conf"
	seen '^101 healthy recovered after'
	run calls
	assert_output ""
}

@test "a bad key or value is reported with file:line; that guest is skipped, others go on" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	guest 102 ip=127.0.0.1 fail_treshold=3 "portsall=${OPEN[0]}"
	guest 103 ip=127.0.0.1 "portsall=${OPEN[0]} 70000"
	guest 104 ip=host.example "portsall=${OPEN[0]}"
	guest 105 "portsall=${OPEN[0]}"
	guest 106 ip=127.0.0.1 "portsall=${OPEN[0]}" 'check_interval = soon'
	start_watch
	seen '^101 healthy up$'
	seen '^102 idle config error$'
	seen '^106 idle config error$'
	run cat "$T/err"
	assert_line "tcpcheck: $CONF/102.conf:2: unknown key 'fail_treshold'; guest 102 is not watched"
	assert_line "tcpcheck: $CONF/103.conf:2: portsall: bad port '70000' (want 1-65535); guest 103 is not watched"
	assert_line "tcpcheck: $CONF/104.conf:1: ip: 'host.example' is not an IPv4 or IPv6 address; guest 104 is not watched"
	assert_line "tcpcheck: $CONF/105.conf: ports to check but no ip=; guest 105 is not watched"
	assert_line "tcpcheck: $CONF/106.conf:3: check_interval: 'soon' is not a number of seconds (at least 0.01); guest 106 is not watched"
	# fixed: watched at the next scan
	printf 'ip=127.0.0.1\nfail_threshold=3\nportsall=%s\n' "${OPEN[0]}" >"$CONF/102.conf"
	seen '^102 grace watching'
}

@test "configs: a BOM is skipped, a FIFO is not a regular file, a '\' ending the last line is an error, a key is named by 32 bytes at most" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	printf '\xef\xbb\xbf%s' "$(cat "$CONF/101.conf")" >"$CONF/101.conf.new"
	mv "$CONF/101.conf.new" "$CONF/101.conf"
	guest 102
	rm "$CONF/102.conf"
	mkfifo "$CONF/102.conf"
	guest 103 ip=127.0.0.1 "portsall=${OPEN[0]}" 'name=web \'
	guest 104 ip=127.0.0.1 "portsall=${OPEN[0]} \\"
	guest 105 ip=127.0.0.1 "portsall=${OPEN[0]}" 'action_key:s3cr3t=1'
	guest 106 ip=127.0.0.1 "portsall=${OPEN[0]}" "$(printf 'k%.0s' {1..40})=1"
	start_watch
	seen '^101 healthy up$'
	for id in 102 103 104 105 106; do seen "^$id idle config error$"; done
	run cat "$T/err"
	assert_line "tcpcheck: $CONF/102.conf: not a regular file; guest 102 is not watched"
	assert_line "tcpcheck: $CONF/103.conf:3: '\\' at the end of the last line continues nothing; guest 103 is not watched"
	assert_line "tcpcheck: $CONF/104.conf:2: '\\' at the end of the last line continues nothing; guest 104 is not watched"
	assert_line "tcpcheck: $CONF/105.conf:3: unknown key 'action_key'; guest 105 is not watched"
	assert_line "tcpcheck: $CONF/106.conf:3: unknown key '$(printf 'k%.0s' {1..32})...'; guest 106 is not watched"
	refute_output --partial s3cr3t
}

@test "bad defaults: nothing is watched until they are fixed" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	echo 'fail_threshold=-1' >>"$CONF/defaults.conf"
	start_watch
	seen '^101 idle config error$'
	assert grep -q "defaults.conf:8: fail_threshold: '-1' is not a number of seconds; no guest is watched until this is fixed" "$T/err"
	sed -i '$d' "$CONF/defaults.conf"
	seen '^101 healthy up$'
}

@test "an mvmm directory works unchanged: mvmm.conf, its syntax and its keys" {
	ports --open 1 --closed 1
	rm "$CONF/defaults.conf"
	# mvmm's shipped mvmm.conf (with its obsolete fail_interval), in
	# AppConfig syntax: blanks around '=', comments, a continuation.
	cat >"$CONF/mvmm.conf" <<-EOF
		# global settings
		check_interval = 0.1
		fail_interval=0.1
		fail_threshold=0.3   # seconds
		boot_time=0.2
		wait_interval=0.2
		log_interval=900
		disabled_log_interval=25200
		timeout=0.2
	EOF
	pmxcfs-sim create "$PVE" pve1 qemu 101
	fake_qemu "$RUN" 101
	cat >"$CONF/101.conf" <<-EOF
		enabled=true
		name=web
		ip=127.0.0.1
		portsall="${OPEN[0]}"
		portsany=${CLOSED[0]} \\
		  ${OPEN[0]}
		restart_at=03:30
	EOF
	pmxcfs-sim create "$PVE" pve1 qemu 102
	fake_qemu "$RUN" 102
	printf 'enabled=false\nip=127.0.0.1\nportsall=%s\n' "${CLOSED[0]}" >"$CONF/102.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 103
	fake_qemu "$RUN" 103
	printf 'ip 127.0.0.1\nportsall %s\n' "${CLOSED[0]}" >"$CONF/103.conf"
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch --json
	seen '"vmid":101,"state":"healthy","reason":"up","name":"web"'
	seen '"vmid":102,"state":"idle","reason":"disabled \(enabled=0\)"'
	seen '"vmid":103,"state":"acting"'
	seen '"vmid":103,"state":"grace","reason":"action exited 0"'
	run calls
	assert_output "qm shutdown 103 --timeout 1
qm start 103"
	refute grep -q '\.conf[:;]' "$T/err"
}

@test "SIGUSR1 logs a status table, one line per guest" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	pmxcfs-sim create "$PVE" pve2 qemu 102
	printf 'ip=127.0.0.1\nportsall=1\n' >"$CONF/102.conf"
	start_watch
	seen '^101 healthy up$'
	seen '^102 idle'
	kill -USR1 "$WATCH_PID"
	wait_until 5 grep -q 'status: 102 ' "$T/err"
	run grep 'status:' "$T/err"
	assert_line -n 0 --partial "status: 2 guests with a config, 0 acting; maintenance: cluster-wide off, node-local off"
	assert_line -n 1 --regexp "^tcpcheck: status: 101 healthy up; since [0-9.]+s; 0/3 actions in window; name vm101$"
	assert_line -n 2 --regexp "^tcpcheck: status: 102 idle on node pve2; since "
}

@test "restart_after: a healthy guest is restarted once its uptime passes it" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}" restart_after=1
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen '^101 healthy up$'
	seen '^101 acting uptime [0-9.]+s reached restart_after; qm shutdown 101'
	seen '^101 grace action exited 0$'
	seen '^101 healthy up$'
	run calls
	assert_line -n 0 "qm shutdown 101 --timeout 1"
	assert_line -n 1 "qm start 101"
}

# qemu_guest VMID [-S] [--no-reboot] KEY=VALUE...: like guest, run by a real
# QEMU (start_qemu) that the action asks over QMP.
qemu_guest() {
	local id=$1 opts=()
	shift
	while [[ ${1:-} == -* ]]; do
		opts+=("$1")
		shift
	done
	pmxcfs-sim create "$PVE" pve1 qemu "$id"
	start_qemu "$RUN" "$id" "${opts[@]}"
	printf '%s\n' "$@" >"$CONF/$id.conf"
}

@test "a paused guest, or one QEMU holds in prelaunch, is left alone (QMP says so)" {
	ports --closed 1
	qemu_guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	qmp "$RUN/101.qmp" stop
	qemu_guest 102 -S ip=127.0.0.1 "portsall=${CLOSED[0]}"
	start_watch
	seen '^101 held guest is paused$'
	seen '^102 held guest is prelaunch$'
	run calls
	assert_output ""
	run qmp "$RUN/101.qmp" query-status
	assert_output --partial '"status": "paused"'
	run qmp "$RUN/102.qmp" query-status
	assert_output --partial '"status": "prelaunch"'
}

@test "a guest that powered itself off (QEMU left in run state shutdown by -no-shutdown) is left alone" {
	ports --closed 1
	qemu_guest 101 --no-reboot ip=127.0.0.1 "portsall=${CLOSED[0]}"
	# the guest powers off: with -no-shutdown QEMU stays, stopped, until
	# qmeventd has it cleaned up (or a backup finishes)
	run qmp "$RUN/101.qmp" system_reset query-status
	assert_line -n 1 --partial '"status": "shutdown"'
	start_watch
	seen '^101 held guest is shutdown$'
	run calls
	assert_output ""
	run qmp "$RUN/101.qmp" query-status
	assert_output --partial '"status": "shutdown"'
}

@test "a guest QEMU runs (after cont) whose ports fail is restarted" {
	ports --closed 1
	qemu_guest 101 -S ip=127.0.0.1 "portsall=${CLOSED[0]}"
	run qmp "$RUN/101.qmp" cont query-status
	assert_line -n 1 --partial '"status": "running"'
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen '^101 grace action exited 0$'
	grep -q '^tcpcheck: guest 101: QEMU status: running$' "$T/err"
	run calls
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
	# the stand-in's shutdown ended the real QEMU
	wait_until 10 test ! -e "$RUN/101.qmp"
}

@test "a monitor that refuses (its QEMU killed) or hangs does not hold the action" {
	ports --closed 1
	qemu_guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	kill -KILL "$QEMU_PID"
	wait_until 10 test ! -e "/proc/$QEMU_PID"
	# a process on the pid file stands for a QEMU whose monitor is gone
	fake_qemu "$RUN" 101
	qemu_guest 102 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	kill -STOP "$QEMU_PID"
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch
	seen '^101 grace action exited 0$'
	grep -qF "guest 101: QEMU status unknown ($RUN/101.qmp: connection refused): acting on the port checks alone" "$T/err"
	seen '^102 grace action exited 0$'
	grep -qF "guest 102: QEMU status unknown ($RUN/102.qmp: no greeting in 3000 ms (QEMU hangs, or another client holds the monitor)): acting on the port checks alone" "$T/err"
	grep -qx 'qm start 101' "$T/calls"
	grep -qx 'qm start 102' "$T/calls"
}

@test "containers: running from LXC's command socket, restarted with pct" {
	ports --closed 1
	pmxcfs-sim create "$PVE" pve1 lxc 110
	PVEKIT_FAKE_QUIET=1 pct start 110
	printf 'ip=127.0.0.1\nportsall=%s\n' "${CLOSED[0]}" >"$CONF/110.conf"
	start_watch
	seen '^110 grace watching 127\.0\.0\.1$'
	seen '^110 acting failing for .*; pct shutdown 110 --timeout 1, pct stop if still running, pct start$'
	WAIT=20 seen '^110 grace action exited 0$'
	run calls
	assert_output "pct shutdown 110 --timeout 1
pct help stop
pct stop 110 --overrule-shutdown 1
pct start 110"
}

@test "action= runs the admin's command with PVEKIT_* in the environment" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" \
		"action=echo \"\$PVEKIT_VMID \$PVEKIT_TYPE \$PVEKIT_REASON \$PVEKIT_IP \$PVEKIT_NAME\" >>$T/custom; exit 3"
	start_watch
	seen '^101 acting failing for [0-9.]+s: .*; action: echo '
	seen '^101 grace action exited 3$'
	run cat "$T/custom"
	assert_output "101 qemu failed 127.0.0.1 vm101"
	run calls
	assert_output ""
}

@test "an action's output is logged whole: a NUL byte shows as ? like any control byte" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" 'action=printf "abc\0SECRET\001ghi\n"'
	start_watch
	seen '^101 grace action exited 0$'
	grep -qx "tcpcheck: guest 101: abc?SECRET?ghi" "$T/err" || { cat "$T/err" >&2; false; }
}

@test "--systemd-run runs each command in a transient unit, with the environment" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	export PVEKIT_FAKE_SHUTDOWN=ok
	start_watch --systemd-run
	seen '^101 grace action exited 0$'
	run grep '^systemd-run' "$T/calls"
	assert_line -n 0 --regexp '^systemd-run --quiet --wait --pipe --collect --no-ask-password --service-type=exec --unit=pvekit-action-101-[0-9]+-[0-9]+[.]service --description=pvekit tcpcheck action for guest 101 --property=RuntimeMaxSec=[0-9]+ms( --setenv=PVEKIT_[A-Z_]+=[^ ]*)* -- qm shutdown 101 --timeout 1$'
	assert_line -n 0 --partial ' --setenv=PVEKIT_VMID=101 '
	assert_line -n 0 --partial ' --setenv=PVEKIT_REASON=failed '
	assert_line -n 1 --regexp ' -- qm start 101$'
	run grep '^qm' "$T/calls"
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
}

@test "--dry-run shows what it would run and runs nothing" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}"
	start_watch -n
	seen '^101 held dry run: would run qm shutdown 101 --timeout 1, qm stop if still running, qm start$'
	run calls
	assert_output ""
}

@test "Type=notify: READY=1 after the first scan; SIGTERM exits 0" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	start_bg socat -u "UNIX-RECV:$T/notify" "OPEN:$T/notified,creat,append"
	wait_until 5 test -S "$T/notify"
	NOTIFY_SOCKET=$T/notify start_watch
	wait_until 5 grep -q READY=1 "$T/notified"
	wait_until 5 grep -q 'STATUS=watching 1 of 1 guests' "$T/notified"
	kill -TERM "$WATCH_PID"
	local rc=0
	wait "$WATCH_PID" || rc=$?
	assert_equal "$rc" 0 # also: no leak reports under ASan
	assert grep -q 'tcpcheck: exiting' "$T/err"
}

@test "the shipped example configs are valid" {
	cp "$TOP/share/examples/tcpcheck-defaults.conf" "$CONF/defaults.conf"
	cp "$TOP/share/examples/tcpcheck-100.conf" "$CONF/100.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 100
	fake_qemu "$RUN" 100
	start_watch -n
	seen '^100 grace watching 192\.0\.2\.25$'
	refute grep -q '\.conf[:;]' "$T/err"
}

@test "a hung action is terminated after action_timeout; other guests are checked meanwhile" {
	ports --closed 1 --open 1
	local tag="$((86400 + RANDOM)).29"
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" "action=sleep $tag" action_timeout=1.5 \
		max_actions=1
	guest 102 ip=127.0.0.1 "portsall=${OPEN[0]}" fail_threshold=30
	start_watch
	seen '^101 acting '
	seen '^102 healthy up$'
	# 102's port goes away while 101's action runs: seen at once.
	kill "$PORTS_PID"
	seen "^102 failing 127\.0\.0\.1:${OPEN[0]} closed$"
	refute grep -q '^101 grace action' "$T/out"
	seen '^101 grace action timed out$'
	assert grep -q 'guest 101 (vm101): action still running after 1.5s: terminating it' "$T/err"
	wait_until 5 bash -c "! pgrep -f 'slee[p] $tag'"
}

@test "SIGTERM waits for a running action; a second SIGTERM terminates it" {
	ports --closed 1
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" "action=sleep 30"
	start_watch
	seen '^101 acting '
	kill -TERM "$WATCH_PID"
	wait_until 5 grep -q 'exiting once 1 running actions finish' "$T/err"
	sleep 0.3
	assert kill -0 "$WATCH_PID"
	kill -TERM "$WATCH_PID"
	local rc=0
	wait "$WATCH_PID" || rc=$?
	assert_equal "$rc" 0
	assert grep -q 'terminated 1 running actions' "$T/err"
}

@test "an action's setsid'd grandchild is killed with it at action_timeout" {
	ports --closed 1
	local tag="$((86400 + RANDOM)).31"
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" \
		"action=setsid sleep $tag </dev/null >/dev/null 2>&1 & exec sleep 60" \
		action_timeout=1 max_actions=1
	start_watch
	seen '^101 acting '
	wait_until 10 pgrep -f "slee[p] $tag"
	pgrep -f "slee[p] $tag" >>"$T/.kill-pids" # should it outlive the test
	seen '^101 grace action timed out$'
	wait_until 5 bash -c "! pgrep -f 'slee[p] $tag'"
}

@test "a second SIGTERM ends a running action, its setsid'd grandchild included" {
	ports --closed 1
	local tag="$((86400 + RANDOM)).32"
	guest 101 ip=127.0.0.1 "portsall=${CLOSED[0]}" \
		"action=setsid sleep $tag </dev/null >/dev/null 2>&1 & exec sleep 60"
	start_watch
	seen '^101 acting '
	wait_until 10 pgrep -f "slee[p] $tag"
	pgrep -f "slee[p] $tag" >>"$T/.kill-pids" # should it outlive the test
	kill -TERM "$WATCH_PID"
	wait_until 5 grep -q 'exiting once 1 running actions finish' "$T/err"
	kill -TERM "$WATCH_PID"
	local rc=0
	wait "$WATCH_PID" || rc=$?
	assert_equal "$rc" 0
	wait_until 5 bash -c "! pgrep -f 'slee[p] $tag'"
}

@test "a pmxcfs restart (new starttime, the vmlist counter back where it was) is a new guest list" {
	ports --open 1
	guest 101 ip=127.0.0.1 "portsall=${OPEN[0]}"
	start_watch
	seen '^101 healthy up$'
	pmxcfs_restart "$WATCH_PID" "$PVE" 101 pve2
	seen '^101 idle migrated to pve2$'
}
