#!/bin/bash
# pve-watch-conf | run-hooks --events, against what pve-migration-monitor
# runs today: inotifywait -m on the node's guest dirs piped into a shell
# loop that calls run-parts on a hook dir. Both get the same changes, made
# by bench/watch-driver.py the way Proxmox makes them:
#  1. latency from a local rename (a migration) to the hook starting;
#  2. a change seen only in .vmlist (another node's migration to this one):
#     nothing raises an inotify event (pmxcfs renders .vmlist on read, and
#     makes no file operation for another node's rename), so it is bounded
#     by --interval: p50/p90/max as a share of it; the baseline cannot see it;
#  3. idle cost with GUESTS guests at --interval 1: CPU of one core and RSS;
#  4. a burst of BURST guests created at once: lost, duplicated, time taken.
# The machine may be shared: figures from one run are indicative.
set -eu
LAT_N=${LAT_N:-100}
REMOTE_N=${REMOTE_N:-20}
REMOTE_INTERVAL=${REMOTE_INTERVAL:-1}
GUESTS=${GUESTS:-10000}
IDLE_SECS=${IDLE_SECS:-20}
BURST=${BURST:-5000}
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${PVEKIT_BUILD:-$top/build}:$top/tests/fakes:$PATH"
driver=$top/bench/watch-driver.py
for c in pve-watch-conf run-hooks inotifywait run-parts python3; do
	command -v "$c" >/dev/null || { echo "pve-watch-conf bench: $c is not installed or built"; exit 1; }
done

# State (the watcher's map, run-hooks' journal) on disk, as /var/lib is;
# the simulated /etc/pve and the hook logs in memory where possible, as
# pmxcfs is: on ext4 a rename over an existing file starts writeback, which
# on a busy disk takes milliseconds and would split what pmxcfs does in one
# step (rename a config and show the new map).
W=$(mktemp -d /var/tmp/watch-bench.XXXXXX)
M=$(mktemp -d /dev/shm/watch-bench.XXXXXX 2>/dev/null || mktemp -d /var/tmp/watch-bench-mem.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W" "$M"
}
trap cleanup EXIT

# Hooks that log when they start and their argument; ours in W/hooks, the
# baseline's in W/base.
for side in hooks base; do
	for d in up.d down.d; do
		mkdir -p "$W/$side/$d"
		printf '#!/bin/bash\nprintf "%%s %%s\\n" "$EPOCHREALTIME" "$1" >>%s\n' \
			"$M/$side.log" >"$W/$side/$d/10-log"
		chmod +x "$W/$side/$d/10-log"
	done
done

# tree NAME: a fresh simulated cluster in M/NAME (pve1 is this node).
tree() {
	rm -rf "${M:?}/$1"
	pmxcfs-sim init "$M/$1" pve1 pve2 >/dev/null
}

# start_ours PVE INTERVAL: the pipeline pvekit-watch.service runs.
start_ours() {
	local tag=$RANDOM
	mkfifo "$W/fifo.$tag"
	pve-watch-conf --pve-dir "$1" --node pve1 --state-dir "$W/state.$tag" --interval "$2" \
		>"$W/fifo.$tag" 2>>"$W/ours.err" &
	OURS_WATCH=$!
	run-hooks --events "$W/hooks" --state-dir "$W/state.$tag" --node pve1 --jobs 4 \
		<"$W/fifo.$tag" 2>>"$W/ours.err" &
	OURS_HOOKS=$!
	PIDS+=("$OURS_WATCH" "$OURS_HOOKS")
	until [ -s "$W/state.$tag/watch/owners" ]; do sleep 0.05; done
}

# start_base PVE: pve-migration-monitor's loop.
start_base() {
	local d=$1/nodes/pve1 fifo=$W/bfifo.$RANDOM
	mkfifo "$fifo"
	inotifywait -q -m -e moved_to,moved_from --format '%e %w%f' \
		--exclude '\.conf\.tmp\.[0-9]+$' "$d/qemu-server" "$d/lxc" >"$fifo" &
	BASE_WAIT=$!
	bash -c 'while read -r ev file; do
		case $ev in
		MOVED_TO) run-parts --arg "$file" "$1/up.d" ;;
		*) run-parts --arg "$file" "$1/down.d" ;;
		esac
	done' loop "$W/base" <"$fifo" &
	BASE_LOOP=$!
	PIDS+=("$BASE_WAIT" "$BASE_LOOP")
	until [ "$(grep -c '^inotify wd' /proc/"$BASE_WAIT"/fdinfo/* 2>/dev/null |
		awk -F: '{ s += $2 } END { print s + 0 }')" -ge 2 ]; do sleep 0.05; done
}

