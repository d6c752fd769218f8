# pvekit-watch.service and the pipeline it runs: the real pve-watch-conf
# piped into run-hooks --events on a simulated node, started and stopped the
# way the unit does it.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	UNIT=$TOP/systemd/pvekit-watch.service
	H=$T/hooks
	mkdir -p "$H/up.d" "$H/down.d"
}
teardown() { pvekit_teardown; }

need_watcher() {
	[ -x "${PVEKIT_BUILD:-$TOP/build}/pve-watch-conf" ] ||
		skip "pve-watch-conf is not built in ${PVEKIT_BUILD:-$TOP/build}"
}

# The hook records each event with its argument, and the config's first line.
record_hook() {
	printf '%s\n' '#!/bin/sh' \
		"printf '%s %s %s peer=[%s] arg=[%s] %s\\n' \"\$PVEKIT_EVENT\" \"\$PVEKIT_VMID\" \"\$PVEKIT_TYPE\" \\" \
		"	\"\$PVEKIT_PEER\" \"\$1\" \"\$(grep -m1 '^name:' \"\$1\" 2>/dev/null)\" >>$T/log" >"$1"
	chmod +x "$1"
}

# pipeline [WATCHER OPTIONS]: the unit's ExecStart on our tree, in its own
# process group (as a unit's cgroup), with an sd_notify socket.
pipeline() {
	NOTIFY_SOCKET=$T/notify.sock
	start_bg socat -u "UNIX-RECV:$NOTIFY_SOCKET" "OPEN:$T/notify,creat,append"
	wait_until 10 test -S "$NOTIFY_SOCKET"
	export NOTIFY_SOCKET
	start_bg setsid bash -c 'set -o pipefail
		pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --interval 0.1 --seq |
		run-hooks --events "$3" --state-dir "$2" --node pve1' _ "$PVE" "$T/state" "$H"
	PIPE=$BG_PID
	unset NOTIFY_SOCKET
}

@test "the unit passes systemd-analyze verify" {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
	run -0 bash -c "systemd-analyze verify --man=no '$UNIT' 2>&1 | grep -v 'is not executable' || true"
	assert_output ''
	grep -qx 'ExecStart=/bin/bash -c .set -o pipefail; /usr/bin/pve-watch-conf --seq --state-dir /var/lib/pvekit | /usr/bin/run-hooks --events /etc/pvekit --systemd-run --state-dir /var/lib/pvekit.' "$UNIT"
	grep -qx 'Type=notify' "$UNIT"
	grep -qx 'NotifyAccess=all' "$UNIT"
	grep -qx 'PartOf=pve-cluster.service' "$UNIT"
	grep -qx 'RestartPreventExitStatus=64 78' "$UNIT"
	grep -qx 'StateDirectory=pvekit' "$UNIT"
}

@test "end to end: guests created, migrated in and out, destroyed run up.d and down.d" {
	need_watcher
	make_pve
	record_hook "$H/up.d/10-record"
	record_hook "$H/down.d/10-record"
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$FIXTURES/conf/qemu-plain.conf"
	pmxcfs-sim create "$PVE" pve2 lxc 200
	pipeline
	wait_until 20 grep -q READY=1 "$T/notify"

	pmxcfs-sim create "$PVE" pve1 qemu 101
	wait_until 20 grep -q '^create 101 ' "$T/log"
	pmxcfs-sim edit "$PVE" 101 "name: renamed"
	pmxcfs-sim lock "$PVE" 101 backup
	pmxcfs-sim lock "$PVE" 101 ""
	pmxcfs-sim migrate "$PVE" 200 pve1
	wait_until 20 grep -q '^migrate-in 200 ' "$T/log"
	pmxcfs-sim migrate "$PVE" 100 pve2
	wait_until 20 grep -q '^migrate-out 100 ' "$T/log"
	pmxcfs-sim destroy "$PVE" 101
	wait_until 20 grep -q '^destroy 101 ' "$T/log"

	run cut -d' ' -f1-5 "$T/log"
	assert_line -n 0 "create 101 qemu peer=[] arg=[$PVE/nodes/pve1/qemu-server/101.conf]"
	assert_line -n 1 "migrate-in 200 lxc peer=[pve2] arg=[$PVE/nodes/pve1/lxc/200.conf]"
	assert_line -n 2 "migrate-out 100 qemu peer=[pve2] arg=[$PVE/nodes/pve2/qemu-server/100.conf]"
	# destroy hands over the watcher's copy of the last config, readable
	assert_line -n 3 --regexp "^destroy 101 qemu peer=\[\] arg=\[$T/state/.*101.conf\]$"
	[ "${#lines[@]}" = 4 ]
	run grep '^destroy 101 ' "$T/log"
	assert_output --partial 'name: renamed'

	# "systemctl stop": SIGTERM to every process of the unit
	kill -TERM -- -"$PIPE"
	wait_until 20 bash -c "! kill -0 $PIPE 2>/dev/null"
	[ ! -s "$T/state/run-hooks/journal" ]
}

