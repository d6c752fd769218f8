#!/usr/bin/env bats
# vm-power as the forced command of a key, through a real sshd and ssh: the
# sshd listens on 127.0.0.1:22 inside a network namespace of the test's own
# (so the port is free), with a private /run for its privilege separation
# directory. qm and pct are the stand-ins (tests/fakes/pve-bin), their calls
# in $T/calls; paused guests are real QEMUs (start_qemu) and agents real
# qemu-ga. The audit lines go to a datagram socket that stands in for
# journald's native one and are kept in $T/journal.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	export PATH="$FAKES/pve-bin:$PATH"
	: >"$T/calls"
	NS=$(netns_add ssh)
	S=$T/ssh
	mkdir -m 0700 "$S"
	ssh-keygen -q -t ed25519 -N '' -f "$S/host" -C host
	ssh-keygen -q -t ed25519 -N '' -f "$S/id" -C "web1@guest"
	start_bg socat -u "UNIX-RECV:$T/journal.sock" "OPEN:$T/journal,creat,append"
	wait_until 5 test -S "$T/journal.sock"
	pmxcfs-sim create "$PVE" pve1 qemu 103
	pmxcfs-sim create "$PVE" pve1 qemu 104
	pmxcfs-sim create "$PVE" pve1 qemu 105
	pmxcfs-sim create "$PVE" pve2 qemu 150
	pmxcfs-sim create "$PVE" pve1 lxc 200
	start_sshd
}

teardown() {
	pvekit_teardown
}

start_sshd() {
	cat >"$S/sshd_config" <<-EOF
		ListenAddress 127.0.0.1:22
		HostKey $S/host
		AuthorizedKeysFile $S/authorized_keys
		PermitRootLogin forced-commands-only
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		ExposeAuthInfo yes
		PidFile $S/sshd.pid
		LogLevel VERBOSE
		SetEnv PATH=$PATH PVEKIT_FAKE_LOG=$T/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PVE=$PVE PVEKIT_FAKE_LXC=$T/lxc PVEKIT_FAKE_PIDS=$T/.bg-pids
	EOF
	start_bg ip netns exec "$NS" unshare -m --propagation private sh -c \
		'mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"' \
		sh "$S/sshd_config" 2>"$T/sshd.log"
	wait_until 10 ip netns exec "$NS" tcpcheck -q 127.0.0.1 22
}

# authorize OPTIONS...: the key's line, with vm-power and OPTIONS as its
# forced command
authorize() {
	printf 'restrict,command="vm-power %s --pve-dir %s --node pve1 --run-dir %s --lxc-dir %s --journal-socket %s" %s\n' \
		"$*" "$PVE" "$RUN" "$T/lxc" "$T/journal.sock" "$(cat "$S/id.pub")" >"$S/authorized_keys"
}

# vmssh [COMMAND]: what a script in a guest runs
vmssh() {
	ip netns exec "$NS" ssh -i "$S/id" -o IdentitiesOnly=yes -o BatchMode=yes \
		-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
		root@127.0.0.1 "$@"
}

# the MESSAGE of the last audit entry, and a field of it
audit_message() { grep '^MESSAGE=' "$T/journal" | tail -n1 | cut -d= -f2-; }
audit_field() { grep "^$1=" "$T/journal" | tail -n1 | cut -d= -f2-; }

# the last audit entry has arrived (the socket is read asynchronously)
audit_count() { [ "$(grep -c '^MESSAGE=' "$T/journal" 2>/dev/null)" -ge "$1" ]; }