stop() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# cpu_ns PID...: CPU time of the processes so far, in nanoseconds.
cpu_ns() {
	local p s=0
	for p in "$@"; do
		s=$((s + $(cut -d' ' -f1 "/proc/$p/schedstat")))
	done
	echo "$s"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# 1. Latency: guests on pve2 migrate to pve1 and back, one at a time. Each
# side runs alone (on 2 shared cores, two pipelines woken by the same rename
# would mostly measure each other), in alternating blocks so that load from
# elsewhere hits both alike.
tree lat
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$M/lat" pve2 qemu 100 10
pmxcfs-sim vmlist "$M/lat"
: >"$W/lat.ours"
: >"$W/lat.base"
block=$(((LAT_N + 4) / 5))
for b in 0 1 2 3 4; do
	start_ours "$M/lat" 1
	python3 "$driver" latency "$M/lat" "$block" "$M/hooks.log" $((b * 2 * block)) >>"$W/lat.ours"
	stop "$OURS_WATCH" "$OURS_HOOKS"
	start_base "$M/lat"
	python3 "$driver" latency "$M/lat" "$block" "$M/base.log" $(((b * 2 + 1) * block)) >>"$W/lat.base"
	stop "$BASE_WAIT" "$BASE_LOOP"
done
# p50 p90 max missed, in ms
pcts() {
	grep -E '^[0-9.]+$' "$1" | sort -n | awk -v miss="$(grep -c missed "$1")" '{ v[NR] = $1 }
		END { printf "%.2f %.2f %.2f %d\n", v[int(NR * 0.5 + 0.5)], v[int(NR * 0.9 + 0.5)], v[NR], miss }'
}
read -r op50 op90 omax omiss < <(pcts "$W/lat.ours")
read -r bp50 bp90 bmax bmiss < <(pcts "$W/lat.base")
echo "latency, local rename to hook start, $((block * 5)) migrations in and out each (one at a time):"
printf '  inotifywait | while read; run-parts (baseline): p50 %6.2f ms  p90 %6.2f ms  max %7.2f ms  missed %d\n' \
	"$bp50" "$bp90" "$bmax" "$bmiss"
printf '  pve-watch-conf | run-hooks --events:            p50 %6.2f ms  p90 %6.2f ms  max %7.2f ms  missed %d  p50 ratio %sx\n' \
	"$op50" "$op90" "$omax" "$omiss" "$(ratio "$op50" "$bp50")"
awk '$1 == "commit" { if ($3 > m) m = $3 } END {
	printf "  (the simulated pmxcfs took at most %.2f ms to rename and show the new map)\n", m }' "$W/lat.ours" "$W/lat.base"

# 2. A migration made by another node: only .vmlist shows it.
tree remote
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$M/remote" pve2 qemu 100 10
pmxcfs-sim vmlist "$M/remote"
: >"$M/hooks.log"
: >"$M/base.log"
start_ours "$M/remote" "$REMOTE_INTERVAL"
start_base "$M/remote"
python3 "$driver" remote "$M/remote" "$REMOTE_N" "$M/hooks.log" "$M/base.log" \
	"$(awk -v i="$REMOTE_INTERVAL" 'BEGIN { print 3 * i }')" >"$W/remote.out"
stop "$OURS_WATCH" "$OURS_HOOKS" "$BASE_WAIT" "$BASE_LOOP"
read -r _ rp50 rp90 rmax rmiss _ < <(grep '^ours ' "$W/remote.out")
read -r _ brun bn < <(grep '^base ' "$W/remote.out")
echo "a migration made by another node (.vmlist only, no inotify event), --interval $REMOTE_INTERVAL, $REMOTE_N migrations at random phases:"
printf '  baseline: missed %d of %d\n' "$((bn - brun))" "$bn"
awk -v p50="$rp50" -v p90="$rp90" -v max="$rmax" -v i="$REMOTE_INTERVAL" -v miss="$rmiss" -v n="$REMOTE_N" 'BEGIN {
	printf "  ours:     missed %d of %d; to hook start p50 %.0f ms  p90 %.0f ms  max %.0f ms\n", miss, n, p50, p90, max
	printf "            against --interval: p50 %.2f  p90 %.2f  max %.2f of it (bound: 1 interval + the read and the hook start)\n", \
		p50 / (i * 1000), p90 / (i * 1000), max / (i * 1000)
}'

