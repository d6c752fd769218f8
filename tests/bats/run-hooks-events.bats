# run-hooks --events: dispatch of pve-watch-conf lines to up.d/down.d, the
# hooks' argument and environment, order per guest, parallelism across
# guests, bad input, timeouts, and the journal across kill -9 and SIGTERM.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	H=$T/hooks
	S=$T/state
	mkdir -p "$H/up.d" "$H/down.d"
}
teardown() {
	umount "$T/full" 2>/dev/null || true
	pvekit_teardown
}

# hook DIR/NAME BODY...: an executable sh script.
hook() {
	local f=$1
	shift
	printf '#!/bin/sh\n%s\n' "$@" >"$f"
	chmod +x "$f"
}

# events [OPTIONS]: run-hooks --events on our hook tree and state dir.
events() {
	run-hooks --events "$H" --state-dir "$S" --node pve1 "$@"
}

# events_bg [OPTIONS]: run-hooks --events in the background, reading a fifo
# that the test writes through fd 7; closing fd 7 is EOF. Sets $pid.
events_bg() {
	mkfifo "$T/in"
	exec 7<>"$T/in"
	start_bg exec_with_stdin "$T/in" run-hooks --events "$H" --state-dir "$S" --node pve1 "$@"
	pid=$BG_PID
}

# A background job's stdin is /dev/null unless redirected in the job itself.
exec_with_stdin() {
	local f=$1
	shift
	exec "$@" <"$f" 7>&-
}

# A hook that records its directory, argument and environment, one line.
dump_hook() {
	hook "$1" 'printf "%s %s argc=%s arg=[%s] event=%s vmid=%s type=%s node=%s peer=[%s] config=[%s]\n" \
		"$(basename "$(dirname "$0")")" "$(basename "$0")" $# "$1" "$PVEKIT_EVENT" "$PVEKIT_VMID" \
		"$PVEKIT_TYPE" "$PVEKIT_NODE" "$PVEKIT_PEER" "$PVEKIT_CONFIG" >>'"$T/log"
}

@test "each event runs up.d or down.d with CONF as the one argument and the PVEKIT_ environment" {
	dump_hook "$H/up.d/10-dump"
	dump_hook "$H/down.d/10-dump"
	cat >"$T/in" <<-EOF
		create 100 qemu - /etc/pve/nodes/pve1/qemu-server/100.conf
		migrate-in 101 lxc pve2 /etc/pve/nodes/pve1/lxc/101.conf
		migrate-out 102 qemu pve3 /etc/pve/nodes/pve3/qemu-server/102.conf
		destroy 103 lxc - $S/watch/copies/with space/103.conf
	EOF
	run -0 --separate-stderr events --jobs 1 <"$T/in"
	assert_output ''
	run cat "$T/log"
	assert_output - <<-EOF
		up.d 10-dump argc=1 arg=[/etc/pve/nodes/pve1/qemu-server/100.conf] event=create vmid=100 type=qemu node=pve1 peer=[] config=[/etc/pve/nodes/pve1/qemu-server/100.conf]
		up.d 10-dump argc=1 arg=[/etc/pve/nodes/pve1/lxc/101.conf] event=migrate-in vmid=101 type=lxc node=pve1 peer=[pve2] config=[/etc/pve/nodes/pve1/lxc/101.conf]
		down.d 10-dump argc=1 arg=[/etc/pve/nodes/pve3/qemu-server/102.conf] event=migrate-out vmid=102 type=qemu node=pve1 peer=[pve3] config=[/etc/pve/nodes/pve3/qemu-server/102.conf]
		down.d 10-dump argc=1 arg=[$S/watch/copies/with space/103.conf] event=destroy vmid=103 type=lxc node=pve1 peer=[] config=[$S/watch/copies/with space/103.conf]
	EOF
}

