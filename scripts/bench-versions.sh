#!/usr/bin/env bash
# Versioning cost, measured against the plain directory in the same run.
#   1. N rewrites of a SIZE file via O_TRUNC, then via temp + rename: native
#      time / ckptfs time, each ckptfs save timed until the store is quiet
#      (`ckptfs wait`: sealed), and bytes the store grew by / bytes written.
#   2. Sealing throughput: FILES safetensors files (made by the safetensors
#      writer, 256 KiB, each different) written with no pause, timed from the
#      first write until every one is sealed; with classification and without
#      (a second mount with CKPTFS_CLASSIFY=0).
#   3. APPENDS appends of one line (open, append, close): store growth vs file
#      size (one version per close; not timed).
#
#   scripts/bench-versions.sh [--backing disk|shm|DIR] [--size-mib 1024]
#       [--rewrites 10] [--files 2000] [--appends 10000]
#
# Every rewrite stays in the store, so RAM backing (shm) holds 2 x rewrites x
# size twice over (the loop file and the page cache): there the default size
# is 256 MiB.
#
# The mounts use `settle_ms: 0`, so waiting for the store measures sealing work,
# not the settle time (which only delays a seal).
set -euo pipefail
SIZE_MIB=""; N=10; FILES=2000; APPENDS=10000; KIND=disk
while [ $# -gt 0 ]; do
    case $1 in
        --size-mib) SIZE_MIB=$2; shift ;;
        --rewrites) N=$2; shift ;;
        --files) FILES=$2; shift ;;
        --appends) APPENDS=$2; shift ;;
        --backing) KIND=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$SIZE_MIB" ] || { [ "$KIND" = shm ] && SIZE_MIB=256 || SIZE_MIB=1024; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
"$ROOT/scripts/prefault.sh"
. "$ROOT/scripts/backing.sh"
# Every rewrite stays in the store (N + 1 states of SIZE, twice), plus the native side.
backing_setup "$KIND" $(( SIZE_MIB * (N + 4) * 2 + FILES + 2048 )) bv
NATIVE=$BACKING/native; DATA=$BACKING/data; MNT=$BACKING/mnt
mkdir -p "$NATIVE" "$DATA" "$MNT"
cat > "$BACKING/cfg.json" <<'JSON'
{ "autosave": { "settle_ms": 0 },
  "retention": { "keep_last": 100000, "keep_within": "1y", "min_free_bytes": 0 } }
JSON
cleanup() { "$BIN" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true; backing_cleanup; }
trap cleanup EXIT
mount_it() { "$BIN" mount "$DATA" "$MNT" --config "$BACKING/cfg.json" >/dev/null; }
mount_it

# Bytes held only by the store: objects not shared with a live file, plus
# in-flight captures (both counted once per inode).
store_bytes() {
    find "$DATA/.ckptfs/objects" "$DATA/.ckptfs/incoming" -type f -links 1 ! -name '*.json' ! -name '*.tmp' -printf '%b\n' 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s*512}'
}
rewrite() { # native_dir mount_dir mode -> "native_seconds writer_seconds quiet_seconds" for N
            # rewrites each (scripts/saves.py: alternating, each timed until quiet)
    local r=()
    [ "$3" = rename ] && r=(--rename)
    python3 "$ROOT/scripts/saves.py" "$1" "$2" ckpt.bin --count "$N" --mib "$SIZE_MIB" "${r[@]}" --ckptfs "$BIN" |
        python3 -c "import json,sys; r=json.load(sys.stdin); print(sum(r['native']), sum(r['writer']), sum(r['quiet']))"
}
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
versions() { "$BIN" stats "$MNT" | python3 -c "import json,sys; print(json.load(sys.stdin)['versions'])"; }

