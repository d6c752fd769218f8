#!/usr/bin/env bats
# vm-public-ip against real QEMU guest agents and real network namespaces.
# qemu-ga reports the interfaces of the namespace it runs in, so each
# agent runs inside a namespace of its own holding the addresses the
# "guest" has; a container is a namespace with a process that is pid 1 of
# its own pid namespace (unshare), found through a cgroup tree laid out as
# Proxmox lays it out (lxc/VMID/ns/...). The public-looking addresses
# (100.128.x.x just outside CGNAT, 2001:db9:: just outside 2001:db8::/32)
# exist only inside these namespaces and are never routed on this machine.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	CFG=$T/cfg
	CG=$T/cgroup
	NNS=0
}

teardown() { pvekit_teardown; }

# guest_ns ADDR/PREFIX...: a namespace with eth0 carrying the addresses
# (and lo up); its name is left in $GUEST_NS.
guest_ns() {
	local ns a
	NNS=$((NNS + 1))
	ns=$(netns_add "n$NNS")
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
	ip -n "$ns" link add eth0 type veth peer name eth0p
	ip -n "$ns" link set eth0 address "BC:24:11:AA:00:$(printf %02X "$NNS")"
	for a in "$@"; do
		case $a in
		*:*) ip -n "$ns" addr add "$a" dev eth0 nodad ;;
		*) ip -n "$ns" addr add "$a" dev eth0 ;;
		esac
	done
	ip -n "$ns" link set eth0p up
	ip -n "$ns" link set eth0 up
	GUEST_NS=$ns
}

# vm VMID NS: a running QEMU guest (the pid check passes) whose agent is a
# real qemu-ga inside namespace NS, listening on $RUN/VMID.qga.
vm() {
	local vmid=$1 ns=$2 sock=$RUN/$1.qga
	fake_qemu "$RUN" "$vmid"
	mkdir -p "$T/qga-$vmid"
	start_bg ip netns exec "$ns" qemu-ga -m unix-listen -p "$sock" -t "$T/qga-$vmid" -b guest-set-time
	QGA_PID=$BG_PID
	# listening, not only bound: a SIGSTOP in between would look like a dead QEMU
	wait_until 10 socat -u OPEN:/dev/null UNIX-CONNECT:"$sock"
}

# ct VMID NS: a running container: pid 1 of a new pid namespace inside NS,
# in $CG/lxc/VMID/ns/init.scope; ns/ itself holds a process that is not
# the container's (in this namespace, to catch a wrong pick).
ct() {
	local vmid=$1 ns=$2 init
	start_bg ip netns exec "$ns" unshare --pid --fork sleep 1000
	wait_until 5 pgrep -P "$BG_PID" sleep
	init=$(pgrep -P "$BG_PID" sleep)
	kill_at_teardown "$init" # once unshare is gone, nothing else would
	start_bg sleep 1000
	mkdir -p "$CG/lxc/$vmid/ns/init.scope"
	echo "$BG_PID" >"$CG/lxc/$vmid/ns/cgroup.procs"
	echo "$init" >"$CG/lxc/$vmid/ns/init.scope/cgroup.procs"
	CT_INIT=$init
}

conf() {
	local node=$1 type=$2 vmid=$3
	cat >"$T/$vmid.conf"
	pmxcfs-sim create "$PVE" "$node" "$type" "$vmid" "$T/$vmid.conf"
}

public_ip() {
	vm-public-ip --pve-dir "$PVE" --node pve1 --config-dir "$CFG" --run-dir "$RUN" --cgroup-dir "$CG" "$@"
}

# Guest 100: an agent with every kind of address; container 110.
standard_guests() {
	conf pve1 qemu 100 <<'EOF'
agent: 1
name: web
net0: virtio=BC:24:11:00:01:00,bridge=vmbr0
EOF
	conf pve1 lxc 110 <<'EOF'
hostname: ct110
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:12:00:01:10,type=veth
EOF
	guest_ns 100.128.2.100/24 10.1.2.3/8 192.168.7.7/24 172.20.0.1/16 100.64.1.1/10 \
		169.254.3.3/16 198.51.100.7/24 203.0.113.9/24 192.0.2.5/24 2001:db9::100/64 \
		fd12::100/64 2001:db8::100/64
	vm 100 "$GUEST_NS"
	NS100=$GUEST_NS
	guest_ns 100.128.3.110/24 10.3.3.110/24 2001:db9:3::110/64
	ct 110 "$GUEST_NS"
}

