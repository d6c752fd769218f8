/* A raw volume to a raw volume as a stream of its data only: the sender
 * on the source walks the data extents (SEEK_DATA/SEEK_HOLE: a sparse file
 * skips its holes, a block device is one extent), drops 64 KiB blocks of
 * zeros and writes records of (offset, length, bytes); the receiver on the
 * target writes each where it belongs, fills the gaps with zeros only when
 * the target may hold old data (a thick LV), and syncs before it reports
 * success. One pass, no temp file, zeros never on the wire, and no request
 * and reply per block as over NBD: the stream runs at the speed of ssh.
 * A qcow2 file goes to a qcow2 file the same way, as the file's own bytes
 * (the "stream" method), replacing the file Proxmox allocated.
 *
 * Both ends are perl: perl-base is Essential on Debian and so on every
 * Proxmox node, and its Errno, IO::Handle and Config are all either side
 * needs. Each end makes its pipe to ssh 1 MiB (F_SETPIPE_SZ, 1031 on every
 * Linux; nothing happens when it is no pipe): with the 64 KiB default,
 * ssh, perl and the disk took turns, and 1 GiB took 4.6 s instead of 3.2
 * on a 2-core test machine. The record: offset and length as two
 * big-endian 64-bit numbers, then the bytes; the end is (volume size, 0). The sender reports its
 * position and the bytes it has written on stderr as "@OFFSET SENT" lines,
 * for the progress line. */
#include <stdlib.h>
#include <string.h>

#include "move.h"

/* perl -e SEND PATH SIZE [BPS]. Reads of 256 KiB keep the pipes behind it
 * moving (4 MiB ones made every stage wait for the one before: half the
 * speed); its position every 16 MiB and at each hole. BPS (--bwlimit with
 * --direct, where no byte passes through pve-move) holds it to that many
 * bytes a second, with Time::HiRes (in perl, which Proxmox VE needs). */
static const char sender[] =
    "use strict; use warnings; fcntl(STDOUT, 1031, 1 << 20);"
    "my ($path, $size, $bps) = @ARGV; my $B = 256 << 10; my $S = 65536; my $buf = \"\";"
    "my ($t0, $sent) = (0, 0); if ($bps) { require Time::HiRes; $t0 = Time::HiRes::time(); }"
    "open(my $f, \"<:raw\", $path) or die \"$path: $!\\n\";"
    "sub out { my ($s, $o, $l) = @_; $sent += $l; while ($l > 0) {"
    "  my $n = syswrite(STDOUT, $$s, $l, $o); die \"the stream: $!\\n\" unless defined $n;"
    "  $o += $n; $l -= $n; }"
    "  if ($bps) { my $due = $t0 + $sent / $bps - Time::HiRes::time();"
    "    Time::HiRes::sleep($due) if $due > 0; } }"
    "sub record { my ($at, $o, $l) = @_; my $h = pack(\"Q>Q>\", $at, $l);"
    "  out(\\$h, 0, 16); out(\\$buf, $o, $l); }"
    "my ($pos, $told) = (0, 0);"
    "while ($pos < $size) {"
    "  my $d = sysseek($f, $pos, 3);" /* SEEK_DATA */
    "  if (!defined $d) { last if $!{ENXIO}; $d = $pos; }"
    "  last if $d >= $size;"
    "  my $h = sysseek($f, $d, 4);" /* SEEK_HOLE */
    "  $h = $size if !defined $h || $h > $size;"
    "  sysseek($f, $d, 0) or die \"$path: $!\\n\";"
    "  while ($d < $h) {"
    "    my ($want, $got) = ($h - $d < $B ? $h - $d : $B, 0);"
    "    while ($got < $want) {"
    "      my $n = sysread($f, $buf, $want - $got, $got);"
    "      die \"$path: $!\\n\" unless defined $n;"
    "      die \"$path: ends at byte \" . ($d + $got) . \"\\n\" unless $n; $got += $n; }"
    "    my ($run, $o) = (-1, 0);"
    "    for (; $o < $want; $o += $S) {"
    "      if (substr($buf, $o, $S) =~ /[^\\0]/) { $run = $o if $run < 0; next; }"
    "      next if $run < 0;"
    "      record($d + $run, $run, $o - $run); $run = -1; }"
    "    record($d + $run, $run, $want - $run) if $run >= 0;"
    "    $d += $want;"
    "    if ($d - $told >= 16 << 20) { print STDERR \"\\@$d $sent\\n\"; $told = $d; } }"
    "  $pos = $h; print STDERR \"\\@$pos $sent\\n\"; $told = $pos; }"
    "my $end = pack(\"Q>Q>\", $size, 0); out(\\$end, 0, 16); print STDERR \"\\@$size $sent\\n\";";

