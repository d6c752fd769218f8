#!/usr/bin/env bats
# pve-move against two fake Proxmox clusters (tests/fakes/pve-api, over TLS)
# and two real sshd on loopback with real qemu-img and qemu-nbd; see
# pve-move.bash for the set-up and tests/fakes/pve-host/README for the
# stand-ins (zfs, lvchange, vzdump, pct) on the sshd sessions' PATH.
bats_require_minimum_version 1.5.0

setup() {
	load common
	load pve-move
	pvekit_setup
	pm_setup
}
teardown() { pvekit_teardown; }

TOKEN=5f2c0f9e-token-secret-4d1a

@test "usage: operands, SOURCE equal to DEST, -h and -V" {
	run -64 --separate-stderr pve-move src dst pve3
	[[ $stderr == *"usage: pve-move [options] SOURCE DEST NODE STORAGE VM..."* ]]
	run -64 --separate-stderr pm_run src src pve3 local web1
	[[ $stderr == *"SOURCE and DEST are both 'src'"*"--ignore-exists"* ]]
	run -64 --separate-stderr pm_run --bwlimit 1.5 src dst pve3 local web1
	[[ $stderr == *"--bwlimit 1.5"* ]]
	run -0 pve-move -h
	assert_line --partial -- '--storage-map'
	run -0 pve-move --version
	assert_output --regexp '^pve-move [0-9]'
}

@test "proxmoverc: configparser's rules (inline comments, continuation, case, DEFAULT)" {
	pm_web1 stopped
	cat >"$T/rc" <<EOF
# comment
[pve:src]
API = https://root@pam:rootpw@127.0.0.1:$PORT_src   ; inline comment
ca: $T/tls/ca.pem
[pve:dst]
api=https://127.0.0.1:$PORT_dst
token=root@pam!move=$TOKEN # another
ca=$T/tls/ca.pem
[storage:src:local]
ssh=root@src-host
[storage:dst:local]
ssh=root@dst-host
EOF
	chmod 600 "$T/rc"
	run -0 --separate-stderr pm_run -n src dst pve3 local web1
	assert_line --partial 'move qemu web1 (100) from src/pve1 to dst/pve3 as 100'
	# '#' glued to text is no comment; the first round that finds a
	# comment start decides: here ';', so " #c" stays in the value
	sed -i "s|^ca: .*|ca: $T/x#y/ca.pem #c ;d|" "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"ca: $T/x#y/ca.pem #c: No such file"* ]]
	# an indented line continues the value before it
	sed -i "s|^ca: .*|ca: $T/tls/ca.pem\n  more|" "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"ca.pem"*"more: No such file"* ]]
	# [DEFAULT] keys reach every section: a key no section knows
	printf '[DEFAULT]\nfoo = 1\n' >>"$T/rc"
	sed -i "s|^  more||; s|^ca: .*|ca: $T/tls/ca.pem|" "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"unknown key 'foo' in section [pve:src]"* ]]
}

@test "proxmoverc: duplicates, bad lines, a readable secret, unknown alias: exit 78" {
	pm_web1 stopped
	cp "$T/rc" "$T/rc.good"
	printf '[pve:src]\nca=x\n' >>"$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"section [pve:src] already exists"* ]]
	cp "$T/rc.good" "$T/rc"
	sed -i 's|^\[storage:src:local\]|&\nssh=a@b\nSSH=c@d|' "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"option 'ssh' in section [storage:src:local] already exists"* ]]
	cp "$T/rc.good" "$T/rc"
	echo 'no delimiter here' >>"$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"not 'key = value'"* ]]
	cp "$T/rc.good" "$T/rc"
	chmod 644 "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"holds a password or token: mode 0644 is readable by group and others"* ]]
	refute grep -q rootpw <<<"$stderr"
	chmod 600 "$T/rc"
	run -78 --separate-stderr pm_run -n src nope pve3 local web1
	[[ $stderr == *"no [pve:nope] section"* ]]
	rm "$T/rc"
	mkfifo -m 600 "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"$T/rc: not a regular file"* ]]
	# nothing was written anywhere
	run pm_writes dst
	assert_output ''
}

@test "unknown node, storage or VM: exit 65, nothing changed" {
	pm_web1 running
	run -65 --separate-stderr pm_run src dst pve9 local web1
	[[ $stderr == *"dst: no node 'pve9' (there: pve3, pve4)"* ]]
	run -65 --separate-stderr pm_run src dst pve3 nosuch web1
	[[ $stderr == *"storage 'nosuch' is not on node pve3"* ]]
	run -65 --separate-stderr pm_run src dst pve3 local nosuch
	[[ $stderr == *"src: no guest named or numbered 'nosuch'"* ]]
	run pm_writes dst
	assert_output ''
	run pm_writes src
	assert_output ''
	[ "$(pm_status src 100)" = running ]
}

