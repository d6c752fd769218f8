# pvekit-watch.service under systemd as PID 1: the shipped unit runs the
# admin's up.d/down.d hooks as root with the node's normal view (a log under
# /var/log, qm set on /etc/pve, systemctl, ip, the real /tmp), keeps the
# watcher itself confined, reports READY=1 after its first scan, and neither
# loses, invents nor leaves behind anything across a restart or a stop.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
	ct_install
	# What pve-migration-monitor users run: a log, a config edit through
	# qm, a call to systemctl, a network change, a file in /tmp.
	ct_put /etc/pvekit/up.d/10-userhook 0755 <<-'EOF'
		#!/bin/bash
		set -e
		echo "$PVEKIT_EVENT $PVEKIT_VMID $1" >>/var/log/userhook.log
		echo "userhook: $PVEKIT_EVENT of $PVEKIT_VMID on stderr" >&2
		qm set "$PVEKIT_VMID" --onboot 1
		systemctl set-environment "USERHOOK_LAST=$PVEKIT_EVENT-$PVEKIT_VMID"
		ip link show "hk$PVEKIT_VMID" >/dev/null 2>&1 || ip link add "hk$PVEKIT_VMID" type bridge
		touch "/tmp/userhook-$PVEKIT_VMID"
		grep CapEff /proc/self/status >"/var/log/userhook.caps"
	EOF
	ct_put /etc/pvekit/down.d/10-userhook 0755 <<-'EOF'
		#!/bin/bash
		set -e
		echo "$PVEKIT_EVENT $PVEKIT_VMID $1 $PVEKIT_PEER" >>/var/log/userhook.log
		systemctl set-environment "USERHOOK_LAST=$PVEKIT_EVENT-$PVEKIT_VMID"
		! ip link show "hk$PVEKIT_VMID" >/dev/null 2>&1 || ip link del "hk$PVEKIT_VMID"
		rm -f "/tmp/userhook-$PVEKIT_VMID"
	EOF
	# Slow for guests 200 and up, until /run/release-VMID exists.
	ct_put /etc/pvekit/up.d/20-slow 0755 <<-'EOF'
		#!/bin/bash
		[ "$PVEKIT_VMID" -ge 200 ] || exit 0
		echo "start $PVEKIT_EVENT $PVEKIT_VMID" >>/var/log/slowhook.log
		trap 'echo "term $PVEKIT_EVENT $PVEKIT_VMID" >>/var/log/slowhook.log; exit 143' TERM
		while [ ! -e "/run/release-$PVEKIT_VMID" ]; do sleep 0.1; done
		echo "end $PVEKIT_EVENT $PVEKIT_VMID" >>/var/log/slowhook.log
	EOF
	# There before the first start: recorded silently.
	ct_guest 100
	ct pmxcfs-sim bulk /etc/pve pve1 qemu 5000 2000
	ct pmxcfs-sim create /etc/pve pve2 qemu 102
	ct pmxcfs-sim create /etc/pve pve2 qemu 103
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }
teardown() { ct_debug pvekit-watch; }

userhook_log() { ct cat /var/log/userhook.log; }
slow_log() { ct cat /var/log/slowhook.log 2>/dev/null || true; }

@test "systemctl start returns after the first scan (READY=1), and a change right after is an event" {
	run -0 ct systemctl start pvekit-watch.service
	# STATUS= comes from the scan, before READY=1 ends the start job
	run -0 ct systemctl show -P StatusText pvekit-watch.service
	assert_output --regexp '^guests: 2001 here, 2003 in the cluster'
	ct_guest 101
	ct_seen pvekit-watch 30 '^run-hooks: VM 101 create: up.d/20-slow: ok'
	# the guests that were there are no events
	run -0 userhook_log
	assert_output "create 101 /etc/pve/nodes/pve1/qemu-server/101.conf"
}

