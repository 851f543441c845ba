#!/usr/bin/env bash
# Mount time with a large store: build a synthetic store of N versions (N/10
# paths × 10 versions, tiny objects, real metadata), then time `ckptfs mount`
# after a clean unmount (index snapshot) and after a crash (full scan), and the
# listing of one file with 10,000 versions, and the daemon's RSS and the
# snapshot's size per version. Every path is then deleted (one
# journal line each, as the daemon writes them), so the mounts also load a
# journal of N/10 lines, and `ls -l` of one directory of the tree at an
# instant before the deletes is resolved from history alone.
#
#   scripts/bench-mount.sh [N]      (default 1000000)
#
# BASE_BIN=/path/to/an/older/ckptfs: first time that binary's clean and crash
# mounts on the same store and the same disk (it must read format 1, so it
# runs before this build upgrades the store), for a same-run comparison.
set -euo pipefail
N=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
BASE=${BENCH_DIR:-/var/tmp}/ckptfs-bm.$$
DIR=$BASE/data
mkdir -p "$DIR/.ckptfs"
trap '"$BIN" umount "$DIR" >/dev/null 2>&1 || umount -l "$DIR" 2>/dev/null; rm -rf "$BASE"' EXIT
echo "building a store with $N versions (+10,000 of one file)..."
python3 - "$DIR/.ckptfs" "$N" <<'PY'
import hashlib, json, os, sys
store, n = sys.argv[1], int(sys.argv[2])
open(f"{store}/FORMAT", "w").write("ckptfs-store 1\n")
os.makedirs(f"{store}/incoming", exist_ok=True)
def put(path, number, t):
    h = hashlib.md5(path.encode()).hexdigest()
    d = f"{store}/objects/text/{h[:2]}/{h}"
    os.makedirs(d, exist_ok=True)
    data = f"{path} {number}\n".encode()
    with open(f"{d}/v{number:06d}.data", "wb") as f:
        f.write(data)
    st = os.stat(f"{d}/v{number:06d}.data")
    m = dict(format=1, path=path, number=number, sealed_ns=t, mtime_ns=t, size=len(data), mode=0o644,
             uid=0, gid=0, digest="", category="text", mime="text/plain", complete=None,
             reason="close", writer=None, pinned=False, object_ino=st.st_ino, compressed=False)
    with open(f"{d}/v{number:06d}.json", "w") as f:
        json.dump(m, f)
t0 = 1_795_651_200 * 10**9
for i in range(n // 10):
    for v in range(1, 11):
        put(f"run{i % 100}/file{i}.txt", v, t0 + v * 10**9)
for v in range(1, 10001):
    put("hot/metrics.json", v, t0 + v * 10**9)
with open(f"{store}/journal", "w") as j:
    for i in range(n // 10):
        p = f"run{i % 100}/file{i}.txt".encode().hex()
        j.write(json.dumps(dict(t=t0 + 20 * 10**9, op="delete", path_hex=p), separators=(",", ":")) + "\n")
PY
echo '{ "retention": { "keep_last": 100000, "keep_within": "100y", "min_free_bytes": 0 } }' > "$BASE/cfg.json"
sync; echo 3 > /proc/sys/vm/drop_caches
t() { local s; s=$(date +%s.%N); "$@" >/dev/null; python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$s" "$(date +%s.%N)"; }
crash() { pkill -9 -f "ckptfs mount $DIR" || true; sleep 0.5; umount -l "$DIR" 2>/dev/null || true; }
if [ -n "${BASE_BIN:-}" ]; then
    "$BASE_BIN" mount "$DIR" --config "$BASE/cfg.json" >/dev/null && "$BASE_BIN" umount "$DIR" >/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    echo "baseline $BASE_BIN: mount after a clean unmount (snapshot, cold cache): $(t "$BASE_BIN" mount "$DIR" --config "$BASE/cfg.json") s"
    crash; sync; echo 3 > /proc/sys/vm/drop_caches
    echo "baseline: mount after a crash (full scan, cold cache): $(t "$BASE_BIN" mount "$DIR" --config "$BASE/cfg.json") s"
    "$BASE_BIN" umount "$DIR" >/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
fi
echo "first mount by this build (a full scan, or the baseline's snapshot): $(t "$BIN" mount "$DIR" --config "$BASE/cfg.json") s"
VERSIONS=$(( N / 10 * 10 + 10000 ))
per() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.0f}')" "$1" "$VERSIONS"; }
rss() { local k; k=$(awk '/VmRSS/ {print $2}' "/proc/$(pgrep -f "ckptfs mount $DIR" | head -1)/status"); echo "$(( k / 1024 )) MiB, $(per $(( k * 1024 ))) bytes per version"; }
echo "daemon RSS after that mount: $(rss)"
echo "ls .versions/hot/metrics.json (10,000 versions): $(t ls -l "$DIR/.versions/hot/metrics.json") s"
echo "ckptfs log (10,000 versions): $(t "$BIN" log "$DIR/hot/metrics.json") s"
AT=$(date -u -d @1795651215 +%Y%m%dT%H%M%SZ)   # after each path's 10th version, before the deletes
echo "ls -l .versions/@$AT/run0 ($(ls "$DIR/.versions/@$AT/run0" | wc -l) files, from history): $(t ls -l "$DIR/.versions/@$AT/run0") s"
echo "daemon RSS with $VERSIONS versions, after the listings above: $(rss)"
echo "clean unmount (writes the index snapshot): $(t "$BIN" umount "$DIR") s"
snap=$(stat -c %s "$DIR/.ckptfs/index.snapshot")
echo "index snapshot: $(( snap / 1048576 )) MiB, $(per "$snap") bytes per version"
sync; echo 3 > /proc/sys/vm/drop_caches
echo "mount after a clean unmount (snapshot, cold cache): $(t "$BIN" mount "$DIR" --config "$BASE/cfg.json") s"
echo "daemon RSS after the snapshot mount: $(rss)"
crash; sync; echo 3 > /proc/sys/vm/drop_caches
echo "mount after a crash (full scan, cold cache): $(t "$BIN" mount "$DIR" --config "$BASE/cfg.json") s"
echo "daemon RSS after the full scan: $(rss)"
"$BIN" stats "$DIR" | grep '"versions"'