@test "PVEKIT_NODE defaults to uname -n cut at the first dot; our variables replace inherited ones" {
	hook "$H/up.d/10-env" "env | grep '^PVEKIT_' | sort >$T/env"
	echo 'create 100 qemu - /c' | env -u PVEKIT_BUILD -u PVEKIT_SANITIZED PVEKIT_VMID=999 PVEKIT_OTHER=kept \
		run-hooks --events "$H" --state-dir "$S"
	run cat "$T/env"
	assert_output - <<-EOF
		PVEKIT_CONFIG=/c
		PVEKIT_EVENT=create
		PVEKIT_NODE=$(uname -n | cut -d. -f1)
		PVEKIT_OTHER=kept
		PVEKIT_PEER=
		PVEKIT_TYPE=qemu
		PVEKIT_VMID=100
	EOF
}

@test "the hooks of a directory run in strcmp order; their output is logged line by line" {
	hook "$H/up.d/20-second" 'echo second; echo "to stderr" >&2; printf "no newline"'
	hook "$H/up.d/10-first" 'echo first'
	hook "$H/down.d/10-fail" 'echo failing' 'exit 3'
	hook "$H/down.d/20-after" 'echo after'
	printf 'create 100 qemu - /c\ndestroy 101 lxc - /d\n' >"$T/in"
	run -1 --separate-stderr events --jobs 1 <"$T/in"
	assert_output ''
	output=$(printf '%s\n' "$stderr" | sed 's/([0-9.]* s)$/(T)/')
	assert_output - <<-EOF
		run-hooks: VM 100 create: 2 hooks in $H/up.d
		run-hooks: VM 100 create: up.d/10-first: first
		run-hooks: VM 100 create: up.d/10-first: ok (T)
		run-hooks: VM 100 create: up.d/20-second: second
		run-hooks: VM 100 create: up.d/20-second: to stderr
		run-hooks: VM 100 create: up.d/20-second: no newline
		run-hooks: VM 100 create: up.d/20-second: ok (T)
		run-hooks: CT 101 destroy: 2 hooks in $H/down.d
		run-hooks: CT 101 destroy: down.d/10-fail: failing
		run-hooks: CT 101 destroy: down.d/10-fail: exited with return code 3 (T)
		run-hooks: CT 101 destroy: down.d/20-after: after
		run-hooks: CT 101 destroy: down.d/20-after: ok (T)
	EOF
}

@test "a long output line is logged in pieces; control characters show as ?" {
	hook "$H/up.d/10-long" 'printf "%04000d\n" 0 | tr 0 x' 'printf "a\tb\n"'
	run -0 --separate-stderr events <<<'create 100 qemu - /c'
	n=$(printf '%s\n' "$stderr" | grep -c '^run-hooks: VM 100 create: up.d/10-long: x*$')
	[ "$n" = 3 ]
	[ "$(printf '%s\n' "$stderr" | sed -n 's/^run-hooks: VM 100 create: up.d\/10-long: //p' |
		grep -o 'x' | wc -l)" = 4000 ]
	[[ $stderr == *"up.d/10-long: a?b"* ]]
}

@test "a NUL byte in a hook's output shows as ? like any control byte: nothing after it is cut" {
	hook "$H/up.d/10-nul" 'printf "abc\0SECRET\001ghi\n"' 'printf "\0\0x\n"'
	run -0 --separate-stderr events <<<'create 100 qemu - /c'
	[[ $stderr == *"run-hooks: VM 100 create: up.d/10-nul: abc?SECRET?ghi"$'\n'* ]]
	[[ $stderr == *"run-hooks: VM 100 create: up.d/10-nul: ??x"$'\n'* ]]
}

@test "a missing up.d is said once when read, and once per event" {
	rmdir "$H/up.d"
	run -0 --separate-stderr events <<<$'create 100 qemu - /c\ncreate 101 qemu - /c'
	assert_equal "$stderr" "run-hooks: $H/up.d: No such file or directory; its events run no hooks until it exists
run-hooks: VM 100 create: no hooks: $H/up.d does not exist
run-hooks: VM 101 create: no hooks: $H/up.d does not exist"
}

