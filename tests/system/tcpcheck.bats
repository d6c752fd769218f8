# pvekit-tcpcheck.service under systemd as PID 1: an action against a
# failing guest runs as a transient unit of PID 1 and the guest runs again
# afterwards in its own scope (the QEMU stand-in outlives the action's unit),
# a stop waits for a running action, and a reload re-reads the configs.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
	ct_install
	ct mkdir -p /etc/pve/pvekit/tcpcheck
	ct_put /etc/pve/pvekit/tcpcheck/defaults.conf <<-'EOF'
		check_interval=0.5
		fail_interval=0.5
		fail_threshold=1
		recovery_time=1
		wait_interval=1
		max_actions=20
		log_interval=3600
	EOF
	ct_guest 104
	ct qm start 104
	port_up 104
	ct systemctl enable --now pvekit-tcpcheck.service
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }
teardown() { ct_debug pvekit-tcpcheck; }

# port_up VMID / port_down VMID: a listener on 127.0.0.1:8VMID, as a unit.
port_up() {
	ct systemd-run --quiet --unit="port-$1" --collect -- \
		/usr/bin/systemd-socket-activate -l "127.0.0.1:8$1" /bin/sleep infinity
	wait_until 10 ct bash -c "exec 3<>/dev/tcp/127.0.0.1/8$1"
}
port_down() { ct systemctl stop "port-$1.service"; }

qemu_pid() { ct cat "/run/qemu-server/$1.pid"; }

@test "an action runs as a transient unit of PID 1; the restarted guest runs on in its own scope" {
	# a grace after the action long enough to bring the port back first
	ct_put /etc/pve/pvekit/tcpcheck/104.conf <<-'EOF'
		ip=127.0.0.1
		portsall=8104
		recovery_time=5
	EOF
	ct_seen pvekit-tcpcheck 30 '^104 healthy up$'
	old=$(qemu_pid 104)
	run -0 ct cat "/proc/$old/cgroup"
	assert_output --regexp '/qemu[.]slice/104[.]scope$'
	port_down 104
	ct_seen pvekit-tcpcheck 30 '^104 grace action exited 0$'
	port_up 104
	run -0 ct_journal pvekit-tcpcheck
	assert_line --regexp '^104 acting failing for [0-9.]+s: .*; qm shutdown 104 --timeout 1, qm stop if still running, qm start$'
	assert_line --regexp '^tcpcheck: guest 104: running: /usr/bin/systemd-run --quiet --wait --pipe --collect --no-ask-password --service-type=exec --unit=pvekit-action-104-[0-9]+-1[.]service .* -- qm shutdown 104 --timeout 1$'
	assert_line --regexp '^tcpcheck: guest 104: running: /usr/bin/systemd-run .* --unit=pvekit-action-104-[0-9]+-2[.]service .* -- qm start 104$'
	run -0 ct journalctl -q -o cat --no-pager _PID=1
	assert_line --regexp '^Started pvekit-action-104-[0-9]+-2[.]service - pvekit tcpcheck action for guest 104[.]$'
	run -0 ct grep '104' /var/log/pve-fake.log
	assert_output "qm start 104
qm shutdown 104 --timeout 1
qm start 104"
	# the new QEMU stand-in runs, in 104.scope, after its action's unit is gone
	new=$(qemu_pid 104)
	[ "$new" != "$old" ]
	run -0 ct cat "/proc/$new/cgroup"
	assert_output --regexp '/qemu[.]slice/104[.]scope$'
	run -0 ct systemctl is-active 104.scope
	run -0 ct_units 'pvekit-action-*'
	assert_output ""
	# healthy again after its grace, and no second action
	wait_until 30 bash -c "nsenter -t $(ct_pid) -a journalctl -q -o cat -u pvekit-tcpcheck | grep -c '^104 healthy' | grep -qx 2"
	run -0 ct grep -c 'qm start 104' /var/log/pve-fake.log
	assert_output 2
}

@test "systemctl stop during an action waits for the action to end" {
	ct_put /etc/pve/pvekit/tcpcheck/104.conf <<-'EOF'
		ip=127.0.0.1
		portsall=8104
		action=echo "begin $PVEKIT_VMID $$" >>/var/log/action.log; sleep 3; echo end >>/var/log/action.log
	EOF
	ct systemctl reload pvekit-tcpcheck.service
	ct_seen pvekit-tcpcheck 30 '^104 healthy'
	port_down 104
	wait_until 30 ct grep -q '^begin 104 [0-9]' /var/log/action.log
	run -0 ct_units 'pvekit-action-*'
	assert_output --regexp '^pvekit-action-104-[0-9]+-[0-9]+[.]service$'
	run -0 ct systemctl stop pvekit-tcpcheck.service
	run -0 ct tail -n 1 /var/log/action.log
	assert_output end
	run -0 ct_units 'pvekit-action-*'
	assert_output ""
	run -0 ct_journal pvekit-tcpcheck
	assert_line '104 grace action exited 0'
	port_up 104
	ct rm /etc/pve/pvekit/tcpcheck/104.conf
	ct systemctl start pvekit-tcpcheck.service
}

@test "systemctl reload re-reads the configs, also an edit a stat cannot see" {
	ct_guest 105
	ct qm start 105
	port_up 105
	# written a minute ago (settled: tcpcheck keeps no hash of it), so that
	# an edit in place that keeps its inode, size and mtime leaves its
	# stamp as it was
	ct_put /etc/pve/pvekit/tcpcheck/105.conf.new <<-'EOF'
		ip=127.0.0.1
		portsall=8105
		enabled=0
	EOF
	ct touch -d '-1 minute' /etc/pve/pvekit/tcpcheck/105.conf.new
	ct mv /etc/pve/pvekit/tcpcheck/105.conf.new /etc/pve/pvekit/tcpcheck/105.conf
	ct_seen pvekit-tcpcheck 30 '^105 idle disabled'
	# the same inode, size and mtime: only a re-read sees it
	ct bash -c 'f=/etc/pve/pvekit/tcpcheck/105.conf; touch -r $f /tmp/stamp;
		s=$(sed s/enabled=0/enabled=1/ $f); printf "%s\n" "$s" >$f; touch -r /tmp/stamp $f'
	sleep 2
	run -0 ct_journal pvekit-tcpcheck
	refute_line --regexp '^105 (grace|healthy)'
	run -0 ct systemctl reload pvekit-tcpcheck.service
	ct_seen pvekit-tcpcheck 30 '^SIGHUP: re-reading everything$|^tcpcheck: SIGHUP: re-reading everything$'
	ct_seen pvekit-tcpcheck 30 '^105 healthy up$'
}
