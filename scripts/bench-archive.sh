#!/usr/bin/env bash
# The archive tier on a frozen-backbone fine-tune, against a local s3s-fs
# (files in /dev/shm) started here:
#   1. SAVES saves of a SIZE_MIB MiB safetensors file of 64 tensors, CHANGING of
#      them new at each save (the rest frozen), each save replacing the file;
#      every version but the live one moves to the archive (after = 1 s).
#      Prints bytes uploaded against whole-file bytes of the archived versions
#      (the floor is (1 + (n-1) * CHANGING/64) / n: the first save is whole).
#   2. Upload throughput: the archive thread's own upload time (chunking,
#      hashing, HEADs, PUTs; `upload_ns`, it overlaps the saves) against boto3's
#      upload_file of the same files to the same server, in the same run.
#
#   scripts/bench-archive.sh [--saves 10] [--size-mib 256] [--changing 8]
set -euo pipefail
SAVES=10; SIZE_MIB=256; CHANGING=8
while [ $# -gt 0 ]; do
    case $1 in
        --saves) SAVES=$2; shift ;;
        --size-mib) SIZE_MIB=$2; shift ;;
        --changing) CHANGING=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
S3S=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
[ -x "$S3S" ] || { echo "s3s-fs not found (cargo install --locked s3s-fs --version '~0.14' --features binary)" >&2; exit 1; }
python3 -c 'import boto3, numpy, safetensors' || { echo "needs python3 boto3 numpy safetensors" >&2; exit 1; }
"$ROOT/scripts/prefault.sh"
. "$ROOT/scripts/backing.sh"
# The versions, the live file and the copies for boto3 all fit (no pressure eviction).
backing_setup shm $(( SIZE_MIB * (2 * SAVES + 4) + 1024 )) bar
WORK=$BACKING; S3DATA=$(mktemp -d /dev/shm/ckptfs-s3.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY=bench; SECRET=benchsecret
mkdir -p "$WORK/data" "$WORK/mnt" "$WORK/files"
SRV=""
cleanup() {
    "$BIN" umount "$WORK/mnt" >/dev/null 2>&1 || umount -l "$WORK/mnt" 2>/dev/null || true
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
    rm -rf "$S3DATA"
    backing_cleanup
}
trap cleanup EXIT
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key $KEY --secret-key $SECRET "$S3DATA" >/dev/null 2>&1 &
SRV=$!
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null && break; sleep 0.1; done
mkdir -p "$S3DATA/bench"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' $KEY $SECRET > "$WORK/creds"
cat > "$WORK/cfg.json" <<JSON
{ "autosave": { "settle_ms": 200 }, "retention": { "keep_within": "1y", "min_free_bytes": 0 },
  "archive": { "url": "s3://bench/ckptfs", "endpoint": "http://127.0.0.1:$PORT", "after": "1s",
               "expire_after": "1d", "node": "bench", "credentials_file": "$WORK/creds" } }
JSON
"$BIN" mount "$WORK/data" "$WORK/mnt" --config "$WORK/cfg.json" >/dev/null
echo "s3s-fs on /dev/shm; $SAVES saves of a $SIZE_MIB MiB safetensors file, 64 tensors, $CHANGING changing per save"

# The saves; a copy of each goes to files/ for the boto3 comparison.
python3 - "$WORK/mnt/model.safetensors" "$WORK/files" "$SAVES" "$SIZE_MIB" "$CHANGING" <<'PY'
import os, shutil, sys
import numpy as np
from safetensors.numpy import save_file
path, copies, saves, mib, changing = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
per = mib * (1 << 20) // 64 // 4          # float32 values per tensor
rng = np.random.default_rng(0)
tensors = {f"layer{i:02d}": rng.standard_normal(per, dtype=np.float32) for i in range(64)}
for s in range(saves):
    if s:
        for i in range(64 - changing, 64):  # the head is trained, the backbone frozen
            tensors[f"layer{i:02d}"] = rng.standard_normal(per, dtype=np.float32)
    save_file(tensors, path)
    shutil.copyfile(path, os.path.join(copies, f"save{s:02d}.safetensors"))
PY
# One more write so that the last save leaves the live inode and is archived too.
echo done > "$WORK/mnt/model.safetensors"
"$BIN" wait "$WORK/mnt" --timeout 600 >/dev/null
archived() { "$BIN" stats "$WORK/mnt" | python3 -c 'import json,sys; s=json.load(sys.stdin)["archive"]["stats"]; print(s["versions_archived"], s["bytes_uploaded"], s["bytes_archived"], s["chunks_uploaded"], s["chunks_reused"], s["upload_ns"])'; }
while :; do
    read -r n up whole cu cr upns < <(archived)
    [ "$n" -ge "$SAVES" ] && break
    sleep 0.5
done
# The archive thread's own upload time (it overlaps the saves).
ck_s=$(echo "$upns / 1000000000" | bc -l)
floor=$(echo "(1 + ($SAVES - 1) * $CHANGING / 64) / $SAVES" | bc -l)
printf 'archived versions:      %d (%d chunks uploaded, %d reused)\n' "$n" "$cu" "$cr"
printf 'bytes uploaded:         %.1f MiB of %.1f MiB whole-file: %.3fx (floor %.3fx)\n' \
    "$(echo "$up/1048576" | bc -l)" "$(echo "$whole/1048576" | bc -l)" "$(echo "$up/$whole" | bc -l)" "$floor"
# boto3 upload_file of the same files, same server, fresh keys.
B3=$(python3 - "$WORK/files" "$PORT" $KEY $SECRET <<'PY'
import os, sys, time, boto3
d, port, key, secret = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
t = time.monotonic()
for f in sorted(os.listdir(d)):
    s3.upload_file(os.path.join(d, f), "bench", "boto3/" + f)
print(time.monotonic() - t)
PY
)
whole_mib=$(echo "$whole/1048576" | bc -l)
up_mib=$(echo "$up/1048576" | bc -l)
printf 'archiving:              ckptfs %.1f s of upload work: %.0f MiB/s of versions archived, %.0f MiB/s on the wire\n' "$ck_s" "$(echo "$whole_mib/$ck_s" | bc -l)" "$(echo "$up_mib/$ck_s" | bc -l)"
printf '                        boto3 upload_file: %.1f s, %.0f MiB/s (whole files)\n' "$B3" "$(echo "$whole_mib/$B3" | bc -l)"
printf '                        time ratio boto3/ckptfs: %.2f (ckptfs sends %.0f%% of the bytes)\n' "$(echo "$B3/$ck_s" | bc -l)" "$(echo "100*$up/$whole" | bc -l)"