@test "vm-power: an allowed verb on an allowed guest runs qm, prints one line, audits the key by comment and fingerprint" {
	authorize --allow start,status --guests 103,104 --authorized-keys "$S/authorized_keys"
	run -0 --separate-stderr vmssh start 103
	assert_output "start 103 ok"
	assert_equal "$stderr" ""
	assert_equal "$(cat "$T/calls")" "qm start 103"
	wait_until 5 audit_count 1
	fp=$(ssh-keygen -l -f "$S/id.pub" | awk '{ print $2 }')
	assert_equal "$(audit_message)" "key web1@guest ($fp) from 127.0.0.1: start 103: ok"
	assert_equal "$(audit_field PVEKIT_KEY)" "web1@guest"
	assert_equal "$(audit_field PVEKIT_KEY_FINGERPRINT)" "$fp"
	assert_equal "$(audit_field PVEKIT_VERB)" "start"
	assert_equal "$(audit_field PVEKIT_VMID)" "103"
	assert_equal "$(audit_field PVEKIT_OUTCOME)" "ok"
	assert_equal "$(audit_field SYSLOG_IDENTIFIER)" "vm-power"
	# sshd logs the same fingerprint: the two lines can be matched
	grep -q "Accepted publickey for root from 127.0.0.1 .* $fp" "$T/sshd.log"

	run -0 vmssh status 103
	assert_output "status 103 running"
}

@test "vm-power: verbs and guests outside the key's lists are refused (77), nothing runs, the refusal is audited" {
	authorize --allow start,status --guests 103,150 --key-name web1
	run -77 --separate-stderr vmssh stop 103
	assert_output ""
	assert_equal "$stderr" "vm-power: refused: stop is not allowed for this key"
	run -77 --separate-stderr vmssh start 104
	assert_equal "$stderr" "vm-power: refused: guest 104 is not allowed for this key"
	# allowed, but on another node
	run -77 --separate-stderr vmssh start 150
	assert_equal "$stderr" "vm-power: refused: guest 150 is not on this node"
	[ ! -s "$T/calls" ]
	wait_until 5 audit_count 3
	assert_equal "$(audit_message)" 'key web1 (SHA256:'"$(ssh-keygen -l -f "$S/id.pub" | awk '{ print $2 }' | cut -d: -f2)"') from 127.0.0.1: "start 150": refused: guest 150 is not on this node'
	assert_equal "$(audit_field PVEKIT_OUTCOME)" "refused"
	assert_equal "$(audit_field PRIORITY)" "4"
}

@test "vm-power: shell metacharacters, extra words, an empty command and an unknown verb are refused with a reason" {
	authorize --allow start,stop,status --guests 103
	run -77 --separate-stderr vmssh 'start 103; qm destroy 103'
	assert_equal "$stderr" "vm-power: refused: shell metacharacter ';' in the command"
	run -77 --separate-stderr vmssh 'start $(reboot)'
	assert_equal "$stderr" "vm-power: refused: shell metacharacter '\$' in the command"
	run -77 --separate-stderr vmssh 'start `reboot`'
	assert_equal "$stderr" "vm-power: refused: shell metacharacter '\`' in the command"
	run -77 --separate-stderr vmssh 'start 103 && stop 103'
	assert_equal "$stderr" "vm-power: refused: shell metacharacter '&' in the command"
	run -77 --separate-stderr vmssh "$(printf 'start 103\nstop 103')"
	assert_equal "$stderr" 'vm-power: refused: shell metacharacter '"'"'\n'"'"' in the command'
	run -77 --separate-stderr vmssh start 103 now
	assert_equal "$stderr" 'vm-power: refused: extra words after "VERB VMID"'
	run -77 --separate-stderr vmssh Start 103
	assert_equal "$stderr" "vm-power: refused: character 'S' in the command (want \"VERB VMID\")"
	run -77 --separate-stderr vmssh reboot 103
	assert_equal "$stderr" "vm-power: refused: unknown verb 'reboot' (start shutdown stop suspend hibernate resume status)"
	run -77 --separate-stderr vmssh start
	assert_equal "$stderr" 'vm-power: refused: start: which guest? (want "VERB VMID")'
	run -77 --separate-stderr vmssh start 0103
	assert_equal "$stderr" "vm-power: refused: '0103' is not a VMID"
	# no command at all: ssh asks for a shell; the forced command runs anyway
	run -77 --separate-stderr vmssh </dev/null
	assert_equal "$stderr" 'vm-power: refused: no command: this key runs only "VERB VMID"'
	run -77 --separate-stderr vmssh '   '
	assert_equal "$stderr" 'vm-power: refused: empty command: this key runs only "VERB VMID"'
	[ ! -s "$T/calls" ]
	wait_until 5 audit_count 12
	[ "$(grep -c '^PVEKIT_OUTCOME=refused$' "$T/journal")" -eq 12 ]
	grep -qx 'PVEKIT_COMMAND=start 103\\x0astop 103' "$T/journal"
}

