#!/bin/bash
# qga-ping against what an admin would otherwise run, on real agents:
#  1. one-shot ping of 500 qemu-ga, 50 of them SIGSTOPped, deadline 1 s:
#     qga-ping's wall time vs a sequential socat loop (run on 50 of the
#     agents, 5 of them stopped, and given per guest and for 500);
#  2. qga-ping --watch over 500 guests: CPU time per cycle and peak RSS,
#     vs the CPU the socat loop spends per cycle;
#  3. detection time of a hung guest with the defaults (interval 2 s,
#     timeout 1 s, threshold 3), vs masakari's introspective monitor
#     (interval 10 s, reports on the 5th failed ping: 40-50 s).
set -eu
N=${QGA_BENCH_GUESTS:-500}
HUNG=$((N / 10))
SAMPLE=${QGA_BENCH_SOCAT_SAMPLE:-50}
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${PVEKIT_BUILD:-$top/build}:$top/tests/fakes:$PATH"
ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/qga-bench.XXXXXX)
PVE=$W/pve RUN=$W/run
mkdir -p "$RUN" "$W/state"
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		pkill -P "$p" 2>/dev/null || true
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
calc() { awk "BEGIN { print $1 }"; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }

echo "setting up $N guests (fake QEMU processes, real qemu-ga agents)..."
pmxcfs-sim init "$PVE" pve1 pve2 >/dev/null
pmxcfs-sim bulk "$PVE" pve1 qemu 1000 "$N"
agent=()
for i in $(seq 1000 $((1000 + N - 1))); do
	# a process with "-pidfile RUN/VMID.pid" on its command line, as QEMU's
	sh -c 'sleep 100000; :' qemu-fake -pidfile "$RUN/$i.pid" </dev/null >/dev/null 2>&1 &
	pids+=($!)
	echo $! >"$RUN/$i.pid"
	mkdir -p "$W/state/$i"
	qemu-ga -m unix-listen -p "$RUN/$i.qga" -t "$W/state/$i" -b guest-set-time </dev/null >/dev/null 2>&1 &
	pids+=($!)
	agent[$i]=$!
done
for i in $(seq 1000 $((1000 + N - 1))); do
	for _ in $(seq 200); do [ -S "$RUN/$i.qga" ] && break; sleep 0.05; done
done
# every agent answers before some are stopped (a socket file exists before
# its agent listens)
until qga-ping -q -t 3000 --qga-dir "$RUN" $(seq 1000 $((1000 + N - 1))) >/dev/null; do sleep 0.5; done
stopped=()
for k in $(seq 0 $((HUNG - 1))); do
	i=$((1000 + k * 10)) # every tenth: spread over the socat sample too
	kill -STOP "${agent[$i]}"
	stopped+=("${agent[$i]}")
done

echo "== 1. one-shot ping: $N agents, $HUNG hung, deadline 1 s"
t0=$(now_ns)
qga-ping -q -t 1000 --qga-dir "$RUN" $(seq 1000 $((1000 + N - 1))) >"$W/ours" || true
ours_ms=$(ms_since "$t0")
ok=$(grep -c ' ok ' "$W/ours" || true)
to=$(grep -c ' fail timeout$' "$W/ours" || true)
maxrtt=$(awk '$2 == "ok" && $3 > m { m = $3 } END { printf "%.1f", m }' "$W/ours")
printf 'qga-ping:   %d ms wall for %d guests (%d ok, %d timeout, slowest answer %s ms), %.2f ms per guest; goal < 1500 ms\n' \
	"$ours_ms" "$N" "$ok" "$to" "$maxrtt" "$(calc "$ours_ms / $N")"

req='\xff{"execute":"guest-sync-delimited","arguments":{"id":4242}}\n{"execute":"guest-ping"}\n'
t0=$(now_ns)
cpu0=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)
for i in $(seq 1000 $((1000 + SAMPLE - 1))); do
	printf "$req" | socat -t1 - UNIX-CONNECT:"$RUN/$i.qga" >/dev/null 2>&1 || true
done
socat_ms=$(ms_since "$t0")
cpu1=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)
hz=$(getconf CLK_TCK)
socat_per=$(calc "$socat_ms / $SAMPLE")
ours_per=$(calc "$ours_ms / $N")
printf 'socat loop: %d ms wall for %d guests, %.1f ms per guest, so ~%.0f s for %d\n' \
	"$socat_ms" "$SAMPLE" "$socat_per" "$(calc "$socat_per * $N / 1000")" "$N"
printf 'ratio per guest: socat / qga-ping = %.0fx\n' "$(calc "$socat_per / $ours_per")"
socat_cpu_ms=$(calc "($cpu1 - $cpu0) * 1000 / $hz / $SAMPLE * $N")

for p in "${stopped[@]}"; do kill -CONT "$p"; done

echo "== 2. --watch over $N guests: CPU per cycle and RSS (interval 2 s)"
qga-ping --watch --pve-dir "$PVE" --node pve1 --qga-dir "$RUN" --grace 0 \
	>"$W/watch.out" 2>"$W/watch.err" &
wpid=$!
pids+=($wpid)
for _ in $(seq 600); do [ "$(grep -c ' watch ' "$W/watch.out" || true)" -ge "$N" ] && break; sleep 0.1; done
sleep 4 # past the first round
cpu() { awk '{ print $14 + $15 }' "/proc/$wpid/stat"; }
c0=$(cpu)
t0=$(now_ns)
sleep 20
c1=$(cpu)
el=$(ms_since "$t0")
cycles=$(calc "$el / 2000")
per=$(calc "($c1 - $c0) * 1000 / $hz / $cycles")
rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$wpid/status")
printf 'qga-ping --watch: %.1f ms CPU per cycle (%d guests, %.1f%% of one core), peak RSS %d kB; goal < 8192 kB\n' \
	"$per" "$N" "$(calc "$per / 20")" "$rss"
printf 'socat loop:       %.0f ms CPU per cycle (measured on %d guests), and ~%.0f s per cycle\n' \
	"$socat_cpu_ms" "$SAMPLE" "$(calc "$socat_per * $N / 1000")"
printf 'ratio CPU per cycle: socat / qga-ping = %.0fx\n' "$(calc "$socat_cpu_ms / $per")"
if grep -q ' failed ' "$W/watch.out"; then echo "unexpected failures:"; grep ' failed ' "$W/watch.out"; fi

echo "== 3. detection time of a hung guest, defaults (interval 2 s, timeout 1 s, threshold 3)"
for i in $((1000 + N - 1)) $((1000 + N - 2)) $((1000 + N - 3)); do
	t0=$(now_ns)
	kill -STOP "${agent[$i]}"
	for _ in $(seq 400); do grep -q "^$i failed" "$W/watch.out" && break; sleep 0.05; done
	d=$(ms_since "$t0")
	kill -CONT "${agent[$i]}"
	echo "$d" >>"$W/detect"
	printf 'guest %d: declared failed %.1f s after SIGSTOP\n' "$i" "$(calc "$d / 1000")"
done
avg=$(awk '{ s += $1 } END { printf "%.1f", s / NR / 1000 }' "$W/detect")
printf 'qga-ping: %s s on average; masakari introspective monitor: 40-50 s (its defaults); ratio ~%.0fx\n' \
	"$avg" "$(calc "45 / $avg")"
kill "$wpid"