@test "-n prints the plan (API calls, commands, volumes) and changes nothing" {
	pm_web1 running
	sum() { cat "$T/src.json" "$T/dst.json"; find "$T/src" "$T/dst" -type f -exec md5sum {} +; }
	before=$(sum)
	run -0 --separate-stderr pm_run -n --verify src dst pve3 local web1
	assert_line --index 0 'move qemu web1 (100) from src/pve1 to dst/pve3 as 100 (running: it stops for the copy)'
	assert_line --partial 'POST dst /nodes/pve3/qemu vmid=100&name=web1--CREATING&pool=web'
	assert_line 'POST src /nodes/pve1/qemu/100/status/shutdown forceStop=1&timeout=120'
	assert_line 'PUT src /nodes/pve1/qemu/100/config name=web1--CLONING'
	assert_line --partial 'POST dst /nodes/pve3/storage/local/content vmid=100 filename=vm-100-disk-N.qcow2 size=65536 format=qcow2'
	assert_line --partial 'on root@src-host: qemu-nbd --read-only'
	# a raw disk: its data only, the same way the copy goes
	assert_line --regexp '^copy web1 efidisk0: .* via sparse, then verify$'
	assert_line --regexp "^on root@src-host: exec perl -e .* '[^']*vm-100-disk-1\.raw' 540672$"
	assert_line --partial 'on root@dst-host: qemu-img convert -p -n -W --target-is-zero'
	assert_line --partial 'on root@dst-host: qemu-img compare'
	assert_line --partial 'PUT dst /nodes/pve3/qemu/100/config name=web1'
	assert_line --partial 'PUT src /nodes/pve1/qemu/100/config name=web1--MIGRATED&onboot=0'
	assert_line 'POST dst /nodes/pve3/qemu/100/status/start'
	[ "$before" = "$(sum)" ]
	run pm_writes dst
	assert_output ''
	[ -z "$(ls "$T/state")" ]
}

@test "moves a running VM: steps as proxmove, efidisk0/tpmstate0 as disks, cloud-init recreated, content equal" {
	pm_web1 running
	run -0 --separate-stderr pm_run src dst pve3 local web1
	[[ $stderr == *"cipassword is not copied"* ]]
	[[ $stderr == *"unused0 (local:100/vm-100-disk-3.raw) is not copied"* ]]
	conf=$(pm_conf dst 100)
	echo "$conf"
	grep -qx 'name: web1' <<<"$conf"
	grep -qx 'boot: order=scsi0;ide2;net0' <<<"$conf"
	grep -qx 'efidisk0: local:100/vm-100-disk-0.raw,efitype=4m,pre-enrolled-keys=1,size=528K' <<<"$conf"
	grep -qx 'tpmstate0: local:100/vm-100-disk-2.raw,size=4M,version=v2.0' <<<"$conf"
	grep -qx 'scsi0: local:100/vm-100-disk-1.qcow2,iothread=1,size=64M' <<<"$conf"
	grep -qx 'ide2: local:100/vm-100-cloudinit.qcow2,media=cdrom' <<<"$conf"
	grep -qx 'ciuser: admin' <<<"$conf"
	refute grep -qE '^(unused0|meta|parent|vmstate|cipassword|vmgenid|snaptime|digest):' <<<"$conf"
	refute grep -q discard <<<"$conf"
	refute grep -q 'before-upgrade' <<<"$conf"
	[ "$(pm_status dst 100)" = running ]
	grep -q '"pool": "web"' "$T/dst.json"
	src=$(pm_conf src 100)
	grep -qx 'name: web1--MIGRATED' <<<"$src"
	grep -qx 'onboot: 0' <<<"$src"
	grep -q 'moved to dst%2Fpve3 as 100 by pve-move' <<<"$src"
	[ "$(pm_status src 100)" = stopped ]
	qemu-img compare -q "$T/src/local/images/100/vm-100-disk-0.qcow2" "$T/dst/local/images/100/vm-100-disk-1.qcow2"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-1.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-2.raw" "$T/dst/local/images/100/vm-100-disk-2.raw"
	# the order of the steps, as proxmove's users know it
	src_writes=$(pm_writes src)
	dst_writes=$(pm_writes dst)
	[[ $dst_writes == "POST /api2/json/pools"*"POST /api2/json/nodes/pve3/qemu"* ]]
	[[ $src_writes == *"status/shutdown"*"/config"*"/config"* ]]
	[ -z "$(ls "$T/state")" ]
}

@test "a sparse raw disk crosses as its data only, and no zeros are written to a thin target" {
	# 2 MiB of data, then an allocated MiB of zeros (on the wire as nothing
	# either), then 2 MiB more
	pm_image "$T/src/local/images/101/vm-101-disk-0.raw" raw 256M 0:2M:0x61 100M:1M:0x00 200M:2M:0x62
	pm_image "$T/src/local/images/101/vm-101-disk-1.raw" raw 1M 0:1M:0x63
	pm_guest src 101 qemu pve1 stopped "name: db1
scsi0: local:101/vm-101-disk-0.raw,size=256M
scsi1: local:101/vm-101-disk-1.raw,size=1M
memory: 512"
	src_logins=$(grep -c 'Accepted publickey' "$T/sshd_src.log" || true)
	dst_logins=$(grep -c 'Accepted publickey' "$T/sshd_dst.log" || true)
	run -0 --separate-stderr pm_run --skip-start src dst pve3 thin db1
	[[ $stderr == *"by sparse"* ]]
	# one login to each host for both disks: every later command a
	# session on it
	[ "$(grep -c 'Accepted publickey' "$T/sshd_src.log")" -eq $((src_logins + 1)) ]
	[ "$(grep -c 'Accepted publickey' "$T/sshd_dst.log")" -eq $((dst_logins + 1)) ]
	# and no connection outlives the run
	refute pgrep -f 'pve-move-ssh\.'
	# the last progress line: the whole disk done, 4 MiB of it sent
	[[ $stderr == *"db1 scsi0: 256.0 MiB / 256.0 MiB (100%), 4.0 MiB sent"* ]]
	qemu-img compare -q -f raw -F raw "$T/src/local/images/101/vm-101-disk-0.raw" "$T/dst/thin/vm-101-disk-0"
	# a fresh thin target: the zeros were not written either
	[ "$(du -k "$T/dst/thin/vm-101-disk-0" | cut -f1)" -lt 8192 ]
	[ "$(pm_status dst 101)" = stopped ]
}

