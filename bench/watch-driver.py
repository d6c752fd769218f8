#!/usr/bin/env python3
"""Drives a pmxcfs-like tree for bench/pve-watch-conf.sh.

Each change is made the way Proxmox makes it, and .vmlist/.version are
rendered right after it, as pmxcfs shows both at once (behind
pmxcfs-sim's links, so that no inotify event names them, as on pmxcfs):

  latency PVE N LOG FIRST           N local renames of guest configs between
                                    nodes/pve2 and nodes/pve1 (migrations),
                                    one at a time; prints the latency from
                                    each rename to the hook start in LOG
  remote PVE N OURS_LOG BASE_LOG WAIT   N guests moved to pve1 in .vmlist only
                                    (another node's migration: nothing in
                                    pve1's dirs changes, files written in
                                    place, so no inotify event anywhere)
  burst PVE N FIRST RENDER_MS       N guests created on pve1 as fast as
                                    possible, .vmlist rendered every
                                    RENDER_MS; prints the start time

Hook logs hold one "EPOCHREALTIME ARG" line per hook run.
"""
import os
import random
import re
import sys
import time

ENTRY = re.compile(r'^"(\d+)": \{ "node": "([^"]*)", "type": "([a-z]+)", "version": (\d+) \}')


class Tree:
    def __init__(self, pve):
        self.pve = pve
        self.owners = {}
        with open(os.path.join(pve, ".vmlist")) as f:
            for line in f:
                m = ENTRY.match(line)
                if m:
                    self.owners[int(m.group(1))] = [m.group(2), m.group(3), int(m.group(4))]
        with open(os.path.join(pve, ".version")) as f:
            self.counter = int(re.search(r'"vmlist": (\d+)', f.read()).group(1))

    def text(self):
        self.counter += 1
        ids = ",\n".join(
            '"%d": { "node": "%s", "type": "%s", "version": %d }' % (v, o[0], o[1], o[2])
            for v, o in self.owners.items())
        vmlist = '{\n"version": %d,\n"ids": {\n%s}\n\n}\n' % (self.counter, ids)
        version = ('{\n"starttime": 1700000000,\n"clinfo": 1,\n"vmlist": %d,\n'
                   '"corosync.conf": 1,\n"kvstore": {}\n}\n' % self.counter)
        return vmlist, version

    def render(self, in_place=False):
        self.commit(self.prepare(in_place))

    def prepare(self, in_place=False):
        """Writes the next .vmlist/.version to temp files (or keeps the text
        for an in-place write); commit() makes them visible."""
        vmlist, version = self.text()
        todo = []
        for name, data in ((".vmlist", vmlist), (".version", version)):
            # pmxcfs-sim keeps them behind links, where a rename raises no
            # inotify event in PVE (pmxcfs renders them on read: none ever)
            path = os.path.realpath(os.path.join(self.pve, name))
            if in_place:
                todo.append((path, data.encode()))
            else:
                tmp = "%s.tmp.%d" % (path, os.getpid())
                with open(tmp, "w") as f:
                    f.write(data)
                todo.append((tmp, path))
        return in_place, todo

    @staticmethod
    def commit(prepared):
        in_place, todo = prepared
        for a, b in todo:
            if in_place:
                fd = os.open(a, os.O_WRONLY | os.O_TRUNC)
                os.write(fd, b)
                os.close(fd)
            else:
                os.rename(a, b)

    def conf(self, node, vmid):
        return os.path.join(self.pve, "nodes", node, "qemu-server", "%d.conf" % vmid)


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, n, deadline):
    while time.time() < deadline:
        got = lines(path)
        if len(got) >= n:
            return got
        time.sleep(0.0005)
    return None


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def report(name, lat, missed, n):
    ms = [x * 1000 for x in lat]
    print("%s %.2f %.2f %.2f %d %d" % (name, pct(ms, 50), pct(ms, 90), max(ms) if ms else float("nan"),
                                       missed, n))


