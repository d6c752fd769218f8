# The three timers under systemd as PID 1: enabled, listed by
# systemctl list-timers, and their services, started by hand, do their job
# inside their sandboxes: vm-ip-from-arp and vm-public-ip write the failover
# IP files under /etc/pve, qga-timesync reads the (real) agent's clock.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
	ct_install
	# a link with carrier for addresses and neighbours (no dummy module here)
	ct ip link add ipt0 type veth peer name ipt1
	ct ip link set ipt0 up
	ct ip link set ipt1 up
	ct ip addr add 10.9.0.1/24 dev ipt0
	# 107: known by its MAC in the neighbour table
	ct_guest 107
	ct ip neigh replace 10.9.0.7 lladdr bc:24:11:00:00:6b dev ipt0 nud permanent
	# 108: a running VM whose agent (qemu-ga, here the container's own
	# addresses) reports a public address
	ct_guest 108 "agent: 1"
	ct qm start 108
	ct ip addr add 8.8.4.9/32 dev ipt1
	ct_agent 108
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }

@test "the timers are enabled and listed by systemctl list-timers" {
	run -0 ct systemctl enable --now pvekit-vm-ip-from-arp.timer pvekit-vm-public-ip.timer \
		pvekit-qga-timesync.timer
	run -0 ct systemctl list-timers --all --no-pager --plain
	assert_line --regexp ' pvekit-vm-ip-from-arp[.]timer +pvekit-vm-ip-from-arp[.]service$'
	assert_line --regexp ' pvekit-vm-public-ip[.]timer +pvekit-vm-public-ip[.]service$'
	assert_line --regexp ' pvekit-qga-timesync[.]timer +pvekit-qga-timesync[.]service$'
	for t in vm-ip-from-arp vm-public-ip qga-timesync; do
		run -0 ct systemctl is-active "pvekit-$t.timer"
		run -0 ct systemctl is-enabled "pvekit-$t.timer"
	done
}

@test "pvekit-vm-ip-from-arp.service writes the IP file of a guest seen in the neighbour table" {
	run -0 ct systemctl start pvekit-vm-ip-from-arp.service
	run -0 ct systemctl show -P Result pvekit-vm-ip-from-arp.service
	assert_output success
	run -0 ct cat /etc/pve/pvekit/failoverip/107
	assert_output "10.9.0.7"
	run -0 ct_journal pvekit-vm-ip-from-arp.service
	refute_output --partial "Read-only file system"
}

@test "pvekit-vm-public-ip.service writes the public addresses the guest agent reports" {
	run -0 ct systemctl start pvekit-vm-public-ip.service
	run -0 ct systemctl show -P Result pvekit-vm-public-ip.service
	assert_output success
	run -0 ct cat /etc/pve/pvekit/failoverip/108
	assert_output "8.8.4.9"
}

@test "pvekit-qga-timesync.service reads the guest clock through the agent and succeeds" {
	run -0 ct systemctl start pvekit-qga-timesync.service
	run -0 ct systemctl show -P Result pvekit-qga-timesync.service
	assert_output success
	run -0 ct_journal pvekit-qga-timesync.service
	assert_line --regexp '^108 -?[0-9.]+ ok$'
}