@test "a sparse qcow2 disk to a raw thin LV crosses through NBD: its clusters only, no zeros written" {
	pm_image "$T/src/local/images/101/vm-101-disk-0.qcow2" qcow2 256M 0:2M:0x61 200M:2M:0x62
	pm_guest src 101 qemu pve1 stopped "name: db1
scsi0: local:101/vm-101-disk-0.qcow2,size=256M
memory: 512"
	run -0 --separate-stderr pm_run --debug --skip-start src dst pve3 thin db1
	[[ $stderr == *"(qcow2) to thin:vm-101-disk-0 (raw) by nbd"* ]]
	# the forwards' local sockets and their directory are gone
	ldir=$(grep -o -- '-L /tmp/pve-move\.[A-Za-z0-9]*' <<<"$stderr" | head -1 | cut -c4-)
	[ -n "$ldir" ]
	[ ! -e "$ldir" ]
	# 4 MiB of data, 256 MiB of disk: only the data went over the wire
	sent=$(grep -o '[0-9.]* MiB sent' <<<"$stderr" | tail -1 | cut -d' ' -f1)
	awk -v s="$sent" 'BEGIN { exit !(s >= 3.9 && s < 8) }'
	qemu-img compare -q -f qcow2 -F raw "$T/src/local/images/101/vm-101-disk-0.qcow2" "$T/dst/thin/vm-101-disk-0"
	[ "$(du -k "$T/dst/thin/vm-101-disk-0" | cut -f1)" -lt 8192 ]
}

@test "a thick LV target is written in full; a source LV is activated first" {
	pm_image "$T/src/thick/vm-102-disk-0" raw 32M 1M:1M:0x71
	pm_guest src 102 qemu pve1 stopped "name: lv1
virtio0: thick:vm-102-disk-0,size=32M"
	run -0 --separate-stderr pm_run --skip-start src dst pve3 thick lv1
	# the fresh LV held old data: every block of it now reads as the source
	qemu-img compare -q -f raw -F raw "$T/src/thick/vm-102-disk-0" "$T/dst/thick/vm-102-disk-0"
	refute grep -q OLD-DATA "$T/dst/thick/vm-102-disk-0"
	grep -qx "lvchange -ay $T/src/thick/vm-102-disk-0" "$T/src-host.log"
	grep -qx "lvchange -ay $T/dst/thick/vm-102-disk-0" "$T/dst-host.log"
}

@test "pending changes, a lock, a root-only key: refused by name, nothing changed" {
	pm_image "$T/src/local/images/103/vm-103-disk-0.raw" raw 1M
	pm_guest src 103 qemu pve1 running "name: p1
scsi0: local:103/vm-103-disk-0.raw,size=1M
memory: 512

[PENDING]
memory: 2048
delete: net1"
	run -65 --separate-stderr pm_run src dst pve3 local p1
	[[ $stderr == *"p1 (103) has pending changes (memory, net1): apply them"* ]]
	pm_guest src 104 qemu pve1 stopped "name: r1
args: -cpu host
hostpci0: 0000:01:00.0
memory: 512"
	run -65 --separate-stderr pm_run src dst pve3 local r1
	[[ $stderr == *"only root@pam may set args, hostpci0 on dst"* ]]
	pm_guest src 105 qemu pve1 stopped "name: l1
lock: backup
memory: 512"
	run -65 --separate-stderr pm_run src dst pve3 local l1
	[[ $stderr == *"l1 (105) is locked (backup)"* ]]
	run pm_writes dst
	assert_output ''
	[ "$(pm_status src 103)" = running ]
}

@test "root@pam keeps vmgenid and root-only keys" {
	pm_guest src 104 qemu pve1 stopped "name: r1
args: -cpu host
memory: 512
vmgenid: 7079e97c-50e3-4079-afe7-23e67566b946"
	sed -i "s|^api=https://127.0.0.1:$PORT_dst|api=https://root@pam:rootpw@127.0.0.1:$PORT_dst|; /^token=/d" "$T/rc"
	run -0 --separate-stderr pm_run --skip-start src dst pve3 local r1
	conf=$(pm_conf dst 104)
	grep -qx 'vmgenid: 7079e97c-50e3-4079-afe7-23e67566b946' <<<"$conf"
	grep -qx 'args: -cpu host' <<<"$conf"
	# tickets: CSRFPreventionToken on every write
	python3 - "$T/dst.log" <<'PY'
import json, sys
w = [json.loads(l) for l in open(sys.argv[1])]
w = [r for r in w if r["method"] != "GET" and not r["path"].endswith("/ticket")]
assert w and all("csrfpreventiontoken" in r["headers"] and "PVEAuthCookie=" in r["headers"]["cookie"] for r in w), w
PY
}

@test "VMID: kept when free, the next free one when taken, a create race retried, --vmid" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 1M 0:4k:0x1
	pm_guest src 100 qemu pve1 stopped "name: a1
scsi0: local:100/vm-100-disk-0.raw,size=1M"
	pm_guest dst 100 qemu pve4 stopped "name: other"
	run -0 --separate-stderr pm_run --skip-start src dst pve3 local a1
	[[ $stderr == *"VMID 100 is taken on dst: a1 gets 101"* ]]
	grep -qx 'name: a1' <<<"$(pm_conf dst 101)"
	grep -qx 'scsi0: local:101/vm-101-disk-0.raw,size=1M' <<<"$(pm_conf dst 101)"
	grep -qx 'name: other' <<<"$(pm_conf dst 100)"
}

