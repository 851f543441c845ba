#!/usr/bin/env python3
"""The cost of versioning itself: the same workloads on the plain directory,
on a ckptfs mount with the default configuration, on one with `settle_ms: 0`
(every close sealed at once: the most work while the workload runs) and on
one with versioning off, interleaved in one run so all see the same machine.
Used by scripts/bench.sh.

  versioning_rows.py NATIVE MOUNT SETTLE0_MOUNT OFF_MOUNT --ckptfs BIN
                     [--saves 10] [--save-mib 64] [--files 10000]
                     [--tree 200000] [--reps 3] [--small-kib 64]

Rows (best of --reps, seconds; ratio = native / that side):
- fsync'd saves: --saves saves of --save-mib MiB in a row (8 MiB writes,
  fsync, close, same name, O_TRUNC), with the bytes ckptfs copied for them;
- the same saves closed without fsync;
- the fsync'd saves again in --small-kib KiB writes (pickle frames, h5py
  chunks and buffered writers write small; each write(2) cost a FUSE round
  trip before FUSE_HANDLE_KILLPRIV_V2);
- create (4 KiB) / rename / unlink of --files files under versioned names;
- `rm -rf` of a tree of --tree files (100 directories) made before the timing.
Mount sides are timed until the writer returns; the store's catch-up after
each row (`ckptfs wait`) is printed separately, not hidden.
"""
import argparse, os, shutil, subprocess, sys, time, json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import save_loop  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("native")
ap.add_argument("mount")
ap.add_argument("settle0")
ap.add_argument("off")
ap.add_argument("--ckptfs", required=True)
ap.add_argument("--saves", type=int, default=10)
ap.add_argument("--save-mib", type=int, default=64)
ap.add_argument("--files", type=int, default=10000)
ap.add_argument("--tree", type=int, default=200000)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--small-kib", type=int, default=64)
a = ap.parse_args()
SIDES = [("native", a.native), ("ckptfs", a.mount), ("settle0", a.settle0), ("off", a.off)]
buf = os.urandom(8 << 20)
block = os.urandom(4096)


def wait(d):
    """Seconds until the mount's store is quiet (0 for the plain directory)."""
    if d == a.native:
        return 0.0
    t = time.perf_counter()
    subprocess.run([a.ckptfs, "wait", d], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def stat(d, key):
    out = subprocess.run([a.ckptfs, "stats", d], check=True, capture_output=True).stdout
    return json.loads(out)["stats"][key]


def saves(d, fsync, chunk=None):
    return save_loop.saves(d, a.saves, a.save_mib, fsync, buf, chunk)


def meta(d):
    root = os.path.join(d, "meta")
    os.mkdir(root)
    names = [f"{root}/f{i:06d}.bin" for i in range(a.files)]
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, block)
        os.close(fd)
    c = time.perf_counter() - t
    cq = wait(d)
    t = time.perf_counter()
    for p in names:
        os.rename(p, p[:-4] + ".ren")
    r = time.perf_counter() - t
    rq = wait(d)
    t = time.perf_counter()
    for p in names:
        os.unlink(p[:-4] + ".ren")
    u = time.perf_counter() - t
    uq = wait(d)
    os.rmdir(root)
    return (c, r, u), (cq, rq, uq)


def rmtree(d):
    root = os.path.join(d, "tree")
    per = max(1, a.tree // 100)
    for j in range(100):
        sub = f"{root}/d{j:03d}"
        os.makedirs(sub)
        for i in range(per):
            fd = os.open(f"{sub}/f{i:06d}.bin", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, block[:64])
            os.close(fd)
    wait(d)
    subprocess.run(["sync"])
    t = time.perf_counter()
    subprocess.run(["rm", "-rf", root], check=True)
    return time.perf_counter() - t, wait(d)


best = {}
quiet = {}
copied = {}


def keep(row, side, secs, q=0.0):
    if row not in best or side not in best[row] or secs < best[row][side]:
        best.setdefault(row, {})[side] = secs
        quiet.setdefault(row, {})[side] = q


for _ in range(a.reps):
    for side, d in SIDES:
        for fsync, row, chunk in (
            (True, "fsync'd saves", None),
            (False, "closed saves, no fsync", None),
            (True, f"fsync'd saves, {a.small_kib} KiB writes", a.small_kib << 10),
        ):
            c0 = stat(d, "bytes_copied") if side == "ckptfs" else 0
            s = saves(d, fsync, chunk)
            q = wait(d)
            if side == "ckptfs":
                copied[row] = stat(d, "bytes_copied") - c0
            keep(row, side, s, q)
        (c, r, u), (cq, rq, uq) = meta(d)
        keep("create + 4 KiB + close", side, c, cq)
        keep("rename", side, r, rq)
        keep("unlink", side, u, uq)
os.unlink(os.path.join(a.native, "model.ckpt"))
for side, d in SIDES:  # once: a 200,000-file tree takes minutes per side
    s, q = rmtree(d)
    keep(f"rm -rf of {a.tree} files", side, s, q)


def fmt(row, label):
    n = best[row]["native"]
    c, z, o = best[row]["ckptfs"], best[row]["settle0"], best[row]["off"]
    extra = f"  copied {copied[row] / 2**20:.0f} MiB" if row in copied else ""
    print(
        f"{label:30s} {n:8.3f} {c:8.3f} {z:8.3f} {o:8.3f} {n / c:6.2f} {n / o:6.2f}"
        f" {o / c:6.2f} {o / z:6.2f}   +{quiet[row]['ckptfs']:.2f} / +{quiet[row]['settle0']:.2f} s{extra}"
    )


print(f"-- versioning cost: best of {a.reps} ({a.saves} saves of {a.save_mib} MiB, "
      f"{a.files} files, tree of {a.tree} once); ckptfs = default configuration, "
      f"settle0 = `settle_ms: 0`, off = versioning off")
print(f"{'':30s} {'native s':>8s} {'ckptfs s':>8s} {'settle0':>8s} {'off s':>8s} {'ratio':>6s} {'off':>6s}"
      f" {'on/off':>6s} {'s0/off':>6s}   store catch-up (ckptfs / settle0)")
for row in best:
    fmt(row, row)
print("(ratio = native / ckptfs; off = native / versioning off; on/off = versioning off / ckptfs, "
      "s0/off = versioning off / settle0: 1.00 means versioning costs nothing; catch-up = "
      "`ckptfs wait` after the row, not in the ratios)")
