#!/usr/bin/env bash
# Install what is needed, build ckptfs, mount a demo directory over itself, save a
# "checkpoint" three times the ordinary way, and show the history and a restore.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fusermount3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; fi
fi
cargo build --release -q
BIN=$PWD/target/release/ckptfs
DEMO=${1:-/tmp/ckptfs-demo}
mkdir -p "$DEMO"
"$BIN" umount "$DEMO" 2>/dev/null || true
echo "\$ ckptfs mount $DEMO"
"$BIN" mount "$DEMO"
for step in 100 200 300; do
    python3 -c "open('$DEMO/model.ckpt','w').write('weights at step $step\n')"
    sleep 2   # versions seal after settle_ms (1.5 s) of quiet
done
echo "\$ ls $DEMO";                 ls "$DEMO"
echo "\$ ls $DEMO/.versions/model.ckpt"; ls "$DEMO/.versions/model.ckpt"
echo "\$ ckptfs log $DEMO/model.ckpt"; "$BIN" log "$DEMO/model.ckpt"
echo "\$ cp $DEMO/.versions/model.ckpt/previous $DEMO/model.ckpt"
cp "$DEMO/.versions/model.ckpt/previous" "$DEMO/model.ckpt"
echo "\$ cat $DEMO/model.ckpt";     cat "$DEMO/model.ckpt"
echo "\$ ckptfs umount $DEMO"
"$BIN" umount "$DEMO"
echo "\$ ls -A $DEMO   # a plain directory again; history stays in .ckptfs/"
ls -A "$DEMO"
