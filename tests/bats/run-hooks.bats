# run-hooks DIR: run-parts parity (against the real /usr/bin/run-parts),
# exit status rules, --timeout with process trees, usage errors.
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	command -v run-parts >/dev/null || skip "run-parts (debianutils) is not installed"
}
teardown() { pvekit_teardown; }

# hook FILE BODY...: an executable sh script.
hook() {
	local f=$1
	shift
	printf '#!/bin/sh\n%s\n' "$@" >"$f"
	chmod +x "$f"
}

# A directory with every kind of entry run-parts treats specially.
make_fixture() {
	local d=$1
	mkdir -p "$d"
	hook "$d/10-good" 'echo "10-good $*"'
	hook "$d/20_under" 'echo 20_under'
	hook "$d/Upper" 'echo Upper'
	hook "$d/-dash" 'echo -dash'
	hook "$d/a.sh" 'echo a.sh'
	hook "$d/.hidden" 'echo hidden'
	hook "$d/with space" 'echo space'
	hook "$d/$(printf 'new\nline')" 'echo newline'
	hook "$d/foo~" 'echo tilde'
	hook "$d/foo.dpkg-old" 'echo dpkg-old'
	hook "$d/foo-dpkg-old" 'echo foo-dpkg-old'
	hook "$d/UPPER_1-x" 'echo UPPER_1-x'
	printf 'not executable\n' >"$d/40-noexec"
	mkdir "$d/50-dir" "$d/55-execdir"
	chmod 755 "$d/55-execdir"
	ln -s 10-good "$d/30-link"
	ln -s 40-noexec "$d/45-link-noexec"
	ln -s missing "$d/60-broken"
	ln -s 50-dir "$d/65-link-dir"
}

# same_as_run_parts ARGS...: stdout, stderr (with our name) and exit status
# of run-hooks ARGS equal those of run-parts ARGS.
same_as_run_parts() {
	local rp_rc=0 rh_rc=0
	run-parts "$@" >"$T/rp.out" 2>"$T/rp.err" || rp_rc=$?
	run-hooks "$@" >"$T/rh.out" 2>"$T/rh.err" || rh_rc=$?
	sed -i 's/^run-parts: /run-hooks: /' "$T/rp.err"
	diff -u "$T/rp.out" "$T/rh.out" || { echo "stdout differs for: $*"; return 1; }
	diff -u "$T/rp.err" "$T/rh.err" || { echo "stderr differs for: $*"; return 1; }
	[ "$rp_rc" = "$rh_rc" ] || { echo "exit $rh_rc, run-parts exits $rp_rc: $*"; return 1; }
}

@test "--list and --test print what run-parts prints" {
	make_fixture "$T/d"
	same_as_run_parts --list "$T/d"
	same_as_run_parts --test "$T/d"
	same_as_run_parts --test --reverse "$T/d"
	same_as_run_parts --list --reverse "$T/d"
	same_as_run_parts --test "$T/d/"
	same_as_run_parts --test --regex '^[0-9].*' "$T/d"
	same_as_run_parts --list --regex '.*' "$T/d"
	same_as_run_parts --test --lsbsysinit "$T/d"
	same_as_run_parts --list --lsbsysinit "$T/d"
	same_as_run_parts --test --exit-on-error "$T/d"
	(cd "$T/d" && same_as_run_parts --test .)
	# and the expected set, so that both being wrong the same way fails too
	run -0 --separate-stderr run-hooks --test "$T/d"
	assert_output "$(printf '%s\n' "$T/d/-dash" "$T/d/10-good" "$T/d/20_under" \
		"$T/d/30-link" "$T/d/UPPER_1-x" "$T/d/Upper" "$T/d/foo-dpkg-old")"
}

@test "--list and --test on an empty and on a missing directory" {
	mkdir "$T/empty"
	same_as_run_parts --list "$T/empty"
	same_as_run_parts --test "$T/empty"
	run -78 --separate-stderr run-hooks --test "$T/missing"
	assert_output ''
	[ "$stderr" = "run-hooks: failed to open directory $T/missing: No such file or directory" ]
	run-parts --test "$T/missing" 2>"$T/rp.err" || true
	[ "$(sed 's/^run-parts/run-hooks/' "$T/rp.err")" = "$stderr" ]
}