@test "up.d hooks run as root with the node's view: /var/log, qm set on /etc/pve, systemctl, ip, /tmp" {
	ct pmxcfs-sim migrate /etc/pve 102 pve1
	ct_seen pvekit-watch 30 '^run-hooks: VM 102 migrate-in: up.d/20-slow: ok'
	run -0 userhook_log
	assert_line "migrate-in 102 /etc/pve/nodes/pve1/qemu-server/102.conf"
	run -0 ct grep -x 'onboot: 1' /etc/pve/nodes/pve1/qemu-server/101.conf /etc/pve/nodes/pve1/qemu-server/102.conf
	assert_equal "${#lines[@]}" 2
	run -0 ct grep -c '^qm set 10[12] --onboot 1$' /var/log/pve-fake.log
	assert_output 2
	run -0 ct systemctl show-environment
	assert_line USERHOOK_LAST=migrate-in-102
	run -0 ct ip -o link show type bridge
	assert_line --regexp '^[0-9]+: hk101: '
	assert_line --regexp '^[0-9]+: hk102: '
	run -0 ct ls /tmp/userhook-101 /tmp/userhook-102
	# every capability root has on this node (PID 1's), not the watcher's none
	run -0 ct cat /var/log/userhook.caps
	assert_output "$(ct grep CapEff /proc/1/status)"
	refute_output --regexp '[[:space:]]0+$'
	run -0 ct_journal pvekit-watch
	assert_line "run-hooks: VM 101 create: 2 hooks in /etc/pvekit/up.d"
	assert_line --regexp '^run-hooks: VM 101 create: up.d/10-userhook: ok \([0-9.]+ s\)$'
	refute_output --partial "Read-only file system"
}

@test "a hook's stderr reaches the journal with the guest's VMID" {
	run -0 ct_journal pvekit-watch
	assert_line "run-hooks: VM 101 create: up.d/10-userhook: userhook: create of 101 on stderr"
	assert_line "run-hooks: VM 102 migrate-in: up.d/10-userhook: userhook: migrate-in of 102 on stderr"
}

@test "down.d hooks run for migrate-out and destroy" {
	ct pmxcfs-sim migrate /etc/pve 101 pve2
	ct_seen pvekit-watch 30 '^run-hooks: VM 101 migrate-out: down.d/10-userhook: ok'
	ct pmxcfs-sim destroy /etc/pve 102
	ct_seen pvekit-watch 30 '^run-hooks: VM 102 destroy: down.d/10-userhook: ok'
	run -0 userhook_log
	assert_line "migrate-out 101 /etc/pve/nodes/pve2/qemu-server/101.conf pve2"
	assert_line --regexp '^destroy 102 /var/lib/pvekit/.*102.* $'
	run -0 ct systemctl show-environment
	assert_line USERHOOK_LAST=destroy-102
	run -0 ct ip -o link show type bridge
	refute_output --partial hk101
	refute_output --partial hk102
	run ct ls /tmp/userhook-101 /tmp/userhook-102
	assert_failure
}

@test "systemctl restart while a hook runs: the event runs again after the start, none lost or invented" {
	ct_guest 200
	wait_until 30 bash -c "[ \"\$(nsenter -t $(ct_pid) -a cat /var/log/slowhook.log 2>/dev/null)\" = 'start create 200' ]"
	run -0 ct systemctl restart pvekit-watch.service
	# the hook's unit was stopped, not left behind, before the restart was done
	run -0 slow_log
	assert_output "start create 200
term create 200"
	wait_until 30 bash -c "[ \"\$(nsenter -t $(ct_pid) -a cat /var/log/slowhook.log | wc -l)\" = 3 ]"
	ct touch /run/release-200
	ct_seen pvekit-watch 30 '^run-hooks: VM 200 create: up.d/20-slow: ok'
	run -0 slow_log
	assert_output "start create 200
term create 200
start create 200
end create 200"
	# one guest, one event (its hooks ran twice: at least once)
	ct_guest 201
	ct touch /run/release-201
	ct_seen pvekit-watch 30 '^run-hooks: VM 201 create: up.d/20-slow: ok'
	run -0 userhook_log
	assert_output "create 101 /etc/pve/nodes/pve1/qemu-server/101.conf
migrate-in 102 /etc/pve/nodes/pve1/qemu-server/102.conf
migrate-out 101 /etc/pve/nodes/pve2/qemu-server/101.conf pve2
$(ct grep '^destroy 102 ' /var/log/userhook.log)
create 200 /etc/pve/nodes/pve1/qemu-server/200.conf
create 200 /etc/pve/nodes/pve1/qemu-server/200.conf
create 201 /etc/pve/nodes/pve1/qemu-server/201.conf"
	run -0 ct_journal pvekit-watch
	assert_line --regexp '^run-hooks: VM 200 create: up.d/20-slow: stopped, .*; the event runs again on the next start$'
}

