# Shared set-up for the pve-move tests: two fake Proxmox clusters over TLS
# (tests/fakes/pve-api), two real sshd on free loopback ports standing for
# the source and the target storage hosts (own host keys, a prepared
# known_hosts, StrictHostKeyChecking yes), real qemu-img and qemu-nbd.
#
# What cannot run here is a stand-in on the sshd sessions' PATH only
# (tests/fakes/pve-host, see its README): zfs (datasets as files, resumable
# receive tokens), lvchange, vzdump, pct. Both "hosts" are this machine, so
# each cluster's storages live in their own directory: $T/src and $T/dst.
#
#   pm_setup            certificates, both clusters (state in $T/src.json,
#                       $T/dst.json), both sshd, ~/.proxmoverc in $T/rc
#   pm_guest CLUSTER VMID TYPE NODE STATUS CONFTEXT   add a guest
#   pm_image PATH FMT SIZE [PATTERN...]  a real image (qemu-img, qemu-io)
#   pm_run ARGS...      runs pve-move with the test's config, ssh config and
#                       state dir (run -N pm_run ... for the exit code)
#   pm_api CLUSTER      the request log of one fake as JSON lines

pm_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pm_certs() {
	local d=$T/tls
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=pvekit-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=pve-test \
		-keyout "$d/srv.key" -out "$d/srv.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/ext"
	openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/ext" -out "$d/srv.pem" 2>/dev/null
	# the fingerprint as Proxmox shows it: SHA-256 of the certificate, AB:CD:...
	FP=$(openssl x509 -in "$d/srv.pem" -noout -fingerprint -sha256 | sed 's/.*=//')
}

# pm_state NAME NODES... : an empty cluster with storages in $T/NAME.
pm_state() {
	local name=$1
	shift
	mkdir -p "$T/$name/local/images" "$T/$name/thick" "$T/$name/thin" "$T/$name/zfs/zvol/tank"
	python3 - "$T/$name.json" "$T/$name" "$@" <<'PY'
import json, sys
path, d, nodes = sys.argv[1], sys.argv[2], sys.argv[3:]
json.dump({"name": d, "version": "8.2.4", "nodes": nodes,
           "users": {"root@pam": "rootpw", "mover@pve": "moverpw"},
           "tokens": {"root@pam!move": "5f2c0f9e-token-secret-4d1a"},
           "storages": {"local": {"type": "dir", "dir": d + "/local", "content": "images,rootdir,iso"},
                        "thick": {"type": "lvm", "dir": d + "/thick", "content": "images,rootdir"},
                        "thin": {"type": "lvmthin", "dir": d + "/thin", "content": "images,rootdir"},
                        "tank": {"type": "zfspool", "dir": d + "/zfs", "pool": "tank", "content": "images,rootdir"}},
           "guests": {}, "pools": [], "privs": {}}, open(path, "w"), indent=1)
PY
}

pm_fake() {
	local name=$1
	shift
	rm -f "$T/$name.port"
	start_bg pve-api --state "$T/$name.json" --port-file "$T/$name.port" --log "$T/$name.log" \
		--tls-cert "$T/tls/srv.pem" --tls-key "$T/tls/srv.key" \
		--peer-state "$T/$([ "$name" = src ] && echo dst || echo src).json" "$@"
	eval "FAKE_PID_${name}=\$BG_PID"
	wait_until 10 test -s "$T/$name.port"
	eval "PORT_${name}=\$(cat \"\$T/\$name.port\")"
}

pm_sshd() {
	local name=$1 port i
	ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_$name"
	echo "$name-host $(cut -d' ' -f1,2 "$T/ssh/host_$name.pub")" >>"$T/ssh/known_hosts"
	for i in 1 2 3 4 5; do
		port=$(pm_free_port)
		cat >"$T/ssh/sshd_$name" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $T/ssh/host_$name
PidFile $T/ssh/sshd_$name.pid
AuthorizedKeysFile $T/ssh/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
SetEnv SHLVL=1 PATH=$FAKES/pve-host:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ZFS_ROOT=$T/$name/zfs PVE_FAKE_STATE=$T/$name.json PVE_HOST_LOG=$T/$name-host.log PVE_FAKE_NODE=$([ "$name" = src ] && echo pve1 || echo pve3)
EOF
		start_bg /usr/sbin/sshd -D -e -f "$T/ssh/sshd_$name" 2>>"$T/sshd_$name.log"
		if wait_until 5 grep -q "Server listening" "$T/sshd_$name.log"; then
			cat >>"$T/ssh/config" <<EOF
Host $name-host
	HostName 127.0.0.1
	Port $port
	HostKeyAlias $name-host
EOF
			eval "SSHPORT_${name}=$port"
			return 0
		fi
	done
	return 1
}

pm_setup() {
	mkdir -p /run/sshd "$T/ssh" "$T/state"
	pm_certs
	pm_state src pve1 pve2
	pm_state dst pve3 pve4
	ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/id"
	cp "$T/ssh/id.pub" "$T/ssh/authorized_keys"
	: >"$T/ssh/known_hosts"
	: >"$T/ssh/config"
	pm_sshd src
	pm_sshd dst
	cat >>"$T/ssh/config" <<EOF
Host *
	User root
	IdentityFile $T/ssh/id
	IdentitiesOnly yes
	UserKnownHostsFile $T/ssh/known_hosts
	GlobalKnownHostsFile /dev/null
	StrictHostKeyChecking yes
EOF
	pm_fake src "${PM_SRC_FAULTS[@]}"
	pm_fake dst "${PM_DST_FAULTS[@]}"
	pm_rc
}