@test "--exit-on-error stops an event's remaining hooks, not the other events" {
	hook "$H/up.d/10-fail" 'exit 2'
	hook "$H/up.d/20-next" "echo \$PVEKIT_VMID >>$T/ran"
	printf 'create 100 qemu - /c\ncreate 101 qemu - /d\n' >"$T/in"
	run -1 events --exit-on-error <"$T/in"
	[ ! -e "$T/ran" ]
	run -1 events <"$T/in"
	[ "$(sort "$T/ran")" = "$(printf '100\n101')" ]
}

@test "malformed lines: one error naming stdin's line each, skipped; the others run; exit 65" {
	dump_hook "$H/up.d/10-dump"
	{
		echo 'create 100 qemu - /ok/100.conf'
		echo 'moved 101 qemu - /x'
		echo 'create abc qemu - /x'
		echo 'create 0100 qemu - /x'
		echo 'create 102 kvm - /x'
		echo 'create 103 qemu -'
		echo 'create 104'
		echo ''
		printf 'create 105 qemu - /x\0y\n'
		printf 'create 106 qemu - /%s\n' "$(head -c 20000 /dev/zero | tr '\0' a)"
		echo 'create 107 qemu  /x'
		echo 'migrate-in 108 lxc pve2 /ok/108.conf'
	} >"$T/in"
	run -65 --separate-stderr events --jobs 1 <"$T/in"
	errors=$(printf '%s\n' "$stderr" | grep -v ': VM 100 \|: CT 108 ')
	[ "$errors" = "$(
		cat <<-'EOF'
			run-hooks: stdin:2: unknown event "moved"; skipped
			run-hooks: stdin:3: bad VMID "abc"; skipped
			run-hooks: stdin:4: bad VMID "0100"; skipped
			run-hooks: stdin:5: unknown type "kvm", want qemu or lxc; skipped
			run-hooks: stdin:6: want "EVENT VMID TYPE PEER CONF"; skipped
			run-hooks: stdin:7: want "EVENT VMID TYPE PEER CONF"; skipped
			run-hooks: stdin:8: want "EVENT VMID TYPE PEER CONF"; skipped
			run-hooks: stdin:9: NUL byte in line; skipped
			run-hooks: stdin:10: line longer than 16384 bytes; skipped
			run-hooks: stdin:11: want "EVENT VMID TYPE PEER CONF"; skipped
		EOF
	)" ]
	run cut -d' ' -f1-6 "$T/log"
	assert_output - <<-'EOF'
		up.d 10-dump argc=1 arg=[/ok/100.conf] event=create vmid=100
		up.d 10-dump argc=1 arg=[/ok/108.conf] event=migrate-in vmid=108
	EOF
}

@test "a last line without its newline is taken at EOF" {
	dump_hook "$H/up.d/10-dump"
	run -0 events < <(printf 'create 100 qemu - /c')
	run cut -d' ' -f1-6 "$T/log"
	assert_output 'up.d 10-dump argc=1 arg=[/c] event=create vmid=100'
}

@test "HOOKS missing or not a directory: one error, exit 78" {
	run -78 --separate-stderr run-hooks --events "$T/nowhere" --state-dir "$S" </dev/null
	[ "$stderr" = "run-hooks: $T/nowhere: No such file or directory" ]
	: >"$T/file"
	run -78 --separate-stderr run-hooks --events "$T/file" --state-dir "$S" </dev/null
	[ "$stderr" = "run-hooks: $T/file: not a directory" ]
}

@test "up.d missing: a warning at start, its events run no hooks, down.d still works" {
	rmdir "$H/up.d"
	dump_hook "$H/down.d/10-dump"
	printf 'create 100 qemu - /c\ndestroy 100 qemu - /c\n' >"$T/in"
	run -0 --separate-stderr events <"$T/in"
	[ "$(printf '%s\n' "$stderr" | head -n1)" = "run-hooks: $H/up.d: No such file or directory; its events run no hooks until it exists" ]
	[[ $stderr == *"VM 100 create: no hooks: $H/up.d does not exist"* ]]
	run cut -d' ' -f1-6 "$T/log"
	assert_output 'down.d 10-dump argc=1 arg=[/c] event=destroy vmid=100'
}

