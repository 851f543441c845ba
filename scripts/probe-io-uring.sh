#!/usr/bin/env bash
# Would FUSE over io_uring make ckptfs's metadata operations faster here?
# Measured before building anything (issue 15): fuser 0.18 does not speak the
# ring protocol, so this probe uses libfuse's own passthrough_hp, built from
# the Debian source of a libfuse that does (>= 3.18, with liburing), and runs
# it on the same backing with and without `-o io_uring`, in one interleaved
# run, with 1 and with 2 worker processes (this VM has 2 cores).
#
#   scripts/probe-io-uring.sh [--backing shm|disk|DIR] [--files 10000] [--reps 3]
#
# Prints files per second for create (+ 4 KiB + close), stat and unlink, native
# and through both transports, and the ring / /dev/fuse ratio. Needs root: it
# installs build dependencies, enables the fuse module's `enable_uring`
# parameter for the run (and restores it), and mounts.
set -euo pipefail
KIND=shm
FILES=10000
REPS=3
while [ $# -gt 0 ]; do
    case $1 in
        --backing) KIND=$2; shift ;;
        --files) FILES=$2; shift ;;
        --reps) REPS=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PARAM=/sys/module/fuse/parameters/enable_uring
[ -e "$PARAM" ] || { echo "probe-io-uring: this kernel has no FUSE over io_uring ($PARAM missing)" >&2; exit 2; }
PHP=${PASSTHROUGH_HP_URING:-$ROOT/target/libfuse-uring/passthrough_hp}
if [ ! -x "$PHP" ]; then
    # Debian sid's fuse3 source (3.18+); the system's apt configuration is not touched.
    work=$(mktemp -d)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq meson ninja-build liburing-dev libnuma-dev pkg-config g++ dpkg-dev >/dev/null
    . "$ROOT/scripts/deb-source.sh"
    deb_source "$work" sid fuse3
    src=$(echo "$work"/fuse-*)
    (cd "$src" && meson setup build -Denable-io-uring=true -Dexamples=true -Dutils=false -Dtests=false >/dev/null \
        && ninja -C build >/dev/null)
    grep -q "define HAVE_URING" "$src/build/fuse_config.h" || { echo "probe-io-uring: libfuse built without io_uring (liburing too old?)" >&2; exit 2; }
    mkdir -p "$(dirname "$PHP")"
    cp "$src/build/example/passthrough_hp" "$PHP"
    find "$src/build/lib" -maxdepth 1 -name 'libfuse3.so*' ! -type d -exec cp -P {} "$(dirname "$PHP")/" \;
    rm -rf "$work"
fi
export LD_LIBRARY_PATH=$(dirname "$PHP")
"$ROOT/scripts/prefault.sh"
. "$ROOT/scripts/backing.sh"
backing_setup "$KIND" $(( FILES * 16 / 1024 + 1024 )) uring
old=$(cat "$PARAM")
mkdir -p "$BACKING"/{native,src-dev,src-ring,dev,ring,ckptfs}
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
cleanup() {
    "$BIN" umount "$BACKING/ckptfs" >/dev/null 2>&1 || umount -l "$BACKING/ckptfs" 2>/dev/null || true
    umount "$BACKING/dev" 2>/dev/null || umount -l "$BACKING/dev" 2>/dev/null || true
    umount "$BACKING/ring" 2>/dev/null || umount -l "$BACKING/ring" 2>/dev/null || true
    [ "$old" = Y ] || echo 0 > "$PARAM"
    backing_cleanup
}
trap cleanup EXIT
echo 1 > "$PARAM"
# --nopassthrough: the daemon serves data like ckptfs's daemon path; metadata
# operations (what the ring would speed up) are the same either way.
"$PHP" --nopassthrough "$BACKING/src-dev" "$BACKING/dev"
"$PHP" --nopassthrough -o io_uring "$BACKING/src-ring" "$BACKING/ring"
# ckptfs itself on /dev/fuse, versioning off and the daemon data path like
# the two above: is libfuse's classic transport a fair baseline for ours?
echo '{ "autosave": { "enabled": false } }' > "$BACKING/off.json"
"$BIN" mount "$BACKING/ckptfs" --no-passthrough --config "$BACKING/off.json" >/dev/null
sleep 0.5
ring_on=$(python3 - "$BACKING/ring" <<'PY'
# A ring server answers requests from its own queue threads; the classic one
# from threads reading /dev/fuse. Ask the kernel: io_uring fds in the daemon.
import os, sys
st = os.stat(sys.argv[1])
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        if b"io_uring" in cmd and sys.argv[1].encode() in cmd:
            n = sum(1 for f in os.listdir(f"/proc/{pid}/fd")
                    if os.readlink(f"/proc/{pid}/fd/{f}") == "anon_inode:[io_uring]")
            print(n)
            break
    except OSError:
        pass
else:
    print(0)
PY
)
echo "probe-io-uring: $(uname -r), $BACKING_DESC, libfuse passthrough_hp, $FILES files, best of $REPS; ring server holds $ring_on io_uring fds"
[ "$ring_on" -gt 0 ] || { echo "probe-io-uring: the ring transport did not start" >&2; exit 1; }

