#!/usr/bin/env bash
# Benchmark ckptfs against the plain backing directory in the same run and print
# mount/native ratios (higher is better for throughput; for times we print
# native_time/mount_time so 1.0 means "as fast as native").
#
#   scripts/bench.sh [--no-passthrough] [--size-gib N] [--files N]
#
# With PASSTHROUGH_HP=path/to/passthrough_hp (scripts/build-passthrough-hp.sh
# builds libfuse's example) the metadata rows also measure it, in the same run,
# as the reference the targets are stated against.
#
# Needs root (cache drops, passthrough). Uses a fresh directory under $BENCH_DIR
# (default /var/tmp). Timings are never asserted anywhere: read the ratios.
set -euo pipefail
MODE=""
GIB=2
FILES=10000
while [ $# -gt 0 ]; do
    case $1 in
        --no-passthrough) MODE=--no-passthrough ;;
        --size-gib) GIB=$2; shift ;;
        --files) FILES=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
"$ROOT/scripts/prefault.sh"
BASE=${BENCH_DIR:-/var/tmp}/ckptfs-bench.$$
NATIVE=$BASE/native
MNT=$BASE/mounted
mkdir -p "$NATIVE" "$MNT"
cleanup() { "$BIN" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true; rm -rf "$BASE"; }
trap cleanup EXIT
"$BIN" mount "$MNT" $MODE > "$BASE/mounted-log"
PHP=${PASSTHROUGH_HP:-}
if [ -n "$PHP" ]; then
    mkdir -p "$BASE/php-src" "$BASE/php"
    "$PHP" "$BASE/php-src" "$BASE/php"
    cleanup() {
        "$BIN" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
        umount "$BASE/php" 2>/dev/null || umount -l "$BASE/php" 2>/dev/null || true
        rm -rf "$BASE"
    }
fi

now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

# The data-path rows use an ignored name (`*.tmp`): they measure FUSE and
# passthrough, not versioning. Keeping the old state of a rewritten file means
# writing the new one to other blocks, which on this VM's thin-provisioned disk
# costs up to 3x (native ext4 too: `dd` to a new file vs over the old one); the
# versioned path is what the checkpoint-save rows below measure.
seq_write() { sync; sleep 1; local s; s=$(now); dd if=/dev/zero of="$1/seq.tmp" bs=1M count=$((GIB*1024)) conv=fsync status=none; elapsed "$s" "$(now)"; }
seq_read() { drop; local s; s=$(now); dd if="$1/seq.tmp" of=/dev/null bs=1M status=none; elapsed "$s" "$(now)"; }
rand_read() { cat "$1/seq.tmp" > /dev/null; python3 - "$1/seq.tmp" <<'PY'
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
random.seed(7)
offs = [random.randrange(0, size // 4096) * 4096 for _ in range(100000)]
t = time.perf_counter()
for o in offs:
    os.pread(fd, 4096, o)
print(time.perf_counter() - t)
PY
}
meta() { python3 - "$1" "$FILES" <<'PY'
import os, sys, time
d, n = sys.argv[1] + "/meta", int(sys.argv[2])
os.mkdir(d)
names = [f"{d}/f{i:06d}" for i in range(n)]
t = time.perf_counter()
for p in names:
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
c = time.perf_counter() - t
t = time.perf_counter()
for p in names:
    os.stat(p)
s = time.perf_counter() - t
t = time.perf_counter()
for p in names:
    os.unlink(p)
u = time.perf_counter() - t
os.rmdir(d)
print(c, s, u)
PY
}
ckpt() { # dir, mode(inplace|rename)
    sync; sleep 1
    python3 - "$1" "$2" <<'PY'
import os, sys, time
d, mode = sys.argv[1], sys.argv[2]
buf = os.urandom(8 << 20)
target = f"{d}/model.ckpt"
t = time.perf_counter()
path = target + ".tmp" if mode == "rename" else target
fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
for _ in range(128):
    os.write(fd, buf)
os.fsync(fd)
os.close(fd)
if mode == "rename":
    os.replace(path, target)
print(time.perf_counter() - t)
PY
}

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
row() { printf '%-34s %10s %10s %8s\n' "$1" "$2" "$3" "$4"; }

min() { python3 -c "import sys; print(min(map(float, sys.argv[1:])))" "$@"; }
REPS=${REPS:-3}
echo "ckptfs bench: $(uname -r), $(grep -o 'data path: [a-z ]*' "$BASE/mounted-log"), $GIB GiB, $FILES files, best of $REPS"
row "workload" "native s" "ckptfs s" "ratio"
for w in seq_write seq_read rand_read; do
    ns=(); ms=()
    for _ in $(seq "$REPS"); do ns+=("$($w "$NATIVE")"); ms+=("$($w "$MNT")"); done
    n=$(min "${ns[@]}"); m=$(min "${ms[@]}")
    row "$w" "$(printf %.3f "$n")" "$(printf %.3f "$m")" "$(ratio "$n" "$m")"
done
rm -f "$NATIVE/seq.tmp" "$MNT/seq.tmp"
best3() { # dir → min create, stat, unlink over REPS runs
    python3 - "$@" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in sys.argv[1:]]
print(*[min(r[i] for r in rows) for i in range(3)])
PY
}
nrows=(); mrows=(); prows=()
for _ in $(seq "$REPS"); do
    nrows+=("$(meta "$NATIVE")"); mrows+=("$(meta "$MNT")")
    [ -z "$PHP" ] || prows+=("$(meta "$BASE/php")")
done
read -r nc ns nu <<<"$(best3 "${nrows[@]}")"
read -r mc ms mu <<<"$(best3 "${mrows[@]}")"
[ -z "$PHP" ] || read -r pc ps pu <<<"$(best3 "${prows[@]}")"
metarow() { # label native ckptfs passthrough_hp
    row "$1" "$(printf %.3f "$2")" "$(printf %.3f "$3")" "$(ratio "$2" "$3")"
    [ -z "$PHP" ] || row "  passthrough_hp, same run" "" "$(printf %.3f "$4")" "$(ratio "$2" "$4")"
}
metarow "create $FILES" "$nc" "$mc" "${pc:-}"
metarow "stat $FILES (warm)" "$ns" "$ms" "${ps:-}"
metarow "unlink $FILES" "$nu" "$mu" "${pu:-}"
for mode in inplace rename; do
    ns=(); ms=()
    # Every round after the first overwrites: the versioning path.
    for _ in $(seq "$REPS"); do
        ns+=("$(ckpt "$NATIVE" $mode)"); sleep 1; ms+=("$(ckpt "$MNT" $mode)"); sleep 3
    done
    n=$(min "${ns[@]}"); m=$(min "${ms[@]}")
    row "1 GiB checkpoint save, $mode" "$(printf %.3f "$n")" "$(printf %.3f "$m")" "$(ratio "$n" "$m")"
done
echo "(ratio = native time / ckptfs time; 1.00 = as fast as the plain directory)"
