#!/usr/bin/env bash
# The data path side by side, in one run: the plain directory, a ckptfs mount
# with kernel passthrough (root), one on the daemon data path
# (--no-passthrough), and one mounted and used by a non-root user (`nobody`,
# through fusermount3: the daemon path, no file handles). Each prints
# MiB/s (reads, writes) or reads/s (4 KiB random) and the ratio to native.
#
#   scripts/bench-datapath.sh [--backing disk|shm|DIR] [--mib 512] [--reps 3]
#                             [--writeback-cache]
#
# Rows: the save (MIB MiB in 8 MiB writes, fsync, close, into a fresh file;
# the previous one, removed before the timing, becomes a version), cold read (caches dropped), warm read (the
# second read), 50,000 random 4 KiB reads (warm). Best of --reps. Needs root
# (cache drops, passthrough; /dev/fuse is opened to users for the non-root
# column and put back after).
set -euo pipefail
MIB=512
REPS=3
KIND=disk
WB=""
while [ $# -gt 0 ]; do
    case $1 in
        --mib) MIB=$2; shift ;;
        --reps) REPS=$2; shift ;;
        --backing) KIND=$2; shift ;;
        --writeback-cache) WB=--writeback-cache ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
PY="$ROOT/scripts/datapath.py"
. "$ROOT/scripts/backing.sh"
backing_setup "$KIND" $(( MIB * 12 + 2048 )) datapath
chmod 755 "$BACKING" "$(dirname "$BACKING")"
FUSE_MODE=$(stat -c %a /dev/fuse)
mkdir -p "$BACKING"/{native,pt,daemon,user}
chown nobody "$BACKING/user"
echo '{ "retention": { "max_versions": 2 } }' > "$BACKING/cfg.json"
chmod 644 "$BACKING/cfg.json"
AS_USER="setpriv --reuid=nobody --regid=nogroup --clear-groups"
cleanup() {
    for m in pt daemon; do "$BIN" umount "$BACKING/$m" >/dev/null 2>&1 || umount -l "$BACKING/$m" 2>/dev/null || true; done
    $AS_USER "$BIN" umount "$BACKING/user" >/dev/null 2>&1 || umount -l "$BACKING/user" 2>/dev/null || true
    chmod "$FUSE_MODE" /dev/fuse
    backing_cleanup
}
trap cleanup EXIT
chmod 666 /dev/fuse
"$BIN" mount "$BACKING/pt" --config "$BACKING/cfg.json" > "$BACKING/pt.log"
"$BIN" mount "$BACKING/daemon" --no-passthrough $WB --config "$BACKING/cfg.json" > /dev/null
$AS_USER "$BIN" mount "$BACKING/user" $WB --config "$BACKING/cfg.json" > /dev/null
grep -q "data path: kernel passthrough" "$BACKING/pt.log" || echo "note: the kernel gave no passthrough; the pt column is the daemon path"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# run SIDE PHASE ARGS...: the phase as the side's user
run() {
    local side=$1; shift
    # env(1) searches PATH past entries the user may not enter (root's pyenv).
    if [ "$side" = user ]; then $AS_USER env python3 "$PY" "$@"; else python3 "$PY" "$@"; fi
}
declare -A best
keep() { # keep ROW SIDE SECONDS: the minimum
    local k="$1/$2"
    if [ -z "${best[$k]:-}" ] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$3" "${best[$k]}"; then
        best[$k]=$3
    fi
}
SIDES="native pt daemon user"
for _ in $(seq "$REPS"); do
    for side in $SIDES; do
        f="$BACKING/$side/save.bin"
        # A fresh file each time, removed outside the timing: truncating the
        # last one inside it would time the backing filesystem freeing blocks.
        if [ "$side" = user ]; then $AS_USER rm -f "$f"; else rm -f "$f"; fi
        drop
        keep save "$side" "$(run "$side" write "$f" "$MIB")"
        drop
        keep cold "$side" "$(run "$side" read "$f")"
        keep warm "$side" "$(run "$side" read "$f")"
        keep rand "$side" "$(run "$side" rand "$f" 50000)"
    done
done
echo "ckptfs data paths: $(uname -r), $BACKING_DESC, $MIB MiB, best of $REPS${WB:+, daemon columns with the writeback cache}"
printf '%-34s %10s %16s %16s %16s\n' "" native "passthrough" "daemon (root)" "daemon (nobody)"
for row in save cold warm rand; do
    case $row in
        save) label="save: write + fsync, MiB/s"; unit=mib ;;
        cold) label="cold read, MiB/s"; unit=mib ;;
        warm) label="warm read, MiB/s"; unit=mib ;;
        rand) label="4 KiB random reads/s (warm)"; unit=ops ;;
    esac
    python3 - "$label" "$unit" "$MIB" "${best[$row/native]}" "${best[$row/pt]}" "${best[$row/daemon]}" "${best[$row/user]}" <<'PY'
import sys
label, unit, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
secs = [float(x) for x in sys.argv[4:]]
rate = [(mib if unit == "mib" else 50000) / s for s in secs]
cells = [f"{rate[0]:10.0f}"] + [f"{r:8.0f} ({r / rate[0]:.2f})" for r in rate[1:]]
print(f"{label:34s} " + " ".join(f"{c:>16s}" for c in cells))
PY
done
echo "(ratio to native in brackets; each mount keeps 2 versions of the save)"
