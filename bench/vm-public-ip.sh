#!/bin/bash
# vm-public-ip over 200 real guest agents (qemu-ga, each in unix-listen mode
# on its own socket, all in one network namespace of ours), 20 of them hung
# (SIGSTOP: the socket accepts, nobody answers), deadline 1 s per guest;
# against the loop an admin would write: socat to each agent in turn with
# the same framing and a 1 s timeout.
set -eu
N=${N:-200}
HUNG=${HUNG:-20}
TIMEOUT=${TIMEOUT:-1}

command -v qemu-ga >/dev/null || { echo "vm-public-ip bench: needs qemu-ga"; exit 1; }
command -v socat >/dev/null || { echo "vm-public-ip bench: needs socat"; exit 1; }
tmp=$(mktemp -d)
ns=pkbench-pub-$$
pids=()
cleanup() {
	local p
	exec 2>/dev/null # no "Killed" notices for the agents
	# a stopped qemu-ga may not act on SIGTERM when continued: no mercy here
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

pve=$tmp/pve run=$tmp/run
mkdir -p "$run"
pmxcfs-sim init "$pve" pve1 pve2 >/dev/null
PMXCFS_SIM_DEFER=1 pmxcfs-sim bulk "$pve" pve1 qemu 100 "$N"
pmxcfs-sim vmlist "$pve"

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name eth0p
ip -n "$ns" addr add 100.128.0.2/24 dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set eth0p up

for id in $(seq 100 $((100 + N - 1))); do
	# a process the running check accepts: started with -pidfile RUN/ID.pid
	perl -e 'sleep 100000' -- -pidfile "$run/$id.pid" &
	pids+=($!)
	echo $! >"$run/$id.pid"
	mkdir -p "$tmp/qga/$id"
	ip netns exec "$ns" qemu-ga -m unix-listen -p "$run/$id.qga" -t "$tmp/qga/$id" \
		-b guest-set-time 2>/dev/null &
	pids+=($!)
	echo $! >"$tmp/qga/$id/pid"
done
for id in $(seq 100 $((100 + N - 1))); do
	for _ in $(seq 500); do
		socat -u OPEN:/dev/null UNIX-CONNECT:"$run/$id.qga" 2>/dev/null && break
		sleep 0.02
	done
done
# every tenth agent hangs
hung=0
for id in $(seq 100 10 $((100 + N - 1))); do
	[ $hung -lt "$HUNG" ] || break
	kill -STOP "$(cat "$tmp/qga/$id/pid")"
	hung=$((hung + 1))
done

ms() { echo $(( $(date +%s%N) / 1000000 )); }

s=$(ms)
set +e
vm-public-ip --pve-dir "$pve" --node pve1 --run-dir "$run" --timeout "$TIMEOUT" --all -v \
	>"$tmp/ours.out" 2>"$tmp/ours.err"
rc=$?
set -e
ours=$(( $(ms) - s ))
answered=$(cut -d' ' -f1 "$tmp/ours.out" | sort -u | wc -l)
silent=$(grep -c 'no reply in' "$tmp/ours.err" || true)

s=$(ms)
for id in $(seq 100 $((100 + N - 1))); do
	printf '\377{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n{"execute":"guest-network-get-interfaces"}\n' "$id" |
		timeout "$TIMEOUT" socat -t "$TIMEOUT" - UNIX-CONNECT:"$run/$id.qga" 2>/dev/null |
		tr -d '\377' | tail -n 1 >"$tmp/base.$id"
done
base=$(( $(ms) - s ))
base_answered=$(grep -l '"return"' "$tmp"/base.* 2>/dev/null | wc -l)

awk -v o="$ours" -v b="$base" -v n="$N" -v h="$hung" -v a="$answered" -v s="$silent" \
	-v ba="$base_answered" -v rc="$rc" -v t="$TIMEOUT" 'BEGIN {
	printf "agents %d, hung %d, deadline %s s\n", n, h, t
	printf "ours (vm-public-ip, all at once):  %7d ms, %d answered, %d timed out, exit %d %s\n", o, a, s, rc, (o < 1500 ? "(target < 1.5 s: met)" : "(target < 1.5 s: MISSED)")
	printf "baseline (sequential socat loop):  %7d ms, %d answered\n", b, ba
	printf "ratio baseline/ours: %.1fx\n", b / o
}'
