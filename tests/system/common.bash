# Shared helpers for the system tests: a Debian 12 container booted with
# systemd as PID 1 (systemd-nspawn -b), driven from outside with nsenter.
# tests/system/run makes the root ($SYSTEM_ROOT) and the package
# ($SYSTEM_DEB) and runs the files. Every file does:
#   bats_require_minimum_version 1.5.0
#   setup_file() { load common; ct_boot; ct_install; ...; }
#   teardown_file() { load common; ct_halt; }
#   setup() { load common; }
# The container's root is the cached one under an overlay that is thrown
# away (--volatile=overlay), its network is its own (--private-network), and
# nothing of it survives ct_halt: halting PID 1 ends its pid namespace.

bats_load_library bats-support
bats_load_library bats-assert

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
# where a file's container keeps its pid files and console log
CTD=$BATS_FILE_TMPDIR/ct
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# wait_until SECONDS COMMAND...: polls every 100 ms, fails after SECONDS.
wait_until() {
	local limit=$1 i=0 n
	shift
	n=$(awk -v s="$limit" 'BEGIN { printf "%d", s * 10 }')
	until "$@" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -ge "$n" ]; then
			echo "wait_until: gave up after ${limit}s: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

ct_pid() { cat "$CTD/init.pid"; }

# close_fds: closes every descriptor above 2 of this (sub)shell, so what it
# starts (a container, a guest that outlives its qm start) holds none of
# bats' pipes: bats would wait for it.
close_fds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		[ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null || true
	done
}

# ct COMMAND...: runs COMMAND in the container (all its namespaces), as root,
# with a clean environment, as an admin's shell would.
ct() {
	(
		close_fds
		exec nsenter -t "$(ct_pid)" -a env -i PATH="$CT_PATH" LANG=C.UTF-8 TERM=dumb HOME=/root "$@"
	)
}

# ct_sh SCRIPT: runs a shell script in the container.
ct_sh() { ct /bin/bash -c "$1"; }

# ct_put PATH [MODE]: writes stdin to PATH in the container.
ct_put() {
	ct /bin/sh -c 'cat >"$1" && chmod "$2" "$1"' sh "$1" "${2:-0644}"
}

# ct_boot: boots the container; returns when systemd says the system runs.
ct_boot() {
	local init
	mkdir -p "$CTD"
	: "${SYSTEM_ROOT:?run through tests/system/run}"
	# --keep-unit and --register=no: nothing asked of a systemd on the host.
	# nspawn gets none of bats' descriptors, or bats would wait for it.
	(
		close_fds
		exec setsid systemd-nspawn --quiet --boot --register=no --keep-unit \
		--directory="$SYSTEM_ROOT" --volatile=overlay --private-network \
		--hostname=pve1 --machine="pvekit-test-$$" \
		--bind-ro="$TOP/tests/fakes:/usr/local/lib/pvekit-test/fakes" \
		--bind-ro="$(dirname "$SYSTEM_DEB"):/mnt/deb"
	) </dev/null >"$CTD/console.log" 2>&1 &
	echo $! >"$CTD/nspawn.pid"
	[ -z "${SYSTEM_PIDS:-}" ] || echo $! >>"$SYSTEM_PIDS"
	# PID 1 of the container is nspawn's child (nspawn is a subreaper).
	wait_until 30 bash -c "ps -o pid= --ppid $(cat "$CTD/nspawn.pid") | grep -q ." || {
		cat "$CTD/console.log" >&2
		return 1
	}
	init=$(ps -o pid= --ppid "$(cat "$CTD/nspawn.pid")" | head -n1)
	echo $((init)) >"$CTD/init.pid"
	# nspawn's child execs systemd once the container is set up
	wait_until 60 bash -c "[ \"\$(cat /proc/$((init))/comm)\" = systemd ] &&
		nsenter -t $((init)) -a test -S /run/systemd/private" || {
		cat "$CTD/console.log" >&2
		return 1
	}
	# "degraded" is fine: a unit of the minimal Debian may fail in a container
	timeout 120 nsenter -t "$(ct_pid)" -a env -i PATH="$CT_PATH" \
		systemctl is-system-running --wait >/dev/null || {
		ct systemctl --failed --no-pager >&2 || true
		ct systemctl is-system-running >&2 || true
	}
	ct systemctl is-system-running | grep -qx 'running\|degraded'
}

# ct_halt: powers the container off and waits for nspawn; SIGKILL to its
# PID 1 (which ends every process of its pid namespace) when it takes long.
ct_halt() {
	local nspawn init
	[ -f "$CTD/nspawn.pid" ] || return 0
	if [ -n "${SYSTEM_KEEP:-}" ]; then
		# debugging: the container stays up; ct_halt it by hand
		echo "$CTD" >>"$SYSTEM_KEEP"
		return 0
	fi
	nspawn=$(cat "$CTD/nspawn.pid")
	init=$(cat "$CTD/init.pid" 2>/dev/null || true)
	kill -TERM "$nspawn" 2>/dev/null || true # nspawn: SIGRTMIN+3 to PID 1, a clean poweroff
	for _ in $(seq 300); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$nspawn" 2>/dev/null; then
		echo "ct_halt: container did not power off in 30 s; killing it" >&2
		[ -z "$init" ] || kill -KILL "$init" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$nspawn" 2>/dev/null || true
	fi
	rm -f "$CTD/nspawn.pid"
}