@test "names run-parts skips (dots, spaces, newlines) are not run and named once at start" {
	dump_hook "$H/up.d/10-dump"
	for n in a.sh 'with space' "$(printf 'new\nline')" .hidden foo.dpkg-old; do
		hook "$H/up.d/$n" "echo \"$n\" >>$T/wrong"
	done
	printf 'not executable\n' >"$H/up.d/notes.txt"
	run -0 --separate-stderr events <<<'create 100 qemu - /c'
	[ ! -e "$T/wrong" ]
	warnings=$(printf '%s\n' "$stderr" | grep 'not run:' | sort)
	[ "$warnings" = "$(
		cat <<-EOF
			run-hooks: $H/up.d/a.sh: not run: the name does not match the hook name rule
			run-hooks: $H/up.d/foo.dpkg-old: not run: the name does not match the hook name rule
			run-hooks: $H/up.d/new?line: not run: the name does not match the hook name rule
			run-hooks: $H/up.d/with space: not run: the name does not match the hook name rule
		EOF
	)" ]
	# --regex widens the rule, as with run-parts
	run -0 events --regex '^[a-z0-9.]+$' <<<'create 100 qemu - /c'
	[ "$(sort "$T/wrong")" = "$(printf '.hidden\na.sh')" ]
}

@test "events of one guest run one after the other, in the order read" {
	hook "$H/up.d/10-seq" "echo \"\$PVEKIT_VMID start \$PVEKIT_EVENT\" >>$T/log; sleep 0.05" \
		"echo \"\$PVEKIT_VMID end \$PVEKIT_EVENT\" >>$T/log"
	cp "$H/up.d/10-seq" "$H/down.d/10-seq"
	cat >"$T/in" <<-'EOF'
		create 100 qemu - /c
		create 200 qemu - /c
		migrate-out 100 qemu pve2 /c
		migrate-in 100 qemu pve2 /c
		destroy 200 qemu - /c
		migrate-out 100 qemu pve3 /c
		destroy 100 qemu - /c
	EOF
	run -0 events --jobs 4 <"$T/in"
	run grep '^100 ' "$T/log"
	assert_output - <<-'EOF'
		100 start create
		100 end create
		100 start migrate-out
		100 end migrate-out
		100 start migrate-in
		100 end migrate-in
		100 start migrate-out
		100 end migrate-out
		100 start destroy
		100 end destroy
	EOF
	run grep '^200 ' "$T/log"
	assert_output "$(printf '200 start create\n200 end create\n200 start destroy\n200 end destroy')"
}

# barrier_hook FILE SECS: meets the other guests' hooks at a barrier; prints
# "together" when all of $PEERS arrived within SECS, else "alone".
barrier_hook() {
	hook "$1" "touch $T/at.\$PVEKIT_VMID" \
		"i=0; while [ \$i -lt $(($2 * 50)) ]; do" \
		"  ok=1; for p in \$PEERS; do [ -e $T/at.\$p ] || ok=; done" \
		"  [ -n \"\$ok\" ] && { echo \"\$PVEKIT_VMID together\" >>$T/log; exit 0; }" \
		"  sleep 0.02; i=\$((i + 1)); done" \
		"echo \"\$PVEKIT_VMID alone\" >>$T/log"
}

@test "different guests run in parallel (a barrier only both can pass)" {
	barrier_hook "$H/up.d/10-barrier" 30
	printf 'create 200 qemu - /c\ncreate 201 lxc - /d\n' >"$T/in"
	PEERS="200 201" run -0 events --jobs 2 <"$T/in"
	run sort "$T/log"
	assert_output "$(printf '200 together\n201 together')"
}

