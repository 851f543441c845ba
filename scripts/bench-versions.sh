#!/usr/bin/env bash
# Versioning cost, measured against the plain directory in the same run.
#   1. N rewrites of a SIZE file via O_TRUNC, then via temp + rename:
#      bytes the store grew by / bytes the writer wrote, and native time / ckptfs time.
#   2. 10,000 appends of one line (open, append, close): store growth vs file size.
#
#   scripts/bench-versions.sh [--size-mib 1024] [--rewrites 10] [--appends 10000] [--no-classify]
set -euo pipefail
SIZE_MIB=1024; N=10; APPENDS=10000
while [ $# -gt 0 ]; do
    case $1 in
        --size-mib) SIZE_MIB=$2; shift ;;
        --rewrites) N=$2; shift ;;
        --appends) APPENDS=$2; shift ;;
        --no-classify) export CKPTFS_CLASSIFY=0 ;;   # measure sealing without classification
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
"$ROOT/scripts/prefault.sh"
BASE=${BENCH_DIR:-/var/tmp}/ckptfs-bv.$$
NATIVE=$BASE/native; DATA=$BASE/data; MNT=$BASE/mnt
mkdir -p "$NATIVE" "$DATA" "$MNT"
cat > "$BASE/cfg.json" <<'JSON'
{ "autosave": { "settle_ms": 300 },
  "retention": { "keep_last": 100000, "keep_within": "1y", "min_free_bytes": 0 } }
JSON
cleanup() { "$BIN" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true; rm -rf "$BASE"; }
trap cleanup EXIT
"$BIN" mount "$DATA" "$MNT" --config "$BASE/cfg.json"

# Bytes held only by the store: objects not shared with a live file, plus
# in-flight captures (both counted once per inode).
store_bytes() {
    find "$DATA/.ckptfs/objects" "$DATA/.ckptfs/incoming" -type f -links 1 ! -name '*.json' ! -name '*.tmp' -printf '%b\n' 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s*512}'
}
wait_sealed() { # wait until the daemon has no captures in flight
    for _ in $(seq 600); do
        [ -z "$(ls -A "$DATA/.ckptfs/incoming" 2>/dev/null)" ] && return
        sleep 0.5
    done
}
rewrite() { # native_dir mount_dir mode -> "native_seconds mount_seconds" for N rewrites each,
            # alternating so both see the same page-cache conditions
    python3 - "$1" "$2" "$3" "$N" "$SIZE_MIB" <<'PY'
import os, sys, time
nd, md, mode, n, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
buf = os.urandom(8 << 20)
totals = {nd: 0.0, md: 0.0}
for i in range(2 * n):
    d = nd if i % 2 == 0 else md
    t = time.perf_counter()
    path = f"{d}/ckpt.bin" + (".tmp" if mode == "rename" else "")
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    os.write(fd, i.to_bytes(8, "little"))   # every save differs
    for _ in range(mib // 8):
        os.write(fd, buf)
    os.fsync(fd)
    os.close(fd)
    if mode == "rename":
        os.replace(path, f"{d}/ckpt.bin")
    totals[d] += time.perf_counter() - t
    os.sync()
    time.sleep(1)   # let the version seal, as between real checkpoints
print(totals[nd], totals[md])
PY
}
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.3f}')" "$1" "$2"; }

echo "ckptfs versioning bench: $N rewrites of $SIZE_MIB MiB, $APPENDS appends, classification ${CKPTFS_CLASSIFY:-on}"
printf '%-26s %10s %10s %8s %14s %14s %8s\n' workload native_s ckptfs_s t_ratio written store_grew growth
for mode in trunc rename; do
    rm -f "$NATIVE/ckpt.bin" "$MNT/ckpt.bin"
    sync; wait_sealed
    before=$(store_bytes)
    read -r n m <<<"$(rewrite "$NATIVE" "$MNT" "$mode")"
    wait_sealed
    grew=$(( $(store_bytes) - before ))
    written=$(( N * SIZE_MIB * 1048576 ))
    printf '%-26s %10.2f %10.2f %8s %14d %14d %8s\n' "$N x $SIZE_MIB MiB via $mode" "$n" "$m" "$(ratio "$n" "$m")" "$written" "$grew" "$(ratio "$grew" "$written")"
    rm -f "$NATIVE/ckpt.bin" "$MNT/ckpt.bin"
done
# Appends: remount with settle_ms 0 so every close seals its own version.
"$BIN" umount "$MNT"
sed -i 's/"settle_ms": 300/"settle_ms": 0/' "$BASE/cfg.json"
"$BIN" mount "$DATA" "$MNT" --config "$BASE/cfg.json" >/dev/null
wait_sealed
before=$(store_bytes)
t=$(python3 - "$MNT" "$APPENDS" <<'PY'
import sys, time
d, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for i in range(n):
    with open(f"{d}/train.log", "a") as f:
        f.write(f"step {i:08d} loss {1.0/(i+1):.6f}\n")
    time.sleep(0.002)   # a logger, not a tight loop: each close gets sealed
print(time.perf_counter() - t)
PY
)
sleep 1; wait_sealed
size=$(stat -c %s "$MNT/train.log")
grew=$(( $(store_bytes) - before ))
versions=$("$BIN" log --json "$MNT/train.log" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
printf '%-26s %10s %10.2f %8s %14d %14d %8s\n' "$APPENDS appends" - "$t" - "$size" "$grew" "$(ratio "$grew" "$size")"
# Sealing throughput: versions sealed per second of wall time for the appends.
echo "sealing: $(python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]):.0f}')" "$("$BIN" log --json "$MNT/train.log" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")" "$t") versions/s while appending"
echo "appends: $versions versions of a $size-byte file; store grew by $grew bytes (content objects only; O(file size) means near or below 1x, not $versions x; each version also has a small metadata file)"
"$BIN" stats "$MNT" | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print('captures linked', s['captures_linked'], 'copied', s['captures_copied'], 'bytes copied', s['bytes_copied'])"
