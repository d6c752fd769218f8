# pvekit-start-plan.service under systemd as PID 1: disabled by default and
# skipped without a plan; started, it runs the plan with the node's view
# (no sandbox): qm starts the guests into scopes of their own, the second
# group only once the first one's agent (the real qemu-ga, brought up by the
# test while the unit waits) answers, and the unit ends active (exited)
# with its result lines in the journal.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
	ct_install
	ct_guest 101 "agent: 1"
	ct_guest 102
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }
teardown() { ct_debug pvekit-start-plan; }

@test "disabled by default; without /etc/pvekit/start-plan a start does nothing" {
	run ct systemctl is-enabled pvekit-start-plan.service
	assert_output disabled
	ct systemctl start pvekit-start-plan.service
	run -0 ct systemctl show -P ConditionResult pvekit-start-plan.service
	assert_output no
	run -0 ct sh -c 'cat /var/log/pve-fake.log 2>/dev/null; true'
	refute_output --partial "qm start"
	# enabling it hooks it into the boot
	ct systemctl enable pvekit-start-plan.service
	run -0 ct systemctl is-enabled pvekit-start-plan.service
	assert_output enabled
	run -0 ct systemctl list-dependencies --plain --no-pager multi-user.target
	assert_output --partial pvekit-start-plan.service
}

@test "started, it runs the plan: the second group only once the first one's agent answers" {
	ct mkdir -p /etc/pvekit
	ct_put /etc/pvekit/start-plan <<-'EOF'
		# first the database, then the application
		start 101
		wait agent 101 60
		start 102
	EOF
	ct systemctl start --no-block pvekit-start-plan.service
	wait_until 30 ct grep -qx 'qm start 101' /var/log/pve-fake.log
	# 101's agent is not up: the plan waits, 102 is not started
	sleep 2
	run ct systemctl is-active pvekit-start-plan.service
	assert_output activating
	run -1 ct grep -q 'qm start 102' /var/log/pve-fake.log
	ct_agent 101
	wait_until 30 ct grep -qx 'qm start 102' /var/log/pve-fake.log
	wait_until 30 bash -c "nsenter -t $(ct_pid) -a systemctl is-active pvekit-start-plan.service | grep -qx active"
	run -0 ct_journal pvekit-start-plan
	assert_line --regexp '^start 101 ok [0-9.]+$'
	assert_line --regexp '^wait agent 101 60 ready [0-9.]+$'
	assert_line --regexp '^start 102 ok [0-9.]+$'
	# the guests run in scopes of their own, not inside the plan's unit
	run -0 ct_units '10[12].scope'
	assert_output "101.scope
102.scope"
}

qemu_pid() { ct cat "/run/qemu-server/$1.pid"; }

@test "the guests it started run on in their own scopes when the unit stops" {
	p101=$(qemu_pid 101)
	p102=$(qemu_pid 102)
	run -0 ct cat "/proc/$p101/cgroup"
	assert_line --regexp '/qemu[.]slice/101[.]scope$'
	run -0 ct systemctl stop pvekit-start-plan.service
	run -0 ct kill -0 "$p101" "$p102"
	run -0 ct qm status 102
	assert_output "status: running"
}

@test "a guest with onboot: 1 is left to Proxmox; a failed start fails neither the plan nor the unit" {
	ct_guest 112 "onboot: 1"
	ct_guest 113
	ct_guest 114
	# qm start 113 fails, as qm does when QEMU will not run
	ct_put /run/pve-fake.env <<-'EOF'
		if [ "$1 $2" = "start 113" ]; then export PVEKIT_FAKE_START_RC=2; fi
	EOF
	ct_put /etc/pvekit/start-plan <<-'EOF'
		start 112 113
		start 114
	EOF
	run -0 ct timeout 60 systemctl start pvekit-start-plan.service
	run -0 ct systemctl show -P Result pvekit-start-plan.service
	assert_output success
	run -0 ct systemctl is-active pvekit-start-plan.service
	run -0 ct_journal pvekit-start-plan
	assert_line "start 112 skipped onboot"
	assert_line --regexp '^start 113 failed [0-9.]+$'
	assert_line --regexp '^start 114 ok [0-9.]+$'
	run -0 ct qm status 112
	assert_output "status: stopped"
	run -0 ct qm status 114
	assert_output "status: running"
	run -1 ct grep -x 'qm start 112' /var/log/pve-fake.log
}
