#!/usr/bin/env bats
# share/hooks/failoverip-up and failoverip-down: real failoverip-set against
# the Hetzner fake, real host routes inside a network namespace. The hooks
# find ip-recorder as their "ip": it logs every call to $IPLOG and lets
# nothing but reads through outside a test's namespace.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	HOOKS=$TOP/share/hooks
	PASSWORD="pa55-s3cr3t-$$-$RANDOM"
	HUSER="#ws+pk$RANDOM"
	LOG=$T/requests.jsonl
	STATE=$T/state.json
	CONF=$T/failoverip.conf
	IPLOG=$T/ip.log
	export PVEKIT_CONFIG_DIR=$T/pvekit PVEKIT_FAILOVERIP_CONF=$CONF PVEKIT_STATE_DIR=$T/state
	mkdir -p "$T/bin"
	ln -s "$FAKES/ip-recorder" "$T/bin/ip"
	mkdir -p "$PVEKIT_CONFIG_DIR/failoverip"
	make_pve
	pmxcfs-sim create "$PVE" pve1 qemu 100 >/dev/null
	GUEST=$(pmxcfs-sim where "$PVE" 100)
	NS=
}

teardown() { pvekit_teardown; }

# in_ns CMD...: runs CMD in $NS when a test made one, else here.
in_ns() {
	if [ -n "$NS" ]; then
		ip netns exec "$NS" "$@"
	else
		"$@"
	fi
}

# fake [provider-api options]: the Hetzner fake (in $NS when set) and a
# 0600 config pointing failoverip-set at it; extra config lines in $EXTRA.
fake() {
	start_bg in_ns env PROVIDER_API_USER="$HUSER" PROVIDER_API_PASSWORD="$PASSWORD" \
		provider-api --provider hetzner --port-file "$T/port" --log "$LOG" \
		--state "$STATE" "$@"
	wait_until 10 test -s "$T/port"
	(
		umask 077
		printf 'provider = hetzner\ndestination = 198.51.100.10\n' >"$CONF"
		printf 'api_url = http://127.0.0.1:%s\nuser = %s\npassword = %s\n' \
			"$(cat "$T/port")" "$HUSER" "$PASSWORD" >>"$CONF"
		printf 'retry_delay = 0.05\n%s\n' "${EXTRA:-}" >>"$CONF"
	)
}

requests() { jq -r '"\(.method) \(.path) \(.status)"' "$LOG"; }

# hook NAME VMID: runs share/hooks/NAME for guest VMID (in $NS when set),
# with ip-recorder as its ip.
hook() {
	in_ns env PATH="$T/bin:$PATH" IP_RECORDER_LOG="$IPLOG" PVEKIT_VMID="$2" \
		PVEKIT_CONFIG="$GUEST" "$HOOKS/$1" "$GUEST"
}

up() { PVEKIT_EVENT=${EVENT:-migrate-in} hook failoverip-up "${VMID:-100}"; }

down() { PVEKIT_EVENT=${EVENT:-migrate-out} hook failoverip-down "${VMID:-100}"; }

# What the hooks changed, as ip-recorder logged it.
ip_changes() { grep -Ev '^(-[46o] )*(addr|route) show( |$)' "$IPLOG" || true; }

# routes_on DEV: the destinations of the IPv4 routes on DEV in $NS.
routes_on() { ip -n "$NS" -4 route show dev "$1" | awk '{ print $1 }'; }

# A namespace with a bridge "vmbr1" like the node's VM bridge, and "vmbr9".
bridge_ns() {
	NS=$(netns_add fo)
	ip -n "$NS" link add vmbr1 type bridge
	ip -n "$NS" link add vmbr9 type bridge
	ip -n "$NS" link set vmbr1 up
	ip -n "$NS" link set vmbr9 up
}

