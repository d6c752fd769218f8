#!/bin/bash
# make demo: the migration monitor end to end, in a sandbox.
#
# A two-node cluster (pve1 is "this" node, pve2 the other) simulated as a
# plain directory tree with real Proxmox config text and a .vmlist rendered
# byte for byte as pmxcfs renders it; the real pipeline
#   pve-watch-conf | run-hooks --events HOOKS
# runs on it with two demo hooks and the shipped failoverip-up hook, which
# moves a failover IP through a local stand-in of the Hetzner Robot API.
# Nothing outside the sandbox directory is touched.
set -u -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${PVEKIT_BUILD:-$top/build}
shipped_hooks=${PVEKIT_HOOKS:-$top/share/hooks} # /usr/share/pvekit/hooks when installed
export PATH="$build:$top/tests/fakes:$PATH"
S=$(mktemp -d /tmp/pvekit-demo.XXXXXX)
PVE=$S/pve HOOKS=$S/hooks STATE=$S/state
pids=()

cleanup() {
	local p
	# The watcher's exit ends the pipeline: tee and run-hooks see EOF.
	pkill -TERM -f "pve-watch-conf --pve-dir $PVE" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$S"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then b=$'\e[1m' d=$'\e[2m' g=$'\e[32m' c=$'\e[36m' r=$'\e[0m'; else b= d= g= c= r=; fi
step() { printf '\n%s==> %s%s\n' "$b" "$*" "$r"; }
say() { printf '    %s\n' "$*"; }
run() { printf '    %s$ %s%s\n' "$d" "$*" "$r"; "$@" >/dev/null; }

# Events and hook lines seen so far; show() prints the new ones.
shown_events=0 shown_log=0
count() { if [ -f "$1" ]; then grep -c -- "$2" "$1"; else echo 0; fi; }
# wait_for EVENTS HOOK_RUNS: until the pipeline printed that many events in
# total and run-hooks reported that many finished hooks (5 s at most).
wait_for() {
	local i
	for ((i = 0; i < 250; i++)); do
		[ "$(count "$S/events" .)" -ge "$1" ] &&
			[ "$(count "$S/pipeline.log" ' s)$')" -ge "$2" ] && break
		sleep 0.02
	done
	sleep 0.1 # let a wrongly emitted extra event show up, if there were one
}
show() {
	local n
	n=$(count "$S/events" .)
	if [ "$n" -gt "$shown_events" ]; then
		sed -n "$((shown_events + 1)),${n}p" "$S/events" | sed "s|$S|SANDBOX|g; s/^/    ${g}event${r} /"
	elif [ "${1:-}" != quiet ]; then
		say "${d}(no event)${r}"
	fi
	shown_events=$n
	n=$(count "$S/pipeline.log" .)
	[ "$n" -le "$shown_log" ] ||
		sed -n "$((shown_log + 1)),${n}p" "$S/pipeline.log" | sed "s|$S|SANDBOX|g; s/^/    ${c}log${r}   /"
	shown_log=$n
}

start_pipeline() {
	{ pve-watch-conf --pve-dir "$PVE" --node pve1 --state-dir "$STATE" --interval 0.25 |
		tee -a "$S/events" |
		run-hooks --events "$HOOKS" --node pve1 --state-dir "$STATE" --timeout 60; } \
		2>>"$S/pipeline.log" &
	pipeline=$!
	pids+=("$pipeline")
	for ((i = 0; i < 250; i++)); do grep -q 'guests:' "$S/pipeline.log" 2>/dev/null && break; sleep 0.02; done
}

stop_pipeline() {
	pkill -TERM -f "pve-watch-conf --pve-dir $PVE" 2>/dev/null
	wait "$pipeline" 2>/dev/null
}

cat <<EOF
${b}pvekit demo${r}: guests arriving at and leaving node pve1 of a simulated cluster.
Sandbox: $S (removed at the end). Programs from $build.
EOF

# --- the cluster, the hooks, the provider -----------------------------------
pmxcfs-sim init "$PVE" pve1 pve2
mkdir -p "$HOOKS/up.d" "$HOOKS/down.d" "$PVE/pvekit/failoverip"
cat >"$HOOKS/up.d/10-hello" <<'EOF'
#!/bin/sh
# An admin's hook: one argument, the guest's config; details in PVEKIT_*.
name=$(sed -n 's/^\(name\|hostname\): //p' "$1" | head -n1)
echo "$PVEKIT_TYPE $PVEKIT_VMID ($name) is now here: $PVEKIT_EVENT${PVEKIT_PEER:+ from $PVEKIT_PEER}"
EOF
cat >"$HOOKS/down.d/10-goodbye" <<'EOF'
#!/bin/sh
name=$(sed -n 's/^\(name\|hostname\): //p' "$1" | head -n1)
echo "$PVEKIT_TYPE $PVEKIT_VMID ($name) left: $PVEKIT_EVENT${PVEKIT_PEER:+ to $PVEKIT_PEER}, config at $1"
EOF
chmod +x "$HOOKS/up.d/10-hello" "$HOOKS/down.d/10-goodbye"
ln -s "$shipped_hooks/failoverip-up" "$HOOKS/up.d/50-failoverip"

# The Hetzner Robot stand-in: failover IP 203.0.113.60 is routed to pve2
# (198.51.100.20); this node, pve1, is 198.51.100.10.
export PROVIDER_API_USER='#ws+demo' PROVIDER_API_PASSWORD='demo-secret'
provider-api --provider hetzner --port-file "$S/api.port" --log "$S/api.log" \
	--ip 203.0.113.60=198.51.100.20 --server 198.51.100.10 --server 198.51.100.20 \
	2>"$S/api.err" &
pids+=($!)
for ((i = 0; i < 250; i++)); do [ -s "$S/api.port" ] && break; sleep 0.02; done
umask 077
cat >"$S/failoverip.conf" <<EOF
provider = hetzner
api_url = http://127.0.0.1:$(cat "$S/api.port")
user = #ws+demo
password = demo-secret
destination = 198.51.100.10
EOF
umask 022
export PVEKIT_CONFIG_DIR=$PVE/pvekit PVEKIT_FAILOVERIP_CONF=$S/failoverip.conf

start_pipeline
say "running: pve-watch-conf --node pve1 | run-hooks --events HOOKS"
say "hooks:   up.d/10-hello, up.d/50-failoverip (shipped), down.d/10-goodbye"
show quiet

# --- the story ---------------------------------------------------------------
step "1. A VM is created on this node"
run pmxcfs-sim create "$PVE" pve1 qemu 100 "$top/tests/fixtures/conf/qemu-plain.conf"
wait_for 1 2; show

step "2. Another node creates a container: not ours, no event"
run pmxcfs-sim create "$PVE" pve2 lxc 101 "$top/tests/fixtures/conf/lxc-debian-004.conf"
wait_for 1 2; show

step "3. Edits, a backup lock, a snapshot on VM 100: no event (pve-migration-monitor fired on each)"
run pmxcfs-sim edit "$PVE" 100 "memory: 1024"
run pmxcfs-sim lock "$PVE" 100 backup
run pmxcfs-sim lock "$PVE" 100 ""
run pmxcfs-sim snapshot "$PVE" 100 before-upgrade
wait_for 1 2; show

step "4. pve2 migrates container 101 here; it owns failover IP 203.0.113.60"
say "$(failoverip-set -c "$S/failoverip.conf" --list 203.0.113.60 2>&1 | sed 's/^/route before: /')"
printf '203.0.113.60\n' >"$PVE/pvekit/failoverip/101"
run pmxcfs-sim migrate "$PVE" 101 pve1
wait_for 2 4; show
say "the hook's calls to the provider API (a GET first, then one switch):"
jq -r '"      \(.method) \(.path) -> \(.status)"' "$S/api.log" | tail -n +2
say "$(failoverip-set -c "$S/failoverip.conf" --list 203.0.113.60 2>&1 | sed 's/^/route after:  /')"

step "5. VM 100 migrates to pve2"
run pmxcfs-sim migrate "$PVE" 100 pve2
wait_for 3 5; show

step "6. Container 101 is destroyed: down.d gets a kept copy of its last config"
run pmxcfs-sim destroy "$PVE" 101
wait_for 4 6; show

step "7. The pipeline stops; meanwhile VM 102 is created; on restart it is reported once"
stop_pipeline
say "(pipeline stopped)"
run pmxcfs-sim create "$PVE" pve1 qemu 102 "$top/tests/fixtures/conf/qemu-regular-vm-efi.conf"
start_pipeline
wait_for 5 8; show

step "Summary"
say "events: $(count "$S/events" .) (create, migrate-in, migrate-out, destroy, and the create missed while stopped)"
say "hook runs: $(count "$S/pipeline.log" ' s)$'), failures: $(count "$S/pipeline.log" 'exited\|timed out\|killed')"
say "provider API calls: $(count "$S/api.log" .) including 2 by --list ($(count "$S/api.log" '"POST"') switch)"
[ "$(count "$S/events" .)" -eq 5 ] || { echo "demo: expected 5 events" >&2; exit 1; }