class atomic:
    """pmxcfs renames a config and updates the map in one step. Here they are
    three renames; real-time priority for just those keeps the scheduler of
    a busy machine from splitting them (it would add its delay to whoever
    waits for the map). Without the privilege it is a no-op."""

    def __enter__(self):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except (AttributeError, PermissionError):
            pass

    def __exit__(self, *exc):
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except (AttributeError, PermissionError):
            pass


def latency(pve, n, log, first):
    """n renames, alternating in and out, starting with rename number
    first; prints one latency in ms per line ("missed" when none came),
    then "commit P50 MAX": how long the three renames took."""
    t = Tree(pve)
    commit_ms = []
    guests = sorted(v for v in t.owners)
    have = len(lines(log))
    for i in range(first, first + n):
        vmid = guests[(i // 2) % len(guests)]
        src, dst = ("pve2", "pve1") if t.owners[vmid][0] == "pve2" else ("pve1", "pve2")
        t.owners[vmid][0] = dst
        t.owners[vmid][2] = t.counter + 1
        # pmxcfs changes the config and the map in one step: the new map
        # is ready before the rename and shown right after it.
        prepared = t.prepare()
        with atomic():
            t0 = time.time()
            os.rename(t.conf(src, vmid), t.conf(dst, vmid))
            t.commit(prepared)
            t_done = time.time()
        commit_ms.append((t_done - t0) * 1000)
        got = wait_lines(log, have + 1, t0 + 5)
        if got is None:
            print("missed")
        else:
            have = len(got)
            print("%.3f" % ((float(got[-1].split()[0]) - t0) * 1000))
        time.sleep(0.02)
    print("commit %.3f %.3f" % (pct(commit_ms, 50), max(commit_ms)))


def remote(pve, n, ours_log, base_log, wait):
    t = Tree(pve)
    guests = sorted(v for v, o in t.owners.items() if o[0] == "pve2")
    lat, missed = [], 0
    have = len(lines(ours_log))
    base_before = len(lines(base_log))
    for i in range(n):
        vmid = guests[i % len(guests)]
        # A random phase against the poll, as real changes have.
        time.sleep(random.uniform(0, wait / 3))
        t.owners[vmid][0] = "pve1"
        prepared = t.prepare(in_place=True)
        t0 = time.time()
        t.commit(prepared)
        got = wait_lines(ours_log, have + 1, t0 + wait)
        if got is None:
            missed += 1
        else:
            have = len(got)
            lat.append(float(got[-1].split()[0]) - t0)
        # And back, so the next one is a migration again.
        t.owners[vmid][0] = "pve2"
        t.render(in_place=True)
        got = wait_lines(ours_log, have + 1, time.time() + wait)
        if got is not None:
            have = len(got)
    report("ours", lat, missed, n)
    print("base %d %d" % (len(lines(base_log)) - base_before, n))


TEMPLATE = """boot: order=scsi0;net0
cores: 2
memory: 2048
name: vm{id}
net0: virtio=BC:24:11:{a:02X}:{b:02X}:{c:02X},bridge=vmbr0,firewall=1
ostype: l26
scsi0: local-lvm:vm-{id}-disk-0,size=32G
scsihw: virtio-scsi-single
"""


def burst(pve, n, first, render_ms):
    t = Tree(pve)
    last = time.time()
    start = last
    for vmid in range(first, first + n):
        path = t.conf("pve1", vmid)
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write(TEMPLATE.format(id=vmid, a=vmid >> 16 & 255, b=vmid >> 8 & 255, c=vmid & 255))
        os.rename(tmp, path)
        t.owners[vmid] = ["pve1", "qemu", t.counter + 1]
        if (time.time() - last) * 1000 >= render_ms:
            t.render()
            last = time.time()
    t.render()
    print("%.6f" % start)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "latency":
        latency(args[0], int(args[1]), args[2], int(args[3]))
    elif cmd == "remote":
        remote(args[0], int(args[1]), args[2], args[3], float(args[4]))
    elif cmd == "burst":
        burst(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        sys.exit("usage: see the header of " + sys.argv[0])


if __name__ == "__main__":
    main()