@test "vm-public-ip: -h, -V and usage errors" {
	run -0 vm-public-ip -h
	assert_line --partial "usage: vm-public-ip"
	run -0 vm-public-ip -V
	assert_output --regexp '^vm-public-ip [0-9]'
	run -64 vm-public-ip --timeout 0
	assert_line "vm-public-ip: --timeout 0: want seconds from 0.001 to 600, or milliseconds as in 500ms"
	run -64 vm-public-ip --timeout soon
	run -0 public_ip --timeout 250ms -v
	run -64 vm-public-ip --ct-pid 110
	assert_line "vm-public-ip: --ct-pid 110: want VMID=PID"
	run -64 vm-public-ip --ct-pid 110=x
	run -64 vm-public-ip 100
	assert_line "vm-public-ip: 100: unexpected argument"
}

@test "vm-public-ip: public addresses of agents and containers, sorted" {
	standard_guests
	run -0 public_ip -v
	assert_output "100 100.128.2.100
100 2001:db9::100
110 100.128.3.110
110 2001:db9:3::110"
}

@test "vm-public-ip: a .vmlist entry with a VMID above 999999999 is skipped with one warning" {
	standard_guests
	pmxcfs-sim create "$PVE" pve1 qemu 1000000000
	run -0 --separate-stderr public_ip -v
	assert_output "100 100.128.2.100
100 2001:db9::100
110 100.128.3.110
110 2001:db9:3::110"
	assert_equal "$stderr" "vm-public-ip: $PVE/.vmlist: guest 1000000000 skipped: a VMID above 999999999 is not a Proxmox guest ID"
}

@test "vm-public-ip: --all keeps every address" {
	standard_guests
	run -0 public_ip -v --all
	local a
	for a in 100.128.2.100 10.1.2.3 192.168.7.7 172.20.0.1 100.64.1.1 169.254.3.3 198.51.100.7 \
		203.0.113.9 192.0.2.5 127.0.0.1 2001:db9::100 fd12::100 2001:db8::100 ::1; do
		assert_line "100 $a"
	done
	assert_line --regexp '^100 fe80::'
	assert_line "110 10.3.3.110"
	assert_line "110 127.0.0.1"
}

@test "vm-public-ip: only running guests of this node with the agent enabled are asked" {
	standard_guests
	conf pve1 qemu 103 <<'EOF'
agent: 0
EOF
	conf pve1 qemu 104 <<'EOF'
agent: enabled=1,fstrim_cloned_disks=1
EOF
	conf pve2 qemu 200 <<'EOF'
agent: 1
EOF
	conf pve1 lxc 112 <<'EOF'
hostname: stopped
EOF
	guest_ns 100.128.4.1/24
	vm 103 "$GUEST_NS"
	vm 200 "$GUEST_NS"
	# 104: an agent socket but no QEMU process: not running
	mkdir -p "$T/qga-104"
	start_bg ip netns exec "$GUEST_NS" qemu-ga -m unix-listen -p "$RUN/104.qga" -t "$T/qga-104" -b guest-set-time
	wait_until 5 test -S "$RUN/104.qga"
	run -0 public_ip -v
	refute_output --partial 100.128.4.1
	assert_line "100 100.128.2.100"
	assert_line "110 100.128.3.110"
	# the long agent spelling counts as enabled
	fake_qemu "$RUN" 104
	run -0 public_ip -v
	assert_line "104 100.128.4.1"
	refute_line --regexp '^(103|112|200) '
}

@test "vm-public-ip: a hung agent and a missing socket do not hold up the others" {
	standard_guests
	conf pve1 qemu 101 <<'EOF'
agent: 1
EOF
	conf pve1 qemu 102 <<'EOF'
agent: 1
EOF
	guest_ns 100.128.5.101/24
	vm 101 "$GUEST_NS"
	kill -STOP "$QGA_PID"
	fake_qemu "$RUN" 102
	# the deadline is 1 s per guest; timeout(1) only catches a hang
	run -1 timeout 60 vm-public-ip --pve-dir "$PVE" --node pve1 --config-dir "$CFG" \
		--run-dir "$RUN" --cgroup-dir "$CG" --timeout 1 -v
	assert_line "100 100.128.2.100"
	assert_line "110 100.128.3.110"
	assert_line "vm-public-ip: guest 101: $RUN/101.qga: no reply in 1000 ms"
	assert_line "vm-public-ip: guest 102: $RUN/102.qga: no such socket"
	refute_line --partial "100.128.5.101"
}