@test "strcmp order whatever the locale" {
	mkdir "$T/d"
	for n in b B a A _x -x 10 9 Zz aa; do hook "$T/d/$n" "echo $n"; done
	run -0 env LC_ALL=C.UTF-8 LC_COLLATE=en_US.UTF-8 run-hooks "$T/d"
	assert_output "$(printf '%s\n' -x 10 9 A B Zz _x a aa b)"
	same_as_run_parts --test "$T/d"
}

@test "running: the same hooks, output and order as run-parts" {
	make_fixture "$T/d"
	rm "$T/d/60-broken" # run-parts 5.7 exits 0 for it, we exit 1 (see below)
	same_as_run_parts "$T/d"
	same_as_run_parts --reverse "$T/d"
	same_as_run_parts -a one -a 'two words' "$T/d"
	same_as_run_parts --verbose -a x "$T/d"
}

@test "--report prints a header before the first output of each hook, on that stream" {
	mkdir "$T/d"
	hook "$T/d/10-out" 'echo out'
	hook "$T/d/20-silent" 'true'
	# stderr first, and stdout only once we have read it: no race on which
	# stream the header goes to
	cat >"$T/d/30-err" <<-'EOF'
		#!/usr/bin/python3
		import fcntl, os, struct, termios, time
		os.write(2, b"err\n")
		for _ in range(3000):
		    if not struct.unpack("i", fcntl.ioctl(2, termios.FIONREAD, b"\0" * 4))[0]:
		        break
		    time.sleep(0.01)
		os.write(1, b"then-out\n")
	EOF
	chmod +x "$T/d/30-err"
	same_as_run_parts --report "$T/d"
	run -0 --separate-stderr run-hooks --report "$T/d"
	assert_output "$(printf '%s\n' "$T/d/10-out:" out then-out)"
	[ "$stderr" = "$(printf '%s\n' "$T/d/30-err:" err)" ]
}

@test "-a/--arg and the operands after DIR reach every hook, in order" {
	mkdir "$T/d"
	hook "$T/d/10-args" 'for a; do echo "[$a]"; done'
	run -0 run-hooks -a one --arg 'two words' "$T/d" three -- -4 ''
	assert_output "$(printf '%s\n' '[one]' '[two words]' '[three]' '[-4]' '[]')"
	# options may follow DIR, as with run-parts; "--" ends them
	run -0 run-hooks "$T/d" -- --test
	assert_output '[--test]'
	run -0 run-hooks "$T/d" --test
	assert_output "$T/d/10-args"
}

@test "--umask sets the hooks' umask (default 022)" {
	mkdir "$T/d"
	hook "$T/d/10-umask" 'umask' ': >"$1"'
	run -0 run-hooks -a "$T/f1" "$T/d"
	assert_output 0022
	run -0 run-hooks -u 077 -a "$T/f2" "$T/d"
	assert_output 0077
	run -0 stat -c %a "$T/f2"
	assert_output 600
	run -64 run-hooks -u 9 "$T/d"
	run -64 run-hooks --umask=0778 "$T/d"
}

@test "exit status: the last failing hook's code; the other hooks still run" {
	mkdir "$T/d"
	hook "$T/d/10-fail3" 'echo 10' 'exit 3'
	hook "$T/d/20-fail5" 'echo 20' 'exit 5'
	hook "$T/d/30-ok" 'echo 30'
	run -5 --separate-stderr run-hooks "$T/d"
	assert_output "$(printf '10\n20\n30')"
	[ "$stderr" = "$(printf 'run-hooks: %s exited with return code 3\nrun-hooks: %s exited with return code 5' \
		"$T/d/10-fail3" "$T/d/20-fail5")" ]
}

@test "exit status: 128+N for a hook killed by signal N" {
	mkdir "$T/d"
	hook "$T/d/10-sig" 'kill -TERM $$'
	hook "$T/d/20-ok" 'echo after'
	run -143 --separate-stderr run-hooks "$T/d"
	assert_output after
	[ "$stderr" = "run-hooks: $T/d/10-sig exited because of uncaught signal 15" ]
	hook "$T/d/30-kill" 'kill -KILL $$'
	run -137 run-hooks "$T/d"
}