@test "vm-power: suspend, status and resume of a real QEMU; the guest's clock is checked after the resume" {
	authorize --allow suspend,resume,status --guests 105 --key-name web1
	start_qemu "$RUN" 105
	start_qga "$RUN/105.qga"
	run -0 vmssh status 105
	assert_output "status 105 running"
	run -0 vmssh suspend 105
	assert_output "suspend 105 ok"
	run -0 vmssh status 105
	assert_output "status 105 paused"
	run -0 --separate-stderr vmssh resume 105
	# the real agent refuses guest-set-time: the clock was right, or it says so
	assert_output "resume 105 ok clock ok"
	run -0 vmssh status 105
	assert_output "status 105 running"
	assert_equal "$(cat "$T/calls")" "qm suspend 105
qm resume 105"
	wait_until 5 audit_count 5
	assert_equal "$(audit_message)" "key web1 ($(audit_field PVEKIT_KEY_FINGERPRINT)) from 127.0.0.1: status 105: ok: running"
	grep -qx "MESSAGE=key web1 (.*) from 127.0.0.1: resume 105: ok: clock ok" "$T/journal"
}

@test "vm-power: hibernate, then resume starts it from its saved state and checks its clock; containers cannot hibernate" {
	authorize --allow start,hibernate,resume,status --guests 103,200
	start_qga "$RUN/103.qga"
	run -0 vmssh start 103
	run -0 vmssh hibernate 103
	assert_output "hibernate 103 ok"
	run -0 vmssh status 103
	assert_output "status 103 hibernated"
	run -0 vmssh resume 103
	assert_output "resume 103 ok clock ok"
	assert_equal "$(cat "$T/calls")" "qm start 103
qm suspend 103 --todisk 1
qm start 103"
	run -0 vmssh status 103
	assert_output "status 103 running"

	run -77 --separate-stderr vmssh hibernate 200
	assert_equal "$stderr" "vm-power: refused: guest 200 is a container: containers cannot hibernate"
	run -0 vmssh status 200
	assert_output "status 200 stopped"
	run -0 vmssh start 200
	assert_output "start 200 ok"
	assert_equal "$(tail -n1 "$T/calls")" "pct start 200"
	run -0 vmssh status 200
	assert_output "status 200 running"
}

@test "vm-power: a failing qm is reported in one line with its reason (exit 1)" {
	authorize --allow start --guests 103
	fake_qemu "$RUN" 103
	run -1 --separate-stderr vmssh start 103
	assert_output "start 103 failed"
	assert_equal "$stderr" "vm-power: qm start 103: VM 103 already running"
	wait_until 5 audit_count 1
	assert_equal "$(audit_field PVEKIT_OUTCOME)" "failed"
}

@test "vm-power: without a journal the audit line goes to stderr; a bad option in the key's line is a usage error" {
	SSH_ORIGINAL_COMMAND="status 103" run -0 --separate-stderr vm-power --guests 103 \
		--key-name laptop --pve-dir "$PVE" --node pve1 --run-dir "$RUN" --journal-socket "$T/none"
	assert_output "status 103 stopped"
	assert_equal "$stderr" "vm-power: audit: key laptop from -: status 103: ok: stopped"

	SSH_ORIGINAL_COMMAND="status 103" run -64 --separate-stderr vm-power --guests 103 --allow start,reboot
	assert_equal "${stderr_lines[0]}" "vm-power: --allow start,reboot: reboot is not a verb (start shutdown stop suspend hibernate resume status)"
	SSH_ORIGINAL_COMMAND="status 103" run -64 --separate-stderr vm-power --allow start
	assert_equal "${stderr_lines[0]}" "vm-power: --guests is required: the guests this key may act on"
	# a dry run says what it would run
	SSH_ORIGINAL_COMMAND="hibernate 103" run -0 --separate-stderr vm-power -n --guests 100-199 \
		--allow hibernate --pve-dir "$PVE" --node pve1 --run-dir "$RUN" --journal-socket "$T/none"
	assert_output "hibernate 103 dry-run qm suspend 103 --todisk 1"
}
