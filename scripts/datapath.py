#!/usr/bin/env python3
"""One phase of the data-path benchmark (scripts/bench-datapath.sh), on one
file; prints seconds. Phases are separate runs so that the caller, as root,
can drop caches between them while this runs as any user.

  datapath.py write FILE MIB   write MIB MiB in 8 MiB writes, fsync, close
  datapath.py read FILE        read the whole file in 8 MiB reads
  datapath.py rand FILE N      N random 4 KiB preads (seeded)
"""
import os, random, sys, time

phase, path = sys.argv[1], sys.argv[2]
if phase == "write":
    buf = os.urandom(8 << 20)
    t = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(int(sys.argv[3]) // 8):
        os.write(fd, buf)
    os.fsync(fd)
    os.close(fd)
elif phase == "read":
    fd = os.open(path, os.O_RDONLY)
    t = time.perf_counter()
    while os.read(fd, 8 << 20):
        pass
    os.close(fd)
elif phase == "rand":
    fd = os.open(path, os.O_RDONLY)
    blocks = os.fstat(fd).st_size // 4096
    random.seed(7)
    offs = [random.randrange(0, blocks) * 4096 for _ in range(int(sys.argv[3]))]
    t = time.perf_counter()
    for o in offs:
        os.pread(fd, 4096, o)
    os.close(fd)
else:
    sys.exit(f"unknown phase {phase}")
print(f"{time.perf_counter() - t:.4f}")
