#!/usr/bin/env bats
# tcpcheck one-shot: real sockets on loopback. Open ports are listeners,
# closed ports were bound and closed, blackholed ports are listeners whose
# accept queue is full, so the kernel drops the SYN and connect() hangs
# (bench/tcpcheck-ports verifies that before it says "ready").
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
}

teardown() {
	pvekit_teardown
}

# ports ARGS...: starts bench/tcpcheck-ports ARGS, fills OPEN CLOSED HOLE.
ports() {
	local f=$T/ports.$RANDOM
	start_bg "$TOP/bench/tcpcheck-ports" "$@" >"$f"
	wait_until 20 grep -qx ready "$f"
	mapfile -t OPEN < <(awk '$1 == "open" { print $2 }' "$f")
	mapfile -t CLOSED < <(awk '$1 == "closed" { print $2 }' "$f")
	mapfile -t HOLE < <(awk '$1 == "blackhole" { print $2 }' "$f")
}

@test "HOST PORT...: open, closed and timeout in operand order, exit 1 unless all open" {
	ports --open 1 --closed 1 --blackhole 1
	run -1 tcpcheck -t 300 127.0.0.1 "${OPEN[0]}" "${CLOSED[0]}" "${HOLE[0]}"
	assert_line -n 0 --regexp "^127\.0\.0\.1 ${OPEN[0]} open [0-9]+$"
	assert_line -n 1 --regexp "^127\.0\.0\.1 ${CLOSED[0]} closed [0-9]+$"
	assert_line -n 2 --regexp "^127\.0\.0\.1 ${HOLE[0]} timeout [0-9]+$"
	assert_equal "${#lines[@]}" 3
}

@test "all open: exit 0; --any: exit 0 with one open, 1 with none" {
	ports --open 2 --closed 2
	run -0 tcpcheck 127.0.0.1 "${OPEN[0]}" "${OPEN[1]}"
	assert_equal "${#lines[@]}" 2
	run -0 tcpcheck --any 127.0.0.1 "${CLOSED[0]}" "${OPEN[1]}"
	assert_line -n 0 --partial "${CLOSED[0]} closed"
	run -1 tcpcheck --any 127.0.0.1 "${CLOSED[0]}" "${CLOSED[1]}"
	run -1 tcpcheck --all 127.0.0.1 "${CLOSED[0]}" "${OPEN[1]}"
}

@test "HOST:PORT and [v6]:PORT operands, IPv6 on ::1, several hosts in one run" {
	ports --open 1
	local v4=${OPEN[0]}
	ports --host ::1 --open 1 --closed 1
	run -1 tcpcheck "127.0.0.1:$v4" "[::1]:${OPEN[0]}" ::1 "${CLOSED[0]}" 127.0.0.1 "$v4"
	assert_line -n 0 --regexp "^127\.0\.0\.1 $v4 open "
	assert_line -n 1 --regexp "^::1 ${OPEN[0]} open "
	assert_line -n 2 --regexp "^::1 ${CLOSED[0]} closed "
	assert_line -n 3 --regexp "^127\.0\.0\.1 $v4 open "
}

@test "a name resolves before connecting; an unknown one is closed with the reason" {
	ports --open 1
	run -0 tcpcheck --json localhost "${OPEN[0]}"
	# localhost may be ::1 first; the endpoint is open if any address is.
	assert_equal "$(jq -r '.state + " " + .host' <<<"$output")" "open localhost"
	run -1 tcpcheck nosuch.invalid 80
	assert_line --regexp "^nosuch\.invalid 80 closed [0-9]+$"
	assert_line --partial "tcpcheck: nosuch.invalid port 80:"
}

@test "a list on stdin: one endpoint or HOST PORT... per line, comments and blanks skipped" {
	ports --open 2 --closed 1
	printf '# health list\n127.0.0.1 %s %s\n\n127.0.0.1:%s  # db\n' \
		"${OPEN[0]}" "${OPEN[1]}" "${CLOSED[0]}" >"$T/list"
	run -1 tcpcheck <"$T/list"
	assert_equal "${#lines[@]}" 3
	assert_line -n 0 --partial "${OPEN[0]} open"
	assert_line -n 1 --partial "${OPEN[1]} open"
	assert_line -n 2 --partial "${CLOSED[0]} closed"
}

@test "unparsable endpoints: exit 65 naming the operand or the stdin line, nothing checked" {
	run -65 tcpcheck 127.0.0.1 70000
	assert_output --partial "70000: bad port"
	run -65 tcpcheck 127.0.0.1
	assert_output --partial "127.0.0.1: no port given"
	run -65 tcpcheck 22
	assert_output --partial "a port without a host"
	run -65 tcpcheck '[::1:22'
	assert_output --partial "want [ADDRESS]:PORT"
	run -65 tcpcheck host:0
	printf '127.0.0.1 22\nhost:x\n' >"$T/list"
	run -65 tcpcheck <"$T/list"
	assert_output "tcpcheck: stdin:2: host:x: bad port (1-65535)"
	run -65 tcpcheck </dev/null
	assert_output --partial "no endpoints"
}

@test "usage errors exit 64; -h and -V exit 0" {
	run -64 tcpcheck --bogus
	run -64 tcpcheck -t 0 127.0.0.1 22
	run -64 tcpcheck --watch 127.0.0.1 22
	run -64 tcpcheck --watch --any
	run -64 tcpcheck --config-dir /tmp 127.0.0.1 22
	run -0 tcpcheck -h
	assert_output --partial "usage: tcpcheck"
	run -0 tcpcheck -V
	assert_output --regexp "^tcpcheck [0-9]"
}

