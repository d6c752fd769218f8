#!/bin/bash
# pve-move against proxmove's copy pipeline and a bare "ssh cat > file", on
# the test set-up (two fake clusters, two real sshd on loopback, real
# qemu-img and qemu-nbd; see tests/bats/pve-move.bash):
#  1. a 2 GiB image with half of its 1 MiB blocks random and half never
#     written, once raw and once qcow2, moved between "dir" storages:
#       - pve-move, the source read through ssh (as from an admin host),
#         the same with --direct (the source host sends to the target
#         itself), and read here (a storage section without ssh=, as on
#         the source node);
#       - proxmove's pipeline: rsync (no --sparse, as proxmove runs it) into
#         a temp dir on the target, then mv into place (also timed with a
#         sync after the mv, as pve-move syncs); and for a ZFS or LVM
#         target, rsync into temp then qemu-img convert -n into the volume;
#       - ssh cat > file of the image file.
#     Reported: wall time and its ratio, bytes written on the target
#     (allocated in the end plus what temp held), temp space.
#  2. throughput on incompressible data: 1 GiB of random bytes, pve-move vs
#     ssh cat, and vs ssh cat with the file synced after it (pve-move syncs
#     each disk before it counts as copied; cat does not).
# Wall times include pve-move's API calls and ssh logins. Each is taken
# ROUNDS times (PVE_MOVE_BENCH_ROUNDS, 3 by default), the rounds
# interleaved, and the median shown: on a shared machine one run swings by
# a second.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${PVEKIT_BUILD:-$top/build}:$top/tests/fakes:$PATH"
FAKES=$top/tests/fakes
SIZE_MB=${PVE_MOVE_BENCH_MB:-2048}
ROUNDS=${PVE_MOVE_BENCH_ROUNDS:-3}
T=$(mktemp -d /tmp/pve-move-bench.XXXXXX)
: >"$T/.bg-pids"
start_bg() {
	"$@" &
	echo $! >>"$T/.bg-pids"
	BG_PID=$!
}
wait_until() {
	local limit=$1 i=0 n
	shift
	n=$(awk -v s="$limit" 'BEGIN { printf "%d", s * 50 }')
	until "$@" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -lt "$n" ] || return 1
		sleep 0.02
	done
}
cleanup() {
	while read -r p; do kill "$p" 2>/dev/null || true; done <"$T/.bg-pids"
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
# shellcheck source=../tests/bats/pve-move.bash
. "$top/tests/bats/pve-move.bash"

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
alloc() { du -B1 "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
# median FILE: the median of the first column of each line
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# round NAME CMD...: CMD's output line ("seconds more...") appended to
# $T/r.NAME; last NAME: the median of the seconds and the rest of the last
# line
round() {
	local name=$1
	shift
	"$@" >>"$T/r.$name" || exit 1
}
last() { echo "$(median "$T/r.$1") $(tail -1 "$T/r.$1" | cut -d' ' -f2-)"; }

echo "setting up: two fake clusters, two sshd, a ${SIZE_MB} MiB image; each time the median of $ROUNDS rounds..."
pm_setup >/dev/null
pm_agent
SSH=(ssh -F "$T/ssh/config" -T -c aes128-gcm@openssh.com)
img=$T/half.raw
python3 - "$img" "$SIZE_MB" <<'PY'
import os, sys
path, mb = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.truncate(mb << 20)
    for i in range(0, mb, 2):  # every other MiB: random data; the rest: never written
        f.seek(i << 20)
        f.write(os.urandom(1 << 20))
PY
qemu-img convert -f raw -O qcow2 "$img" "$T/half.qcow2"
sync

# move_one FMT FILE STORAGE-SECTION-SSH: pve-move of a one-disk VM, prints
# "seconds target-bytes"
vmid=300
move_one() {
	local fmt=$1 file=$2 srcssh=$3 dst t0 t1 opt=
	[ "$srcssh" = direct ] && opt=--direct
	vmid=$((vmid + 1))
	mkdir -p "$T/src/local/images/$vmid"
	cp --reflink=auto --sparse=always "$file" "$T/src/local/images/$vmid/vm-$vmid-disk-0.$fmt"
	pm_guest src "$vmid" qemu pve1 stopped "name: b$vmid
scsi0: local:$vmid/vm-$vmid-disk-0.$fmt,size=${SIZE_MB}M"
	if [ "$srcssh" = local ]; then
		sed -i '/^\[storage:src:local\]/{n;s/^ssh=.*/ssh_here_removed=1/}' "$T/rc"
		sed -i '/^ssh_here_removed=1$/d' "$T/rc"
	fi
	sync
	t0=$(now_ns)
	pm_run $opt --skip-start src dst pve3 local "b$vmid" 2>"$T/move.err" ||
		{ cat "$T/move.err" >&2; return 1; }
	t1=$(now_ns)
	pm_rc >/dev/null
	dst=$T/dst/local/images/$vmid/vm-$vmid-disk-0.$fmt
	qemu-img compare -q "$file" "$dst"
	# the copy's own rate, from the last progress line: the wall time also
	# holds the API calls and each ssh login
	echo "$(secs "$t0" "$t1") $(alloc "$dst") $(grep -o 'by [a-z]*' "$T/move.err" | head -1 | tr ' ' _) $(grep -o '[0-9.]* [KMG]iB/s' "$T/move.err" | tail -1 | tr ' ' _)"
	rm -rf "$T/dst/local/images/$vmid" "$T/src/local/images/$vmid"
}

# proxmove's plain-to-plain pipeline: rsync into temp, mv into place; with
# "sync", the file synced after it, as pve-move syncs each disk.
# Prints "seconds target-bytes temp-bytes".
proxmove_mv() {
	local file=$1 name t0 t1 tb after=
	name=$(basename "$file")
	[ "${2:-}" = sync ] && after=" && sync $T/dst/final-$name"
	mkdir -p "$T/dst/temp"
	sync
	t0=$(now_ns)
	rsync -e "ssh -F $T/ssh/config -c aes128-gcm@openssh.com" "$file" "root@dst-host:$T/dst/temp/$name"
	tb=$(alloc "$T/dst/temp/$name")
	"${SSH[@]}" root@dst-host "mv $T/dst/temp/$name $T/dst/final-$name$after"
	t1=$(now_ns)
	echo "$(secs "$t0" "$t1") $(alloc "$T/dst/final-$name") $tb"
	rm -f "$T/dst/final-$name"
}

# proxmove's plain-to-ZFS pipeline: rsync into temp, qemu-img convert -n
# into the (here: fresh, thin) volume, rm temp.
proxmove_convert() {
	local file=$1 fmt=$2 name t0 t1 tb
	name=$(basename "$file")
	mkdir -p "$T/dst/temp"
	truncate -s "${SIZE_MB}M" "$T/dst/zvol-$name"
	sync
	t0=$(now_ns)
	rsync -e "ssh -F $T/ssh/config -c aes128-gcm@openssh.com" "$file" "root@dst-host:$T/dst/temp/$name"
	tb=$(alloc "$T/dst/temp/$name")
	"${SSH[@]}" root@dst-host "qemu-img convert -n -t none -f $fmt -O raw $T/dst/temp/$name $T/dst/zvol-$name 2>/dev/null || qemu-img convert -n -f $fmt -O raw $T/dst/temp/$name $T/dst/zvol-$name; rm $T/dst/temp/$name"
	t1=$(now_ns)
	echo "$(secs "$t0" "$t1") $(($(alloc "$T/dst/zvol-$name") + tb)) $tb"
	rm -f "$T/dst/zvol-$name"
}

# ssh_cat FILE [sync]: ssh cat > file, and with "sync" the file synced
# after it, as pve-move syncs each disk before it counts as copied
ssh_cat() {
	local file=$1 t0 t1 after=
	[ "${2:-}" = sync ] && after=" && sync $T/dst/cat.img"
	sync
	t0=$(now_ns)
	"${SSH[@]}" root@dst-host "cat > $T/dst/cat.img$after" <"$file"
	t1=$(now_ns)
	echo "$(secs "$t0" "$t1") $(alloc "$T/dst/cat.img")"
	rm -f "$T/dst/cat.img"
}

data=$((SIZE_MB / 2 * 1048576))
for fmt in raw qcow2; do
	file=$T/half.$fmt
	echo "== ${SIZE_MB} MiB $fmt image, half of it data ($(mib "$data")), dir to dir"
	rm -f "$T"/r.*
	for _ in $(seq "$ROUNDS"); do
		round ours move_one "$fmt" "$file" ssh
		round dir move_one "$fmt" "$file" direct
		round here move_one "$fmt" "$file" local
		round pm proxmove_mv "$file"
		round pms proxmove_mv "$file" sync
		round pc proxmove_convert "$file" "$fmt"
		round cat ssh_cat "$file"
	done
	read -r ours_s ours_b ours_how < <(last ours)
	read -r dir_s dir_b dir_how < <(last dir)
	read -r here_s here_b here_how < <(last here)
	read -r pm_s pm_b pm_t < <(last pm)
	read -r pms_s _ < <(last pms)
	read -r pc_s pc_b pc_t < <(last pc)
	read -r cat_s cat_b < <(last cat)
	printf '  pve-move, source over ssh (%s):   %6ss  target %s, temp 0\n' "${ours_how//_/ }" "$ours_s" "$(mib "$ours_b")"
	printf '  pve-move --direct (%s):           %6ss  target %s, temp 0\n' "${dir_how//_/ }" "$dir_s" "$(mib "$dir_b")"
	printf '  pve-move, run on the source (%s): %6ss  target %s, temp 0\n' "${here_how//_/ }" "$here_s" "$(mib "$here_b")"
	printf '  proxmove rsync to temp + mv:        %6ss  target %s, temp %s\n' "$pm_s" "$(mib "$pm_b")" "$(mib "$pm_t")"
	printf '  the same, synced after the mv:      %6ss\n' "$pms_s"
	printf '  proxmove rsync + qemu-img convert:  %6ss  written %s, temp %s\n' "$pc_s" "$(mib "$pc_b")" "$(mib "$pc_t")"
	printf '  ssh cat > file:                     %6ss  target %s\n' "$cat_s" "$(mib "$cat_b")"
	printf '  ratio (proxmove mv / pve-move):      %s (--direct: %s, run on the source: %s)\n' "$(ratio "$ours_s" "$pm_s")" "$(ratio "$dir_s" "$pm_s")" "$(ratio "$here_s" "$pm_s")"
	printf '  ratio (proxmove mv, synced / pve-move): %s (--direct: %s, run on the source: %s)\n' "$(ratio "$ours_s" "$pms_s")" "$(ratio "$dir_s" "$pms_s")" "$(ratio "$here_s" "$pms_s")"
	printf '  ratio (proxmove convert / pve-move): %s (--direct: %s, run on the source: %s)\n' "$(ratio "$ours_s" "$pc_s")" "$(ratio "$dir_s" "$pc_s")" "$(ratio "$here_s" "$pc_s")"
	printf '  target bytes / data:                 %s\n' "$(ratio "$data" "$ours_b")"
done

echo "== 1 GiB of incompressible data (dense raw), throughput"
python3 -c 'import os,sys
with open(sys.argv[1],"wb") as f:
    for _ in range(1024): f.write(os.urandom(1<<20))' "$T/rand.raw"
SIZE_MB=1024
rm -f "$T"/r.*
for _ in $(seq "$ROUNDS"); do
	round r move_one raw "$T/rand.raw" ssh
	round rd move_one raw "$T/rand.raw" direct
	round rh move_one raw "$T/rand.raw" local
	round c ssh_cat "$T/rand.raw"
	round cs ssh_cat "$T/rand.raw" sync
done
read -r r_s _ r_how r_rate < <(last r)
read -r rd_s _ rd_how rd_rate < <(last rd)
read -r rh_s _ rh_how rh_rate < <(last rh)
read -r c_s _ < <(last c)
read -r cs_s _ < <(last cs)
printf '  pve-move, source over ssh (%s):   %6ss  %s MiB/s (the copy alone, last round: %s)\n' "${r_how//_/ }" "$r_s" "$(awk -v s="$r_s" 'BEGIN { printf "%.0f", 1024 / s }')" "${r_rate//_/ }"
printf '  pve-move --direct (%s):           %6ss  %s MiB/s (the copy alone, last round: %s)\n' "${rd_how//_/ }" "$rd_s" "$(awk -v s="$rd_s" 'BEGIN { printf "%.0f", 1024 / s }')" "${rd_rate//_/ }"
printf '  pve-move, run on the source (%s): %6ss  %s MiB/s (the copy alone, last round: %s)\n' "${rh_how//_/ }" "$rh_s" "$(awk -v s="$rh_s" 'BEGIN { printf "%.0f", 1024 / s }')" "${rh_rate//_/ }"
printf '  ssh cat > file:                     %6ss  %s MiB/s\n' "$c_s" "$(awk -v s="$c_s" 'BEGIN { printf "%.0f", 1024 / s }')"
printf '  ssh cat > file && sync file:         %6ss  %s MiB/s\n' "$cs_s" "$(awk -v s="$cs_s" 'BEGIN { printf "%.0f", 1024 / s }')"
printf '  throughput ratio (pve-move / ssh cat): %s (--direct: %s, run on the source: %s)\n' "$(ratio "$r_s" "$c_s")" "$(ratio "$rd_s" "$c_s")" "$(ratio "$rh_s" "$c_s")"
printf '  throughput ratio (pve-move / ssh cat && sync): %s (--direct: %s, run on the source: %s)\n' "$(ratio "$r_s" "$cs_s")" "$(ratio "$rd_s" "$cs_s")" "$(ratio "$rh_s" "$cs_s")"
