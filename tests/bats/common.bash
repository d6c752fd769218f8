# Shared helpers for the bats suite. Every test file does:
#   bats_require_minimum_version 1.5.0
#   setup() { load common; pvekit_setup; }
#   teardown() { pvekit_teardown; }

bats_load_library bats-support
bats_load_library bats-assert
bats_load_library bats-file

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
FIXTURES=$TOP/tests/fixtures
FAKES=$TOP/tests/fakes

pvekit_setup() {
	export PATH="${PVEKIT_BUILD:-$TOP/build}:$FAKES:$PATH"
	T=$BATS_TEST_TMPDIR
	: >"$T/.bg-pids"
	: >"$T/.netns"
}

# Background helpers must not hold bats' fd 3, and die with the test.
start_bg() {
	"$@" 3>&- &
	echo $! >>"$T/.bg-pids"
	BG_PID=$!
}

# kill_at_teardown PID: a process teardown ends with SIGKILL, such as the
# init of a pid namespace, which ignores SIGTERM from outside it.
kill_at_teardown() {
	echo "$1" >>"$T/.kill-pids"
}

pvekit_teardown() {
	local pid ns
	if [ -f "$T/.kill-pids" ]; then
		while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$T/.kill-pids"
	fi
	if [ -f "$T/.bg-pids" ]; then
		while read -r pid; do
			kill -CONT "$pid" 2>/dev/null || true
			pkill -TERM -P "$pid" 2>/dev/null || true
			kill -TERM "$pid" 2>/dev/null || true
		done <"$T/.bg-pids"
		while read -r pid; do
			for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
			kill -KILL "$pid" 2>/dev/null || true
		done <"$T/.bg-pids"
	fi
	if [ -f "$T/.netns" ]; then
		while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$T/.netns"
	fi
	if [ -f "$T/.mounts" ]; then
		while read -r m; do umount -l "$m" 2>/dev/null || true; done <"$T/.mounts"
	fi
}

# wait_until SECONDS COMMAND...: polls every 20 ms, fails after SECONDS.
wait_until() {
	local limit=$1 i=0 n
	shift
	n=$(awk -v s="$limit" 'BEGIN { printf "%d", s * 50 }')
	until "$@" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -ge "$n" ]; then
			echo "wait_until: gave up after ${limit}s: $*" >&2
			return 1
		fi
		sleep 0.02
	done
}