@test "failoverip-up routes the guest's IPs once; a second run only reads" {
	fake --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.10
	printf '203.0.113.60\n203.0.113.61\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5), 203.0.113.61 unchanged'
	run -0 requests
	assert_output 'GET /failover 200
POST /failover/203.0.113.60 200'
	[ "$(jq -r '.routes["203.0.113.60"]' "$STATE")" = 198.51.100.10 ]

	: >"$LOG"
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 unchanged, 203.0.113.61 unchanged'
	run -0 requests
	assert_output 'GET /failover 200'
}

@test "failoverip-up works with only the config path, as pve-migration-monitor called it" {
	fake --ip 203.0.113.60=198.51.100.5
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 env -u PVEKIT_EVENT -u PVEKIT_VMID "$HOOKS/failoverip-up" "$GUEST"
	assert_output 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5)'
}

@test "failoverip-up without an IP file says so and exits 0 without a request" {
	fake --ip 203.0.113.60=198.51.100.5
	run -0 up
	assert_output "failoverip-up: 100: no failover IPs (no $PVEKIT_CONFIG_DIR/failoverip/100, no failoverip= in its notes), nothing to do"
	[ ! -s "$LOG" ]
}

@test "failoverip-up falls back to failoverip= in the guest's notes" {
	# an IPv6 failover is a /64 net, routed to the server's IPv6 subnet
	EXTRA='destination6 = 2a01:4f8:222:5176::' fake --ip 203.0.113.60=198.51.100.5 \
		--ip 2001:db8::/64=-
	cat >"$T/100.conf" <<'EOF'
#failoverip=203.0.113.60,2001%3Adb8%3A%3A5
#web server
memory: 2048
net0: virtio=BC:24:11:00:00:64,bridge=vmbr0

[snap1]
#failoverip=203.0.113.99
memory: 1024
EOF
	pmxcfs-sim destroy "$PVE" 100 >/dev/null
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$T/100.conf" >/dev/null
	run -0 up
	assert_output 'failoverip-set: 2001:db8::5: part of failover net 2001:db8::/64: the whole net moves
failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5), 2001:db8::5 routed (was -)'
	run -0 jq -s -r '[.[].path] | join(" ")' "$LOG"
	refute_output --partial 203.0.113.99
}

@test "failoverip-up skips addresses the provider does not know, and junk lines" {
	fake --ip 203.0.113.60=198.51.100.5
	printf '# written by hand\n203.0.113.60\n192.0.2.44\nrm -rf /\n' \
		>"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_line "failoverip-up: 100: ignoring 'rm': not an IP address"
	assert_line "failoverip-up: 100: ignoring '-rf': not an IP address"
	assert_line --regexp '^failoverip-set: 192\.0\.2\.44: 127\.0\.0\.1:[0-9]+: not a failover IP of this hetzner account, skipped$'
	assert_line 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5)'
}

@test "failoverip-up reads the old \"ip A B\" files too" {
	fake --ip 203.0.113.60=198.51.100.10 --ip 203.0.113.61=198.51.100.10
	echo 'ip 203.0.113.60 203.0.113.61' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 unchanged, 203.0.113.61 unchanged'
}

@test "failoverip-up passes failoverip-set's failure on, without the password" {
	fake --ip 203.0.113.60=198.51.100.5
	sed -i "s/^password = .*/password = x$PASSWORD/" "$CONF"
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -1 up
	assert_line --partial '401 UNAUTHORIZED'
	assert_line 'failoverip-up: 100: failoverip-set failed (exit 1)'
	refute_output --partial "$PASSWORD"
	[ "$(jq .failed_logins "$STATE")" -eq 1 ]
}

@test "failoverip-up ignores down events, failoverip-down up events" {
	fake --ip 203.0.113.60=198.51.100.5
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	EVENT=migrate-out run -0 up
	assert_output 'failoverip-up: 100: ignoring event migrate-out (this hook belongs in up.d)'
	EVENT=create run -0 down
	assert_output 'failoverip-down: 100: ignoring event create (this hook belongs in down.d)'
	[ ! -s "$LOG" ]
	run -64 env -u PVEKIT_VMID "$HOOKS/failoverip-up" "$T/notaguest"
}