@test "one deadline for the whole run: 100 blackholed ports all time out near it" {
	ports --blackhole 100 --open 1
	run -1 tcpcheck -t 400 127.0.0.1 "${HOLE[@]}" "${OPEN[0]}"
	assert_equal "${#lines[@]}" 101
	assert_line -n 100 --regexp " ${OPEN[0]} open [0-9]+$"
	# Every blackholed connect ends at the deadline, not one after another.
	run awk '$3 != "timeout" { next } { n++ } $4 < 390 || $4 > 3000 { bad++ }
		END { print n + 0, bad + 0 }' <<<"$output"
	assert_output "100 0"
}

# no_raise CMD...: runs CMD with an open-files limit of 128 that it cannot
# raise (no CAP_SYS_RESOURCE): 64 sockets in flight, 64 kept for the rest.
no_raise() {
	bash -c 'ulimit -n 128 && exec setpriv --inh-caps=-sys_resource \
		--bounding-set=-sys_resource "$@"' _ "$@"
}

@test "more endpoints than open files allow: the rest wait for a slot, all answered" {
	ports --open 40
	local list=()
	for p in "${OPEN[@]}"; do list+=("$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p"); done
	run -0 no_raise tcpcheck 127.0.0.1 "${list[@]}"
	assert_equal "${#lines[@]}" 320
	refute_line --partial " closed "
}

@test "the open-files limit is raised past its hard limit to what the run needs: no endpoint waits behind hung ones" {
	local eff
	eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
	(((0x$eff >> 24) & 1)) || skip "no CAP_SYS_RESOURCE here: a hard limit cannot be raised"
	ports --blackhole 100 --open 1
	# a hard limit of 90, which root may raise
	run -1 --separate-stderr bash -c 'ulimit -n 90 && exec tcpcheck -t 400 127.0.0.1 "$@"' _ "${HOLE[@]}" "${OPEN[0]}"
	assert_equal "${#lines[@]}" 101
	assert_line -n 100 --regexp " ${OPEN[0]} open [0-9]+$"
	assert_equal "$(grep -c ' timeout ' <<<"$output")" 100
	assert_equal "$stderr" ""
}

@test "endpoints not tried before the deadline are untried, not timeout: exit 2 unless the answer is known" {
	ports --blackhole 70 --open 1
	# 64 sockets: the first 64 hung ports hold them to the deadline
	run -1 --separate-stderr no_raise tcpcheck -t 300 127.0.0.1 "${HOLE[@]}" "${OPEN[0]}"
	assert_equal "${#lines[@]}" 71
	assert_equal "$(head -64 <<<"$output" | grep -c ' timeout [0-9]*$')" 64
	assert_equal "$(tail -7 <<<"$output" | grep -c ' untried [0-9]*$')" 7
	assert_line -n 70 --regexp "^127\.0\.0\.1 ${OPEN[0]} untried [0-9]+$"
	assert_equal "$stderr" "tcpcheck: 7 endpoints not tried before the deadline: at most 64 connections at once (open-files limit 128)"
	# --any: nothing open among those tried, the untried one might be
	run -2 no_raise tcpcheck -q --any -t 300 127.0.0.1 "${HOLE[@]}" "${OPEN[0]}"
	run -2 --separate-stderr no_raise tcpcheck --json --any -t 300 127.0.0.1 "${HOLE[@]}" "${OPEN[0]}"
	assert_equal "$(jq -sc 'map(.state) | group_by(.) | map([.[0], length])' <<<"$output")" \
		'[["timeout",64],["untried",7]]'
	# open first: known healthy with --any whatever was not tried
	run -0 no_raise tcpcheck -q --any -t 300 127.0.0.1 "${OPEN[0]}" "${HOLE[@]}"
}

@test "answers already in when the deadline passes count: closed ports are never timeout" {
	ports --closed 1
	local list=() i
	for ((i = 0; i < 2000; i++)); do list+=("${CLOSED[0]}"); done
	# 1 ms: the connects themselves outlast the deadline; each one started
	# was refused at once (loopback), each one not started is untried
	run --separate-stderr tcpcheck -t 1 127.0.0.1 "${list[@]}"
	assert_equal "${#lines[@]}" 2000
	refute_line --partial " timeout "
	assert_equal "$(grep -cE ' (closed|untried) [0-9]+$' <<<"$output")" 2000
	if grep -q ' untried ' <<<"$output"; then
		assert_equal "$status" 2
	else
		assert_equal "$status" 1
	fi
}

@test "--json prints one object per endpoint; -q prints nothing" {
	ports --open 1 --closed 1
	run -1 tcpcheck --json 127.0.0.1 "${OPEN[0]}" "${CLOSED[0]}"
	assert_equal "$(jq -sc 'map([.port, .state, .address])' <<<"$output")" \
		"[[${OPEN[0]},\"open\",\"127.0.0.1\"],[${CLOSED[0]},\"closed\",\"127.0.0.1\"]]"
	assert_equal "$(jq -s '.[1].error' <<<"$output")" '"Connection refused"'
	run -1 tcpcheck -q 127.0.0.1 "${CLOSED[0]}"
	assert_output ""
	run -0 tcpcheck -q 127.0.0.1 "${OPEN[0]}"
	assert_output ""
}