@test "exit status: 126 for a file that cannot be executed, 127 for a missing interpreter" {
	mkdir "$T/d"
	printf 'echo no shebang\n' >"$T/d/10-noshebang"
	chmod +x "$T/d/10-noshebang"
	run -126 --separate-stderr run-hooks "$T/d"
	[ "$stderr" = "run-hooks: $T/d/10-noshebang could not be executed: Exec format error" ]
	printf '#!/nonexistent/interpreter\n' >"$T/d/20-badinterp"
	chmod +x "$T/d/20-badinterp"
	run -127 --separate-stderr run-hooks "$T/d"
	[[ $stderr == *"20-badinterp could not be executed: No such file or directory" ]]
}

@test "--exit-on-error stops at the first failure and exits with its code" {
	mkdir "$T/d"
	hook "$T/d/10-ok" 'echo 10'
	hook "$T/d/20-fail" 'echo 20' 'exit 4'
	hook "$T/d/30-ok" 'echo 30'
	run -4 run-hooks --exit-on-error "$T/d"
	assert_output "$(printf '10\n20\nrun-hooks: %s exited with return code 4' "$T/d/20-fail")"
	same_as_run_parts --exit-on-error --test "$T/d"
}

@test "a broken symlink: reported, the other hooks run, exit 1 (run-parts 5.7 says 0)" {
	mkdir "$T/d"
	hook "$T/d/10-ok" 'echo 10'
	ln -s nowhere "$T/d/20-broken"
	hook "$T/d/30-ok" 'echo 30'
	run -1 --separate-stderr run-hooks "$T/d"
	assert_output "$(printf '10\n30')"
	[ "$stderr" = "run-hooks: failed to stat component $T/d/20-broken: No such file or directory" ]
	run -1 run-hooks --exit-on-error "$T/d"
	assert_output "$(printf '10\nrun-hooks: failed to stat component %s: No such file or directory' "$T/d/20-broken")"
}

@test "a fifo is not an executable plain file: an error in --test and when running, silent in --list" {
	mkdir "$T/d"
	hook "$T/d/10-ok" 'echo 10'
	mkfifo "$T/d/20-fifo"
	run -1 --separate-stderr run-hooks --test "$T/d"
	assert_output "$T/d/10-ok"
	[ "$stderr" = "run-hooks: component $T/d/20-fifo is not an executable plain file" ]
	run -1 run-parts --test "$T/d"
	run -0 --separate-stderr run-hooks --list "$T/d"
	assert_output "$(printf '%s\n' "$T/d/10-ok" )"
	[ -z "$stderr" ]
	same_as_run_parts --list "$T/d"
	run -1 --separate-stderr run-hooks "$T/d"
	assert_output 10
}

@test "--timeout: a hung hook and everything it started are killed, the next hook runs" {
	mkdir "$T/d"
	u=$$$RANDOM
	hook "$T/d/10-hang" \
		"setsid sh -c 'sleep 1000.$u & echo daemon-started' >/dev/null" \
		"(sleep 1001.$u &)" \
		"sleep 1002.$u >/dev/null &" \
		"echo hanging" \
		"sleep 1003.$u"
	hook "$T/d/20-after" 'echo after'
	run -143 --separate-stderr run-hooks --timeout 0.5 "$T/d"
	assert_output "$(printf 'hanging\nafter')"
	[ "$stderr" = "$(printf 'run-hooks: %s timed out after 0.5 s\nrun-hooks: %s exited because of uncaught signal 15' \
		"$T/d/10-hang" "$T/d/10-hang")" ]
	run ! pgrep -f "sleep 100[0-3][.]$u"
}

@test "--timeout: a hook that ignores SIGTERM is killed --kill-after later" {
	mkdir "$T/d"
	u=$$$RANDOM
	hook "$T/d/10-stubborn" "trap '' TERM" "setsid sleep 1004.$u &" "sleep 1005.$u"
	run -137 --separate-stderr run-hooks --timeout 0.2 --kill-after 0.3 "$T/d"
	[[ $stderr == *"10-stubborn timed out after 0.2 s; still running after SIGTERM, killed"* ]]
	[[ $stderr == *"10-stubborn exited because of uncaught signal 9"* ]]
	run ! pgrep -f "sleep 100[45][.]$u"
}

@test "--timeout: a hook that exits 0 on SIGTERM still counts as failed (143)" {
	mkdir "$T/d"
	hook "$T/d/10-graceful" "trap 'exit 0' TERM" 'sleep 30 & wait'
	run -143 --separate-stderr run-hooks --timeout 0.3 "$T/d"
	[[ $stderr == *"10-graceful exited with return code 0 after SIGTERM"* ]]
}