@test "--jobs 1 runs one guest at a time" {
	barrier_hook "$H/up.d/10-barrier" 1
	printf 'create 200 qemu - /c\ncreate 201 lxc - /d\n' >"$T/in"
	PEERS="200 201" run -0 events --jobs 1 <"$T/in"
	run cat "$T/log"
	assert_output "$(printf '200 alone\n201 together')"
}

@test "--jobs N bounds how many guests run at once" {
	hook "$H/up.d/10-count" \
		"exec 9>$T/lock" \
		"flock 9; n=\$((\$(cat $T/n 2>/dev/null || echo 0) + 1)); echo \$n >$T/n" \
		"[ \$n -gt \$(cat $T/max 2>/dev/null || echo 0) ] && echo \$n >$T/max; flock -u 9" \
		"sleep 0.1" \
		"flock 9; echo \$((\$(cat $T/n) - 1)) >$T/n; echo \$PVEKIT_VMID >>$T/ran; flock -u 9"
	for v in 301 302 303 304 305 306 307; do echo "create $v qemu - /c"; done >"$T/in"
	run -0 events --jobs 2 <"$T/in"
	[ "$(wc -l <"$T/ran")" = 7 ]
	[ "$(cat "$T/max")" -le 2 ]
}

@test "hooks read /dev/null, never the events" {
	hook "$H/up.d/10-cat" "cat >>$T/stdin; echo \$PVEKIT_VMID >>$T/ran"
	printf 'create 100 qemu - /c\ncreate 101 qemu - /c\ncreate 102 qemu - /c\n' >"$T/in"
	run -0 events --jobs 1 <"$T/in"
	[ ! -s "$T/stdin" ]
	[ "$(cat "$T/ran")" = "$(printf '100\n101\n102')" ]
}

@test "--timeout: a hung hook and its children are killed; that guest's next event and other guests still run" {
	u=$$$RANDOM
	hook "$H/up.d/10-hang" "[ \$PVEKIT_VMID = 300 ] || exit 0" \
		"setsid sleep 1010.$u </dev/null >/dev/null 2>&1 &" "sleep 1011.$u"
	dump_hook "$H/down.d/10-dump"
	printf 'create 300 qemu - /c\ndestroy 300 qemu - /c\ncreate 301 qemu - /d\n' >"$T/in"
	run -1 --separate-stderr events --timeout 0.5 <"$T/in"
	[[ $stderr == *"VM 300 create: up.d/10-hang: timed out after 0.5 s, exited because of uncaught signal 15 ("* ]]
	[[ $stderr == *"VM 301 create: up.d/10-hang: ok ("* ]]
	run cut -d' ' -f1-6 "$T/log"
	assert_output 'down.d 10-dump argc=1 arg=[/c] event=destroy vmid=300'
	run ! pgrep -f "sleep 101[01][.]$u"
}

@test "EOF: running hooks finish before run-hooks exits" {
	hook "$H/up.d/10-slow" "sleep 0.3; touch $T/done"
	run -0 events </dev/null
	run -0 events <<<'create 100 qemu - /c'
	[ -e "$T/done" ]
	[ ! -s "$S/run-hooks/journal" ]
}

@test "journal: after kill -9 mid-hook the unfinished events run again, the finished ones do not" {
	u=$$$RANDOM
	hook "$H/up.d/10-rec" "echo \"\$PVEKIT_VMID \$1\" >>$T/log" \
		"[ \$PVEKIT_VMID = 101 ] && [ -e $T/block ] && exec sleep 1012.$u" "exit 0"
	touch "$T/block"
	events_bg --jobs 1
	printf 'create 100 qemu - /c100\ncreate 101 qemu - /c101\ncreate 102 qemu - /c102\n' >&7
	wait_until 10 grep -q '^101 ' "$T/log"
	pgrep -f "sleep 1012[.]$u"
	kill -KILL "$pid"
	exec 7>&-
	# the hook does not outlive run-hooks
	wait_until 10 bash -c "! pgrep -f 'sleep 1012[.]$u'"
	rm "$T/block"
	run -0 --separate-stderr events --jobs 1 </dev/null
	[[ $stderr == *"replaying 2 unfinished events from $S/run-hooks/journal"* ]]
	run cat "$T/log"
	assert_output - <<-'EOF'
		100 /c100
		101 /c101
		101 /c101
		102 /c102
	EOF
	[ ! -s "$S/run-hooks/journal" ]
	run -0 events </dev/null
	[ "$(wc -l <"$T/log")" = 4 ]
}

