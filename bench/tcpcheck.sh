#!/bin/bash
# tcpcheck, side by side with what an admin would otherwise use.
#
# 1. One-shot over 5,000 loopback endpoints, 500 of them blackholed (a full
#    accept queue drops the SYN), timeout 1 s: tcpcheck's wall time, against
#    nmap -sT -Pn on the same endpoints, twice: with its defaults (timeouts
#    adapted to the measured round trip, on loopback a few ms, and retries)
#    and with tcpcheck's contract, a fixed 1 s timeout and no retries; and a
#    sequential "nc -z -w1" loop, the shell way, over 200 of them (20
#    blackholed). Compared per endpoint.
# 2. tcpcheck --watch with 1,000 monitored guests on a simulated node (fake
#    QEMU processes, listeners on loopback): resident memory and CPU per check
#    cycle, against mvmm's model, one Perl process per guest with the modules
#    mvmm loads, each connecting with a 1 s timeout every cycle (mvmm itself
#    needs AppConfig and File::Pid, which are not packaged here; its process
#    per guest is what costs). The Perl side is measured on MVMM_SAMPLE guests
#    and scaled to 1,000.
# Figures are the best of RUNS runs where a run is cheap.
set -eu
# A network namespace of its own: loopback traffic and TIME_WAIT sockets of
# other work on this machine stay out of the figures.
if [ -z "${TCPCHECK_BENCH_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	export TCPCHECK_BENCH_NETNS=1
	exec unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
N=${N:-5000}
HOLES=${HOLES:-500}
NC_N=${NC_N:-200}
NC_HOLES=${NC_HOLES:-20}
GUESTS=${GUESTS:-1000}
CYCLES=${CYCLES:-10}
MVMM_SAMPLE=${MVMM_SAMPLE:-50}
RUNS=${RUNS:-3}
top=$(cd "$(dirname "$0")/.." && pwd)

for t in tcpcheck nmap nc perl python3 pmxcfs-sim; do
	command -v "$t" >/dev/null || { echo "tcpcheck bench: needs $t"; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -z "${fake_pids:-}" ] || xargs -r kill <"$fake_pids" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

now_us() { echo $(( $(date +%s%N) / 1000 )); }
ms() { awk -v us="$1" 'BEGIN { printf "%.0f", us / 1000 }'; }
per() { awk -v us="$1" -v n="$2" 'BEGIN { printf "%.3f", us / 1000 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b / a }'; }

# ---- 1. one-shot
"$top/bench/tcpcheck-ports" --open $((N - HOLES)) --blackhole "$HOLES" >"$tmp/ports" &
pids+=($!)
for _ in $(seq 600); do grep -qx ready "$tmp/ports" 2>/dev/null && break; sleep 0.1; done
grep -qx ready "$tmp/ports" || { echo "tcpcheck bench: port helper failed"; exit 1; }
mapfile -t open < <(awk '$1 == "open" { print $2 }' "$tmp/ports")
mapfile -t holes < <(awk '$1 == "blackhole" { print $2 }' "$tmp/ports")
all=("${open[@]}" "${holes[@]}")

best=
for _ in $(seq "$RUNS"); do
	s=$(now_us)
	tcpcheck -t 1000 127.0.0.1 "${all[@]}" >"$tmp/ours.out" || true
	e=$(( $(now_us) - s ))
	[ -n "$best" ] && [ "$best" -le "$e" ] || best=$e
done
ours=$best
ours_open=$(grep -c ' open ' "$tmp/ours.out" || true)
ours_to=$(grep -c ' timeout ' "$tmp/ours.out" || true)
[ "$ours_open" -eq $((N - HOLES)) ] && [ "$ours_to" -eq "$HOLES" ] ||
	echo "WARNING: tcpcheck saw $ours_open open and $ours_to timeouts, not $((N - HOLES)) and $HOLES"

list=$(IFS=,; echo "${all[*]}")
nmap_run() { # nmap_run FLAGS...: sets nmap_us and nmap_open
	local s
	s=$(now_us)
	nmap -sT -Pn -n "$@" -p "$list" -oG "$tmp/nmap.out" 127.0.0.1 >/dev/null
	nmap_us=$(( $(now_us) - s ))
	nmap_open=$(grep -o '[0-9]*/open/' "$tmp/nmap.out" | wc -l)
}
nmap_run
nmap_def_us=$nmap_us nmap_def_open=$nmap_open
nmap_run --max-retries 0 --initial-rtt-timeout 1000ms --min-rtt-timeout 1000ms \
	--max-rtt-timeout 1000ms
nmap_fix_us=$nmap_us nmap_fix_open=$nmap_open

sub=("${open[@]:0:$((NC_N - NC_HOLES))}" "${holes[@]:0:$NC_HOLES}")
s=$(now_us)
nc_open=0
for p in "${sub[@]}"; do
	if nc -z -w1 127.0.0.1 "$p" 2>/dev/null; then nc_open=$((nc_open + 1)); fi
done
nc_us=$(( $(now_us) - s ))
kill "${pids[0]}" 2>/dev/null || true

echo "one-shot: $N loopback endpoints, $HOLES blackholed, timeout 1 s"
printf '  %-36s %7s ms  %8s ms/endpoint  %s\n' "tcpcheck (best of $RUNS)" "$(ms "$ours")" \
	"$(per "$ours" "$N")" "open $ours_open, timeout $ours_to (goal: < 1500 ms)"
row() { # row LABEL US N OPEN
	printf '  %-36s %7s ms  %8s ms/endpoint  open %s; per endpoint %sx tcpcheck\n' "$1" \
		"$(ms "$2")" "$(per "$2" "$3")" "$4" "$(ratio "$(per "$ours" "$N")" "$(per "$2" "$3")")"
}
row "nmap -sT -Pn (its defaults)" "$nmap_def_us" "$N" "$nmap_def_open"
row "nmap -sT -Pn, fixed 1 s, no retries" "$nmap_fix_us" "$N" "$nmap_fix_open"
row "nc -z -w1 loop, $NC_N endpoints" "$nc_us" "$NC_N" "$nc_open"

# ---- 2. --watch with 1,000 guests
pve=$tmp/pve run=$tmp/run conf=$tmp/conf
mkdir -p "$run" "$conf"
pmxcfs-sim init "$pve" pve1 pve2 >/dev/null
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$pve" pve1 qemu 100 "$GUESTS"
pmxcfs-sim vmlist "$pve"
"$top/bench/tcpcheck-ports" --open 10 >"$tmp/wports" &
pids+=($!)
for _ in $(seq 100); do grep -qx ready "$tmp/wports" 2>/dev/null && break; sleep 0.1; done
mapfile -t wopen < <(awk '$1 == "open" { print $2 }' "$tmp/wports")

# A fake QEMU is a shell blocked on a FIFO, started with "-pidfile" as
# qemu-server starts QEMU, so the running check accepts it.
mkfifo "$tmp/hold"
exec 9<>"$tmp/hold"
fake_pids=$tmp/fake.pids
: >"$fake_pids"
for id in $(seq 100 $((100 + GUESTS - 1))); do
	sh -c 'read x' qemu-fake -pidfile "$run/$id.pid" <&9 &
	echo $! >"$run/$id.pid"
	echo $! >>"$fake_pids"
	printf 'ip=127.0.0.1\nportsall=%s\n' "${wopen[$((id % 10))]}" >"$conf/$id.conf"
done
printf 'check_interval=1\nfail_interval=1\ntimeout=1\nrecovery_time=0\nlog_interval=3600\n' \
	>"$conf/defaults.conf"

tcpcheck --watch -n --config-dir "$conf" --pve-dir "$pve" --node pve1 --run-dir "$run" \
	--lxc-dir "$tmp/lxc" >"$tmp/watch.out" 2>"$tmp/watch.err" &
wpid=$!
pids+=($wpid)
for _ in $(seq 600); do
	[ "$(grep -c ' healthy up$' "$tmp/watch.out" || true)" -ge "$GUESTS" ] && break
	sleep 0.1
done
healthy=$(grep -c ' healthy up$' "$tmp/watch.out" || true)
sleep 2 # settle
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
c0=$(cpu "$wpid") u0=$(awk '{ print $14 }' "/proc/$wpid/stat")
sleep "$CYCLES"
c1=$(cpu "$wpid") u1=$(awk '{ print $14 }' "/proc/$wpid/stat")
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$wpid/status")
pss_kb=$(awk '/^Pss:/ { print $2 }' "/proc/$wpid/smaps_rollup")
ours_cpu_ms=$(awk -v d=$((c1 - c0)) -v t="$tck" -v c="$CYCLES" 'BEGIN { printf "%.1f", d * 1000 / t / c }')
ours_user_ms=$(awk -v d=$((u1 - u0)) -v t="$tck" -v c="$CYCLES" 'BEGIN { printf "%.1f", d * 1000 / t / c }')
kill "$wpid"

# mvmm's model: a Perl process per guest, checking its port every second.
mpids=()
for i in $(seq "$MVMM_SAMPLE"); do
	perl -MIO::Socket::INET -MIO::Socket::UNIX -MSys::Syslog -MPOSIX -MTime::HiRes=sleep \
		-MJSON::PP -e '
		my ($port) = @ARGV;
		while (1) {
			my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 1);
			close($s) if $s;
			sleep(1);
		}' "${wopen[$((i % 10))]}" &
	mpids+=($!)
	pids+=($!)
