#!/usr/bin/env python3
"""Two (or more) ckptfs builds side by side on checkpoint saves, interleaved
in one run on one fresh RAM-backed ext4, beside the plain directory. On this
VM the save rows of bench.sh swing 2-3x between runs: only an interleaved
comparison says whether a change to the save path helped.

  scripts/ab-saves.py BIN [BIN ...] [--rounds 5] [--saves 10] [--mib 64] [--off] [--pin CPU]
                     [--write-kib 8192] [--daemon-path] [--creates N] [--runs N] [--phases]
                     [--default-settle]

--default-settle adds the first build with the default `settle_ms`
(1500: the 10 saves come and go before any seal, as bench.sh's "ckptfs"
column); --off adds the first build with versioning off (what the FUSE layer costs
without any versioning work); --pin runs the writer on one CPU only (on
this 2-vCPU VM the writer otherwise moves between CPUs as the daemon's
threads answer its open and fsync, and its copies slow down); --write-kib
sets the size of each write(2) (many small writes are what pickle, h5py and
loggers do; each write cost a FUSE round trip before FUSE_HANDLE_KILLPRIV_V2);
--daemon-path mounts every build with --no-passthrough; --creates N replaces
the saves with N files of 4 KiB created, written and closed in a fresh
directory per round (bench.sh's create row, for changes to the create path);
--runs N repeats the whole measurement N times on the same mounts and ends
with the median (and range) of the writer's time against native over the
runs: one run's best of --rounds swings 0.8-1.1 on this VM; --phases ends
with the median milliseconds of each save's open, writes, fsync and close
on every side over all rounds and runs (where a save's time goes: it found
the 3.7 ms page drop inside the O_TRUNC open).

Each round runs, for fsync'd saves and for saves closed without fsync, the
plain directory and each build's mount, starting with another side each round (`settle_ms: 0`, `max_versions:
3`, as bench.sh); a mount's time stops when `ckptfs wait` returns. Prints the
best of --rounds and the ratio native / build, then the same for the
writer's time alone. Needs root (loop mount).
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import save_loop  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bins", nargs="+")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--saves", type=int, default=10)
ap.add_argument("--mib", type=int, default=64)
ap.add_argument("--off", action="store_true")
ap.add_argument("--pin", type=int)
ap.add_argument("--write-kib", type=int, default=8192)
ap.add_argument("--daemon-path", action="store_true")
ap.add_argument("--creates", type=int)
ap.add_argument("--runs", type=int, default=1)
ap.add_argument("--phases", action="store_true")
ap.add_argument("--default-settle", action="store_true")
a = ap.parse_args()
if a.pin is not None:
    os.sched_setaffinity(0, {a.pin})

img = tempfile.mktemp(prefix="ckptfs-ab.", suffix=".img", dir="/dev/shm")
root = tempfile.mkdtemp(prefix="ckptfs-ab.")
size_mib = a.mib * ((len(a.bins) + 1) * 5 + 2) + 1024
if a.default_settle:
    # Every save of a burst is kept until its seal, 1.5 s later.
    size_mib += a.mib * (a.saves + 4)
if a.creates:
    # Each file and its version's store entries, on every side, every round
    # (an inode per 4 KiB: mkfs -i below).
    size_mib += a.creates * a.rounds * (len(a.bins) + 2) * 24 // 1024
buf = os.urandom(8 << 20)


def saves(d, fsync, phases):
    return save_loop.saves(d, a.saves, a.mib, fsync, buf, a.write_kib << 10, phases)


def creates(d, _, _phases):
    sub = tempfile.mkdtemp(prefix="c.", dir=d)
    for i in range(a.creates):
        fd = os.open(os.path.join(sub, f"f{i}"), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, buf[:4096])
        os.close(fd)


# (row name, workload, its argument)
rows = ([("create", creates, None)] if a.creates
        else [("fsync", saves, True), ("close", saves, False)])


mounted = []
subprocess.run(["truncate", "-s", f"{size_mib}M", img], check=True)
try:
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-i", "4096", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, root], check=True)
    cfg = os.path.join(root, "cfg.json")
    with open(cfg, "w") as f:
        f.write('{ "autosave": { "settle_ms": 0 }, "retention": { "max_versions": 3 } }')
    sides = [("native", None, os.path.join(root, "native"))]
    off = os.path.join(root, "off.json")
    with open(off, "w") as f:
        f.write('{ "autosave": { "enabled": false } }')
    configs = {}
    for k, b in enumerate(a.bins):
        sides.append((f"{k}:{os.path.basename(b)}", b, os.path.join(root, f"m{k}")))
    if a.default_settle:
        dflt = os.path.join(root, "default.json")
        with open(dflt, "w") as f:
            f.write('{ "retention": { "max_versions": 3 } }')
        sides.append(("default", a.bins[0], os.path.join(root, "default")))
        configs[os.path.join(root, "default")] = dflt
    if a.off:
        sides.append(("off", a.bins[0], os.path.join(root, "off")))
        configs[os.path.join(root, "off")] = off
    for _, b, d in sides:
        os.mkdir(d)
        if b:
            extra = ["--no-passthrough"] if a.daemon_path else []
            subprocess.run([b, "mount", d, "--config", configs.get(d, cfg)] + extra, check=True,
                           stdout=subprocess.DEVNULL)
            mounted.append((b, d))
    # (side, row): {phase: [seconds, ...]} over every round and run
    phases = {}

    def measure():
        best, wbest = {}, {}
        for r in range(a.rounds):
            # Each round starts with another side: the side after native paid
            # for what native left (1.3x on the create row) when the order was
            # fixed.
            k = r % len(sides)
            for row, work, arg in rows:
                for name, b, d in sides[k:] + sides[:k]:
                    t0 = time.perf_counter()
                    work(d, arg, phases.setdefault((name, row), {}) if a.phases else None)
                    tw = time.perf_counter() - t0
                    if b:
                        subprocess.run([b, "wait", d], check=True, stdout=subprocess.DEVNULL)
                    t = time.perf_counter() - t0
                    best[(name, row)] = min(t, best.get((name, row), t))
                    wbest[(name, row)] = min(tw, wbest.get((name, row), tw))
        return best, wbest

    what = (f"{a.creates} creates of 4 KiB files" if a.creates else
            f"{a.saves} saves of {a.mib} MiB, {a.write_kib} KiB writes")
    # writer-time ratios to native, per run: {(side, row): [ratio, ...]}
    ratios = {}
    for run in range(a.runs):
        best, wbest = measure()
        print(f"ckptfs ab-saves: {what}, best of {a.rounds}, "
              f"{'daemon path' if a.daemon_path else 'passthrough'}, "
              f"RAM-backed ext4{'' if a.pin is None else f', writer on CPU {a.pin}'}; "
              f"seconds (native / build)"
              f"{f', run {run + 1} of {a.runs}' if a.runs > 1 else ''}")
        for title, t in ((None, best), ("the writer's time alone (the store's catch-up not "
                                         "counted, as bench.sh's rows):", wbest)):
            if title:
                print(title)
            for row, _, _ in rows:
                n = t[("native", row)]
                cols = [f"{name} {t[(name, row)]:.3f} ({n / t[(name, row)]:.2f})"
                        for name, b, _ in sides if b]
                print(f"{row:6} native {n:.3f}  " + "  ".join(cols))
        for row, _, _ in rows:
            for name, b, _ in sides:
                if b:
                    ratios.setdefault((name, row), []).append(
                        wbest[("native", row)] / wbest[(name, row)])
    if a.runs > 1:
        # One run's best of --rounds swings more between runs than most
        # changes move it: the median over runs is the number to quote.
        print(f"writer's time / native over {a.runs} runs: median (lowest-highest)")
        for row, _, _ in rows:
            cols = []
            for name, b, _ in sides:
                if b:
                    v = sorted(ratios[(name, row)])
                    cols.append(f"{name} {statistics.median(v):.3f} ({v[0]:.2f}-{v[-1]:.2f})")
            print(f"{row:6} " + "  ".join(cols))
    if a.phases and not a.creates:
        print(f"median ms per save over {a.rounds * a.runs} rounds: open / writes / fsync / close")
        for row, _, _ in rows:
            cols = [f"{name} " + " / ".join(
                        f"{statistics.median(phases[(name, row)][p]) * 1000:.1f}"
                        for p in ("open", "write", "fsync", "close"))
                    for name, _, _ in sides]
            print(f"{row:6} " + "  ".join(cols))
finally:
    for b, d in mounted:
        subprocess.run([b, "umount", d], stdout=subprocess.DEVNULL)
    subprocess.run(["umount", root], stderr=subprocess.DEVNULL)
    os.rmdir(root)
    os.unlink(img)
