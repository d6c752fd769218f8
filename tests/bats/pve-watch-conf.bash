# Helpers for the pve-watch-conf tests (loaded after common).

# A simulated cluster of three nodes; pve1 is this node.
watch_pve() {
	make_pve pve1 pve2 pve3
	STATE=$T/state
}

# watch_start [ARGS...]: the watcher in the background on $PVE as pve1,
# stdout in $T/out (or $WATCH_OUT), stderr in $T/err; returns once it told
# systemd READY=1. The array WATCH_WRAP, when set, is the command it runs under.
watch_start() {
	rm -f "$T/notify.sock" "$T/notify"
	# What systemd would get, one datagram per line.
	start_bg python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode() + "\n")
        f.flush()' "$T/notify.sock" "$T/notify"
	wait_until 5 test -S "$T/notify.sock"
	NOTIFY_SOCKET=$T/notify.sock start_bg ${WATCH_WRAP[@]+"${WATCH_WRAP[@]}"} pve-watch-conf --pve-dir "$PVE" --node pve1 \
		--state-dir "$STATE" --interval 0.1 "$@" >>"${WATCH_OUT:-$T/out}" 2>>"$T/err"
	WATCH_PID=$BG_PID
	wait_until 10 grep -qx READY=1 "$T/notify"
}

# watch_stop: SIGTERM, and the exit status in $WATCH_RC.
watch_stop() {
	kill -TERM "$WATCH_PID"
	WATCH_RC=0
	wait "$WATCH_PID" || WATCH_RC=$?
}

# out_has N: at least N lines on the watcher's stdout (for wait_until: it
# counts anew on every try).
out_has() { [ "$(out_lines)" -ge "$1" ]; }

out_lines() { if [ -f "$T/out" ]; then wc -l <"$T/out"; else echo 0; fi; }

# wait_event LINE: until LINE (a whole line) is on the watcher's stdout.
wait_event() { wait_until 20 grep -qxF -- "$1" "$T/out"; }

# sentinel: a guest created on this node; once its line is out, every
# change made before it has been seen (the watcher reads snapshots in order).
sentinel() {
	pmxcfs-sim create "$PVE" pve1 qemu 999
	wait_event "create 999 qemu - $PVE/nodes/pve1/qemu-server/999.conf"
}

# ticks_pass N: the watcher woke up N more times (each poll tick is a
# voluntary context switch), rather than sleeping for a guessed time.
ticks_pass() {
	local n=$1 before
	before=$(awk '/^voluntary_ctxt_switches:/ { print $2 }' "/proc/$WATCH_PID/status")
	wait_until 20 awk -v want=$((before + n)) \
		'/^voluntary_ctxt_switches:/ { exit !($2 >= want) }' "/proc/$WATCH_PID/status"
}

# bump_version: what pmxcfs shows in .version when the map changed. Written
# in place, like set_owner: pmxcfs renders these files, nobody renames them,
# so only the poll can notice.
bump_version() {
	local n tmp
	n=$(sed -n 's/.*"vmlist": \([0-9]*\).*/\1/p' "$PVE/.version")
	tmp=$(sed "s/\"vmlist\": $n,/\"vmlist\": $((n + 1)),/" "$PVE/.version")
	printf '%s\n' "$tmp" >"$PVE/.version"
}

# set_owner VMID NODE: changes one guest's node in .vmlist in place (no
# rename, so no inotify on PVE), as a change made by another node looks.
set_owner() {
	local tmp
	tmp=$(sed "s/^\"$1\": { \"node\": \"[^\"]*\"/\"$1\": { \"node\": \"$2\"/" "$PVE/.vmlist")
	printf '%s\n' "$tmp" >"$PVE/.vmlist"
}

conf() { echo "$PVE/nodes/$1/$2/$3.conf"; }

# no_warnings: stderr holds nothing but the startup line.
no_warnings() {
	run grep -v "^pve-watch-conf: $PVE: node pve1: " "$T/err"
	assert_output ""
}

# watch_teardown: stops a watcher still running (ASan reports leaks at
# exit) and fails the test on any sanitizer report in its stderr.
watch_teardown() {
	if [ -n "${WATCH_PID:-}" ] && kill -0 "$WATCH_PID" 2>/dev/null; then
		kill -CONT "$WATCH_PID" 2>/dev/null || true
		kill -TERM "$WATCH_PID" 2>/dev/null || true
		wait "$WATCH_PID" 2>/dev/null || true
	fi
	if [ -f "$T/err" ] && grep -E -e 'Sanitizer|runtime error' "$T/err"; then
		echo "sanitizer report in the watcher's stderr" >&2
		return 1
	fi
}
