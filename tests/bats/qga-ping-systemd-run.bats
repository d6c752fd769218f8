#!/usr/bin/env bats
# qga-ping --watch --systemd-run: each --exec command as a transient unit of
# PID 1, here through the systemd-run stand-in (tests/fakes/pve-bin), which
# records the command line and runs it as the unit would (the manager's PATH,
# the --setenv variables, "$" expanded as PID 1 expands it). What PID 1 does
# with the unit is in tests/system/qga-ping.bats.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls
	: >"$T/calls"
	: >"$T/events"
}
teardown() { pvekit_teardown; }

guest() {
	pmxcfs-sim create "$PVE" pve1 qemu "$1"
	fake_qemu "$RUN" "$1"
	start_qga "$RUN/$1.qga"
	wait_until 5 qga-ping -q -t 500 "$RUN/$1.qga"
}

@test "--exec runs through systemd-run: its unit, deadline, environment, and \$ as the admin wrote it" {
	guest 101
	start_bg qga-ping --watch -v --pve-dir "$PVE" --node pve1 --qga-dir "$RUN" \
		--interval 0.2 --timeout 150 --threshold 3 --grace 0 --exec-timeout 7.5 --systemd-run \
		--exec "echo \"\$PVEKIT_EVENT \$PVEKIT_VMID \${PVEKIT_REASON} \$\$ \${HOME-nohome}\" >>$T/events" \
		>"$T/out" 2>"$T/err"
	wait_until 10 grep -qx "101 watch running" "$T/out"
	kill -STOP "$QGA_PID"
	wait_until 10 grep -q "^qga-failed 101 timeout [0-9][0-9]* nohome\$" "$T/events"
	run grep '^systemd-run' "$T/calls"
	assert_output --regexp "^systemd-run --quiet --wait --pipe --collect --no-ask-password --service-type=exec --unit=pvekit-exec-101-[0-9]+-1[.]service --description=pvekit qga-ping --exec for VM 101 qga-failed --property=RuntimeMaxSec=7500ms --property=TimeoutStopSec=5000ms --setenv=PVEKIT_.* -- /bin/sh -c echo \"[\$][\$]PVEKIT_EVENT [\$][\$]PVEKIT_VMID [\$][\$][{]PVEKIT_REASON[}] [\$][\$][\$][\$] [\$][\$][{]HOME-nohome[}]\" >>$T/events\$"
	assert_output --partial " --setenv=PVEKIT_EVENT=qga-failed "
	assert_output --partial " --setenv=PVEKIT_VMID=101 "
	kill -CONT "$QGA_PID"
	wait_until 10 grep -q "^qga-recovered 101 ok " "$T/events"
	run grep -c '^systemd-run .* --unit=pvekit-exec-101-[0-9]*-2[.]service ' "$T/calls"
	assert_output 1
}

@test "--systemd-run needs --watch" {
	run -64 qga-ping --systemd-run 101
	assert_line -n 0 "qga-ping: --systemd-run needs --watch"
}

@test "--restart --systemd-run: each qm command of a restart runs as a transient unit" {
	export PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$T/.bg-pids PVEKIT_FAKE_SHUTDOWN=ok
	guest 101
	start_bg qga-ping --watch -v --pve-dir "$PVE" --node pve1 --qga-dir "$RUN" \
		--interval 0.2 --timeout 150 --threshold 3 --grace 0 --systemd-run \
		--restart --restart-wait 1 --restart-timeout 30 >"$T/out" 2>"$T/err"
	wait_until 10 grep -qx "101 watch running" "$T/out"
	kill -STOP "$QGA_PID"
	wait_until 20 grep -qx "101 restart ok" "$T/out"
	run grep '^systemd-run' "$T/calls"
	assert_line -n 0 --regexp "^systemd-run .* --unit=pvekit-action-101-[0-9]+-1[.]service --description=pvekit qga-ping action for guest 101 .* -- qm shutdown 101 --timeout 1\$"
	assert_line -n 1 --regexp "^systemd-run .* --unit=pvekit-action-101-[0-9]+-2[.]service .* -- qm start 101\$"
	run grep -v '^systemd-run' "$T/calls"
	assert_output "qm shutdown 101 --timeout 1
qm start 101"
}
