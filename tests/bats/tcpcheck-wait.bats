#!/usr/bin/env bats
# tcpcheck --wait: real listeners that open late, a port that stays closed,
# a blackholed port and a name with two addresses. Late ports live in a
# network namespace of the test's own, so their numbers are free there.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
}

teardown() {
	pvekit_teardown
}

# late_port NS PORT SECS: a listener on PORT in NS, SECS after $T/go exists
late_port() {
	start_bg bash -c "until [ -e '$T/go' ]; do sleep 0.02; done; sleep $3
		exec ip netns exec $1 socat TCP-LISTEN:$2,fork,reuseaddr /dev/null"
}

@test "tcpcheck --wait: ends as soon as every port is open, ports that open late included" {
	NS=$(netns_add wait)
	late_port "$NS" 8080 0.5
	late_port "$NS" 8443 1
	# not open yet: a check without --wait fails
	run -1 ip netns exec "$NS" tcpcheck 127.0.0.1 8080 8443
	assert_line --index 0 --regexp '^127.0.0.1 8080 closed [0-9]+$'
	touch "$T/go"
	# as soon as: a wait that went on to its 60 s would be ended by timeout(1)
	run -0 --separate-stderr timeout 20 ip netns exec "$NS" tcpcheck --wait 60 127.0.0.1 8080 8443
	assert_line --index 0 --regexp '^127.0.0.1 8080 open [0-9]+$'
	assert_line --index 1 --regexp '^127.0.0.1 8443 open [0-9]+$'
	assert_equal "${#lines[@]}" 2
	assert_equal "$stderr" "" # quietly: the refused tries say nothing
}

@test "tcpcheck --wait: at the deadline exits 2 naming the ports that stayed closed" {
	NS=$(netns_add closed)
	late_port "$NS" 8080 0
	touch "$T/go"
	run -2 --separate-stderr ip netns exec "$NS" tcpcheck --wait 1 127.0.0.1 8080 '[::1]:8081'
	assert_line --index 0 --regexp '^127.0.0.1 8080 open [0-9]+$'
	assert_line --index 1 "::1 8081 closed 1000"
	assert_equal "${stderr_lines[-1]}" "tcpcheck: not open after 1 s: [::1]:8081"
	grep -qx "tcpcheck: ::1 port 8081: Connection refused" <<<"$stderr"
	# the same from a list on stdin, as NDJSON
	run -2 --separate-stderr ip netns exec "$NS" tcpcheck --json --wait 0.5 <<<"127.0.0.1 8080 8081"
	jq -e '.port == 8080 and .state == "open" and .address == "127.0.0.1"' <<<"${lines[0]}"
	jq -e '.port == 8081 and .state == "closed" and .ms == 500
		and .error == "Connection refused"' <<<"${lines[1]}"
	assert_equal "${stderr_lines[-1]}" "tcpcheck: not open after 0.5 s: 127.0.0.1:8081"
}

@test "tcpcheck --wait: a blackholed port holds it to the deadline, never longer, whatever -t says" {
	start_bg "$TOP/bench/tcpcheck-ports" --blackhole 1 >"$T/ports"
	wait_until 20 grep -qx ready "$T/ports"
	port=$(awk '$1 == "blackhole" { print $2 }' "$T/ports")
	run -2 --separate-stderr timeout 8 tcpcheck --wait 1 -t 10000 127.0.0.1 "$port"
	assert_output "127.0.0.1 $port timeout 1000"
	run -64 --separate-stderr tcpcheck --wait 1 --any 127.0.0.1 "$port"
	assert_equal "${stderr_lines[0]}" "tcpcheck: --wait waits for every endpoint; it does not go with --any"
	run -64 --separate-stderr tcpcheck --watch --wait 1
	assert_equal "${stderr_lines[0]}" "tcpcheck: --all, --any, --quiet and --wait are for one-shot checks"
}

@test "tcpcheck --wait: a name with two addresses is open when one of them is; one that does not resolve is not waited for" {
	NS=$(netns_add dual)
	printf '127.0.0.1 dual\n::1 dual\n' >"$T/hosts"
	late_port "$NS" 8080 0.5 # socat TCP-LISTEN: IPv4 only, ::1 stays refused
	touch "$T/go"
	run -0 --separate-stderr timeout 20 ip netns exec "$NS" unshare -m sh -c \
		'mount --bind "$1" /etc/hosts && exec tcpcheck --wait 60 dual 8080' sh "$T/hosts"
	assert_output --regexp '^dual 8080 open [0-9]+$'
	run -2 --separate-stderr timeout 20 ip netns exec "$NS" unshare -m sh -c \
		'mount --bind "$1" /etc/hosts && exec tcpcheck --wait 60 dual 8080 nosuch.invalid 80' \
		sh "$T/hosts"
	assert_line --index 0 --regexp '^dual 8080 open [0-9]+$'
	assert_line --index 1 --regexp '^nosuch.invalid 80 closed [0-9]+$'
	assert_equal "${stderr_lines[-1]}" "tcpcheck: not open (no address to try): nosuch.invalid:80"
}
