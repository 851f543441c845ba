#!/usr/bin/env bash
# Build libfuse's passthrough_hp example, the reference the metadata targets are
# stated against, so scripts/bench.sh can measure it in the same run as ckptfs.
#
#   scripts/build-passthrough-hp.sh [OUT]     (default target/passthrough_hp)
#
# Takes the source of the distribution's own fuse3 package (Debian/Ubuntu: a
# private apt source list, the system's apt configuration is not touched) and
# compiles it against libfuse3-dev. Needs root for apt-get install.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/passthrough_hp}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq libfuse3-dev g++ pkg-config xz-utils dpkg-dev >/dev/null
# deb-src lines for the suites the system already uses.
. /etc/os-release
mkdir -p "$WORK/lists/partial"
case "$ID" in
    debian) mirror=http://deb.debian.org/debian ;;
    ubuntu) mirror=http://archive.ubuntu.com/ubuntu ;;
    *) echo "build-passthrough-hp: unsupported distribution $ID; set PASSTHROUGH_HP" >&2; exit 2 ;;
esac
echo "deb-src $mirror $VERSION_CODENAME main" > "$WORK/src.list"
opts=(-o "Dir::Etc::SourceList=$WORK/src.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$WORK/lists" -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update -qq
(cd "$WORK" && apt-get "${opts[@]}" source -qq --download-only fuse3 >/dev/null)
tar -C "$WORK" -xf "$(ls "$WORK"/fuse3_*.orig.tar.* | grep -v "\.asc$")"
src=$(echo "$WORK"/fuse-*/example)
mkdir -p "$(dirname "$OUT")"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
g++ -O2 -std=c++17 -I"$src" "$src/passthrough_hp.cc" $(pkg-config fuse3 --cflags --libs) \
    -lpthread -o "$OUT"
echo "built $OUT (libfuse $(pkg-config --modversion fuse3))"