# A simulated Proxmox node: pmxcfs tree in $PVE with nodes pve1 (this one)
# and pve2, and the runtime dir $RUN.
make_pve() {
	PVE=$T/pve
	RUN=$T/run
	mkdir -p "$RUN"
	[ $# -gt 0 ] || set -- pve1 pve2
	pmxcfs-sim init "$PVE" "$@" >/dev/null
}

# start_qga SOCKET: a real QEMU guest agent listening on SOCKET, as a VM's
# agent does. guest-set-time is blocked: a test must never set this clock.
start_qga() {
	local sock=$1 dir
	dir=$(dirname "$sock")/.qga-$(basename "$sock")
	mkdir -p "$dir"
	rm -f "$sock"
	start_bg qemu-ga -m unix-listen -p "$sock" -t "$dir" -b guest-set-time
	QGA_PID=$BG_PID
	wait_until 5 test -S "$sock"
}

# fake_qemu RUN VMID: a process started with "-pidfile RUN/VMID.pid", as
# qemu-server starts QEMU, so the running check finds it.
fake_qemu() {
	local run=$1 vmid=$2
	start_bg bash -c 'while :; do sleep 1; done' qemu-fake -pidfile "$run/$vmid.pid"
	echo "$BG_PID" >"$run/$vmid.pid"
}

# netns_add NAME: a network namespace removed by pvekit_teardown. Names get a
# per-test prefix so tests never collide.
netns_add() {
	local ns="pk$$-$1"
	ip netns add "$ns"
	echo "$ns" >>"$T/.netns"
	ip -n "$ns" link set lo up
	echo "$ns"
}

# start_qemu RUN VMID [-S] [--qga] [--no-reboot]: a real QEMU, daemonized
# with "-pidfile RUN/VMID.pid" and -no-shutdown as qemu-server starts it (so
# the running check sees it, and a guest that powers off leaves QEMU in run
# state "shutdown"), its monitor on RUN/VMID.qmp. "-machine none": no guest
# to boot, no KVM; it runs at once ("running"), or with -S waits in
# "prelaunch". --qga adds the agent socket RUN/VMID.qga with nothing behind
# it, which accepts and never answers: a hung agent. --no-reboot makes a
# reset a power-off: "qmp RUN/VMID.qmp system_reset" then stands for a guest
# that powered itself off (with no guest there is no ACPI to ask). Sets
# QEMU_PID; pvekit_teardown stops it.
start_qemu() {
	local run=$1 vmid=$2 args=()
	shift 2
	while [ $# -gt 0 ]; do
		case $1 in
		-S) args+=(-S) ;;
		--qga) args+=(-chardev "socket,id=qga0,path=$run/$vmid.qga,server=on,wait=off") ;;
		--no-reboot) args+=(-no-reboot) ;;
		*) echo "start_qemu: unknown option $1" >&2; return 1 ;;
		esac
		shift
	done
	rm -f "$run/$vmid.pid" "$run/$vmid.qmp" "$run/$vmid.qga"
	# returns once QEMU is up: pid file written, sockets listening
	qemu-system-x86_64 -name "vm$vmid" -machine none -nodefaults -display none -no-shutdown "${args[@]}" \
		-qmp "unix:$run/$vmid.qmp,server=on,wait=off" -pidfile "$run/$vmid.pid" \
		-daemonize </dev/null >"$T/qemu-$vmid.log" 2>&1 3>&- || {
		cat "$T/qemu-$vmid.log" >&2
		return 1
	}
	QEMU_PID=$(cat "$run/$vmid.pid")
	echo "$QEMU_PID" >>"$T/.bg-pids"
}

# qmp SOCKET COMMAND...: runs QMP commands (stop, cont, quit, query-status)
# on a QEMU monitor one after the other, as qm does, and prints each return
# as one JSON line. Fails on an error reply or no answer in 10 s.
qmp() {
	python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rwb")

def reply():
    while True:
        line = f.readline()
        if not line:
            sys.exit("qmp: %s: QEMU closed the connection" % sys.argv[1])
        m = json.loads(line)
        if "event" not in m:
            return m

if "QMP" not in reply():
    sys.exit("qmp: %s: no greeting" % sys.argv[1])
for cmd in ["qmp_capabilities"] + sys.argv[2:]:
    f.write(json.dumps({"execute": cmd}).encode() + b"\n")
    f.flush()
    r = reply()
    if "error" in r:
        sys.exit("qmp: %s: %s" % (cmd, r["error"].get("desc")))
    if cmd != "qmp_capabilities":
        print(json.dumps(r["return"]))
PY
}

# pmxcfs_restart PID DIR VMID NODE: while the watcher PID is stopped (a
# loaded node), VMID moves to NODE and pmxcfs starts again (pmxcfs-sim
# restart: a new starttime, the "vmlist" counter back at 1), and changes
# bring the counter back to where the watcher last saw it: only .version's
# starttime tells the two maps apart when it runs again.
pmxcfs_restart() {
	local pid=$1 dir=$2 vmid=$3 node=$4 n
	counter() { sed -n 's/.*"vmlist": \([0-9]*\).*/\1/p' "$dir/.version"; }
	kill -STOP "$pid"
	n=$(counter)
	pmxcfs-sim migrate "$dir" "$vmid" "$node"
	pmxcfs-sim restart "$dir"
	while [ "$(counter)" -lt "$n" ]; do
		pmxcfs-sim edit "$dir" "$vmid" "description: edit $RANDOM"
	done
	kill -CONT "$pid"
	[ "$(counter)" -eq "$n" ]
}