@test "VMID taken meanwhile (between nextid and create): retried with the next free one" {
	# the target cluster again, where another client creates a guest with
	# the VMID of the next create just before it
	kill "$FAKE_PID_dst"
	pm_fake dst --fault race-create:1
	pm_rc
	pm_guest src 100 qemu pve1 stopped "name: a1
memory: 512"
	run -0 --separate-stderr pm_run --skip-start src dst pve3 local a1
	[[ $stderr == *"VMID 100 was taken meanwhile on dst; trying 101"* ]]
	grep -qx 'name: a1' <<<"$(pm_conf dst 101)"
	grep -qx 'name: someone-else' <<<"$(pm_conf dst 100)"
	# an explicit --vmid that is taken is an error, not a guess
	pm_guest src 102 qemu pve1 stopped "name: a2
memory: 512"
	run -65 --separate-stderr pm_run --vmid 100 src dst pve3 local a2
	[[ $stderr == *"dst: VMID 100: 400 Parameter verification failed. (vmid: VM 100 already exists)"* ]]
}

@test "the API token and the password never show in ps, messages or the journal" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 64M 0:24M:0x5a
	pm_guest src 100 qemu pve1 stopped "name: s1
scsi0: local:100/vm-100-disk-0.raw,size=64M"
	pm_start_bg --debug --bwlimit 40 --skip-start src dst pve3 thin s1
	pid=$BG_PID
	: >"$T/ps"
	while kill -0 "$pid" 2>/dev/null; do
		cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' >>"$T/ps" || true
		cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' ' ' >>"$T/ps" || true
		sleep 0.2
	done
	wait "$pid" || true
	grep -q 'moved to dst/pve3 as 100' "$T/err"
	grep -q 'pve-move' "$T/ps"
	refute grep -q "$TOKEN" "$T/ps" "$T/out" "$T/err"
	refute grep -q rootpw "$T/ps" "$T/out" "$T/err"
	# the token went where it belongs: the header, not the URL or a body
	grep -q "\"authorization\": \"PVEAPIToken=root@pam!move=$TOKEN\"" "$T/dst.log"
	refute grep -q "$TOKEN" <<<"$(jq -c '[.path, .query, .form]' "$T/dst.log")"
	# an error that quotes the secret back is masked too
	sed -i "s|^token=root@pam!move=.*|token=root@pam!move=${TOKEN}x|" "$T/rc"
	run -78 --separate-stderr pm_run -n src dst pve3 thin s1
	[[ $stderr == *"401 authentication failure"* ]]
	refute grep -q "$TOKEN" <<<"$stderr$output"
}

@test "a connection cut in the second disk: --resume copies only what is left" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 4M 0:1M:0x31
	pm_image "$T/src/local/images/100/vm-100-disk-1.raw" raw 64M 0:30M:0x32
	pm_guest src 100 qemu pve1 running "name: c1
scsi0: local:100/vm-100-disk-0.raw,size=4M
scsi1: local:100/vm-100-disk-1.raw,size=64M"
	# the target host's network breaks once, after 12 MB
	sed -i "s|^Host dst-host|&\n\tProxyCommand $FAKES/cut-proxy 127.0.0.1 $SSHPORT_dst 12000000 $T/cut.done|" "$T/ssh/config"
	run --separate-stderr pm_run src dst pve3 local c1
	echo "$stderr"
	[ "$status" -ne 0 ]
	[ -e "$T/cut.done" ]
	[[ $stderr == *"c1 scsi1:"* ]]
	[[ $stderr == *"the move stopped at step 'cloning'; pve-move --resume goes on from there"* ]]
	grep -qx 'name: c1--CLONING' <<<"$(pm_conf src 100)"
	grep -q '"scsi0"' "$T/state/pve-move-src-100.json"
	# without --resume: refused
	run -65 --separate-stderr pm_run src dst pve3 local c1
	[[ $stderr == *"an interrupted move"*"--resume"* ]]
	run -0 --separate-stderr pm_run --resume src dst pve3 local c1
	[[ $stderr == *"resuming at step 'cloning'"* ]]
	refute grep -q 'c1 scsi0: copying' <<<"$stderr"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-1.raw" "$T/dst/local/images/100/vm-100-disk-1.raw"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
	# each volume was allocated once
	[ "$(jq -r 'select(.method=="POST" and (.path|endswith("/content"))) | .form.filename' "$T/dst.log" | sort | uniq -d)" = "" ]
	grep -qx 'name: c1' <<<"$(pm_conf dst 100)"
	[ "$(pm_status dst 100)" = running ]
	[ ! -e "$T/state/pve-move-src-100.json" ]
}

@test "Ctrl-C in the middle of a copy: exit 130, nothing left running, --resume finishes" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 64M 0:40M:0x41
	pm_guest src 100 qemu pve1 stopped "name: i1
scsi0: local:100/vm-100-disk-0.raw,size=64M"
	pm_start_bg --bwlimit 16 src dst pve3 local i1
	pid=$BG_PID
	# data is flowing: the target volume grows
	wait_until 300 bash -c "[ \$(du -k '$T/dst/local/images/100/vm-100-disk-0.raw' 2>/dev/null | cut -f1) -gt 2048 ]"
	pm_interrupt "$pid"
	[ "$rc" -eq 130 ]
	grep -q 'interrupted' "$T/err"
	# no qemu-nbd, qemu-img or ssh of ours is left
	sleep 1
	refute pgrep -f "vm-100-disk-0.raw"
	run -0 --separate-stderr pm_run --resume src dst pve3 local i1
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
}

@test "a target link that hangs in a copy straight from source to target: Ctrl-C stops it (exit 130), --resume finishes" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 64M 0:40M:0x43
	pm_guest src 100 qemu pve1 stopped "name: i2
