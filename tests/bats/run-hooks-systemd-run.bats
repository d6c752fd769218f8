# run-hooks --systemd-run: each hook as a transient unit of PID 1, here
# through the systemd-run stand-in (tests/fakes/pve-bin), which records the
# command line and runs the hook as the unit would: the manager's PATH and the
# --setenv variables only, "$" expanded as PID 1 expands it. What PID 1 itself
# does with the unit (sandbox, RuntimeMaxSec, stop) is in tests/system.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	export PATH="$FAKES/pve-bin:$PATH"
	export PVEKIT_FAKE_LOG=$T/calls
	: >"$T/calls"
	H=$T/hooks
	mkdir -p "$H/up.d" "$H/down.d" "$T/dir"
}
teardown() { pvekit_teardown; }

hook() {
	local f=$1
	shift
	printf '#!/bin/sh\n%s\n' "$@" >"$f"
	chmod +x "$f"
}

@test "DIR mode: each hook through systemd-run, with its unit, deadline, kill delay and umask" {
	hook "$T/dir/10-a" 'echo "a: $1 $2 umask=$(umask)"'
	hook "$T/dir/20-b" 'echo "b: $1"'
	run -0 run-hooks --systemd-run --timeout 2.5 --kill-after 1 --umask 027 "$T/dir" one 'two $HOME ${X} $$'
	assert_line -n 0 'a: one two $HOME ${X} $$ umask=0027'
	assert_line -n 1 'b: one'
	run cat "$T/calls"
	assert_line -n 0 --regexp "^systemd-run --quiet --wait --pipe --collect --no-ask-password --service-type=exec --unit=pvekit-hook-10-a-[0-9]+-1[.]service --description=run-hooks: $T/dir/10-a --property=RuntimeMaxSec=2500ms --property=TimeoutStopSec=1000ms --property=UMask=0027( --setenv=PVEKIT_[A-Z_]+=[^ ]*)* -- $T/dir/10-a one two [$][$]HOME [$][$][{]X[}] [$][$][$][$]\$"
	assert_line -n 1 --regexp "^systemd-run .* --unit=pvekit-hook-20-b-[0-9]+-2[.]service .* -- $T/dir/20-b one two "
}

@test "--events: only the PVEKIT_ variables reach the hook, the unit is named after guest and hook" {
	hook "$H/up.d/10-env" 'echo "vmid=$PVEKIT_VMID event=$PVEKIT_EVENT conf=$1 foo=${FOO-unset}" >>'"$T/log"
	echo "create 100 qemu - /etc/pve/nodes/pve1/qemu-server/100.conf" |
		FOO=bar run -0 run-hooks --events "$H" --state-dir "$T/state" --node pve1 --systemd-run
	run cat "$T/log"
	assert_output "vmid=100 event=create conf=/etc/pve/nodes/pve1/qemu-server/100.conf foo=unset"
	run cat "$T/calls"
	assert_output --regexp "^systemd-run .* --unit=pvekit-hook-100-10-env-[0-9]+-1[.]service --description=pvekit hook: VM 100 create: up.d/10-env --property=RuntimeMaxSec=300000ms --property=TimeoutStopSec=5000ms --property=UMask=0022 .* -- $H/up.d/10-env /etc/pve/nodes/pve1/qemu-server/100.conf\$"
	assert_output --partial " --setenv=PVEKIT_VMID=100 "
	assert_output --partial " --setenv=PVEKIT_NODE=pve1 "
	assert_output --partial " --setenv=PVEKIT_PEER= "
	refute_output --partial "FOO"
}

@test "a hook that fails, or cannot be started, is reported with systemd-run's status" {
	hook "$T/dir/10-fail" 'echo "failing" >&2; exit 3'
	run -3 run-hooks --systemd-run "$T/dir"
	assert_line "failing"
	assert_line --regexp "^run-hooks: $T/dir/10-fail exited with return code 3\$"
	mkdir "$T/nobin"
	PATH=$T/nobin run -127 "$PVEKIT_BUILD/run-hooks" --systemd-run "$T/dir"
	assert_output "run-hooks: $T/dir/10-fail: systemd-run: No such file or directory
run-hooks: $T/dir/10-fail could not be executed: No such file or directory"
}

@test "--systemd-run and --new-session are refused together" {
	run -64 run-hooks --systemd-run --new-session "$T/dir"
	assert_line -n 0 "run-hooks: --new-session and --systemd-run cannot be used together: a transient unit has a session of its own"
}