# meta DIR WORKERS -> "create stat unlink" files/s, the workers splitting the files.
meta() { python3 - "$1" "$FILES" "$2" <<'PY'
import os, sys, time
from multiprocessing import Barrier, Process, Queue
root, n, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(4096)
def work(k, bar, q):
    d = f"{root}/w{k}"
    os.mkdir(d)
    names = [f"{d}/f{i:06d}" for i in range(n // w)]
    out = []
    for op in ("create", "stat", "unlink"):
        bar.wait()
        t = time.perf_counter()
        for p in names:
            if op == "create":
                fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, block)
                os.close(fd)
            elif op == "stat":
                os.stat(p)
            else:
                os.unlink(p)
        out.append(time.perf_counter() - t)
    os.rmdir(d)
    q.put(out)
bar, q = Barrier(w), Queue()
ps = [Process(target=work, args=(k, bar, q)) for k in range(w)]
for p in ps: p.start()
res = [q.get() for _ in ps]
for p in ps: p.join()
# The slowest worker bounds the phase.
print(*[f"{(n // w) * w / max(r[i] for r in res):.0f}" for i in range(3)])
PY
}
best() { python3 - "$@" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in sys.argv[1:]]
print(*[f"{max(r[i] for r in rows):.0f}" for i in range(3)])
PY
}
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
line() { printf '%-8s %-7s %8s %10s %10s %10s %9s %12s\n' "$@"; }
line workers op native "php /dev" "php ring" ckptfs "ring/dev" "ring/ckptfs"
for w in 1 2; do
    n=(); d=(); r=(); c=()
    for _ in $(seq "$REPS"); do
        n+=("$(meta "$BACKING/native" "$w")")
        d+=("$(meta "$BACKING/dev" "$w")")
        r+=("$(meta "$BACKING/ring" "$w")")
        c+=("$(meta "$BACKING/ckptfs" "$w")")
    done
    read -r nc ns nu <<<"$(best "${n[@]}")"
    read -r dc ds du <<<"$(best "${d[@]}")"
    read -r rc rs ru <<<"$(best "${r[@]}")"
    read -r cc cs cu <<<"$(best "${c[@]}")"
    line "$w" create "$nc" "$dc" "$rc" "$cc" "$(ratio "$rc" "$dc")" "$(ratio "$rc" "$cc")"
    line "$w" stat "$ns" "$ds" "$rs" "$cs" "$(ratio "$rs" "$ds")" "$(ratio "$rs" "$cs")"
    line "$w" unlink "$nu" "$du" "$ru" "$cu" "$(ratio "$ru" "$du")" "$(ratio "$ru" "$cu")"
done
echo "(files per second, best of $REPS; php = libfuse passthrough_hp --nopassthrough over /dev/fuse or"
echo " over io_uring; ckptfs = this build, versioning off, daemon data path, /dev/fuse)"