scsi0: local:100/vm-100-disk-0.raw,size=64M"
	# no --bwlimit: the source's stream goes into the target's ssh through
	# one pipe, not through pve-move; the target's link hangs after 12 MB
	sed -i "s|^Host dst-host|&\n\tProxyCommand $FAKES/cut-proxy 127.0.0.1 $SSHPORT_dst 12000000 $T/cut.done stall|" "$T/ssh/config"
	pm_start_bg src dst pve3 local i2
	pid=$BG_PID
	wait_until 60 test -e "$T/cut.done"
	sleep 1
	kill -0 "$pid"
	pm_interrupt "$pid"
	[ "$rc" -eq 130 ]
	grep -q 'i2 scsi0: copy: interrupted' "$T/err"
	# no sender, receiver, ssh or hung link of ours is left
	wait_until 10 bash -c "! pgrep -f '[v]m-100-disk-0.raw|[c]ut-proxy.*$T'"
	grep -qx 'name: i2--CLONING' <<<"$(pm_conf src 100)"
	run -0 --separate-stderr pm_run --resume src dst pve3 local i2
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
}

@test "a target that fails in the middle of a straight copy (its disk full): its own message, the disk not counted as copied" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 64M 0:40M:0x44
	pm_guest src 100 qemu pve1 stopped "name: f1
scsi0: local:100/vm-100-disk-0.raw,size=64M"
	mkdir -p "$T/dst/local/images/100"
	mount -t tmpfs -o size=8m tmpfs "$T/dst/local/images/100"
	echo "$T/dst/local/images/100" >>"$T/.mounts"
	run --separate-stderr pm_run src dst pve3 local f1
	echo "$stderr"
	[ "$status" -ne 0 ]
	[[ $stderr == *"f1 scsi0: target: "*"vm-100-disk-0.raw: No space left on device"* ]]
	refute grep -q 'source: ' <<<"$stderr"
	refute grep -q 'interrupted' <<<"$stderr"
	[[ $stderr == *"the move stopped at step 'cloning'"* ]]
	# the allocated volume is remembered for --resume, the copy not done
	[ "$(jq -r '.disks.scsi0.state // "none"' "$T/state/pve-move-src-100.json")" != done ]
	umount "$T/dst/local/images/100"
}

@test "ZFS to ZFS: a full send while it runs, the delta after the stop, guids compared, own snapshots destroyed" {
	pm_image "$T/src/zfs/zvol/tank/vm-100-disk-0" raw 16M 0:2M:0x51
	pm_guest src 100 qemu pve1 running "name: z1
scsi0: tank:vm-100-disk-0,size=16M"
	run -0 --separate-stderr pm_run src dst pve3 tank z1
	log=$(cat "$T/src-host.log")
	echo "$log"
	[[ $log == *"zfs snapshot tank/vm-100-disk-0@pvekit-move-100-1"*"zfs send tank/vm-100-disk-0@pvekit-move-100-1"*"zfs snapshot tank/vm-100-disk-0@pvekit-move-100-2"*"zfs send -i tank/vm-100-disk-0@pvekit-move-100-1 tank/vm-100-disk-0@pvekit-move-100-2"*"zfs get -H -o value guid tank/vm-100-disk-0@pvekit-move-100-2"*"zfs destroy tank/vm-100-disk-0@pvekit-move-100-1"*"zfs destroy tank/vm-100-disk-0@pvekit-move-100-2"* ]]
	refute grep -q -- 'send -R' "$T/src-host.log"
	grep -q 'zfs receive -s tank/vm-100-disk-0' "$T/dst-host.log"
	grep -q 'zfs destroy tank/vm-100-disk-0@pvekit-move-100-2' "$T/dst-host.log"
	[ "$(jq '.snaps | length' "$T/src/zfs/.zfs-meta.json")" -eq 0 ]
	[ "$(jq '.snaps | length' "$T/dst/zfs/.zfs-meta.json")" -eq 0 ]
	qemu-img compare -q -f raw -F raw "$T/src/zfs/zvol/tank/vm-100-disk-0" "$T/dst/zfs/zvol/tank/vm-100-disk-0"
	grep -qx 'scsi0: tank:vm-100-disk-0,size=16M' <<<"$(pm_conf dst 100)"
}

@test "ZFS: a receive cut in the middle resumes from its token" {
	pm_image "$T/src/zfs/zvol/tank/vm-100-disk-0" raw 48M 0:30M:0x52
	pm_guest src 100 qemu pve1 stopped "name: z2
scsi0: tank:vm-100-disk-0,size=48M"
	sed -i "s|^Host src-host|&\n\tProxyCommand $FAKES/cut-proxy 127.0.0.1 $SSHPORT_src 20000000 $T/cut.done|" "$T/ssh/config"
	run --separate-stderr pm_run src dst pve3 tank z2
	[ "$status" -ne 0 ]
	[ "$(jq -r '.tokens | length' "$T/dst/zfs/.zfs-meta.json")" -eq 1 ]
	run -0 --separate-stderr pm_run --resume src dst pve3 tank z2
	[[ $stderr == *"resuming the interrupted zfs receive"* ]]
	grep -q 'zfs send -t ' "$T/src-host.log"
	qemu-img compare -q -f raw -F raw "$T/src/zfs/zvol/tank/vm-100-disk-0" "$T/dst/zfs/zvol/tank/vm-100-disk-0"
}