@test "end to end: when run-hooks cannot start, the pipeline ends with its status" {
	need_watcher
	make_pve
	rmdir "$H/up.d" "$H/down.d" "$H"
	run -78 timeout 30 bash -c 'set -o pipefail
		pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$2" --interval 0.1 --seq |
		run-hooks --events "$3" --state-dir "$2" --node pve1' _ "$PVE" "$T/state" "$H"
	[[ $output == *"run-hooks: $H: No such file or directory"* ]]
}

@test "end to end: when the watcher fails, run-hooks finishes and the pipeline fails" {
	need_watcher
	make_pve
	run -64 timeout 30 bash -c 'set -o pipefail
		pve-watch-conf --no-such-option |
		run-hooks --events "$1" --state-dir "$2" --node pve1' _ "$H" "$T/state"
}

# lock_hook FILE: a hook that logs the event, the guest and the lock its
# config has while the hook runs.
lock_hook() {
	printf '%s\n' '#!/bin/sh' \
		"echo \"\$PVEKIT_EVENT \$PVEKIT_VMID lock=\$(sed -n 's/^lock: //p' \"\$1\")\" >>$T/log" >"$1"
	chmod +x "$1"
}

@test "end to end: a migration as qemu-server makes it runs up.d once, before the unlock or after it" {
	# QemuMigrate.pm: "lock: migrate" written on the source, the config
	# renamed into the target's dir, "qm unlock" on the target after the
	# transfer. The hook runs once, whether it comes before the unlock
	# (the watcher saw the rename) or after it (the watcher was down).
	need_watcher
	make_pve
	lock_hook "$H/up.d/10-lock"
	lock_hook "$H/down.d/10-lock"
	pmxcfs-sim create "$PVE" pve2 qemu 200
	pmxcfs-sim create "$PVE" pve2 qemu 201
	pipeline
	wait_until 20 grep -q READY=1 "$T/notify"
	# a long transfer: the hook runs while the guest is locked
	start_bg pmxcfs-sim migrate "$PVE" 200 pve1 3
	local mig=$BG_PID
	wait_until 20 grep -qx "migrate-in 200 lock=migrate" "$T/log"
	wait "$mig"
	refute grep -q '^lock:' "$PVE/nodes/pve1/qemu-server/200.conf"
	# the watcher down during a whole migration: the hook after the unlock
	kill -TERM -- -"$PIPE"
	wait_until 20 bash -c "! kill -0 $PIPE 2>/dev/null"
	pmxcfs-sim migrate "$PVE" 201 pve1
	pipeline
	wait_until 20 grep -qx "migrate-in 201 lock=" "$T/log"
	pmxcfs-sim create "$PVE" pve1 qemu 202
	wait_until 20 grep -q "^create 202 " "$T/log"
	run cat "$T/log"
	assert_output "migrate-in 200 lock=migrate
migrate-in 201 lock=
create 202 lock="
}
