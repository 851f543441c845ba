#!/usr/bin/env python3
"""Two (or more) ckptfs builds side by side on checkpoint saves, interleaved
in one run on one fresh RAM-backed ext4, beside the plain directory. On this
VM the save rows of bench.sh swing 2-3x between runs: only an interleaved
comparison says whether a change to the save path helped.

  scripts/ab-saves.py BIN [BIN ...] [--rounds 5] [--saves 10] [--mib 64] [--off] [--pin CPU]
                     [--write-kib 8192] [--daemon-path]

--off adds the first build with versioning off (what the FUSE layer costs
without any versioning work); --pin runs the writer on one CPU only (on
this 2-vCPU VM the writer otherwise moves between CPUs as the daemon's
threads answer its open and fsync, and its copies slow down); --write-kib
sets the size of each write(2) (many small writes are what pickle, h5py and
loggers do; each write cost a FUSE round trip before FUSE_HANDLE_KILLPRIV_V2);
--daemon-path mounts every build with --no-passthrough.

Each round runs, for fsync'd saves and for saves closed without fsync, the
plain directory and then each build's mount (`settle_ms: 0`, `max_versions:
3`, as bench.sh); a mount's time stops when `ckptfs wait` returns. Prints the
best of --rounds and the ratio native / build, then the same for the
writer's time alone. Needs root (loop mount).
"""
import argparse, os, subprocess, sys, tempfile, time

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
a = ap.parse_args()
if a.pin is not None:
    os.sched_setaffinity(0, {a.pin})

img = tempfile.mktemp(prefix="ckptfs-ab.", suffix=".img", dir="/dev/shm")
root = tempfile.mkdtemp(prefix="ckptfs-ab.")
size_mib = a.mib * ((len(a.bins) + 1) * 5 + 2) + 1024
buf = os.urandom(8 << 20)


def saves(d, fsync):
    return save_loop.saves(d, a.saves, a.mib, fsync, buf, a.write_kib << 10)


mounted = []
subprocess.run(["truncate", "-s", f"{size_mib}M", img], check=True)
try:
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], check=True)
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
    best, wbest = {}, {}
    for _ in range(a.rounds):
        for fsync in (True, False):
            for name, b, d in sides:
                t0 = time.perf_counter()
                saves(d, fsync)
                tw = time.perf_counter() - t0
                if b:
                    subprocess.run([b, "wait", d], check=True, stdout=subprocess.DEVNULL)
                t = time.perf_counter() - t0
                best[(name, fsync)] = min(t, best.get((name, fsync), t))
                wbest[(name, fsync)] = min(tw, wbest.get((name, fsync), tw))
    print(f"ckptfs ab-saves: {a.saves} saves of {a.mib} MiB, best of {a.rounds}, "
          f"{a.write_kib} KiB writes, {'daemon path' if a.daemon_path else 'passthrough'}, "
          f"RAM-backed ext4{'' if a.pin is None else f', writer on CPU {a.pin}'}; "
          f"seconds (native / build)")
    for fsync in (True, False):
        n = best[("native", fsync)]
        cols = [f"{name} {best[(name, fsync)]:.3f} ({n / best[(name, fsync)]:.2f})"
                for name, b, _ in sides if b]
        print(f"{'fsync' if fsync else 'close':6} native {n:.3f}  " + "  ".join(cols))
    print("the writer's time alone (the store's catch-up not counted, as bench.sh's save rows):")
    for fsync in (True, False):
        n = wbest[("native", fsync)]
        cols = [f"{name} {wbest[(name, fsync)]:.3f} ({n / wbest[(name, fsync)]:.2f})"
                for name, b, _ in sides if b]
        print(f"{'fsync' if fsync else 'close':6} native {n:.3f}  " + "  ".join(cols))
finally:
    for b, d in mounted:
        subprocess.run([b, "umount", d], stdout=subprocess.DEVNULL)
    subprocess.run(["umount", root], stderr=subprocess.DEVNULL)
    os.rmdir(root)
    os.unlink(img)
