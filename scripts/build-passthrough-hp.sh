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
# The source of the distribution's own fuse3 (the suite the system uses).
. "$ROOT/scripts/deb-source.sh"
. /etc/os-release
deb_source "$WORK" "$VERSION_CODENAME" fuse3 || { echo "build-passthrough-hp: set PASSTHROUGH_HP" >&2; exit 2; }
src=$(echo "$WORK"/fuse-*/example)
mkdir -p "$(dirname "$OUT")"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
g++ -O2 -std=c++17 -I"$src" "$src/passthrough_hp.cc" $(pkg-config fuse3 --cflags --libs) \
    -lpthread -o "$OUT"
echo "built $OUT (libfuse $(pkg-config --modversion fuse3))"