@test "a container: vzdump --stdout into pct restore, renamed and started as proxmove would" {
	pm_image "$T/src/local/images/200/vm-200-disk-0.raw" raw 8M 0:1M:0x61
	pm_guest src 200 lxc pve1 running "arch: amd64
hostname: ct1
memory: 512
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:02,ip=dhcp
ostype: debian
rootfs: local:200/vm-200-disk-0.raw,size=8M
unprivileged: 1"
	run -0 --separate-stderr pm_run --bridge-map vmbr0=vmbr9 src dst pve3 thin ct1
	grep -q 'vzdump 200 --mode stop --stdout 1 --compress 0' "$T/src-host.log"
	grep -q "pct restore 200 - --hostname ct1--CREATING --unprivileged 1 --rootfs thin:0.008" "$T/dst-host.log"
	conf=$(pm_conf dst 200)
	grep -qx 'hostname: ct1' <<<"$conf"
	grep -q 'net0: name=eth0,bridge=vmbr9,hwaddr=BC:24:11:00:00:02' <<<"$conf"
	[ "$(pm_status dst 200)" = running ]
	grep -qx 'hostname: ct1--MIGRATED' <<<"$(pm_conf src 200)"
	cmp "$T/src/local/images/200/vm-200-disk-0.raw" "$T/dst/thin/vm-200-disk-0"
}

@test "--native: refused with the reasons, else remote_migrate with a token endpoint, its task followed" {
	pm_web1 running
	sed -i '/^token=/d; s|^api=https://127.0.0.1:\(.*\)|api=https://root@pam:rootpw@127.0.0.1:\1|' "$T/rc"
	run -65 --separate-stderr pm_run --native src dst pve3 local web1
	[[ $stderr == *"[pve:dst] has no token="* ]]
	[[ $stderr == *"it has snapshots (before-upgrade)"* ]]
	pm_rc
	pm_image "$T/src/local/images/106/vm-106-disk-0.raw" raw 1M
	pm_guest src 106 qemu pve1 running "name: n1
scsi0: local:106/vm-106-disk-0.raw,size=1M"
	run -65 --separate-stderr pm_run --native src dst pve3 local n1
	[[ $stderr == *"lacks Sys.Incoming on / of dst"* ]]
	python3 - "$T/dst.json" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))
s["privs"] = {"root@pam!move": {"/": ["Sys.Incoming", "VM.Allocate"]}}
json.dump(s, open(sys.argv[1] + ".t", "w")); os.replace(sys.argv[1] + ".t", sys.argv[1])
PY
	sed -i "s|^ca=$T/tls/ca.pem\$|&|; /^\[pve:dst\]/a fingerprint=$FP" "$T/rc"
	run --separate-stderr pm_run --native --storage-map local=thin src dst pve3 local n1
	echo "$stderr"
	[ "$status" -eq 0 ]
	form=$(jq -c 'select(.path|endswith("/remote_migrate")) | .form' "$T/src.log")
	echo "$form"
	[ "$(jq -r '.["target-endpoint"]' <<<"$form")" = "apitoken=PVEAPIToken=root@pam!move=$TOKEN,host=127.0.0.1,port=$PORT_dst,fingerprint=$FP" ]
	[ "$(jq -r '.["target-storage"]' <<<"$form")" = "local:thin" ]
	[ "$(jq -r '.online' <<<"$form")" = 1 ]
	grep -qx 'name: n1--MIGRATED' <<<"$(pm_conf src 106)"
	refute grep -q "$TOKEN" <<<"$stderr"
}

@test "TLS: verification on by default, ca=, fingerprint= pins, --no-verify-ssl warns" {
	pm_web1 stopped
	sed -i '/^ca=/d' "$T/rc"
	run -69 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"src: 127.0.0.1:"* ]]
	[[ $stderr == *"certificate"* ]]
	run -0 --separate-stderr pm_run -n --no-verify-ssl src dst pve3 local web1
	[[ $stderr == *"--no-verify-ssl: the clusters' certificates are not checked; fingerprint="* ]]
	sed -i "s|^\[pve:src\]|&\nfingerprint=$FP|; s|^\[pve:dst\]|&\nfingerprint=$(tr 'A-F' 'a-f' <<<"$FP")|" "$T/rc"
	run -0 --separate-stderr pm_run -n src dst pve3 local web1
	# a fingerprint that differs in its first byte (one in 256 begins with 00)
	if [ "${FP:0:2}" = 00 ]; then wrong=11${FP:2}; else wrong=00${FP:2}; fi
	[ "$wrong" != "$FP" ]
	sed -i "0,/^fingerprint=.*/s//fingerprint=$wrong/" "$T/rc"
	run -69 --separate-stderr pm_run -n src dst pve3 local web1
	[[ $stderr == *"src:"* ]]
}

@test "--verify compares each disk; --storage-map and --bridge-map per disk and NIC" {
	pm_web1 stopped
	run --separate-stderr pm_run --verify --skip-start --storage-map efidisk0=thin,local=local \
		--bridge-map vmbr0=vmbr1 src dst pve3 local web1
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $stderr == *"web1 scsi0: verified: the target reads as the source"* ]]
	[[ $stderr == *"web1 efidisk0: verified"* ]]
	conf=$(pm_conf dst 100)
	grep -qx 'efidisk0: thin:vm-100-disk-0,efitype=4m,pre-enrolled-keys=1,size=528K' <<<"$conf"
	grep -qx 'net0: virtio=BC:24:11:00:00:01,bridge=vmbr1,firewall=1' <<<"$conf"
	[ "$(pm_status dst 100)" = stopped ]
}

