#!/usr/bin/env python3
"""The size of the store's capture log (`captures`) under a stream of saves
that never pauses: a new small file closed every 3 ms (5,000 names reused),
for SECONDS, on a RAM-backed directory, mounted with the default
configuration. Such a stream never lets every capture be sealed at once, so
the log is never emptied; it must still stay bounded (it is rewritten
without its finished records). Prints the size every 2,000 files and the peak.

  scripts/capture-log-stream.py BIN [BIN ...] [--seconds 60]
"""
import argparse, os, subprocess, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("bins", nargs="+")
ap.add_argument("--seconds", type=float, default=60)
a = ap.parse_args()

for b in a.bins:
    root = tempfile.mkdtemp(dir="/dev/shm", prefix="ckptfs-stream.")
    d, m = os.path.join(root, "data"), os.path.join(root, "mnt")
    os.makedirs(d)
    os.makedirs(m)
    subprocess.run([b, "mount", d, m], check=True, stdout=subprocess.DEVNULL)
    log = os.path.join(d, ".ckptfs", "captures")
    try:
        t0 = time.time()
        i, due, peak, samples = 0, t0, 0, []
        while time.time() - t0 < a.seconds:
            with open(os.path.join(m, f"f{i % 5000}.json"), "w") as f:
                f.write(f'{{"i": {i}}}')
            i += 1
            due += 0.003
            time.sleep(max(0, due - time.time()))
            size = os.path.getsize(log)
            peak = max(peak, size)
            if i % 2000 == 0:
                samples.append(f"{time.time() - t0:.0f}s:{size // 1024}K")
        print(f"{b}: {i} files in {a.seconds:.0f} s; captures: {' '.join(samples)}; "
              f"peak {peak // 1024} KiB")
    finally:
        subprocess.run([b, "umount", m], stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", root])