# bad_agent SOCKET REPLY: speaks the agent's framing (the sync reply with
# the client's id) and answers the command with the line REPLY.
bad_agent() {
	local sock=$1 reply=$2
	cat >"$T/bad-agent" <<'EOF'
#!/bin/bash
export LC_ALL=C
IFS= read -r sync
IFS= read -r cmd
id=$(printf '%s' "$sync" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
printf '\377{"return": %s}\n%s\n' "$id" "$REPLY"
EOF
	chmod +x "$T/bad-agent"
	start_bg env REPLY="$reply" socat UNIX-LISTEN:"$sock",fork EXEC:"$T/bad-agent"
	wait_until 5 test -S "$sock"
}

@test "vm-public-ip: broken JSON or an unexpected shape skips that guest with one line" {
	standard_guests
	local id
	for id in 105 106 107 108; do
		printf 'agent: 1\n' | conf pve1 qemu "$id"
		fake_qemu "$RUN" "$id"
	done
	bad_agent "$RUN/105.qga" '{"return": [{"name": "eth0", "ip-addresses": [{"ip-addr'
	bad_agent "$RUN/106.qga" '{"return": {"name": "eth0"}}'
	bad_agent "$RUN/107.qga" '{"return": [{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "100.128.6.1"}, {"ip-address-type": "ipv4", "ip-address": "not-an-ip"}]}]}'
	bad_agent "$RUN/108.qga" '{"return": [{"name": "lo"}, {"name": "Ethernet", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::1%12", "prefix": 64}, {"ip-address-type": "ipv4", "ip-address": "100.128.8.1", "prefix": 24}]}]}'
	run -1 public_ip -v --timeout 5
	assert_line "vm-public-ip: guest 105: $RUN/105.qga: unreadable reply"
	assert_line "vm-public-ip: guest 106: $RUN/106.qga: unexpected answer to guest-network-get-interfaces: reply is not an array of interfaces"
	assert_line "vm-public-ip: guest 107: $RUN/107.qga: unexpected answer to guest-network-get-interfaces: an ip-address that does not parse as its ip-address-type"
	refute_line --partial "100.128.6.1"
	# a Windows-style "%scope" suffix is fine
	assert_line "108 100.128.8.1"
	assert_line "100 100.128.2.100"
	run -1 public_ip -v --all --timeout 5
	assert_line "108 fe80::1"
}

# many_addrs NS N PREFIX: N more addresses PREFIX.1 ... on eth0 in NS (N <= 254).
many_addrs() {
	local ns=$1 n=$2 prefix=$3 i
	for ((i = 1; i <= n; i++)); do
		echo "addr add $prefix.$i/32 dev eth0"
	done | ip -n "$ns" -batch -
}

@test "vm-public-ip: a guest with more than --max-addresses (64) keeps the lowest ones, with a line naming it" {
	standard_guests
	printf 'agent: 1\n' | conf pve1 qemu 101
	printf 'hostname: ct111\n' | conf pve1 lxc 111
	# a real agent and a container with 70 public addresses each (plus a
	# private one, which does not count)
	guest_ns 10.9.9.9/24
	many_addrs "$GUEST_NS" 70 100.128.11
	vm 101 "$GUEST_NS"
	guest_ns 10.9.9.9/24
	many_addrs "$GUEST_NS" 70 100.128.12
	ct 111 "$GUEST_NS"
	run -0 --separate-stderr public_ip
	[ "$(grep -c '^101 ' <<<"$output")" -eq 64 ]
	[ "$(grep -c '^111 ' <<<"$output")" -eq 64 ]
	assert_line '101 100.128.11.1'
	assert_line '101 100.128.11.64'
	refute_line '101 100.128.11.65'
	assert_line '100 100.128.2.100'
	[[ $stderr == *"vm-public-ip: guest 101: 70 addresses, more than --max-addresses 64: kept the first 64"* ]]
	[[ $stderr == *"vm-public-ip: guest 111: 70 addresses, more than --max-addresses 64: kept the first 64"* ]]
	[ "$(wc -l <"$CFG/failoverip/101")" -eq 64 ]
	[ "$(wc -l <"$CFG/failoverip/111")" -eq 64 ]
	# the limit is an option; the guests below it say nothing
	run -0 --separate-stderr public_ip -v --max-addresses 3
	assert_output '100 100.128.2.100
100 2001:db9::100
101 100.128.11.1
101 100.128.11.2
101 100.128.11.3
110 100.128.3.110
110 2001:db9:3::110
111 100.128.12.1
111 100.128.12.2
111 100.128.12.3'
	[[ $stderr == *"guest 101: 70 addresses, more than --max-addresses 3: kept the first 3"* ]]
	[[ $stderr != *"guest 100:"* ]]
	run -64 public_ip --max-addresses 0
	assert_line 'vm-public-ip: --max-addresses 0: want a number from 1 to 65536'
}

@test "vm-public-ip: a hostile agent's flood is cut: 5,000 addresses keep 64, 200,000 (a reply over 1 MiB) are refused" {
	standard_guests
	local id
	for id in 102 103; do
		printf 'agent: 1\n' | conf pve1 qemu "$id"
		fake_qemu "$RUN" "$id"
	done
	start_bg qga-recorder --addresses 5000 --log "$T/102.log" "$RUN/102.qga"
	start_bg qga-recorder --addresses 200000 --log "$T/103.log" "$RUN/103.qga"
	wait_until 30 test -S "$RUN/102.qga"
	wait_until 30 test -S "$RUN/103.qga"
	mkdir -p "$CFG/failoverip"
	echo 100.128.9.103 >"$CFG/failoverip/103"
	run -1 --separate-stderr public_ip --timeout 20
	[ "$(grep -c '^102 ' <<<"$output")" -eq 64 ]
	refute_line --regexp '^103 '
	assert_line '100 100.128.2.100'
	[[ $stderr == *"vm-public-ip: guest 102: 5000 addresses, more than --max-addresses 64: kept the first 64"* ]]
	[[ $stderr == *"vm-public-ip: guest 103: $RUN/103.qga: reply larger than 1048576 bytes"* ]]
	[ "$(wc -l <"$CFG/failoverip/102")" -eq 64 ]
	# what the guest said is no answer: its file stays as it was
	run cat "$CFG/failoverip/103"
	assert_output 100.128.9.103
	# the cluster-wide folder stays small: a few kB, not megabytes
	[ "$(du -sk "$CFG/failoverip" | cut -f1)" -lt 64 ]
}

@test "vm-public-ip: a container's init is found in its cgroup, or given with --ct-pid" {
	standard_guests
	conf pve1 lxc 111 <<'EOF'
hostname: ct111
EOF
	guest_ns 100.128.7.111/24
	ct 111 "$GUEST_NS"
	local init111=$CT_INIT
	rm -rf "$CG/lxc/111"
	run -0 public_ip -v
	refute_line --partial "100.128.7.111"
	run -0 public_ip -v --ct-pid "111=$init111"
	assert_line "111 100.128.7.111"
	assert_line "110 100.128.3.110"
	# a CT that is not running is skipped without a word
	conf pve1 lxc 112 <<'EOF'
hostname: stopped
EOF
	run -0 public_ip -v
	refute_line --regexp '^(111|112) '
	refute_output --partial "vm-public-ip:"
	# a --ct-pid that is no process: that guest is skipped, with one line
	run -1 public_ip -v --ct-pid 111=4194303
	assert_line "vm-public-ip: guest 111: /proc/4194303/ns/net: No such file or directory"
	assert_line "110 100.128.3.110"
}

# nested_ct VMID NS: a container inside container VMID (Docker in a CT): pid 1
# of a pid namespace nested in the CT's, in network namespace NS, listed
# first in the CT's cgroup $CG/lxc/VMID/ns (as a docker-*.scope may come
# first in a real cgroup walk: directory order is hash order).
nested_ct() {
	local vmid=$1 ns=$2 unshare nested
	start_bg ip netns exec "$ns" nsenter -t "$CT_INIT" --pid -- unshare --pid --fork sleep 1000
	wait_until 5 pgrep -P "$BG_PID" unshare
	unshare=$(pgrep -P "$BG_PID" unshare)
	wait_until 5 pgrep -P "$unshare" sleep
	nested=$(pgrep -P "$unshare" sleep)
	kill_at_teardown "$nested"
	# pid 1 two levels down: NSpid "host-pid ct-pid 1"
	grep -q $'^NSpid:\t[0-9]*\t[0-9]*\t1$' "/proc/$nested/status"
	{ echo "$nested"; cat "$CG/lxc/$vmid/ns/cgroup.procs"; } >"$T/procs"
	mv "$T/procs" "$CG/lxc/$vmid/ns/cgroup.procs"
}

@test "vm-public-ip: a container running containers of its own (Docker) gives its own addresses, not theirs" {
	standard_guests
	conf pve1 lxc 120 <<'EOF'
hostname: docker-host
EOF
	guest_ns 100.128.20.120/24 2001:db9:20::120/64
	ct 120 "$GUEST_NS"
	guest_ns 172.17.0.2/16 100.128.21.2/24
	nested_ct 120 "$GUEST_NS"
	run -0 public_ip -v
	assert_line "120 100.128.20.120"
	assert_line "120 2001:db9:20::120"
	refute_output --partial "100.128.21.2"
	assert_line "110 100.128.3.110"
	run -0 public_ip -v --all
	refute_output --partial "172.17.0.2"
	assert_line "120 100.128.20.120"
}

@test "vm-public-ip: writes CONFIG_DIR/failoverip/VMID, only on change; a silent agent keeps its file" {
	standard_guests
	run -0 public_ip
	run cat "$CFG/failoverip/100"
	assert_output "100.128.2.100
2001:db9::100"
	run cat "$CFG/failoverip/110"
	assert_output "100.128.3.110
2001:db9:3::110"
	local before
	before=$(stat -c '%i %y' "$CFG"/failoverip/*)
	run -0 public_ip
	refute_output --partial "was:"
	assert_equal "$(stat -c '%i %y' "$CFG"/failoverip/*)" "$before"
	# the agent's word replaces the file
	ip -n "$NS100" addr del 2001:db9::100/64 dev eth0
	run -0 public_ip
	assert_line --regexp "^vm-public-ip: .*/failoverip/100: 100.128.2.100 \(was: 100.128.2.100 2001:db9::100\)$"
	run cat "$CFG/failoverip/100"
	assert_output "100.128.2.100"
	# silence is not an answer: the file stays
	kill -STOP "$QGA_PID"
	run -1 public_ip --timeout 0.5
	run cat "$CFG/failoverip/100"
	assert_output "100.128.2.100"
	kill -CONT "$QGA_PID"
}

@test "vm-public-ip: -v only prints; destroyed guests lose their file" {
	standard_guests
	run -0 public_ip -v
	assert_dir_not_exists "$CFG"
	mkdir -p "$CFG/failoverip"
	echo 100.128.9.9 >"$CFG/failoverip/999"
	run -0 public_ip --no-prune
	assert_file_exists "$CFG/failoverip/999"
	run -0 public_ip
	assert_line --partial "failoverip/999: removed, guest 999 no longer exists"
	assert_file_not_exists "$CFG/failoverip/999"
	assert_file_exists "$CFG/failoverip/100"
}

@test "vm-public-ip: a read-only CONFIG_DIR (pmxcfs without quorum) is exit 75, nothing half-written" {
	standard_guests
	mkdir -p "$CFG/failoverip"
	run -75 unshare -m sh -c "mount --bind -o ro '$CFG' '$CFG' &&
		vm-public-ip --pve-dir '$PVE' --node pve1 --config-dir '$CFG' --run-dir '$RUN' --cgroup-dir '$CG'"
	assert_line "100 100.128.2.100"
	assert_line --regexp "^vm-public-ip: .*/failoverip/100: cannot write: Read-only file system$"
	run ls -A "$CFG/failoverip"
	assert_output ""
}

@test "vm-public-ip: a missing node is exit 78" {
	run -78 public_ip -v --node pve9
	assert_output --regexp "^vm-public-ip: .*/nodes/pve9: No such file or directory \(see --node\)$"
}