echo "ckptfs versioning bench: $BACKING_DESC; $N rewrites of $SIZE_MIB MiB, $FILES files, $APPENDS appends"
printf '%-28s %9s %9s %9s %7s %7s %13s %13s %7s\n' workload native_s writer_s quiet_s ratio +quiet written store_grew growth
for mode in trunc rename; do
    rm -f "$NATIVE/ckpt.bin" "$MNT/ckpt.bin"
    "$BIN" wait "$MNT"
    before=$(store_bytes)
    out=$(rewrite "$NATIVE" "$MNT" "$mode")   # an assignment: a failure stops the script
    read -r n w q <<<"$out"
    grew=$(( $(store_bytes) - before ))
    written=$(( N * SIZE_MIB * 1048576 ))
    printf '%-28s %9.2f %9.2f %9.2f %7s %7s %13d %13d %7s\n' "$N x $SIZE_MIB MiB via $mode" "$n" "$w" "$q" \
        "$(ratio "$n" "$w")" "$(ratio "$n" "$q")" "$written" "$grew" "$(ratio "$grew" "$written")"
    rm -f "$NATIVE/ckpt.bin" "$MNT/ckpt.bin"
done

# Sealing throughput. The files are written back to back (no sleeps); the clock
# stops when `ckptfs wait` returns, i.e. when the last one is sealed.
burst() { # dir [wait_bin] -> "write_seconds until_sealed_seconds"
    python3 - "$1" "$FILES" "${2:-}" <<'PY'
import os, subprocess, sys, time
import numpy as np
from safetensors.numpy import save
d, n, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tmpl = bytearray(save({"w": np.zeros((256, 256), dtype=np.float32)}))  # 256 KiB + header
os.makedirs(d, exist_ok=True)
t = time.perf_counter()
for i in range(n):
    tmpl[-8:] = i.to_bytes(8, "little")   # each file differs (no deduplication)
    with open(f"{d}/shard-{i:05d}.safetensors", "wb") as f:
        f.write(tmpl)
w = time.perf_counter() - t
if wait:
    subprocess.run([wait, "wait", d], check=True)
print(w, time.perf_counter() - t)
PY
}
echo
echo "sealing throughput: $FILES safetensors files of 256 KiB written back to back, until all are sealed"
printf '%-28s %9s %9s %12s %11s\n' "" "write_s" "sealed_s" "versions/s" "native_s"
for classify in on off; do
    if [ $classify = off ]; then
        "$BIN" umount "$MNT"
        CKPTFS_CLASSIFY=0 mount_it
    fi
    v0=$(versions)
    out=$(burst "$NATIVE/burst-$classify")
    read -r nw _ <<<"$out"
    out=$(burst "$MNT/burst-$classify" "$BIN")
    read -r w s <<<"$out"
    made=$(( $(versions) - v0 ))
    [ "$made" -eq "$FILES" ] || { echo "expected $FILES versions, the store made $made"; exit 1; }
    printf '%-28s %9.2f %9.2f %12.0f %11.2f\n' "classification $classify" "$w" "$s" "$(python3 -c "print($made / $s)")" "$nw"
done

# Appends: every close seals its own version (a short pause lets each seal
# before the next close reschedules it; growth is measured, not time).
"$BIN" wait "$MNT"
before=$(store_bytes)
python3 - "$MNT" "$APPENDS" <<'PY'
import sys, time
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/train.log", "a") as f:
        f.write(f"step {i:08d} loss {1.0/(i+1):.6f}\n")
    time.sleep(0.002)
PY
"$BIN" wait "$MNT"
size=$(stat -c %s "$MNT/train.log")
grew=$(( $(store_bytes) - before ))
nv=$("$BIN" log --json "$MNT/train.log" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
echo
echo "appends: $nv versions of a $size-byte file; store grew by $grew bytes ($(ratio "$grew" "$size")x the file; content objects only, each version also has a small metadata file)"
"$BIN" stats "$MNT" | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print('captures linked', s['captures_linked'], 'copied', s['captures_copied'], 'bytes copied', s['bytes_copied'])"
"$BIN" verify "$MNT" > /dev/null || { echo "verify found problems after the run"; exit 1; }
