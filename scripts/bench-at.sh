#!/usr/bin/env bash
# The point-in-time view against the live tree, in the same run:
#   1. FILES files of 4 KiB in one directory, through the mount and natively.
#   2. `ls -l` of that directory: native, live through the mount, and in
#      `.versions/@<T>/` (T = after the files were sealed); the first listing
#      (kernel caches cold for that name) and the median of REPS more.
#   3. `rm -rf` of the directory natively and through the mount (each unlink
#      versions the file and journals the delete), then `ls -l` of the
#      directory at T, now resolved from history alone.
#
#   4. With BASE_BIN=/path/to/an/older/ckptfs: `rm -rf` of FILES files through
#      a mount of each binary, alternating, REPS rounds (the journal's cost on
#      the unlink path, same run, same disk).
#
#   scripts/bench-at.sh [--backing disk|shm|DIR] [--files 10000] [--reps 5]
set -euo pipefail
FILES=10000; REPS=5; KIND=disk
while [ $# -gt 0 ]; do
    case $1 in
        --files) FILES=$2; shift ;;
        --reps) REPS=$2; shift ;;
        --backing) KIND=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
"$ROOT/scripts/prefault.sh"
. "$ROOT/scripts/backing.sh"
backing_setup "$KIND" $(( FILES * 40 / 1024 + 1024 )) bat
NATIVE=$BACKING/native; DATA=$BACKING/data; MNT=$BACKING/mnt
mkdir -p "$NATIVE/d" "$DATA" "$MNT"
echo '{ "autosave": { "settle_ms": 0 }, "retention": { "keep_within": "1y", "min_free_bytes": 0 } }' > "$BACKING/cfg.json"
cleanup() { "$BIN" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true; backing_cleanup; }
trap cleanup EXIT
"$BIN" mount "$DATA" "$MNT" --config "$BACKING/cfg.json" >/dev/null
echo "backing: $BACKING_DESC; $FILES files of 4 KiB"

secs() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
make_files() { python3 - "$1" "$FILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/f{i:06d}.bin", "wb") as f:
        f.write(os.urandom(4096))
PY
}
ratio() { python3 -c "import sys; print(f'{int(sys.argv[1]) / max(1, int(sys.argv[2])):.2f}')" "$1" "$2"; }
lsl() { # label dir -> prints first and median microseconds
    local first rest=""
    first=$(secs ls -l "$2")
    for _ in $(seq "$REPS"); do rest="$rest $(secs ls -l "$2")"; done
    echo "$first $(echo $rest | median)"
}

make_files "$NATIVE/d"
mkdir "$MNT/d"; make_files "$MNT/d"
"$BIN" wait "$MNT" >/dev/null
sleep 0.01
T=$(date -u +%Y%m%dT%H%M%S.%NZ)
sync; echo 3 > /proc/sys/vm/drop_caches
read -r n1 nm <<<"$(lsl native "$NATIVE/d")"
read -r l1 lm <<<"$(lsl live "$MNT/d")"
read -r a1 am <<<"$(lsl at "$MNT/.versions/@$T/d")"
[ "$(ls "$MNT/.versions/@$T/d" | wc -l)" -eq "$FILES" ] || { echo "@T lists $(ls "$MNT/.versions/@$T/d" | wc -l) files, expected $FILES" >&2; exit 1; }
printf '%-34s %10s %10s\n' "ls -l of $FILES entries (µs)" first median
printf '%-34s %10s %10s\n' native "$n1" "$nm"
printf '%-34s %10s %10s\n' "live, through the mount" "$l1" "$lm"
printf '%-34s %10s %10s\n' "@T (live files)" "$a1" "$am"
echo "@T / live through the mount: first $(ratio "$a1" "$l1"), median $(ratio "$am" "$lm")"

rn=$(secs rm -rf "$NATIVE/d")
rm_start=$(date +%s%N); rm -rf "$MNT/d"; "$BIN" wait "$MNT" >/dev/null; rm_end=$(date +%s%N)
rmm=$(( (rm_end - rm_start) / 1000 ))
echo "rm -rf of $FILES files: native ${rn} µs, mount ${rmm} µs until quiet (native/ckptfs $(ratio "$rn" "$rmm"))"
read -r h1 hm <<<"$(lsl at-history "$MNT/.versions/@$T/d")"
[ "$(ls "$MNT/.versions/@$T/d" | wc -l)" -eq "$FILES" ] || { echo "@T after rm lists the wrong count" >&2; exit 1; }
printf '%-34s %10s %10s\n' "@T after rm -rf (history only)" "$h1" "$hm"
echo "@T from history / live through the mount: first $(ratio "$h1" "$l1"), median $(ratio "$hm" "$lm")"

if [ -n "${BASE_BIN:-}" ]; then
    "$BIN" umount "$MNT" >/dev/null
    rm_round() { # binary -> microseconds of rm -rf until quiet, on a fresh store
        local bin=$1 d=$BACKING/r m=$BACKING/rm s e
        rm -rf "$d"; mkdir -p "$d" "$m"
        "$bin" mount "$d" "$m" --config "$BACKING/cfg.json" >/dev/null
        mkdir "$m/d"; make_files "$m/d"; "$bin" wait "$m" >/dev/null
        s=$(date +%s%N); rm -rf "$m/d"; "$bin" wait "$m" >/dev/null; e=$(date +%s%N)
        "$bin" umount "$m" >/dev/null
        echo $(( (e - s) / 1000 ))
    }
    base=""; this=""
    for _ in $(seq "$REPS"); do
        base="$base $(rm_round "$BASE_BIN")"; this="$this $(rm_round "$BIN")"
    done
    bm=$(echo $base | median); tm=$(echo $this | median)
    echo "rm -rf of $FILES files until quiet, median of $REPS (µs): baseline $bm, this build $tm (baseline/this $(ratio "$bm" "$tm"))"
    echo "  baseline:$base"; echo "  this:    $this"
fi