# 3. Idle cost with GUESTS guests in the cluster, half of them here.
tree idle
half=$((GUESTS / 2))
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$M/idle" pve1 qemu 100 "$half"
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$M/idle" pve2 lxc $((100 + half)) $((GUESTS - half))
pmxcfs-sim vmlist "$M/idle"
start_ours "$M/idle" 1
start_base "$M/idle"
sleep 3
o0=$(cpu_ns "$OURS_WATCH")
h0=$(cpu_ns "$OURS_HOOKS")
b0=$(cpu_ns "$BASE_WAIT" "$BASE_LOOP")
sleep "$IDLE_SECS"
o1=$(cpu_ns "$OURS_WATCH")
h1=$(cpu_ns "$OURS_HOOKS")
b1=$(cpu_ns "$BASE_WAIT" "$BASE_LOOP")
orss=$(rss_kb "$OURS_WATCH")
hrss=$(rss_kb "$OURS_HOOKS")
brss=$(($(rss_kb "$BASE_WAIT") + $(rss_kb "$BASE_LOOP")))
stop "$OURS_WATCH" "$OURS_HOOKS" "$BASE_WAIT" "$BASE_LOOP"
echo "idle, $GUESTS guests in the cluster ($half here), --interval 1, over ${IDLE_SECS}s:"
awk -v b=$((b1 - b0)) -v o=$((o1 - o0)) -v h=$((h1 - h0)) -v s="$IDLE_SECS" \
	-v brss="$brss" -v orss="$orss" -v hrss="$hrss" 'BEGIN {
	printf "  inotifywait + shell loop (baseline): CPU %.4f %% of a core  RSS %6.0f kB\n", b / s / 1e7, brss
	printf "  pve-watch-conf:                      CPU %.4f %% of a core  RSS %6.0f kB  (goal: < 0.2 %%, < 5 MB)\n", o / s / 1e7, orss
	printf "  pve-watch-conf + run-hooks:          CPU %.4f %% of a core  RSS %6.0f kB  RSS ratio %.2fx\n", (o + h) / s / 1e7, orss + hrss, (orss + hrss) / brss
}'

# 4. A burst of BURST creates on this node, .vmlist rendered every 10 ms.
burst_run() {
	local side=$1 start last
	tree "burst-$side"
	: >"$M/$2.log"
	if [ "$side" = ours ]; then start_ours "$M/burst-$side" 1; else start_base "$M/burst-$side"; fi
	start=$(python3 "$driver" burst "$M/burst-$side" "$BURST" 10000 10)
	for _ in $(seq 1200); do
		[ "$(wc -l <"$M/$2.log")" -ge "$BURST" ] && break
		sleep 0.1
	done
	sleep 2 # late duplicates would show
	if [ "$side" = ours ]; then
		stop "$OURS_WATCH" "$OURS_HOOKS"
	else
		stop "$BASE_WAIT" "$BASE_LOOP"
	fi
	last=$(sort -n "$M/$2.log" | tail -n1 | cut -d' ' -f1)
	BURST_SECS=$(awk -v a="$start" -v b="${last:-$start}" 'BEGIN { printf "%.2f", b - a }')
	BURST_LOST=$(seq 10000 $((10000 + BURST - 1)) | sed 's|$|.conf|' |
		grep -vxFf <(sed 's|.*/||' "$M/$2.log") | wc -l)
	BURST_DUP=$(sed 's|.*/||' "$M/$2.log" | sort | uniq -d | wc -l)
}
burst_run base base
bs=$BURST_SECS bl=$BURST_LOST bd=$BURST_DUP
burst_run ours hooks
echo "burst, $BURST guests created at once on this node (one hook run each):"
printf '  baseline: lost %d  duplicated %d  last hook after %6.2f s\n' "$bl" "$bd" "$bs"
printf '  ours:     lost %d  duplicated %d  last hook after %6.2f s  ratio %sx faster\n' \
	"$BURST_LOST" "$BURST_DUP" "$BURST_SECS" "$(ratio "$bs" "$BURST_SECS")"
# Anything the watcher had to say beyond its startup line.
if grep '^pve-watch-conf: ' "$W/ours.err" | grep -qv ': node pve1: '; then
	echo "  (messages from pve-watch-conf:)"
	grep '^pve-watch-conf: ' "$W/ours.err" | grep -v ': node pve1: ' | sort | uniq -c |
		sort -rn | head -n5 | sed 's/^/    /'
fi