@test "SIGTERM: events already written are kept, the running hook is stopped; all run on the next start" {
	u=$$$RANDOM
	hook "$H/up.d/10-rec" "echo \"\$PVEKIT_VMID start \$PVEKIT_EVENT\" >>$T/log" \
		"[ -e $T/block ] && exec sleep 1013.$u" "echo \"\$PVEKIT_VMID end \$PVEKIT_EVENT\" >>$T/log"
	cp "$H/up.d/10-rec" "$H/down.d/10-rec"
	touch "$T/block"
	events_bg --jobs 1
	echo 'create 100 qemu - /c' >&7
	wait_until 10 grep -q '100 start' "$T/log"
	# these wait in the pipe, unread, when the signal comes
	kill -STOP "$pid"
	printf 'destroy 100 qemu - /c\ncreate 101 qemu - /d\n' >&7
	kill -TERM "$pid"
	kill -CONT "$pid"
	rc=0
	wait "$pid" || rc=$?
	exec 7>&-
	[ "$rc" = 0 ]
	run ! pgrep -f "sleep 1013[.]$u"
	run cat "$S/run-hooks/journal"
	assert_output - <<-'EOF'
		E 1 create 100 qemu - /c
		E 2 destroy 100 qemu - /c
		E 3 create 101 qemu - /d
	EOF
	rm "$T/block"
	: >"$T/log"
	run -0 events --jobs 1 </dev/null
	run grep '^100 ' "$T/log"
	assert_output - <<-'EOF'
		100 start create
		100 end create
		100 start destroy
		100 end destroy
	EOF
	run grep '^101 ' "$T/log"
	assert_output "$(printf '101 start create\n101 end create')"
}

@test "journal: damaged entries are dropped with a warning, the rest replayed" {
	hook "$H/up.d/10-rec" "echo \"\$PVEKIT_VMID \$1\" >>$T/log"
	mkdir -p "$S/run-hooks"
	printf '%s\n' 'E 1 create 100 qemu - /a' 'garbage' 'E 2 create 101 qemu - /b' 'D 1' \
		'E 3 bogus 102 qemu - /c' >"$S/run-hooks/journal"
	printf 'E 4 create 103 qe' >>"$S/run-hooks/journal"
	run -0 --separate-stderr events </dev/null
	[[ $stderr == *"run-hooks: $S/run-hooks/journal:2: malformed entry, dropped"* ]]
	[[ $stderr == *"run-hooks: $S/run-hooks/journal: entry 3: unknown event \"bogus\"; skipped"* ]]
	[[ $stderr == *"run-hooks: $S/run-hooks/journal: dropping an incomplete last entry"* ]]
	[[ $stderr == *"replaying 1 unfinished event from"* ]]
	run cat "$T/log"
	assert_output '101 /b'
	[ ! -s "$S/run-hooks/journal" ]
}

@test "a second run-hooks on the same state dir exits 75; an unusable state dir exits 71" {
	events_bg
	wait_until 10 test -e "$S/run-hooks/journal" # written once the lock is ours
	run -75 --separate-stderr events </dev/null
	[ "$stderr" = "run-hooks: $S/run-hooks: in use by another run-hooks --events" ]
	exec 7>&-
	: >"$T/file"
	run -71 --separate-stderr run-hooks --events "$H" --state-dir "$T/file" </dev/null
	[[ $stderr == "run-hooks: $T/file/run-hooks: Not a directory" ]]
}