@test "route_dev on: failoverip-up adds host routes for confirmed IPs, failoverip-down removes only them" {
	bridge_ns
	# an IPv6 failover is a /64 net; the guest has one address of it
	EXTRA=$'route_dev = vmbr1\ndestination6 = 2a01:4f8:222:5176::' \
		fake --ip 203.0.113.60=198.51.100.5 --ip 2001:db9::/64=2a01:4f8:222:5176::
	printf '203.0.113.60\n2001:db9::60\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	# someone else's route for the same address on another device
	ip -n "$NS" route add 203.0.113.60/32 dev vmbr9 metric 50
	ip -n "$NS" route add 203.0.113.77/32 dev vmbr1
	run -0 up
	assert_output 'failoverip-set: 2001:db9::60: part of failover net 2001:db9::/64: the whole net moves
failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5), 2001:db9::60 unchanged; host routes on vmbr1: 203.0.113.60/32, 2001:db9::60/128'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_line --partial '203.0.113.60 dev vmbr1'
	assert_line --partial '203.0.113.60 dev vmbr9'
	run -0 ip -n "$NS" -6 route show 2001:db9::60/128
	assert_output --partial 'dev vmbr1'
	run -0 cat "$PVEKIT_STATE_DIR/failoverip-routes/100"
	assert_output '203.0.113.60/32 vmbr1
2001:db9::60/128 vmbr1'
	run -0 ip_changes
	assert_output '-4 route replace 203.0.113.60/32 dev vmbr1
-6 route replace 2001:db9::60/128 dev vmbr1'
	# a repeat replaces, it does not pile up
	run -0 up
	[ "$(ip -n "$NS" route show 203.0.113.60/32 dev vmbr1 | wc -l)" -eq 1 ]

	: >"$IPLOG"
	run -0 down
	assert_output 'failoverip-down: 100: removed the host routes pvekit added: 203.0.113.60/32 dev vmbr1, 2001:db9::60/128 dev vmbr1'
	run -0 ip_changes
	assert_output '-4 route del 203.0.113.60/32 dev vmbr1
-6 route del 2001:db9::60/128 dev vmbr1'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output --partial 'dev vmbr9'
	refute_output --partial 'dev vmbr1'
	run -0 ip -n "$NS" -6 route show 2001:db9::60/128
	assert_output ''
	run -0 ip -n "$NS" route show 203.0.113.77/32
	assert_output --partial 'dev vmbr1'
	assert_file_not_exists "$PVEKIT_STATE_DIR/failoverip-routes/100"
	# nothing left to remove is fine
	run -0 down
	assert_output 'failoverip-down: 100: no host routes added for it, nothing to do'
}

