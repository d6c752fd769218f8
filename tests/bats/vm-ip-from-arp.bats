#!/usr/bin/env bats
# vm-ip-from-arp against real neighbour tables: a "host" network namespace
# with a bridge vmbr0 (100.128.0.1/24, 2001:db9::1/64) and one namespace per
# guest NIC, joined by veth pairs whose guest end carries the MAC from the
# guest's config. Real pings fill the host's ARP and ND tables. The
# addresses are public-looking (just outside CGNAT 100.64/10 and the
# documentation prefix 2001:db8::/32) but exist only inside these
# namespaces; nothing is routed on this machine.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	make_pve
	CFG=$T/cfg
	HOSTNS=$(netns_add host)
	ip netns exec "$HOSTNS" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
	# A MAC of its own, as a real vmbr0 has its NIC's: a bridge that takes the
	# lowest MAC of its ports changes it when a guest NIC joins, and the
	# kernel then flushes the neighbour tables the tests read.
	ip -n "$HOSTNS" link add vmbr0 address 02:00:00:00:00:01 type bridge
	ip -n "$HOSTNS" link set vmbr0 up
	ip -n "$HOSTNS" addr add 100.128.0.1/24 dev vmbr0
	ip -n "$HOSTNS" addr add 2001:db9::1/64 dev vmbr0 nodad
	NGUEST=0
}

teardown() { pvekit_teardown; }

# guest_nic MAC V4 [V6]: a namespace standing for one guest NIC on vmbr0;
# its name is left in $GUEST_NS (not printed: a subshell would lose the count).
guest_nic() {
	local mac=$1 v4=$2 v6=${3:-} ns
	NGUEST=$((NGUEST + 1))
	ns=$(netns_add "g$NGUEST")
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
	ip -n "$HOSTNS" link add "gv$NGUEST" type veth peer name eth0 netns "$ns"
	ip -n "$HOSTNS" link set "gv$NGUEST" master vmbr0 up
	ip -n "$ns" link set eth0 address "$mac"
	ip -n "$ns" link set eth0 up
	ip -n "$ns" addr add "$v4/24" dev eth0
	[ -z "$v6" ] || ip -n "$ns" addr add "$v6/64" dev eth0 nodad
	GUEST_NS=$ns
}

# Real traffic from the host namespace: fills its neighbour tables.
ping_from_host() {
	local a
	for a in "$@"; do
		ip netns exec "$HOSTNS" ping -q -c 1 -W 5 "$a" >/dev/null
	done
}

from_arp() { ip netns exec "$HOSTNS" vm-ip-from-arp --pve-dir "$PVE" --node pve1 --config-dir "$CFG" "$@"; }

conf() { cat >"$T/$1.conf"; }

# Guests with every spelling the parser must know.
standard_guests() {
	conf 100 <<'EOF'
agent: 1
name: two-nics
net0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1
net1: e1000=BC:24:11:00:02:00,bridge=vmbr0,tag=5
EOF
	conf 101 <<'EOF'
name: long-spelling
net0: model=rtl8139,macaddr=bc:24:11:00:01:01,bridge=vmbr0
net1: bridge=vmbr0,ne2k_pci=BC:24:11:00:02:01
EOF
	conf 102 <<'EOF'
hostname: ct102
net0: name=eth0,bridge=vmbr0,hwaddr=bc:24:12:00:01:02,ip=dhcp,type=veth
EOF
	conf 103 <<'EOF'
name: with-snapshot
net0: vmxnet3=BC:24:11:00:01:03,bridge=vmbr0
parent: before

[PENDING]
net0: vmxnet3=BC:24:11:00:01:33,bridge=vmbr0

[before]
net0: vmxnet3=BC:24:11:00:01:13,bridge=vmbr0
snaptime: 1700000000
EOF
	conf 104 <<'EOF'
name: silent
net0: i82551=BC:24:11:00:01:04,bridge=vmbr0
EOF
	conf 200 <<'EOF'
name: elsewhere
net0: virtio=BC:24:11:00:02:C8,bridge=vmbr0
EOF
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$T/100.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 101 "$T/101.conf"
	pmxcfs-sim create "$PVE" pve1 lxc 102 "$T/102.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 103 "$T/103.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 104 "$T/104.conf"
	pmxcfs-sim create "$PVE" pve2 qemu 200 "$T/200.conf"
	guest_nic BC:24:11:00:01:00 100.128.0.100 2001:db9::100
	guest_nic BC:24:11:00:02:00 100.128.0.150
	guest_nic BC:24:11:00:01:01 100.128.0.101 2001:db9::101
	NS101=$GUEST_NS
	guest_nic BC:24:11:00:02:01 100.128.0.151
	guest_nic BC:24:12:00:01:02 100.128.0.102 2001:db9::102
	guest_nic BC:24:11:00:01:03 100.128.0.103
	NS103=$GUEST_NS
	guest_nic BC:24:11:00:01:13 100.128.0.113
	guest_nic BC:24:11:00:01:33 100.128.0.133
	guest_nic BC:24:11:00:02:C8 100.128.0.200
	ping_from_host 100.128.0.100 100.128.0.150 100.128.0.101 100.128.0.151 100.128.0.102 100.128.0.103 \
		100.128.0.113 100.128.0.133 100.128.0.200 2001:db9::100 2001:db9::101 2001:db9::102
}