@test "proxmove's leftovers: NAME--CLONING and NAME--CREATING are adopted with --resume" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 1M 0:4k:0x1
	pm_image "$T/src/local/images/100/vm-100-disk-1.raw" raw 1M 0:4k:0x2
	pm_image "$T/dst/local/images/120/vm-120-disk-0.raw" raw 1M 0:4k:0x1
	pm_guest src 100 qemu pve1 stopped "name: old--CLONING
scsi0: local:100/vm-100-disk-0.raw,size=1M
scsi1: local:100/vm-100-disk-1.raw,size=1M"
	pm_guest dst 120 qemu pve3 stopped "name: old--CREATING
scsi0: local:120/vm-120-disk-0.raw,size=1M"
	run -65 --separate-stderr pm_run src dst pve3 local old
	[[ $stderr == *"it is old--CLONING on src, left by an interrupted move: run again with --resume"* ]]
	run -65 --separate-stderr pm_run src dst pve3 local 100
	[[ $stderr == *"it is old--CLONING on src, left by an interrupted move: run again with --resume"* ]]
	run -0 --separate-stderr pm_run --resume --skip-start src dst pve3 local old
	[[ $stderr == *"scsi0 (local:120/vm-120-disk-0.raw,size=1M) was copied by proxmove: kept"* ]]
	[[ $stderr == *"proxmove's leftovers: old--CLONING (100) on src and old--CREATING (120) on dst"* ]]
	conf=$(pm_conf dst 120)
	grep -qx 'name: old' <<<"$conf"
	grep -qx 'scsi0: local:120/vm-120-disk-0.raw,size=1M' <<<"$conf"
	grep -qx 'scsi1: local:120/vm-120-disk-1.raw,size=1M' <<<"$conf"
	grep -qx 'name: old--MIGRATED' <<<"$(pm_conf src 100)"
}

@test "--wait-before-stop asks after the first ZFS sync; no stops there, --resume asks again" {
	pm_image "$T/src/zfs/zvol/tank/vm-100-disk-0" raw 8M 0:1M:0x53
	pm_guest src 100 qemu pve1 running "name: w1
scsi0: tank:vm-100-disk-0,size=8M"
	run -1 --separate-stderr bash -c "echo n | pve-move -c '$T/rc' --ssh-config '$T/ssh/config' --state-dir '$T/state' --wait-before-stop src dst pve3 tank w1"
	[[ $stderr == *"the first sync is done; the guest stops next. Resume [y]?"* ]]
	[[ $stderr == *"stopped before the shutdown"* ]]
	[ "$(pm_status src 100)" = running ]
	grep -q 'zfs send tank/vm-100-disk-0@pvekit-move-100-1' "$T/src-host.log"
	run -0 --separate-stderr bash -c "echo y | pve-move -c '$T/rc' --ssh-config '$T/ssh/config' --state-dir '$T/state' --wait-before-stop --resume src dst pve3 tank w1"
	# the full send is not done twice
	[ "$(grep -c 'zfs send tank/vm-100-disk-0@pvekit-move-100-1' "$T/src-host.log")" -eq 1 ]
	grep -q 'zfs send -i' "$T/src-host.log"
	qemu-img compare -q -f raw -F raw "$T/src/zfs/zvol/tank/vm-100-disk-0" "$T/dst/zfs/zvol/tank/vm-100-disk-0"
}

@test "--skip-disks sets every disk slot to none and does not start the guest" {
	pm_web1 running
	run -0 --separate-stderr pm_run --skip-disks src dst pve3 local web1
	conf=$(pm_conf dst 100)
	grep -qx 'scsi0: none,iothread=1,size=64M' <<<"$conf"
	refute grep -q '^efidisk0:' <<<"$conf"
	[[ $stderr == *"web1 efidisk0: --skip-disks: not copied, not set"* ]]
	[ "$(pm_status dst 100)" = stopped ]
	[ -z "$(ls "$T/dst/local/images/100" 2>/dev/null | grep disk)" ]
}

@test "a storage section without ssh= is this host: the source read here, no ssh to it" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 16M 0:16M:0x66
	pm_image "$T/src/local/images/100/vm-100-disk-1.raw" raw 16M 0:1M:0x67
	pm_image "$T/src/local/images/100/vm-100-disk-2.qcow2" qcow2 16M 0:16M:0x68
	pm_guest src 100 qemu pve1 stopped "name: h1
scsi0: local:100/vm-100-disk-0.raw,size=16M
scsi1: local:100/vm-100-disk-1.raw,size=16M
scsi2: local:100/vm-100-disk-2.qcow2,size=16M"
	sed -i '/^\[storage:src:local\]/{n;d}' "$T/rc"
	run -0 --separate-stderr pm_run --debug src dst pve3 local h1 --skip-start
	# raw as its data, the dense qcow2 file as a plain stream, all from here
	[[ $stderr == *"h1 scsi0: copying"*"by sparse"* ]]
	[[ $stderr == *"h1 scsi1: copying"*"by sparse"* ]]
	[[ $stderr == *"h1 scsi2: copying"*"by stream"* ]]
	refute grep -q 'root@src-host' <<<"$stderr"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-1.raw" "$T/dst/local/images/100/vm-100-disk-1.raw"
	qemu-img compare -q -f qcow2 -F qcow2 "$T/src/local/images/100/vm-100-disk-2.qcow2" "$T/dst/local/images/100/vm-100-disk-2.qcow2"
}