# ct_install: installs the package (its dependencies are in the root), and
# the stand-ins for Proxmox's qm, pct, ha-manager and pmxcfs-sim, whose
# records go to /var/log/pve-fake.log.
ct_install() {
	ct apt-get install -y -q --no-install-recommends "/mnt/deb/$(basename "$SYSTEM_DEB")" >"$CTD/apt.log" 2>&1 || {
		cat "$CTD/apt.log" >&2
		return 1
	}
	ct_fakes
}

ct_fakes() {
	local t
	for t in qm pct ha-manager; do
		ct_put "/usr/sbin/$t" 0755 <<-EOF
			#!/bin/sh
			# test stand-in: tests/fakes/pve-bin/$t with this node's paths
			export PVEKIT_FAKE_LOG=/var/log/pve-fake.log PVEKIT_FAKE_RUN=/var/run/qemu-server \\
			    PVEKIT_FAKE_LXC=/var/lib/lxc PVEKIT_FAKE_PVE=/etc/pve PVEKIT_FAKE_SCOPE=1 \\
			    PVEKIT_FAKE_SHUTDOWN=ok PATH=/usr/local/lib/pvekit-test/fakes:\$PATH
			# a test's settings (PVEKIT_FAKE_ON_START, PVEKIT_FAKE_START_RC...)
			[ ! -r /run/pve-fake.env ] || . /run/pve-fake.env
			exec /usr/local/lib/pvekit-test/fakes/pve-bin/$t "\$@"
		EOF
	done
	ct_put /usr/local/sbin/pmxcfs-sim 0755 <<-EOF
		#!/bin/sh
		exec /usr/local/lib/pvekit-test/fakes/pmxcfs-sim "\$@"
	EOF
	ct mkdir -p /var/run/qemu-server /var/lib/lxc
	ct pmxcfs-sim init /etc/pve pve1 pve2 >/dev/null
}

# ct_guest VMID [KEY: VALUE]...: a QEMU guest created on this node, its
# config with a NIC, the given lines, and a name.
ct_guest() {
	local vmid=$1 f
	shift
	f=$(mktemp)
	{
		echo "name: vm$vmid"
		echo "net0: virtio=BC:24:11:00:00:$(printf %02X $((vmid % 256))),bridge=vmbr0"
		printf '%s\n' "$@"
	} >"$f"
	ct_put "/tmp/conf-$vmid" <"$f"
	rm -f "$f"
	ct pmxcfs-sim create /etc/pve pve1 qemu "$vmid" "/tmp/conf-$vmid"
}

# ct_agent VMID: the real QEMU guest agent on /var/run/qemu-server/VMID.qga,
# as a unit of its own (qga-VMID.service); guest-set-time is blocked, so no
# test ever sets a clock.
ct_agent() {
	ct systemd-run --quiet --unit="qga-$1" --collect --property="RuntimeDirectory=qga-$1" -- \
		/usr/sbin/qemu-ga -m unix-listen -p "/var/run/qemu-server/$1.qga" -t "/run/qga-$1" \
		-b guest-set-time
	wait_until 10 ct test -S "/var/run/qemu-server/$1.qga"
}

# ct_journal UNIT: the unit's journal as plain messages.
ct_journal() { ct journalctl -q -o cat --no-pager -u "$1"; }

# ct_seen UNIT SECONDS ERE: waits until a line of UNIT's journal matches.
ct_seen() {
	local unit=$1 secs=$2 re=$3
	wait_until "$secs" bash -c "nsenter -t $(ct_pid) -a journalctl -q -o cat --no-pager -u '$unit' | grep -qE -- \"\$0\"" "$re" || {
		echo "-- journal of $unit:" >&2
		ct_journal "$unit" | tail -n 30 >&2
		return 1
	}
}

# ct_debug UNIT...: after a failed test (call it from teardown), the end of
# each UNIT's journal and the pvekit units still loaded, on stderr.
ct_debug() {
	local u
	[ -z "${BATS_TEST_COMPLETED:-}" ] || return 0
	for u in "$@"; do
		echo "-- journal of $u:" >&2
		ct journalctl -q -o short-monotonic --no-pager -u "$u" | tail -n 40 >&2
	done
	echo "-- pvekit units:" >&2
	ct systemctl list-units --all --plain --no-legend --no-pager 'pvekit-*' >&2
}

# ct_units PATTERN: the units matching PATTERN that are not inactive (a
# transient unit that ended may stay loaded, dead, for a moment), one a line.
ct_units() { ct systemctl list-units --all --plain --no-legend "$1" | awk '$3 != "inactive" { print $1 }'; }
