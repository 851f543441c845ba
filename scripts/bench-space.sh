#!/usr/bin/env bash
# Space safety under real trainer rotation, against the plain directory in the
# same run, on a small ext4 of its own (RAM-backed by default).
#
# 1. Rotation: HF-style `checkpoint-N/` (model.safetensors, optimizer.pt,
#    trainer_state.json) under a new name each save, the trainer keeping the
#    newest 2, writing about 10x the filesystem's size. Prints failed saves, the
#    time ratio (native time / ckptfs time) and the share of opens for writing
#    that ckptfs served in pressure mode (daemon data path).
# 2. Steady state: 20 in-place saves (open O_TRUNC, write, [fsync,] close) of one
#    file of a fifth of the disk with the seed's `max_keep: 3`, so retention
#    evicts inside the measured window. The first 3 saves (nothing evicted yet:
#    the old blocks only move to the store, which is why a save can beat the
#    plain directory, whose truncate frees them synchronously) are reported
#    apart from the last 17 (each save now also costs an eviction). The mount
#    uses `settle_ms: 0` and each save on it is timed until the store is quiet
#    (`ckptfs wait`: sealed and evicted), not only until the writer returns.
# Both time the rotation until the store is quiet too.
#
#   scripts/bench-space.sh [--backing shm|disk] [--disk-mb 256] [--ckpt-mb 24] [--saves 0]
#   --backing disk (or --disk): the ext4 image on the VM disk (/var/tmp)
#   instead of /dev/shm. --saves 0: as many as make 10x the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/ckptfs}
[ -x "$BIN" ] || cargo build --release -q
where=/dev/shm
disk_mb=256
ckpt_mb=24
saves=0
while [ $# -gt 0 ]; do
    case "$1" in
        --disk) where=/var/tmp ;;
        --backing) case $2 in shm) where=/dev/shm ;; disk) where=/var/tmp ;;
                   *) echo "--backing: shm or disk (this bench makes its own small ext4 there)" >&2; exit 2 ;; esac; shift ;;
        --disk-mb) disk_mb=$2; shift ;;
        --ckpt-mb) ckpt_mb=$2; shift ;;
        --saves) saves=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$saves" -gt 0 ] || saves=$(( disk_mb * 10 / ckpt_mb + 1 ))
scripts/prefault.sh >/dev/null 2>&1 || true

work=$(mktemp -d "$where/ckptfs-bench-space.XXXX")
cleanup() {
    for m in "$work"/fs*/data; do mountpoint -q "$m" && { "$BIN" umount "$m" 2>/dev/null || umount -l "$m"; }; done
    for m in "$work"/fs*; do mountpoint -q "$m" && umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT

# A fresh ext4 of disk_mb at $work/$1; echoes the directory to use.
newfs() {
    local img="$work/$1.img" mnt="$work/$1"
    truncate -s "${disk_mb}M" "$img"
    mkfs.ext4 -q -F -m 0 "$img"
    mkdir -p "$mnt"
    mount -o loop "$img" "$mnt"
    mkdir -p "$mnt/data"
    echo "$mnt/data"
}

# rotation DIR [mounted]: prints "failed seconds write_opens", the seconds
# counting until the store is quiet on a mount.
rotation() {
    local t0 r
    t0=$(date +%s.%N)
    r=$(python3 scripts/rotate.py "$1" --saves "$saves" --mb "$ckpt_mb" --fsync | tail -1)
    [ -z "${2:-}" ] || "$BIN" wait "$1"
    python3 -c "import json,sys,time; s=json.loads(sys.argv[1]); print(s['failed'], round(time.time() - float(sys.argv[2]), 3), s['opens'])" "$r" "$t0"
}

# steady DIR MB FSYNC [WAIT_BIN]: prints "first3_s last17_s failed"; with
# WAIT_BIN each save counts until the store is quiet.
steady() {
    python3 - "$1" "$2" "$3" "${4:-}" <<'PY'
import os, subprocess, sys, time
d, mb, sync, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
chunk = os.urandom(8 << 20)
times, failed = [], 0
for i in range(20):
    t = time.monotonic()
    try:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(i.to_bytes(8, "little"))
            for _ in range(mb // 8):
                f.write(chunk)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except OSError as e:
        failed += 1
        print(f"save {i}: {e}", file=sys.stderr)
    if wait:
        subprocess.run([wait, "wait", d], check=True)
    times.append(time.monotonic() - t)
print(round(sum(times[:3]), 3), round(sum(times[3:]), 3), failed)
PY
}

stat_of() { "$BIN" stats "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s$2)"; }

echo "ckptfs bench-space: ext4 of ${disk_mb} MiB on $where, checkpoints of ${ckpt_mb} MiB x $saves saves (keep newest 2)"
printf '%-28s %8s %9s %7s %15s %9s\n' "rotation" failed seconds ratio "pressure opens" versions
n=0
plain=$(newfs "fs$n"); n=$((n + 1))
read -r f0 t0 _ < <(rotation "$plain")
printf '%-28s %8s %9s %7s %15s %9s\n' "plain directory" "$f0" "$t0" 1.00 - -
for mode in passthrough no-passthrough; do
    d=$(newfs "fs$n"); n=$((n + 1))
    args=()
    [ "$mode" = no-passthrough ] && args+=(--no-passthrough)
    "$BIN" mount "$d" "${args[@]}" >/dev/null
    read -r f1 t1 opens < <(rotation "$d" mounted)
    po=$(stat_of "$d" "['stats']['pressure_opens']")
    nv=$(stat_of "$d" "['versions']")
    "$BIN" verify "$d" >/dev/null || { echo "verify failed ($mode)"; exit 1; }
    "$BIN" umount "$d"
    printf '%-28s %8s %9s %7s %15s %9s\n' "ckptfs ($mode)" "$f1" "$t1" \
        "$(python3 -c "print(f'{$t0/$t1:.2f}')")" "$po/$opens" "$nv"
done

mb=$(( disk_mb / 5 / 8 * 8 ))
echo '{ "autosave": { "max_keep": 3, "settle_ms": 0 } }' > "$work/seed.json"
for sync in 1 0; do
    echo
    echo "steady state: 20 in-place saves of ${mb} MiB (O_TRUNC$([ $sync = 1 ] && echo ', fsync'), close), max_keep 3, settle_ms 0; ratio = native time / ckptfs time until quiet"
    printf '%-28s %14s %14s %8s\n' "" "first 3 saves" "last 17 saves" failed
    plain=$(newfs "fs$n"); n=$((n + 1))
    read -r a0 b0 f0 < <(steady "$plain" "$mb" $sync)
    printf '%-28s %14s %14s %8s\n' "plain directory (s)" "$a0" "$b0" "$f0"
    for mode in passthrough no-passthrough; do
        d=$(newfs "fs$n"); n=$((n + 1))
        args=(--config "$work/seed.json")
        [ "$mode" = no-passthrough ] && args+=(--no-passthrough)
        "$BIN" mount "$d" "${args[@]}" >/dev/null
        read -r a1 b1 f1 < <(steady "$d" "$mb" $sync "$BIN")
        "$BIN" umount "$d"
        printf '%-28s %14s %14s %8s\n' "ckptfs ($mode) ratio" \
            "$(python3 -c "print(f'{$a0/$a1:.2f}')")" "$(python3 -c "print(f'{$b0/$b1:.2f}')")" "$f1"
    done
done