@test "a burst of 1,000 events: each runs exactly once, in order per guest" {
	hook "$H/up.d/10-rec" "echo \"\$PVEKIT_VMID \$PVEKIT_EVENT \$1\" >>$T/log.\$PVEKIT_VMID"
	cp "$H/up.d/10-rec" "$H/down.d/10-rec"
	awk 'BEGIN { for (i = 0; i < 1000; i++) {
		v = 1000 + i % 50; n = int(i / 50)
		printf "%s %d qemu %s /c/%d\n", (n % 2 ? "migrate-out" : "migrate-in"), v, "pve2", n } }' >"$T/in"
	run -0 events --jobs 8 <"$T/in"
	[ "$(cat "$T"/log.* | wc -l)" = 1000 ]
	for v in 1000 1025 1049; do
		expected=$(awk -v v="$v" '$2 == v { print $2, $1, $5 }' "$T/in")
		[ "$(cat "$T/log.$v")" = "$expected" ]
	done
	[ ! -s "$S/run-hooks/journal" ]
}

@test "a journal that cannot be written: one error, hooks still run, and it recovers" {
	mkdir "$T/full"
	mount -t tmpfs -o size=8k tmpfs "$T/full" 2>/dev/null || skip "cannot mount a tmpfs here"
	mkdir "$T/full/run-hooks"
	dd if=/dev/zero of="$T/full/filler" bs=1k count=64 2>/dev/null || true
	hook "$H/up.d/10-rec" "echo \$PVEKIT_VMID >>$T/ran"
	S=$T/full
	events_bg --jobs 1 2>"$T/err"
	printf 'create 100 qemu - /c\ncreate 101 qemu - /c\n' >&7
	wait_until 10 grep -q 101 "$T/ran"
	rm "$T/full/filler"
	echo 'create 102 qemu - /c' >&7
	wait_until 10 grep -q 102 "$T/ran"
	exec 7>&-
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" = 0 ]
	[ "$(cat "$T/ran")" = "$(printf '100\n101\n102')" ]
	run grep -c "^run-hooks: $S/run-hooks/journal: No space left on device; events read from now on are not kept across a crash$" "$T/err"
	assert_output 1
	grep -qx "run-hooks: $S/run-hooks/journal: writable again" "$T/err"
}

@test "a stop as systemd does it, SIGTERM to every process at once, keeps the running events" {
	u=$$$RANDOM
	hook "$H/up.d/10-rec" "echo \"\$PVEKIT_VMID start\" >>$T/log" \
		"[ -e $T/block ] && exec sleep 1014.$u" "echo \"\$PVEKIT_VMID end\" >>$T/log"
	mkfifo "$T/in"
	for round in 1 2 3; do
		touch "$T/block"
		: >"$T/log"
		exec 7<>"$T/in"
		# its own process group, as a unit's cgroup
		start_bg exec_with_stdin "$T/in" setsid run-hooks --events "$H" --state-dir "$S" --jobs 2
		pid=$BG_PID
		printf 'create 100 qemu - /c\ncreate 101 qemu - /d\n' >&7
		wait_until 10 grep -q '^100 start' "$T/log"
		wait_until 10 grep -q '^101 start' "$T/log"
		kill -TERM -- -"$pid"
		rc=0
		wait "$pid" || rc=$?
		exec 7>&-
		[ "$rc" = 0 ]
		run ! pgrep -f "sleep 1014[.]$u"
		# both events are still open in the journal
		run grep -c '^E ' "$S/run-hooks/journal"
		assert_output 2
		run grep -c '^D ' "$S/run-hooks/journal"
		assert_output 0
		rm "$T/block"
		run -0 events </dev/null
		[ "$(grep -c end "$T/log")" = 2 ]
		[ ! -s "$S/run-hooks/journal" ]
	done
}