@test "vm-ip-from-arp: -h, -V and usage errors" {
	run -0 vm-ip-from-arp -h
	assert_line --partial "usage: vm-ip-from-arp"
	run -0 vm-ip-from-arp -V
	assert_output --regexp '^vm-ip-from-arp [0-9]'
	run -64 vm-ip-from-arp --bogus
	assert_line --partial "usage: vm-ip-from-arp"
	run -64 vm-ip-from-arp 100.128.0.1
	assert_line "vm-ip-from-arp: 100.128.0.1: unexpected argument (addresses go with --probe)"
	run -64 vm-ip-from-arp --probe
	run -64 vm-ip-from-arp --probe 100.128.0.300
	assert_line "vm-ip-from-arp: --probe 100.128.0.300: not an IP address"
	run -64 vm-ip-from-arp --probe-timeout soon --probe 100.128.0.1
	run -64 vm-ip-from-arp --node -bad
}

@test "vm-ip-from-arp: IPv4 and IPv6 neighbours by the MACs of the live configs, every spelling" {
	standard_guests
	run -0 from_arp -v
	assert_output "100 100.128.0.100
100 100.128.0.150
100 2001:db9::100
101 100.128.0.101
101 100.128.0.151
101 2001:db9::101
102 100.128.0.102
102 2001:db9::102
103 100.128.0.103"
	# snapshot (.113) and [PENDING] (.133) MACs, the silent guest 104 and
	# guest 200 of node pve2 are not there
}

@test "vm-ip-from-arp: IPv6 link-local only with --all" {
	standard_guests
	local ll
	guest_nic BC:24:11:00:01:04 100.128.0.104
	ll=$(ip -n "$GUEST_NS" -6 -o addr show dev eth0 scope link | awk '{ sub(/\/.*/, "", $4); print $4 }')
	[ -n "$ll" ]
	ip netns exec "$HOSTNS" ping -q -c 1 -W 5 "$ll%vmbr0" >/dev/null
	run -0 from_arp -v
	refute_output --partial "$ll"
	run -0 from_arp -v --all
	assert_line "104 $ll"
}

