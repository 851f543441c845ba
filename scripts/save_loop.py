"""The checkpoint-save loop the save benchmarks share (versioning_rows.py,
ab-saves.py): COUNT saves of MIB MiB to one name, each opened with O_TRUNC,
written in 8 MiB writes (or smaller ones) (the first 8 bytes differ per save, so no two are
identical), optionally fsynced, then closed."""
import os
import time


def saves(d, count, mib, fsync, buf, chunk=None, phases=None):
    """Seconds for the loop, as the writer sees it. Starts from clean pages:
    without the sync, the side that runs next pays for the writeback of what
    the one before left dirty (the saves closed without fsync leave 640 MiB).
    `chunk`: bytes per write(2) (default the whole 8 MiB buffer).
    `phases`: a dict to append each save's open / write / fsync / close
    seconds to (a save's time alone does not say where it went)."""
    os.sync()
    path = os.path.join(d, "model.ckpt")
    t = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        t1 = time.perf_counter()
        os.write(fd, i.to_bytes(8, "little"))
        mv = memoryview(buf)
        step = chunk or len(buf)
        for _ in range(mib // 8):
            for o in range(0, len(buf), step):
                os.write(fd, mv[o:o + step])
        t2 = time.perf_counter()
        if fsync:
            os.fsync(fd)
        t3 = time.perf_counter()
        os.close(fd)
        if phases is not None:
            t4 = time.perf_counter()
            for name, v in (("open", t1 - t0), ("write", t2 - t1), ("fsync", t3 - t2),
                            ("close", t4 - t3)):
                phases.setdefault(name, []).append(v)
    return time.perf_counter() - t