# pm_rc [EXTRA-DST-LINES]: the proxmoverc, password login on src, a token
# on dst, the test CA trusted through ca=.
pm_rc() {
	cat >"$T/rc" <<EOF
; made by the pve-move tests
[pve:src]
api=https://root@pam:rootpw@127.0.0.1:$PORT_src
ca=$T/tls/ca.pem

[pve:dst]
api=https://127.0.0.1:$PORT_dst
token=root@pam!move=5f2c0f9e-token-secret-4d1a
ca=$T/tls/ca.pem
${1:-}

[storage:src:local]
ssh=root@src-host
[storage:src:thick]
ssh=root@src-host
[storage:src:tank]
ssh=root@src-host
[storage:dst:local]
ssh=root@dst-host
[storage:dst:thick]
ssh=root@dst-host
[storage:dst:thin]
ssh=root@dst-host
[storage:dst:tank]
ssh=root@dst-host
EOF
	chmod 600 "$T/rc"
}

# pm_guest CLUSTER VMID TYPE NODE STATUS CONF [POOL]
pm_guest() {
	python3 - "$T/$1.json" "$2" "$3" "$4" "$5" "$6" "${7:-}" <<'PY'
import json, os, sys
path, vmid, typ, node, status, conf, pool = sys.argv[1:]
s = json.load(open(path))
s["guests"][vmid] = {"type": typ, "node": node, "status": status, "conf": conf}
if pool:
    s["guests"][vmid]["pool"] = pool
    if pool not in s["pools"]:
        s["pools"].append(pool)
json.dump(s, open(path + ".tmp", "w"), indent=1)
os.replace(path + ".tmp", path)
PY
}

# pm_image PATH FMT SIZE [OFFSET:LEN:PATTERN...]: written with qemu-io
pm_image() {
	local p=$1 fmt=$2 size=$3 w
	shift 3
	mkdir -p "$(dirname "$p")"
	qemu-img create -q -f "$fmt" "$p" "$size"
	for w in "$@"; do
		IFS=: read -r off len pat <<<"$w"
		qemu-io -f "$fmt" -c "write -P $pat $off $len" "$p" >/dev/null
	done
}

# pm_start_bg ARG...: pve-move in the background (BG_PID), its output in
# $T/out and $T/err
pm_start_bg() {
	start_bg bash -c "exec pve-move -c '$T/rc' --ssh-config '$T/ssh/config' --state-dir '$T/state' $* >'$T/out' 2>'$T/err'"
}

# pm_interrupt PID: Ctrl-C to it; its exit code in rc, its stderr shown
pm_interrupt() {
	kill -INT "$1"
	rc=0
	wait "$1" || rc=$?
	cat "$T/err"
}

pm_run() {
	pve-move -c "$T/rc" --ssh-config "$T/ssh/config" --state-dir "$T/state" "$@"
}

# pm_conf CLUSTER VMID: the guest's config text in the fake's state
pm_conf() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["guests"][sys.argv[2]]["conf"], end="")' "$T/$1.json" "$2"
}

pm_status() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["guests"][sys.argv[2]]["status"])' "$T/$1.json" "$2"
}

# pm_writes CLUSTER: the non-GET requests the fake got, "METHOD PATH"
pm_writes() {
	[ -e "$T/$1.log" ] || return 0
	python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["method"] != "GET" and r["path"] != "/api2/json/access/ticket":
        print(r["method"], r["path"])' "$T/$1.log"
}

# the usual VM: web1 (100) on src/pve1, a qcow2 system disk with data in two
# places, an EFI disk, a TPM state, a cloud-init drive, an unused disk, a
# snapshot and a pool.
pm_web1() {
	local status=${1:-running} d=$T/src/local/images/100
	pm_image "$d/vm-100-disk-0.qcow2" qcow2 64M 0:1M:0x11 40M:3M:0x22
	pm_image "$d/vm-100-disk-1.raw" raw 540672 0:64k:0x33
	pm_image "$d/vm-100-disk-2.raw" raw 4M 0:1M:0x44
	pm_image "$d/vm-100-disk-3.raw" raw 1M
	pm_image "$d/vm-100-cloudinit.qcow2" qcow2 4M
	pm_guest src 100 qemu pve1 "$status" "#web server
bios: ovmf
boot: order=scsi0;ide2;net0
cipassword: \$5\$hash
ciuser: admin
cores: 2
efidisk0: local:100/vm-100-disk-1.raw,efitype=4m,pre-enrolled-keys=1,size=528K
ide2: local:100/vm-100-cloudinit.qcow2,media=cdrom
ipconfig0: ip=dhcp
memory: 1024
meta: creation-qemu=8.1.2,ctime=1700000000
name: web1
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1
onboot: 1
parent: before-upgrade
scsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=64M
scsihw: virtio-scsi-single
smbios1: uuid=ddf91b3f-a597-42be-9a7e-fb6421dcd5cd
tpmstate0: local:100/vm-100-disk-2.raw,size=4M,version=v2.0
unused0: local:100/vm-100-disk-3.raw
vmgenid: 7079e97c-50e3-4079-afe7-23e67566b946

[before-upgrade]
bios: ovmf
boot: order=scsi0;ide2;net0
cores: 1
memory: 512
name: web1
scsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=64M
snaptime: 1700000001
vmstate: local:100/vm-100-state-before-upgrade.raw
" web
}

# pm_agent: an ssh-agent holding the test key, in SSH_AUTH_SOCK (--direct
# forwards it to the source host)
pm_agent() {
	start_bg sh -c 'exec ssh-agent -D -a "$1" >/dev/null' sh "$T/agent.sock"
	wait_until 5 test -S "$T/agent.sock"
	export SSH_AUTH_SOCK=$T/agent.sock
	ssh-add -q "$T/ssh/id"
}