@test "failoverip-up: a notes line with 0.0.0.0/0, loopback, multicast, link-local or this node's address routes nothing" {
	bridge_ns
	ip -n "$NS" addr add 198.51.100.10/24 dev vmbr9
	ip -n "$NS" route add default via 198.51.100.1 dev vmbr9
	EXTRA='route_dev = vmbr1' fake --ip 203.0.113.60=198.51.100.5
	cat >"$T/100.conf" <<'EOF'
#failoverip=0.0.0.0/0,203.0.113.9,127.0.0.1,224.0.0.1,169.254.1.1,fe80%3A%3A1,%3A%3A,ff02%3A%3A1,198.51.100.10,0.0.0.0,255.255.255.255,%3A%3Affff%3A203.0.113.60,2001%3Adb9%3A%3A/64
memory: 512
EOF
	pmxcfs-sim destroy "$PVE" 100 >/dev/null
	pmxcfs-sim create "$PVE" pve1 qemu 100 "$T/100.conf" >/dev/null
	run -0 up
	assert_line "failoverip-up: 100: ignoring '0.0.0.0/0': a prefix, not a host address"
	assert_line "failoverip-up: 100: ignoring '127.0.0.1': a loopback address"
	assert_line "failoverip-up: 100: ignoring '224.0.0.1': a multicast address"
	assert_line "failoverip-up: 100: ignoring '169.254.1.1': a link-local address"
	assert_line "failoverip-up: 100: ignoring 'fe80::1': a link-local address"
	assert_line "failoverip-up: 100: ignoring '::': the unspecified address"
	assert_line "failoverip-up: 100: ignoring 'ff02::1': a multicast address"
	assert_line "failoverip-up: 100: ignoring '198.51.100.10': an address of this node"
	assert_line "failoverip-up: 100: ignoring '0.0.0.0': the unspecified address"
	assert_line "failoverip-up: 100: ignoring '255.255.255.255': a reserved or broadcast address"
	assert_line "failoverip-up: 100: ignoring '::ffff:203.0.113.60': an IPv4-mapped address"
	assert_line "failoverip-up: 100: ignoring '2001:db9::/64': a prefix, not a host address"
	# only the one host address is asked about, and it is not the account's
	assert_line --regexp '^failoverip-set: 203\.0\.113\.9: 127\.0\.0\.1:[0-9]+: not a failover IP of this hetzner account, skipped$'
	assert_line 'failoverip-up: 100: no failover IP of this account'
	[ "$(grep -c '^failoverip-set:' <<<"$output")" -eq 1 ]
	run -0 requests
	assert_output 'GET /failover 200'
	run -0 ip_changes
	assert_output ''
	run -0 ip -n "$NS" route show default
	assert_output --partial 'default via 198.51.100.1 dev vmbr9'
	assert_file_not_exists "$PVEKIT_STATE_DIR/failoverip-routes/100"
}

@test "failoverip-up: addresses an agent reports get a route only once the provider confirms them here" {
	bridge_ns
	EXTRA='route_dev = vmbr1' fake --ip 203.0.113.60=198.51.100.5
	# as vm-public-ip writes them: 8.8.8.8 and 1.1.1.1 are public, and not ours
	printf '1.1.1.1\n8.8.8.8\n203.0.113.60\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_line 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5); host routes on vmbr1: 203.0.113.60/32'
	run -0 ip_changes
	assert_output '-4 route replace 203.0.113.60/32 dev vmbr1'
	run -0 ip -n "$NS" route show dev vmbr1
	assert_output --partial '203.0.113.60'
	refute_output --partial '8.8.8.8'
	refute_output --partial '1.1.1.1'

	# the provider refuses the credentials: nothing is confirmed, no route
	: >"$IPLOG"
	ip -n "$NS" route del 203.0.113.60/32 dev vmbr1
	sed -i "s/^password = .*/password = x$PASSWORD/" "$CONF"
	run -1 up
	assert_line 'failoverip-up: 100: failoverip-set failed (exit 1)'
	run -0 ip_changes
	assert_output ''
}

@test "failoverip-up: an IP the provider fails on gets no route, one it confirmed does; the exit status is failoverip-set's" {
	bridge_ns
	EXTRA='route_dev = vmbr1
retries = 1' fake --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.5 \
		--fault 503:10:POST:203.0.113.61
	printf '203.0.113.60\n203.0.113.61\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -75 up
	assert_line 'failoverip-up: 100: failoverip-set failed (exit 75), done: 203.0.113.60 routed (was 198.51.100.5); host routes on vmbr1: 203.0.113.60/32'
	run -0 ip_changes
	assert_output '-4 route replace 203.0.113.60/32 dev vmbr1'
}

@test "failoverip-up takes at most 64 IPs of a guest" {
	fake --ip 203.0.113.60=198.51.100.10
	local i
	for ((i = 1; i <= 70; i++)); do echo "100.128.0.$i"; done >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_line 'failoverip-up: 100: more than 64 IPs: ignoring the last 6'
	[ "$(grep -c 'not a failover IP of this hetzner account, skipped$' <<<"$output")" -eq 64 ]
	assert_line --partial 'failoverip-set: 100.128.0.64: '
	refute_output --partial '100.128.0.65'
}