@test "--timeout: hooks that finish in time are not touched, nor what they leave running" {
	mkdir "$T/d"
	u=$$$RANDOM
	hook "$T/d/10-quick" "setsid sleep 1006.$u >/dev/null 2>&1 &" 'echo quick'
	run -0 run-hooks --timeout 5 "$T/d"
	assert_output quick
	pgrep -f "sleep 1006[.]$u"
	pkill -f "sleep 1006[.]$u"
}

@test "--new-session: each hook leads its own session" {
	mkdir "$T/d"
	hook "$T/d/10-sid" 'ps -o sid= -p $$ | tr -d " "; echo $$'
	run -0 run-hooks --new-session "$T/d"
	[ "${lines[0]}" = "${lines[1]}" ]
	run -0 run-hooks "$T/d"
	[ "${lines[0]}" != "${lines[1]}" ]
}

@test "SIGTERM stops the running hook (and its children) and the run, exit 143" {
	mkdir "$T/d"
	u=$$$RANDOM
	hook "$T/d/10-long" "touch $T/started" "sleep 1007.$u"
	hook "$T/d/20-never" "touch $T/never"
	start_bg run-hooks "$T/d"
	pid=$BG_PID
	wait_until 10 test -e "$T/started"
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" = 143 ]
	[ ! -e "$T/never" ]
	run ! pgrep -f "sleep 1007[.]$u"
}

@test "hooks get an empty signal mask and SIGPIPE at its default" {
	mkdir "$T/d"
	hook "$T/d/10-sig" 'exec grep -E "^(SigBlk|SigIgn)" /proc/self/status'
	run -0 bash -c 'trap "" PIPE; exec run-hooks "$1"' _ "$T/d"
	assert_line 'SigBlk:	0000000000000000'
	# SIGPIPE (13) is bit 12. Other bits may be set by whoever started the
	# suite (glibc's internal signals 32 and 33, which no sigaction resets).
	local ign
	ign=$(sed -n 's/^SigIgn:\t//p' <<<"$output")
	[ -n "$ign" ]
	(( (0x$ign >> 12 & 1) == 0 ))
	# and the parent really ignored it, so the reset is run-hooks' doing
	run -0 bash -c 'trap "" PIPE; exec grep "^SigIgn" /proc/self/status'
	ign=${output#SigIgn:	}
	(( (0x$ign >> 12 & 1) == 1 ))
}

@test "usage errors exit 64 with a usage line; -h and -V exit 0" {
	run -64 --separate-stderr run-hooks
	[[ $stderr == *"run-hooks: missing DIR"* ]]
	[[ $stderr == *"usage: run-hooks"* ]]
	run -64 run-hooks --list --test "$T"
	run -64 run-hooks --timeout abc "$T"
	run -64 run-hooks --timeout -1 "$T"
	run -64 run-hooks --kill-after x "$T"
	run -64 run-hooks --regex '[' "$T"
	run -64 run-hooks --jobs 2 "$T"
	run -64 run-hooks --state-dir "$T" "$T"
	run -64 run-hooks --bogus "$T"
	run -64 run-hooks --events "$T" "$T"
	run -64 run-hooks --events "$T" --list
	run -64 run-hooks --events "$T" -a x
	run -64 run-hooks --events "$T" --jobs 0
	run -64 run-hooks --events "$T" --jobs 257
	run -0 --separate-stderr run-hooks -h
	[[ $output == "usage: run-hooks"* ]]
	run -0 run-hooks -V
	[[ $output == "run-hooks "* ]]
}

@test "seconds are decimal, and a bad value names the range: --timeout 1e20, 0x10" {
	local v
	for v in 1e20 0x10 1e3 inf 5. 1000000001; do
		run -64 --separate-stderr run-hooks --timeout "$v" "$T"
		[[ $stderr == "run-hooks: --timeout $v: want seconds from 0 to 1000000000"$'\n'* ]]
	done
	run -64 --separate-stderr tcpcheck --watch --interval 0x10
	[[ $stderr == "tcpcheck: --interval 0x10: want seconds from 0.01 to 1000000000"$'\n'* ]]
	mkdir "$T/d"
	run -0 run-hooks --timeout 1000000000 "$T/d"
	run -0 run-hooks --timeout .5 "$T/d"
}