@test "vm-ip-from-arp: writes CONFIG_DIR/failoverip/VMID sorted, atomically, only on change" {
	standard_guests
	run -0 from_arp
	assert_line "100 100.128.0.150"
	assert_file_exists "$CFG/failoverip/100"
	run cat "$CFG/failoverip/100"
	assert_output "100.128.0.100
100.128.0.150
2001:db9::100"
	run cat "$CFG/failoverip/102"
	assert_output "100.128.0.102
2001:db9::102"
	assert_file_not_exists "$CFG/failoverip/104"
	assert_file_not_exists "$CFG/failoverip/200"
	run ls -A "$CFG/failoverip"
	assert_output "100
101
102
103"
	local before after
	before=$(stat -c '%i %y' "$CFG"/failoverip/*)
	run -0 from_arp
	refute_output --partial "was:"
	after=$(stat -c '%i %y' "$CFG"/failoverip/*)
	assert_equal "$after" "$before"
}

@test "vm-ip-from-arp: -v only prints" {
	standard_guests
	run -0 from_arp -v
	assert_line "101 100.128.0.101"
	assert_dir_not_exists "$CFG"
	run -0 from_arp -n
	assert_dir_not_exists "$CFG"
}

@test "vm-ip-from-arp: a .vmlist entry with a VMID above 999999999 is skipped with one warning" {
	standard_guests
	pmxcfs-sim create "$PVE" pve1 qemu 1000000000
	run -0 --separate-stderr from_arp -v
	assert_line "100 100.128.0.100"
	assert_line "103 100.128.0.103"
	assert_equal "$stderr" "vm-ip-from-arp: $PVE/.vmlist: guest 1000000000 skipped: a VMID above 999999999 is not a Proxmox guest ID"
}

@test "vm-ip-from-arp: an expired entry keeps the file; an address seen on another guest moves" {
	standard_guests
	run -0 from_arp
	ip -n "$HOSTNS" neigh flush dev vmbr0
	run -0 from_arp
	assert_output ""
	run cat "$CFG/failoverip/101"
	assert_output "100.128.0.101
100.128.0.151
2001:db9::101"
	# 100.128.0.101 now answers from guest 104's NIC: it belongs to 104
	# now, 101 keeps the address it was not seen losing.
	ip -n "$NS101" addr del 100.128.0.101/24 dev eth0
	guest_nic BC:24:11:00:01:04 100.128.0.101
	ping_from_host 100.128.0.101
	run -0 from_arp
	assert_line "104 100.128.0.101"
	refute_line --regexp '^10[0-3] '
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip/101: 100.128.0.151 2001:db9::101 \(was: 100.128.0.101 100.128.0.151 2001:db9::101\)$"
	run cat "$CFG/failoverip/101"
	assert_output "100.128.0.151
2001:db9::101"
	run cat "$CFG/failoverip/104"
	assert_output "100.128.0.101"
}

@test "vm-ip-from-arp: a file whose addresses all moved to other guests is removed" {
	standard_guests
	run -0 from_arp
	assert_file_exists "$CFG/failoverip/103"
	ip -n "$NS103" addr del 100.128.0.103/24 dev eth0
	ip -n "$HOSTNS" neigh del 100.128.0.103 dev vmbr0
	guest_nic BC:24:11:00:01:04 100.128.0.103
	ping_from_host 100.128.0.103
	run -0 from_arp
	assert_line "104 100.128.0.103"
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip/103: removed, its addresses were all seen on other guests$"
	assert_file_not_exists "$CFG/failoverip/103"
	run cat "$CFG/failoverip/104"
	assert_output "100.128.0.103"
}

@test "vm-ip-from-arp: --replace makes the file exactly what is found" {
	standard_guests
	run -0 from_arp
	ip -n "$HOSTNS" neigh del 100.128.0.150 dev vmbr0
	run -0 from_arp
	run cat "$CFG/failoverip/100"
	assert_line 100.128.0.150
	run -0 from_arp --replace
	run cat "$CFG/failoverip/100"
	assert_output "100.128.0.100
2001:db9::100"
}

@test "vm-ip-from-arp: files of guests that no longer exist are removed, others kept" {
	standard_guests
	mkdir -p "$CFG/failoverip"
	echo 100.128.0.9 >"$CFG/failoverip/999"
	echo 100.128.0.200 >"$CFG/failoverip/200"
	echo "keep me" >"$CFG/failoverip/README"
	run -0 from_arp
	assert_line --partial "failoverip/999: removed, guest 999 no longer exists"
	assert_file_not_exists "$CFG/failoverip/999"
	assert_file_exists "$CFG/failoverip/200"
	assert_file_exists "$CFG/failoverip/README"
	pmxcfs-sim destroy "$PVE" 103
	run -0 from_arp
	assert_file_not_exists "$CFG/failoverip/103"
	echo 100.128.0.9 >"$CFG/failoverip/999"
	run -0 from_arp --no-prune
	assert_file_exists "$CFG/failoverip/999"
}

@test "vm-ip-from-arp: a .vmlist listing no guest while their configs are there removes no file" {
	standard_guests
	run -0 from_arp
	assert_file_exists "$CFG/failoverip/100"
	before=$(ls "$CFG/failoverip")
	rm -f "$PVE/.vmlist"
	echo '{"version": 9}' >"$PVE/.vmlist"
	run -0 from_arp
	assert_equal "$(ls "$CFG/failoverip")" "$before"
	assert_line --partial "failoverip/100: kept: guest 100 is missing from the owner map, but a config of it is still there"
	refute_line --partial "removed"
}

@test "vm-ip-from-arp: --probe resolves silent addresses in parallel, with one deadline" {
	standard_guests
	guest_nic BC:24:11:00:01:04 100.128.0.104 2001:db9::104
	run -0 from_arp -v
	refute_line --partial "104 "
	# two silent guest addresses and two nobody has: all in one go
	run -0 from_arp -v --probe --probe-timeout 10 100.128.0.104 2001:db9::104 100.128.0.77 2001:db9::77
	assert_line "104 100.128.0.104"
	assert_line "104 2001:db9::104"
	assert_line --regexp "^vm-ip-from-arp: probe 100.128.0.77: (failed|timeout): "
	assert_line --regexp "^vm-ip-from-arp: probe 2001:db9::77: (failed|timeout): "
}

@test "vm-ip-from-arp: --probe - reads addresses from stdin, first word of each line" {
	standard_guests
	guest_nic BC:24:11:00:01:04 100.128.0.104
	printf '100.128.0.104 pve1\n# a comment\n\nnot-an-ip x\n' >"$T/list"
	run -0 bash -c "ip netns exec $HOSTNS vm-ip-from-arp --pve-dir $PVE --node pve1 -v --probe - <$T/list"
	assert_line "104 100.128.0.104"
	assert_line "vm-ip-from-arp: stdin:4: not-an-ip: not an IP address, skipped"
}

@test "vm-ip-from-arp: --probe never touches a static entry and names off-link and local addresses" {
	standard_guests
	ip -n "$HOSTNS" neigh replace 100.128.0.104 lladdr BC:24:11:00:01:04 dev vmbr0 nud permanent
	ip -n "$HOSTNS" route add 198.51.100.0/24 via 100.128.0.100
	run -0 from_arp -v --probe --probe-timeout 5 100.128.0.104 198.51.100.7 100.128.0.1
	assert_line "104 100.128.0.104"
	assert_line "vm-ip-from-arp: probe 198.51.100.7: off-link: routed via 100.128.0.100 on vmbr0"
	assert_line "vm-ip-from-arp: probe 100.128.0.1: local: an address of this host"
	run ip -n "$HOSTNS" neigh show 100.128.0.104 dev vmbr0
	assert_output --partial PERMANENT
}

@test "vm-ip-from-arp: --bridge limits the lookup to that interface" {
	standard_guests
	local ns
	ns=$(netns_add other)
	ip -n "$HOSTNS" link add vmbr1 type veth peer name eth0 netns "$ns"
	ip -n "$HOSTNS" addr add 100.128.1.1/24 dev vmbr1
	ip -n "$HOSTNS" link set vmbr1 up
	ip -n "$ns" link set eth0 address BC:24:11:00:01:04
	ip -n "$ns" addr add 100.128.1.104/24 dev eth0
	ip -n "$ns" link set eth0 up
	ping_from_host 100.128.1.104
	run -0 from_arp -v
	assert_line "104 100.128.1.104"
	run -0 from_arp -v -b vmbr0
	refute_line "104 100.128.1.104"
	assert_line "100 100.128.0.100"
	run -0 from_arp -v --bridge vmbr1
	assert_output "104 100.128.1.104"
	run -78 from_arp -v -b nosuchbr0
	assert_output "vm-ip-from-arp: --bridge nosuchbr0: no such interface"
}

@test "vm-ip-from-arp: a MAC shared by two guests matches neither" {
	standard_guests
	pmxcfs-sim edit "$PVE" 104 "net0: virtio=BC:24:11:00:01:01,bridge=vmbr0"
	run -0 from_arp -v
	assert_line "vm-ip-from-arp: MAC BC:24:11:00:01:01 is used by guests 101 and 104: ignored"
	refute_line --partial "100.128.0.101"
	assert_line "100 100.128.0.100"
}

@test "vm-ip-from-arp: malformed config lines are named, the rest still counts" {
	standard_guests
	printf 'name: broken\nthis is not a config line\nnet0: virtio=BC:24:11:00:01:0Z,bridge=vmbr0\nnet1: virtio=BC:24:11:00:01:05,bridge=vmbr0\n' >"$T/105.conf"
	pmxcfs-sim create "$PVE" pve1 qemu 105 "$T/105.conf"
	guest_nic BC:24:11:00:01:05 100.128.0.105
	ping_from_host 100.128.0.105
	run -0 from_arp -v
	assert_line --regexp "^vm-ip-from-arp: .*/nodes/pve1/qemu-server/105.conf:2: malformed line ignored \(2 in this file\)$"
	assert_line "105 100.128.0.105"
}

@test "vm-ip-from-arp: a read-only CONFIG_DIR (pmxcfs without quorum) is exit 75, nothing half-written" {
	standard_guests
	run -0 from_arp
	ip -n "$HOSTNS" neigh flush dev vmbr0
	guest_nic BC:24:11:00:01:04 100.128.0.104
	ping_from_host 100.128.0.104 100.128.0.100
	local before
	before=$(cat "$CFG"/failoverip/*)
	# ip netns exec gives the command its own mount namespace: the
	# read-only bind mount stays there.
	run -75 ip netns exec "$HOSTNS" sh -c "mount --bind -o ro '$CFG' '$CFG' &&
		vm-ip-from-arp --pve-dir '$PVE' --node pve1 --config-dir '$CFG'"
	assert_line "104 100.128.0.104"
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip/104: cannot write: Read-only file system$"
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip: 1 change\(s\) not made; pmxcfs may lack quorum, retry later$"
	assert_equal "$(cat "$CFG"/failoverip/*)" "$before"
	run ls -A "$CFG/failoverip"
	refute_output --partial tmp
}

@test "vm-ip-from-arp: a change the file system refuses for good (EPERM) is exit 73, not a quorum retry" {
	standard_guests
	run -0 from_arp
	ip -n "$HOSTNS" neigh flush dev vmbr0
	guest_nic BC:24:11:00:01:04 100.128.0.104
	ping_from_host 100.128.0.104 100.128.0.100
	local before
	before=$(cat "$CFG"/failoverip/*)
	# an immutable folder answers a new file with EPERM, as pmxcfs does a
	# mode it never allows
	chattr +i "$CFG/failoverip" 2>/dev/null || skip "chattr +i does not work on $CFG"
	run from_arp
	chattr -i "$CFG/failoverip" # before any assertion, so the temp dir can go
	assert_equal "$status" 73
	assert_line "104 100.128.0.104"
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip/104: cannot [a-z]+: Operation not permitted \(a mode or operation the file system never allows\)$"
	assert_line --regexp "^vm-ip-from-arp: .*/failoverip: 1 change\(s\) refused by the file system \(not for want of quorum: retrying will not help\)$"
	refute_output --partial "retry later"
	assert_equal "$(cat "$CFG"/failoverip/*)" "$before"
	run ls -A "$CFG/failoverip"
	refute_output --partial tmp
}

@test "vm-ip-from-arp: a missing node or cluster filesystem is a clear error" {
	run -78 from_arp -v --node pve9
	assert_output --regexp "^vm-ip-from-arp: .*/nodes/pve9: No such file or directory \(see --node\)$"
	printf '{\n"version": 3,\n"ids": {\n"100": { "node": "pve1",' >"$PVE/.vmlist"
	run -69 from_arp -v
	assert_output --partial "vm-ip-from-arp: "
}

@test "vm-ip-from-arp: a node with many guests (configs read in parallel)" {
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 qemu 1000 700
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve1 lxc 2000 100
	PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$PVE" pve2 qemu 3000 50
	pmxcfs-sim vmlist "$PVE"
	local n
	# bulk MACs: BC:24:11 (qemu) or BC:24:12 (lxc), then the VMID in hex
	for n in 1000 1001 1350 1699 3001; do
		ip -n "$HOSTNS" neigh add "100.128.$((n / 250)).$((n % 250 + 2))" dev vmbr0 nud permanent \
			lladdr "$(printf 'bc:24:11:%02x:%02x:%02x' $((n >> 16)) $(((n >> 8) & 255)) $((n & 255)))"
	done
	ip -n "$HOSTNS" neigh add 100.128.8.2 dev vmbr0 nud permanent lladdr bc:24:12:00:07:d0
	run -0 from_arp -v
	assert_output "1000 100.128.4.2
1001 100.128.4.3
1350 100.128.5.102
1699 100.128.6.201
2000 100.128.8.2"
}