/* perl -e RECEIVE PATH SIZE MODE. MODE says what the target holds where
 * no record goes: "thin", zeros already (a fresh thin volume: the gaps are
 * left alone); "thick", old data (a thick LV: the gaps are written with
 * zeros); "file", a file to replace (emptied first, holes in the gaps, its
 * length SIZE at the end: a qcow2 file over the one Proxmox allocated with
 * its own preallocated metadata). Writes what each read brings, as dd does,
 * seeking only where a record does not go on from the last.
 *
 * Every 32 MiB it starts the writeback of what it wrote and waits for the
 * 32 MiB before (sync_file_range): the disk writes while the stream runs,
 * the final sync has little left, and a node's running guests never stall
 * behind gigabytes of our dirty pages. The call is by number, known for
 * amd64 and arm64; elsewhere the final sync alone does it. */
static const char receiver[] =
    "use strict; use warnings; use IO::Handle; use Config; fcntl(STDIN, 1031, 1 << 20);"
    "my ($path, $size, $mode) = @ARGV; my $B = 256 << 10; my $Z = \"\\0\" x $B;"
    "my $sfr = { x86_64 => 277, aarch64 => 84 }->{ (split /-/, $Config{archname})[0] };"
    "my ($buf, $hdr, $at, $ws, $pw) = (\"\", \"\", -1, 0, 0);"
    "open(my $f, \"+<:raw\", $path) or die \"$path: $!\\n\";"
    "if ($mode eq \"file\") { truncate($f, 0) or die \"$path: $!\\n\"; }"
    "sub pace { return unless $sfr; syscall($sfr, fileno($f), $ws, $at - $ws, 2);"
    "  syscall($sfr, fileno($f), $pw, $ws - $pw, 7) if $ws > $pw; ($pw, $ws) = ($ws, $at); }"
    "sub put { my ($to, $s, $l) = @_;"
    "  if ($to != $at) { sysseek($f, $to, 0) or die \"$path: $!\\n\"; }"
    "  my $o = 0; while ($o < $l) {"
    "    my $n = syswrite($f, $$s, $l - $o, $o); die \"$path: $!\\n\" unless defined $n;"
    "    $o += $n; } $at = $to + $l; pace() if $at - $ws >= 32 << 20; }"
    "my $pos = 0;"
    "for (;;) {"
    "  my $got = 0;"
    "  while ($got < 16) { my $n = sysread(STDIN, $hdr, 16 - $got, $got);"
    "    die \"the stream: $!\\n\" unless defined $n;"
    "    die \"the stream broke off at byte $pos of $size\\n\" unless $n; $got += $n; }"
    "  my ($off, $len) = unpack(\"Q>Q>\", $hdr);"
    "  die \"a bad record at byte $pos\\n\" if $off < $pos || $off + $len > $size;"
    "  if ($mode eq \"thick\") { for (my $z = $pos; $z < $off; $z += $B) {"
    "    put($z, \\$Z, $off - $z < $B ? $off - $z : $B); } }"
    "  last if $len == 0 && $off == $size;"
    "  die \"a bad record at byte $pos\\n\" if $len == 0;"
    "  while ($len > 0) { my $n = sysread(STDIN, $buf, $len < $B ? $len : $B);"
    "    die \"the stream: $!\\n\" unless defined $n;"
    "    die \"the stream broke off at byte $off of $size\\n\" unless $n;"
    "    put($off, \\$buf, $n); $off += $n; $len -= $n; }"
    "  $pos = $off; }"
    "if ($mode eq \"file\") { truncate($f, $size) or die \"$path: $!\\n\"; }"
    "$f->sync or die \"$path: sync: $!\\n\"; close($f) or die \"$path: $!\\n\";";

/* "lvchange -ay PATH || exit 1; " before a command on an LV, else "". */
static char *
activate(const char *stype, const char *qpath)
{
	return is_lvm(stype) ? xasprintf("lvchange -ay %s || exit 1; ", qpath) : xstrdup("");
}

/* A volume goes as its own bytes (SIZE: the volume's), a qcow2 file as
 * the file's (its length). */
static uint64_t
send_size(const struct vol *v)
{
	return strcmp(v->method, "stream") == 0 ? v->file_size : v->size;
}

char *
sparse_send_cmd(const struct vol *v, uint64_t bps)
{
	char *qp = shq(v->path), *qs = shq(sender), *act = activate(v->stype, qp);
	char *c = bps ? xasprintf("%sexec perl -e %s %s %llu %llu", act, qs, qp,
	                          (unsigned long long)send_size(v), (unsigned long long)bps)
	              : xasprintf("%sexec perl -e %s %s %llu", act, qs, qp,
	                          (unsigned long long)send_size(v));

	free(qp), free(qs), free(act);
	return c;
}

char *
sparse_receive_cmd(const struct vol *v, const char *dpath)
{
	char *qp = shq(dpath), *qr = shq(receiver), *act = activate(v->dst_stype, qp);
	const char *mode = strcmp(v->method, "stream") == 0     ? "file"
	                   : strcmp(v->dst_stype, "lvm") == 0 ? "thick"
	                                                        : "thin";
	char *c = xasprintf("%sexec perl -e %s %s %llu %s", act, qr, qp,
	                    (unsigned long long)send_size(v), mode);

	free(qp), free(qr), free(act);
	return c;
}