@test "systemctl stop leaves no hook process and no hook unit behind; the event stays journaled" {
	ct_guest 210
	wait_until 30 ct grep -qx 'start create 210' /var/log/slowhook.log
	run -0 ct_units 'pvekit-hook-*'
	assert_output --regexp '^pvekit-hook-210-20-slow-[0-9]+-[0-9]+[.]service$'
	run -0 ct systemctl stop pvekit-watch.service
	run -0 ct grep -x 'term create 210' /var/log/slowhook.log
	run -0 ct_units 'pvekit-hook-*'
	assert_output ""
	run ct pgrep -f /etc/pvekit/up.d/20-slow
	assert_failure
	run -0 ct cat /var/lib/pvekit/run-hooks/journal
	assert_output --partial "create 210 qemu - /etc/pve/nodes/pve1/qemu-server/210.conf"
	ct touch /run/release-210
	run -0 ct systemctl start pvekit-watch.service
	ct_seen pvekit-watch 30 '^run-hooks: VM 210 create: up.d/20-slow: ok'
	run -0 ct grep 'create 210' /var/log/slowhook.log
	assert_output "start create 210
term create 210
start create 210
end create 210"
}

@test "a hook's whole process tree ends at run-hooks --timeout, leftovers in a new session too" {
	ct mkdir -p /etc/systemd/system/pvekit-watch.service.d
	ct_put /etc/systemd/system/pvekit-watch.service.d/timeout.conf <<-'EOF'
		[Service]
		ExecStart=
		ExecStart=/bin/bash -c 'set -o pipefail; /usr/bin/pve-watch-conf --seq --state-dir /var/lib/pvekit | /usr/bin/run-hooks --events /etc/pvekit --systemd-run --state-dir /var/lib/pvekit --timeout 2 --kill-after 1'
	EOF
	ct_put /etc/pvekit/up.d/30-tree 0755 <<-'EOF'
		#!/bin/bash
		[ "$PVEKIT_VMID" = 220 ] || exit 0
		setsid bash -c 'trap "" TERM; exec -a tree-leaf-220 sleep 300' </dev/null >/dev/null 2>&1 &
		exec -a tree-main-220 sleep 300
	EOF
	ct systemctl daemon-reload
	ct systemctl restart pvekit-watch.service
	ct touch /run/release-220
	ct_guest 220
	ct_seen pvekit-watch 30 '^run-hooks: VM 220 create: up.d/30-tree: timed out after 2 s'
	run ct pgrep -f 'tree-(leaf|main)-220'
	assert_failure
	run -0 ct_units 'pvekit-hook-*'
	assert_output ""
	ct rm /etc/pvekit/up.d/30-tree /etc/systemd/system/pvekit-watch.service.d/timeout.conf
	ct systemctl daemon-reload
	ct systemctl restart pvekit-watch.service
}

@test "a drop-in for pvekit-hook-.service applies to every hook's unit" {
	ct mkdir -p /etc/systemd/system/pvekit-hook-.service.d
	ct_put /etc/systemd/system/pvekit-hook-.service.d/test.conf <<-'EOF'
		[Service]
		Environment=FROM_DROPIN=yes
		ProtectHome=yes
	EOF
	ct_put /etc/pvekit/up.d/40-dropin 0755 <<-'EOF'
		#!/bin/bash
		echo "$PVEKIT_VMID ${FROM_DROPIN-no} $(test -e /root/.bashrc && echo home || echo nohome)" >>/var/log/dropin.log
	EOF
	ct systemctl daemon-reload
	ct touch /run/release-230
	ct_guest 230
	ct_seen pvekit-watch 30 '^run-hooks: VM 230 create: up.d/40-dropin: ok'
	run -0 ct cat /var/log/dropin.log
	assert_output "230 yes nohome"
	ct rm -r /etc/systemd/system/pvekit-hook-.service.d /etc/pvekit/up.d/40-dropin
	ct systemctl daemon-reload
}

@test "the watcher itself stays confined: no capabilities, read-only system, no network" {
	local pid
	for prog in pve-watch-conf run-hooks; do
		pid=$(ct pgrep -x "$prog")
		run -0 ct grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status"
		assert_line --regexp '^CapEff:[[:space:]]+0000000000000000$'
		assert_line --regexp '^CapBnd:[[:space:]]+0000000000000000$'
		assert_line --regexp '^NoNewPrivs:[[:space:]]+1$'
		assert_line --regexp '^Seccomp:[[:space:]]+2$'
		run ct nsenter -t "$pid" -m -n touch /var/log/written-by-watcher
		assert_failure
		assert_output --partial "Read-only file system"
		run -0 ct nsenter -t "$pid" -n ip -o link show
		assert_output --regexp '^1: lo:'
		assert_equal "${#lines[@]}" 1
	done
}
