#!/bin/bash
# pve-start-plan against VMMonitor-style fixed delays, on a simulated node:
# 20 QEMU guests in 4 groups of 5, started through the stand-in qm, each
# with a real qemu-ga that comes up a random 1 to 5 s after its start.
#   ours:     start GROUP, wait agent for each of its guests, next group
#   baseline: start GROUP, delay 5 (sized for the slowest guest), next group
#             (VMMonitor's start-up list; the delay after the last group is
#             when it knows the boot is done)
#   ideal:    the critical path as it happened: for each group, from its
#             start to the moment its last agent listened (the agent
#             socket's ctime); this includes the start commands' own time
#             (the stand-in qm is a bash script, slow on a loaded machine)
#             and the agents' delays; the sum of the groups' slowest delays
#             alone is shown too
#   lag:      what pve-start-plan adds to it: for each group, from its last
#             agent listening to the plan going on (its last "ready" line)
# Goal: ours within 0.5 s of the ideal (the lag summed over the groups).
# The delays are drawn from START_BENCH_SEED (default 14), so runs compare.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${PVEKIT_BUILD:-$top/build}:$top/tests/fakes/pve-bin:$top/tests/fakes:$PATH"
SEED=${START_BENCH_SEED:-14}
GROUPS_N=4 PER=5 SLOWEST=5

W=$(mktemp -d /tmp/start-bench.XXXXXX)
export PVE=$W/pve RUN=$W/run W
export PVEKIT_FAKE_LOG=$W/calls PVEKIT_FAKE_RUN=$RUN PVEKIT_FAKE_PIDS=$W/pids PVEKIT_FAKE_QUIET=1
mkdir -p "$RUN"
: >"$W/pids"

stop_all() {
	local p
	while read -r p; do
		pkill -P "$p" 2>/dev/null || true
		kill "$p" 2>/dev/null || true
	done <"$W/pids"
	: >"$W/pids"
	sleep 0.2
	rm -f "$RUN"/*.pid "$RUN"/*.qga
}
cleanup() {
	stop_all
	rm -rf "$W"
}
trap cleanup EXIT

now_ns() { date +%s%N; }

n=$((GROUPS_N * PER))
pmxcfs-sim init "$PVE" pve1 pve2 >/dev/null
pmxcfs-sim bulk "$PVE" pve1 qemu 1001 "$n"
# each guest's agent delay, 1 to 5 s
awk -v seed="$SEED" -v n="$n" 'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%d %.2f\n", 1001 + i, 1 + 4 * rand() }' >"$W/delays"

# qm start's hook: the guest's agent comes up after its delay
cat >"$W/on-start" <<'EOF'
#!/bin/bash
d=$(awk -v id="$1" '$1 == id { print $2 }' "$W/delays")
mkdir -p "$W/qga-$1"
setsid bash -c "sleep $d; exec qemu-ga -m unix-listen -p '$RUN/$1.qga' -t '$W/qga-$1' -b guest-set-time" \
	</dev/null >/dev/null 2>&1 &
echo $! >>"$PVEKIT_FAKE_PIDS"
EOF
chmod +x "$W/on-start"
export PVEKIT_FAKE_ON_START=$W/on-start

{
	for g in $(seq 0 $((GROUPS_N - 1))); do
		ids=$(seq $((1001 + g * PER)) $((1000 + (g + 1) * PER)) | tr '\n' ' ')
		echo "start $ids"
		for id in $ids; do echo "wait agent $id 60"; done
	done
} >"$W/plan"
{
	for g in $(seq 0 $((GROUPS_N - 1))); do
		echo "start $(seq $((1001 + g * PER)) $((1000 + (g + 1) * PER)) | tr '\n' ' ')"
		echo "delay $SLOWEST"
	done
} >"$W/baseline"

ideal=$(awk -v per="$PER" '{ g = int(($1 - 1001) / per); if ($2 > m[g]) m[g] = $2 }
	END { for (g in m) s += m[g]; printf "%.2f", s }' "$W/delays")

# stamp: each line of stdin with the time it arrived (s since the epoch)
stamp() {
	python3 -c 'import sys, time
for l in sys.stdin:
    print("%.4f %s" % (time.time(), l), end="", flush=True)'
}

run_plan() { # PLAN: wall seconds on stdout, the plan's lines stamped in $W/out.PLAN
	local t0 t1
	t0=$(now_ns)
	echo "$t0" | awk '{ printf "%.4f begin\n", $1 / 1e9 }' >"$W/out.$1"
	pve-start-plan -c "$W/$1" --pve-dir "$PVE" --node pve1 --run-dir "$RUN" \
		2>"$W/err.$1" | stamp >>"$W/out.$1"
	[ "${PIPESTATUS[0]}" -eq 0 ] || { cat "$W/err.$1" >&2; return 1; }
	t1=$(now_ns)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'
}

echo "20 guests, 4 groups of 5, agents up 1 to 5 s after their start (seed $SEED)"
awk -v per="$PER" '{ g = int(($1 - 1001) / per); d[g] = d[g] " " $2 } END { for (g = 0; g < 4; g++) printf "  group %d delays:%s\n", g + 1, d[g] }' "$W/delays"
ours=$(run_plan plan)
ready=$(grep -c ' ready ' "$W/out.plan" || true)
# when each agent listened: its socket's ctime
for id in $(seq 1001 $((1000 + n))); do echo "$id $(stat -c %.4Z "$RUN/$id.qga")"; done >"$W/up"
# per group: its start (the previous group's end), its last agent up, its end
read -r ideal_run lag <<<"$(awk -v per="$PER" '
	NR == FNR { g = int(($1 - 1001) / per); if ($2 > up[g]) up[g] = $2; next }
	$2 == "begin" { t = $1; next }
	$2 == "start" && !(int(($3 - 1001) / per) in start) { start[int(($3 - 1001) / per)] = t }
	$2 == "wait" && $6 == "ready" { end[int(($4 - 1001) / per)] = $1; t = $1 }
	END { for (g in up) { crit += up[g] - start[g]; lag += end[g] - up[g] }
	      printf "%.2f %.2f", crit, lag }' "$W/up" "$W/out.plan")"
stop_all
base=$(run_plan baseline)
# every agent answers by then?
late=0
for id in $(seq 1001 $((1000 + n))); do qga-ping -q -t 500 --qga-dir "$RUN" "$id" >/dev/null || late=$((late + 1)); done
stop_all

printf 'agent delays alone:          %6.2f s  (sum of each group'"'"'s slowest)\n' "$ideal"
printf 'ideal critical path:         %6.2f s  (as it happened: starts through the stand-in qm included)\n' "$ideal_run"
printf 'pve-start-plan (wait agent): %6.2f s  (%d/%d waits ready; %.2f s after its groups'"'"' last agents were up; goal <= 0.5 s)\n' \
	"$ours" "$ready" "$n" "$lag"
printf 'fixed delays of %d s:         %6.2f s  (%d agents still down at its end)\n' "$SLOWEST" "$base" "$late"
printf 'ratio baseline / pve-start-plan = %.2fx\n' "$(awk -v a="$base" -v b="$ours" 'BEGIN { print a / b }')"
