#!/usr/bin/env bash
# The whole test suite: format, lints, docs, unit and real-mount integration
# tests, and bounded conformance runs (pjdfstest whole, fsx bounded) in both
# data-path modes. Run as root on a machine with /dev/fuse.
#
#   scripts/test.sh            (FSX_OPS=100000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
FSX_OPS=${FSX_OPS:-100000}

echo "== fmt, clippy, doc"
cargo fmt --check
cargo clippy --all-targets --release -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --release -q

echo "== unit and integration tests"
cargo test --release -- --test-threads=2

echo "== conformance (pjdfstest + fsx) in both data-path modes"
BIN=target/release/ckptfs
for mode in passthrough no-passthrough; do
    d=$(mktemp -d /var/tmp/ckptfs-conf.XXXX)
    args=()
    [ "$mode" = no-passthrough ] && args+=(--no-passthrough)
    "$BIN" mount "$d" "${args[@]}"
    rc=0
    timeout 1200 scripts/conformance.sh "$d" "$FSX_OPS" || rc=$?
    "$BIN" umount "$d" || umount -l "$d"
    rm -rf "$d"
    [ $rc -eq 0 ] || { echo "conformance failed ($mode)"; exit 1; }
done
# fsx once more with versions sealed constantly underneath it.
d=$(mktemp -d /var/tmp/ckptfs-conf.XXXX)
echo '{ "autosave": { "settle_ms": 0 } }' > "$d.json"
"$BIN" mount "$d" --config "$d.json"
rc=0
(cd "$d" && timeout 600 fsx -q -N "$FSX_OPS" -S 7 fsx-settle0) || rc=$?
"$BIN" umount "$d" || umount -l "$d"
rm -rf "$d" "$d.json"
[ $rc -eq 0 ] || { echo "fsx with settle_ms 0 failed"; exit 1; }
echo "== crash torture (3 rounds)"
scripts/crash-torture.sh 3
echo "== all tests passed"
