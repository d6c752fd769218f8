# The package's life on a booted Debian 12: install (nothing enabled or
# started), apt remove (every unit stopped, no process left, the admin's
# files and the state kept), apt purge (state under /var/lib/pvekit and the
# enablement links gone, the admin's own files under /etc/pvekit left, as
# Debian policy wants for files the package did not ship), reinstall.
bats_require_minimum_version 1.5.0

setup_file() {
	load common
	ct_boot
}

teardown_file() {
	load common
	ct_halt
}

setup() { load common; }

deb() { echo "/mnt/deb/$(basename "$SYSTEM_DEB")"; }
apt_get() { ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }
pvekit_processes() { ct pgrep -a -f '^(/usr/bin/)?(pve-watch-conf|run-hooks|tcpcheck|qga-ping)( |$)'; }

@test "install: the programs, units and hook dirs are there; nothing is enabled or started" {
	run -0 apt_get install --no-install-recommends "$(deb)"
	run -0 ct dpkg-query -W -f '${Status}' pvekit
	assert_output "install ok installed"
	run -0 ct ls -d /etc/pvekit/up.d /etc/pvekit/down.d /usr/bin/run-hooks /lib/systemd/system/pvekit-watch.service
	for u in pvekit-watch.service pvekit-tcpcheck.service pvekit-qga-ping.service \
		pvekit-vm-ip-from-arp.timer pvekit-vm-public-ip.timer pvekit-qga-timesync.timer; do
		run ct systemctl is-enabled "$u"
		assert_output disabled
		run ct systemctl is-active "$u"
		assert_output inactive
	done
	run pvekit_processes
	assert_failure
	ct_fakes
}

@test "reinstall over a running watcher restarts it on the new programs" {
	run -0 ct systemctl start pvekit-watch.service
	old=$(ct systemctl show -P MainPID pvekit-watch.service)
	run -0 apt_get install --reinstall --no-install-recommends "$(deb)"
	run -0 ct systemctl is-active pvekit-watch.service
	new=$(ct systemctl show -P MainPID pvekit-watch.service)
	[ "$new" != "$old" ]
	run -0 ct systemctl stop pvekit-watch.service
}

# newer DEB: the package as version 0.1.0+systest (its control file
# changed, nothing else), for an upgrade from the version installed
newer_deb() {
	local d=$BATS_FILE_TMPDIR/newer
	rm -rf "$d"
	mkdir -p "$d"
	dpkg-deb -R "$SYSTEM_DEB" "$d/root"
	sed -i 's/^Version: .*/&+systest/' "$d/root/DEBIAN/control"
	dpkg-deb -b -Zgzip "$d/root" "$d/pvekit.deb" >/dev/null
	ct_put /root/pvekit-newer.deb <"$d/pvekit.deb"
}

@test "upgrade to a newer version: the watchers that ran run the new programs, the stopped ones stay stopped" {
	newer_deb
	ct mkdir -p /etc/pve/pvekit/tcpcheck
	run -0 ct systemctl start pvekit-watch.service pvekit-tcpcheck.service
	old_watch=$(ct systemctl show -P MainPID pvekit-watch.service)
	old_tcp=$(ct systemctl show -P MainPID pvekit-tcpcheck.service)
	run -0 apt_get install --no-install-recommends /root/pvekit-newer.deb
	run -0 ct dpkg-query -W -f '${Version}' pvekit
	assert_output --regexp '[+]systest$'
	for u in pvekit-watch.service pvekit-tcpcheck.service; do
		run -0 ct systemctl is-active "$u"
	done
	new_watch=$(ct systemctl show -P MainPID pvekit-watch.service)
	new_tcp=$(ct systemctl show -P MainPID pvekit-tcpcheck.service)
	[ "$new_watch" != "$old_watch" ]
	[ "$new_tcp" != "$old_tcp" ]
	run ct systemctl is-active pvekit-qga-ping.service
	assert_output inactive
	run ct systemctl is-enabled pvekit-watch.service
	assert_output disabled
	run -0 ct systemctl stop pvekit-watch.service pvekit-tcpcheck.service
}

@test "apt remove: every unit stopped, no process left; the admin's hooks and the state kept" {
	ct_put /etc/pvekit/up.d/10-mine 0755 <<-'EOF'
		#!/bin/sh
		echo "$PVEKIT_EVENT $PVEKIT_VMID" >>/var/log/mine.log
		[ "$PVEKIT_VMID" != 301 ] || exec sleep 300
	EOF
	ct mkdir -p /etc/pve/pvekit/tcpcheck
	run -0 ct systemctl enable --now pvekit-watch.service pvekit-tcpcheck.service \
		pvekit-qga-ping.service pvekit-vm-ip-from-arp.timer pvekit-vm-public-ip.timer \
		pvekit-qga-timesync.timer
	ct_guest 301
	wait_until 30 ct grep -qx 'create 301' /var/log/mine.log
	run -0 ct_units 'pvekit-hook-*'
	assert_output --regexp '^pvekit-hook-301-10-mine-'
	run -0 apt_get remove pvekit
	run -0 ct systemctl list-units --plain --no-legend --state=active,activating,deactivating 'pvekit-*'
	assert_output ""
	run pvekit_processes
	assert_failure
	run ct pgrep -f 'sleep 300'
	assert_failure
	run -0 ct dpkg-query -W -f '${Status}' pvekit
	assert_output "deinstall ok config-files"
	run -0 ct test -x /etc/pvekit/up.d/10-mine
	run -0 ct test -d /var/lib/pvekit/run-hooks
	# the enablement stays for a reinstall, as for every Debian service
	run -0 ct test -L /etc/systemd/system/multi-user.target.wants/pvekit-watch.service
}

@test "apt purge: the state and the enablement gone, the admin's own files left in place" {
	run -0 apt_get purge pvekit
	run ct dpkg-query -W -f '${Status}' pvekit
	refute_output --partial "installed"
	refute_output --partial "config-files"
	run ct test -e /var/lib/pvekit
	assert_failure
	run ct bash -c 'ls /etc/systemd/system/*.wants/pvekit-* 2>/dev/null'
	assert_output ""
	run -0 ct test -x /etc/pvekit/up.d/10-mine
	run ct test -e /etc/pvekit/down.d
	assert_failure
}

@test "reinstall after purge: installs again, nothing enabled; the watcher starts afresh and runs the admin's hooks" {
	run -0 apt_get install --no-install-recommends "$(deb)"
	run ct systemctl is-enabled pvekit-watch.service
	assert_output disabled
	run -0 ct ls -d /etc/pvekit/down.d
	run -0 ct systemctl enable --now pvekit-watch.service
	ct_guest 302
	wait_until 30 ct grep -qx 'create 302' /var/log/mine.log
	# 301 was there when it started afresh: no event for it
	run -0 ct grep -c 'create 301' /var/log/mine.log
	assert_output 1
}