done
sleep 3
m0=0
for p in "${mpids[@]}"; do m0=$((m0 + $(cpu "$p"))); done
sleep "$CYCLES"
m1=0 mrss=0 mpss=0
for p in "${mpids[@]}"; do
	m1=$((m1 + $(cpu "$p")))
	mrss=$((mrss + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status")))
	mpss=$((mpss + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup")))
done
for p in "${mpids[@]}"; do kill "$p"; done
scale=$(awk -v g="$GUESTS" -v s="$MVMM_SAMPLE" 'BEGIN { print g / s }')
mvmm_pss_mb=$(awk -v k="$mpss" -v f="$scale" 'BEGIN { printf "%.0f", k * f / 1024 }')
mvmm_rss_mb=$(awk -v k="$mrss" -v f="$scale" 'BEGIN { printf "%.0f", k * f / 1024 }')
mvmm_cpu_ms=$(awk -v d=$((m1 - m0)) -v t="$tck" -v c="$CYCLES" -v f="$scale" \
	'BEGIN { printf "%.1f", d * 1000 / t / c * f }')

echo "--watch: $GUESTS guests ($healthy healthy), check every 1 s, rescan every 2 s, $CYCLES cycles"
printf '  %-36s RSS %6.1f MB  PSS %6.1f MB  CPU %6s ms per cycle  (goal: RSS < 8 MB)\n' \
	"tcpcheck --watch (1 process)" "$(awk -v k="$rss_kb" 'BEGIN { print k / 1024 }')" \
	"$(awk -v k="$pss_kb" 'BEGIN { print k / 1024 }')" "$ours_cpu_ms"
printf '  %-36s of which user space %s ms: the rest is the kernel'"'"'s loopback TCP,\n' "" "$ours_user_ms"
printf '  %-36s both ends of every handshake, charged to the connecting process\n' ""
printf '  %-36s RSS %6s MB  PSS %6s MB  CPU %6s ms per cycle\n' \
	"mvmm model ($GUESTS perl processes)" "$mvmm_rss_mb" "$mvmm_pss_mb" "$mvmm_cpu_ms"
printf '  %-36s PSS %sx, CPU %sx tcpcheck (perl measured on %s guests, scaled)\n' "ratio" \
	"$(ratio "$(awk -v k="$pss_kb" 'BEGIN { print k / 1024 }')" "$mvmm_pss_mb")" \
	"$(ratio "$ours_cpu_ms" "$mvmm_cpu_ms")" "$MVMM_SAMPLE"
