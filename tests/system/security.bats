# Every unit of the package, in the booted system: systemd-analyze verify is
# silent, and systemd-analyze security's exposure of each service is at most
# the level recorded here (and written to $SYSTEM_REPORT for the notes).
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
	ct_install
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }

units() { ct bash -c 'cd /lib/systemd/system && ls pvekit-*.service pvekit-*.timer'; }

@test "systemd-analyze verify is silent for every unit in the booted system" {
	run -0 units
	[ "${#lines[@]}" -ge 9 ]
	run -0 ct bash -c 'cd /lib/systemd/system && systemd-analyze verify --man=no pvekit-*.service pvekit-*.timer 2>&1'
	assert_output ""
}

# the highest exposure each service may have; the watchers' own units stay
# low now that the admin's code (hooks, --exec, actions) runs outside them
declare -gA MAX=(
	[pvekit-watch.service]=1.5
	[pvekit-qga-ping.service]=1.5
	[pvekit-tcpcheck.service]=2.5
	[pvekit-vm-ip-from-arp.service]=2.5
	[pvekit-vm-public-ip.service]=3.0
	[pvekit-qga-timesync.service]=1.5
	# no sandbox on purpose: what it starts (qm, pct) must not inherit one
	[pvekit-start-plan.service]=10.0
)

@test "systemd-analyze security: each service's exposure is at most its recorded level" {
	local u level bad=0
	for u in $(ct bash -c 'cd /lib/systemd/system && ls pvekit-*.service'); do
		level=$(ct systemd-analyze security --no-pager "$u" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
		[ -n "$level" ] || { echo "$u: no exposure level" >&2; bad=1; continue; }
		echo "exposure $u $level" >>"${SYSTEM_REPORT:-/dev/null}"
		echo "# $u: $level (at most ${MAX[$u]:-none})" >&3
		if [ -z "${MAX[$u]:-}" ] || awk -v l="$level" -v m="${MAX[$u]}" 'BEGIN { exit !(l > m) }'; then
			echo "$u: exposure $level, recorded at most ${MAX[$u]:-(none)}" >&2
			bad=1
		fi
	done
	[ "$bad" = 0 ]
}