@test "failoverip-down leaves routes that pvekit did not add, and one that another guest still has" {
	bridge_ns
	EXTRA='route_dev = vmbr1' fake --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.10 \
		--ip 203.0.113.62=198.51.100.10
	# the admin's own route for a failover IP of the guest
	ip -n "$NS" route add 203.0.113.61/32 dev vmbr1
	printf '203.0.113.60\n203.0.113.61\n203.0.113.62\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_line 'failoverip-up: 100: 203.0.113.61/32 already has a route on vmbr1 that pvekit did not add, left alone'
	assert_line 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5), 203.0.113.61 unchanged, 203.0.113.62 unchanged; host routes on vmbr1: 203.0.113.60/32, 203.0.113.62/32'
	# guest 101 claims .62 too
	pmxcfs-sim create "$PVE" pve1 qemu 101 >/dev/null
	echo 203.0.113.62 >"$PVEKIT_CONFIG_DIR/failoverip/101"
	VMID=101 run -0 up
	assert_line 'failoverip-up: 101: 203.0.113.62 unchanged; host routes on vmbr1: 203.0.113.62/32'

	: >"$IPLOG"
	EVENT=destroy run -0 down
	assert_output 'failoverip-down: 100: removed the host routes pvekit added: 203.0.113.60/32 dev vmbr1; kept 203.0.113.62/32 (guest 101 has it too)'
	run -0 ip_changes
	assert_output '-4 route del 203.0.113.60/32 dev vmbr1'
	run -0 routes_on vmbr1
	assert_output '203.0.113.61
203.0.113.62'
	VMID=101 run -0 down
	assert_output 'failoverip-down: 101: removed the host routes pvekit added: 203.0.113.62/32 dev vmbr1'
	run -0 routes_on vmbr1
	assert_output '203.0.113.61'
}

@test "route_dev off: no host routes, failoverip-down has nothing to do" {
	bridge_ns
	fake --ip 203.0.113.60=198.51.100.5
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5)'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output ''
	: >"$LOG"
	run -0 down
	assert_output "failoverip-down: 100: no host routes added for it, nothing to do"
	run -0 ip_changes
	assert_output ''
	[ ! -s "$LOG" ]
}

@test "failoverip-down on destroy needs neither the IP file nor the notes, and makes no request" {
	bridge_ns
	EXTRA='route_dev = vmbr1' fake --ip 203.0.113.60=198.51.100.5
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	rm "$PVEKIT_CONFIG_DIR/failoverip/100"
	# a route for an address in the kept config's notes that pvekit never added
	printf '#failoverip=203.0.113.60,203.0.113.70\nmemory: 512\n' >"$T/kept.conf"
	ip -n "$NS" route add 203.0.113.70/32 dev vmbr1
	: >"$LOG"
	run -0 in_ns env PATH="$T/bin:$PATH" IP_RECORDER_LOG="$IPLOG" PVEKIT_EVENT=destroy \
		PVEKIT_VMID=100 "$HOOKS/failoverip-down" "$T/kept.conf"
	assert_output 'failoverip-down: 100: removed the host routes pvekit added: 203.0.113.60/32 dev vmbr1'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output ''
	run -0 ip -n "$NS" route show 203.0.113.70/32
	assert_output --partial 'dev vmbr1'
	[ ! -s "$LOG" ]
}

@test "ip-recorder refuses to change the host's own routes" {
	run -2 env IP_RECORDER_LOG="$IPLOG" "$T/bin/ip" -4 route replace 192.0.2.1/32 dev lo
	assert_output "ip-recorder: refusing to change the host's network configuration: ip -4 route replace 192.0.2.1/32 dev lo"
	run -0 env IP_RECORDER_LOG="$IPLOG" "$T/bin/ip" -o addr show dev lo
	assert_output --partial '127.0.0.1/8'
	run -0 cat "$IPLOG"
	assert_output '-4 route replace 192.0.2.1/32 dev lo
REFUSED -4 route replace 192.0.2.1/32 dev lo
-o addr show dev lo'
}