@test "a dense qcow2 file whose clusters hold zeros replaces the target's preallocated metadata" {
	# the source: every cluster allocated (falloc), so it goes as a file;
	# most of it reads zero, also where the target, allocated as Proxmox
	# does (preallocation=metadata), has an L2 table (at 512 MiB)
	mkdir -p "$T/src/local/images/102"
	qemu-img create -q -f qcow2 -o preallocation=falloc "$T/src/local/images/102/vm-102-disk-0.qcow2" 1G
	qemu-io -f qcow2 -c "write -P 0x6b 0 1M" -c "write -P 0x6c 1000M 1M" \
		"$T/src/local/images/102/vm-102-disk-0.qcow2" >/dev/null
	pm_guest src 102 qemu pve1 stopped "name: z1
scsi0: local:102/vm-102-disk-0.qcow2,size=1G"
	run -0 --separate-stderr pm_run --skip-start src dst pve3 local z1
	[[ $stderr == *"z1 scsi0: copying"*"by stream"* ]]
	qemu-img compare -q -f qcow2 -F qcow2 "$T/src/local/images/102/vm-102-disk-0.qcow2" "$T/dst/local/images/102/vm-102-disk-0.qcow2"
	qemu-img check -q "$T/dst/local/images/102/vm-102-disk-0.qcow2"
	# zeros did not cross as data: the target holds the two written MiB
	# and the metadata, not a GiB
	[ "$(du -k "$T/dst/local/images/102/vm-102-disk-0.qcow2" | cut -f1)" -lt 16384 ]
}

direct_guest() {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 64M 0:8M:0x61 32M:4M:0x62
	pm_image "$T/src/local/images/100/vm-100-disk-1.qcow2" qcow2 16M 0:16M:0x63
	pm_guest src 100 qemu pve1 stopped "name: d1
scsi0: local:100/vm-100-disk-0.raw,size=64M
scsi1: local:100/vm-100-disk-1.qcow2,size=16M"
}

@test "--direct: the source host sends each disk to the target itself, with the agent forwarded and the target's key as known here" {
	direct_guest
	pm_agent
	run -0 --separate-stderr pm_run --direct -n src dst pve3 local d1
	assert_line --partial "on root@src-host, piped into ssh -A there: on root@dst-host: exec perl"
	run -0 --separate-stderr pm_run --direct --debug --skip-start src dst pve3 local d1
	[[ $stderr == *"d1 scsi0: copying"*"by sparse"* ]]
	[[ $stderr == *"d1 scsi1: copying"*"by stream"* ]]
	[[ $stderr == *"d1 scsi0: 64.0 MiB / 64.0 MiB (100%), "* ]]
	# pve-move runs the copy on the source only: ssh -A there, and from
	# there an ssh that checks the key this host has for dst-host
	key=$(grep '^dst-host ' "$T/ssh/known_hosts" | cut -d' ' -f2-)
	grep -qF -- "-A -o ControlPath=none -- root@src-host 'd=\$(umask 077 && mktemp -d" <<<"$stderr"
	grep -qF -- "pvekit-target $key" <<<"$stderr"
	refute grep -q -- "run: ssh .*root@dst-host 'exec perl" <<<"$stderr"
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
	qemu-img compare -q "$T/src/local/images/100/vm-100-disk-1.qcow2" "$T/dst/local/images/100/vm-100-disk-1.qcow2"
	grep -qx 'name: d1--MIGRATED' <<<"$(pm_conf src 100)"
	# the source's temporary known_hosts is gone
	[ -z "$(ls /tmp/pve-move.*/known_hosts 2>/dev/null)" ]
}

@test "--direct without an agent: refused before anything changes (exit 69)" {
	direct_guest
	unset SSH_AUTH_SOCK
	run -69 --separate-stderr pm_run --direct src dst pve3 local d1
	[[ $stderr == *"d1 scsi0: --direct: root@src-host cannot log in to root@dst-host: "*"(it uses the agent forwarded from here)"* ]]
	grep -qx 'name: d1' <<<"$(pm_conf src 100)"
	[ -z "$(pm_writes dst)" ]
	[ -z "$(pm_writes src)" ]
}

@test "--direct to a target whose host key this host does not know: refused (exit 78)" {
	direct_guest
	pm_agent
	grep '^src-host ' "$T/ssh/known_hosts" >"$T/ssh/known_src_only"
	sed "s|UserKnownHostsFile .*|UserKnownHostsFile $T/ssh/known_src_only|" "$T/ssh/config" >"$T/ssh/config2"
	run -78 --separate-stderr pve-move -c "$T/rc" --ssh-config "$T/ssh/config2" --state-dir "$T/state" --direct src dst pve3 local d1
	[[ $stderr == *"d1 scsi0: --direct: no host key for dst-host in $T/ssh/known_src_only"* ]]
	[ -z "$(pm_writes dst)" ]
}

@test "--direct --bwlimit: the sender on the source holds the rate" {
	pm_image "$T/src/local/images/100/vm-100-disk-0.raw" raw 16M 0:8M:0x61
	pm_guest src 100 qemu pve1 stopped "name: d1
scsi0: local:100/vm-100-disk-0.raw,size=16M"
	pm_agent
	run -0 pm_run --direct -n --bwlimit 16 src dst pve3 local d1
	assert_line --regexp "^on root@src-host: exec perl -e .* '[^ ]*/vm-100-disk-0.raw' 16777216 2000000\$"
	t0=$(date +%s%N)
	run -0 --separate-stderr pm_run --direct --bwlimit 16 --skip-start src dst pve3 local d1
	t1=$(date +%s%N)
	# 8 MiB at 2 MB/s: 4 s at least (a limit, never a speed, is asserted)
	[ $(((t1 - t0) / 1000000)) -ge 3800 ]
	qemu-img compare -q -f raw -F raw "$T/src/local/images/100/vm-100-disk-0.raw" "$T/dst/local/images/100/vm-100-disk-0.raw"
}
