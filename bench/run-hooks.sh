#!/bin/bash
# run-hooks against run-parts, the tool it replaces:
#  1. dispatch cost: one run over a directory of HOOKS trivial hooks
#     (symlinks to /bin/true, so the hooks cost next to nothing), for
#     run-parts, run-hooks, and run-hooks --timeout (each hook then runs in
#     its own process group under its subreaper supervisor);
#  2. events: EVENTS event lines for 50 guests through run-hooks --events
#     (journal synced per batch on this disk, --jobs 4), against the loop
#     pve-migration-monitor runs: read a line, run-parts the hook dir with
#     the config as argument, in sequence.
# Figures are the best of RUNS runs.
set -eu
HOOKS=${HOOKS:-20}
EVENTS=${EVENTS:-1000}
RUNS=${RUNS:-20}
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${PVEKIT_BUILD:-$top/build}:$PATH"
command -v run-parts >/dev/null || { echo "run-hooks bench: run-parts is not installed"; exit 1; }

W=$(mktemp -d /var/tmp/run-hooks-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

# wall_us CMD...: one run's wall time in microseconds.
wall_us() {
	local s e
	s=$(date +%s%N)
	"$@" >/dev/null 2>&1
	e=$(date +%s%N)
	echo $(((e - s) / 1000))
}

# best_ms RUNS CMD...: the fastest wall time of CMD, in milliseconds.
best_ms() {
	local n=$1 best= t
	shift
	for _ in $(seq "$n"); do
		t=$(wall_us "$@")
		if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
	done
	awk -v u="$best" 'BEGIN { printf "%.2f", u / 1000 }'
}

mkdir -p "$W/dir"
for i in $(seq -w 1 "$HOOKS"); do ln -s /bin/true "$W/dir/$i-hook"; done
# Interleaved, so that load from elsewhere hits all three alike.
rp= rh= rt=
for _ in $(seq "$RUNS"); do
	t=$(wall_us run-parts "$W/dir")
	if [ -z "$rp" ] || [ "$t" -lt "$rp" ]; then rp=$t; fi
	t=$(wall_us run-hooks "$W/dir")
	if [ -z "$rh" ] || [ "$t" -lt "$rh" ]; then rh=$t; fi
	t=$(wall_us run-hooks --timeout 30 "$W/dir")
	if [ -z "$rt" ] || [ "$t" -lt "$rt" ]; then rt=$t; fi
done
rp=$(awk -v u="$rp" 'BEGIN { printf "%.2f", u / 1000 }')
rh=$(awk -v u="$rh" 'BEGIN { printf "%.2f", u / 1000 }')
rt=$(awk -v u="$rt" 'BEGIN { printf "%.2f", u / 1000 }')
awk -v n="$HOOKS" -v rp="$rp" -v rh="$rh" -v rt="$rt" 'BEGIN {
	printf "dispatch, one run over %d trivial hooks (best of runs):\n", n
	printf "  run-parts (baseline):        %8.2f ms  %6.3f ms/hook\n", rp, rp / n
	printf "  run-hooks:                   %8.2f ms  %6.3f ms/hook  ratio %.2fx\n", rh, rh / n, rh / rp
	printf "  run-hooks --timeout 30:      %8.2f ms  %6.3f ms/hook  ratio %.2fx\n", rt, rt / n, rt / rp
}'

mkdir -p "$W/hooks/up.d" "$W/hooks/down.d"
ln -s /bin/true "$W/hooks/up.d/10-hook"
ln -s /bin/true "$W/hooks/down.d/10-hook"
awk -v n="$EVENTS" 'BEGIN { for (i = 0; i < n; i++)
	printf "%s %d qemu pve2 /etc/pve/nodes/pve1/qemu-server/%d.conf\n",
		(int(i / 50) % 2 ? "migrate-out" : "migrate-in"), 100 + i % 50, 100 + i % 50 }' >"$W/events"

ours_events() {
	rm -rf "$W/state"
	run-hooks --events "$W/hooks" --state-dir "$W/state" --node pve1 --jobs 4 <"$W/events"
}
baseline_events() {
	while read -r ev vmid type peer conf; do
		case $ev in
		create | migrate-in) run-parts --arg "$conf" "$W/hooks/up.d" ;;
		*) run-parts --arg "$conf" "$W/hooks/down.d" ;;
		esac
	done <"$W/events"
}
eruns=$(((RUNS + 2) / 3))
oe=$(best_ms "$eruns" ours_events)
be=$(best_ms "$eruns" baseline_events)
awk -v n="$EVENTS" -v o="$oe" -v b="$be" 'BEGIN {
	printf "events, %d lines for 50 guests, one trivial hook each (best of runs):\n", n
	printf "  shell loop + run-parts (baseline): %8.1f ms  %7.0f events/s\n", b, n * 1000 / b
	printf "  run-hooks --events --jobs 4:       %8.1f ms  %7.0f events/s  ratio %.2fx faster\n", o, n * 1000 / o, b / o
}'
