#!/usr/bin/env bash
# What the Prometheus endpoint costs: the same workloads on two mounts of the
# same backing filesystem, one with `--metrics` (scraped every second while
# the workloads run, as a tight Prometheus would) and one without, alternating
# for REPS rounds, plus the plain directory. Prints medians and the ratio
# on/off (1.00 = no cost; the goal is within 3 %).
#   metadata: create FILES files of 4 KiB, stat them, rename them, unlink them
#   save:     write a SAVE_MIB MiB file in 8 MiB writes, fsync, close
#
#   scripts/bench-metrics.sh [--backing disk|shm|DIR] [--files 5000] [--save-mib 256] [--reps 5]
set -euo pipefail
FILES=5000; SAVE_MIB=256; REPS=5; KIND=shm
while [ $# -gt 0 ]; do
    case $1 in
        --files) FILES=$2; shift ;;
        --save-mib) SAVE_MIB=$2; shift ;;
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
backing_setup "$KIND" $(( SAVE_MIB * 8 + FILES * 30 / 1024 + 2048 )) bmx
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$BACKING/native" "$BACKING/on" "$BACKING/off"
echo '{ "autosave": { "settle_ms": 200 }, "retention": { "keep_last": 2, "keep_within": "0s", "min_free_bytes": 0 } }' > "$BACKING/cfg.json"
SCRAPER=""
cleanup() {
    [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
    for m in on off; do "$BIN" umount "$BACKING/$m" >/dev/null 2>&1 || umount -l "$BACKING/$m" 2>/dev/null || true; done
    backing_cleanup
}
trap cleanup EXIT
"$BIN" mount "$BACKING/on" --config "$BACKING/cfg.json" --metrics "$PORT" >/dev/null
"$BIN" mount "$BACKING/off" --config "$BACKING/cfg.json" >/dev/null
# The scraper is bash's /dev/tcp: a scrape costs the daemon, not a process start.
( while sleep 1; do
    { exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3 >/dev/null; exec 3>&-; } 2>/dev/null || true
  done ) &
SCRAPER=$!
echo "backing: $BACKING_DESC; $FILES files, a $SAVE_MIB MiB save, $REPS rounds, /metrics scraped every second on the 'on' mount"

us() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
metadata() { python3 - "$1" "$FILES" <<'PY'
import os, sys
d, n = sys.argv[1] + "/meta", int(sys.argv[2])
os.makedirs(d, exist_ok=True)
blob = os.urandom(4096)
for i in range(n):
    with open(f"{d}/f{i}", "wb") as f:
        f.write(blob)
for i in range(n):
    os.stat(f"{d}/f{i}")
for i in range(n):
    os.rename(f"{d}/f{i}", f"{d}/g{i}")
for i in range(n):
    os.unlink(f"{d}/g{i}")
PY
}
save() { python3 - "$1" "$SAVE_MIB" <<'PY'
import os, sys
p, mib = sys.argv[1] + "/model.bin", int(sys.argv[2])
chunk = os.urandom(8 << 20)
with open(p, "wb") as f:
    for _ in range(mib // 8):
        f.write(chunk)
    f.flush()
    os.fsync(f.fileno())
PY
}
declare -A T
for r in $(seq "$REPS"); do
    # Alternate which mount goes first: whatever the previous run left the
    # kernel to do (writeback, journal) falls on both sides alike.
    if [ $((r % 2)) = 1 ]; then order="native on off"; else order="native off on"; fi
    for side in $order; do
        T[meta_$side]+="$(us metadata "$BACKING/$side") "
        T[save_$side]+="$(us save "$BACKING/$side") "
        [ "$side" = native ] || "$BIN" wait "$BACKING/$side" --timeout 300 >/dev/null
    done
done
printf '%-10s %12s %12s %12s %10s %10s\n' workload native_ms off_ms on_ms native/off on/off
for w in meta save; do
    n=$(echo "${T[${w}_native]}" | median); off=$(echo "${T[${w}_off]}" | median); on=$(echo "${T[${w}_on]}" | median)
    printf '%-10s %12.1f %12.1f %12.1f %10.2f %10.3f\n' "$w" "$(echo "$n/1000" | bc -l)" "$(echo "$off/1000" | bc -l)" "$(echo "$on/1000" | bc -l)" \
        "$(echo "$n/$off" | bc -l)" "$(echo "$on/$off" | bc -l)"
done
echo "(on/off is time with metrics / time without: 1.030 would be a 3 % cost)"
{ exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && grep -c '^ckptfs_' <&3 | sed 's/^/series exported on the last scrape: /'; } 2>/dev/null || true
