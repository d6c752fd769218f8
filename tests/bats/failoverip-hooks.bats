#!/usr/bin/env bats
# share/hooks/failoverip-up and failoverip-down: real failoverip-set against
# the Hetzner fake, real host routes inside a network namespace.
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
	export PVEKIT_CONFIG_DIR=$T/pvekit PVEKIT_FAILOVERIP_CONF=$CONF
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

up() {
	PVEKIT_EVENT=${EVENT:-migrate-in} PVEKIT_VMID=100 PVEKIT_CONFIG=$GUEST \
		in_ns "$HOOKS/failoverip-up" "$GUEST"
}

down() {
	PVEKIT_EVENT=${EVENT:-migrate-out} PVEKIT_VMID=100 PVEKIT_CONFIG=$GUEST \
		in_ns "$HOOKS/failoverip-down" "$GUEST"
}

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

@test "route_dev on: failoverip-up adds host routes, failoverip-down removes only them" {
	bridge_ns
	EXTRA=$'route_dev = vmbr1\ndestination6 = 2a01:4f8:222:5176::' \
		fake --ip 203.0.113.60=198.51.100.5 --ip 2001:db8:0:1::/64=2a01:4f8:222:5176::
	printf '203.0.113.60\n2001:db8:0:1::/64\n' >"$PVEKIT_CONFIG_DIR/failoverip/100"
	# someone else's route for the same address on another device
	ip -n "$NS" route add 203.0.113.60/32 dev vmbr9 metric 50
	ip -n "$NS" route add 203.0.113.77/32 dev vmbr1
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5), 2001:db8:0:1::/64 unchanged; host routes on vmbr1'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_line --partial '203.0.113.60 dev vmbr1'
	assert_line --partial '203.0.113.60 dev vmbr9'
	run -0 ip -n "$NS" -6 route show 2001:db8:0:1::/64
	assert_output --partial 'dev vmbr1'
	# a repeat replaces, it does not pile up
	run -0 up
	[ "$(ip -n "$NS" route show 203.0.113.60/32 dev vmbr1 | wc -l)" -eq 1 ]

	run -0 down
	assert_output 'failoverip-down: 100: removed host routes on vmbr1: 203.0.113.60/32, 2001:db8:0:1::/64'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output --partial 'dev vmbr9'
	refute_output --partial 'dev vmbr1'
	run -0 ip -n "$NS" -6 route show 2001:db8:0:1::/64
	assert_output ''
	run -0 ip -n "$NS" route show 203.0.113.77/32
	assert_output --partial 'dev vmbr1'
	# nothing left to remove is fine
	run -0 down
	assert_output 'failoverip-down: 100: no host routes on vmbr1 to remove'
}

@test "route_dev off: no host routes, failoverip-down has nothing to do" {
	bridge_ns
	fake --ip 203.0.113.60=198.51.100.5
	echo 203.0.113.60 >"$PVEKIT_CONFIG_DIR/failoverip/100"
	run -0 up
	assert_output 'failoverip-up: 100: 203.0.113.60 routed (was 198.51.100.5)'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output ''
	run -0 down
	assert_output "failoverip-down: 100: route handling is off (no route_dev= in $CONF), nothing to do"
}

@test "failoverip-down on destroy uses the kept config's notes when the IP file is gone" {
	bridge_ns
	EXTRA='route_dev = vmbr1' fake --ip 203.0.113.60=198.51.100.5
	printf '#failoverip=203.0.113.60\nmemory: 512\n' >"$T/kept.conf"
	ip -n "$NS" route add 203.0.113.60/32 dev vmbr1
	EVENT=destroy run -0 in_ns env PVEKIT_EVENT=destroy PVEKIT_VMID=100 \
		"$HOOKS/failoverip-down" "$T/kept.conf"
	assert_output 'failoverip-down: 100: removed host routes on vmbr1: 203.0.113.60/32'
	run -0 ip -n "$NS" route show 203.0.113.60/32
	assert_output ''
	[ ! -s "$LOG" ]
}
