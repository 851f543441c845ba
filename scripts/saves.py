#!/usr/bin/env python3
"""Checkpoint saves on the plain directory and on the mount, alternating so both
see the same page-cache conditions. Each save writes SIZE MiB in 8 MiB blocks
(the first 8 bytes are the save's number, so every save differs), fsyncs and
closes; with --rename it writes NAME.tmp and renames it over NAME. A save on the
mount is timed twice: until the writer returns, and until `ckptfs wait` says
the store is quiet (sealed, evicted).

  saves.py NATIVE_DIR MOUNT_DIR NAME --count N --mib SIZE [--rename] --ckptfs BIN

Prints JSON: {"native": [s...], "writer": [s...], "quiet": [s...]}.
Used by scripts/bench.sh and scripts/bench-versions.sh.
"""
import argparse, json, os, subprocess, time

ap = argparse.ArgumentParser()
ap.add_argument("native")
ap.add_argument("mount")
ap.add_argument("name")
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--mib", type=int, required=True)
ap.add_argument("--rename", action="store_true")
ap.add_argument("--ckptfs", required=True)
a = ap.parse_args()

buf = os.urandom(8 << 20)


def save(d, i):
    target = os.path.join(d, a.name)
    path = target + ".tmp" if a.rename else target
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    os.write(fd, i.to_bytes(8, "little"))
    for _ in range(a.mib // 8):
        os.write(fd, buf)
    os.fsync(fd)
    os.close(fd)
    if a.rename:
        os.replace(path, target)


out = {"native": [], "writer": [], "quiet": []}
for i in range(a.count):
    os.sync()
    t = time.perf_counter()
    save(a.native, i)
    out["native"].append(time.perf_counter() - t)
    os.sync()
    t = time.perf_counter()
    save(a.mount, i)
    out["writer"].append(time.perf_counter() - t)
    subprocess.run([a.ckptfs, "wait", a.mount], check=True)
    out["quiet"].append(time.perf_counter() - t)
print(json.dumps(out))
