#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (root): FUSE, the
# conformance suites, the programs and Python writers the tests drive.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fuse3: fusermount3 (non-root mounts); sqlite3: a real in-place writer;
# btrfs-progs: the reflink test; e2fsprogs: the small-disk test; util-linux:
# setpriv, losetup; procps: pgrep (crash torture); attr: getfattr/setfattr.
apt-get install -y -qq fuse3 sqlite3 btrfs-progs e2fsprogs util-linux procps attr >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
command -v pjdfstest >/dev/null && command -v fsx >/dev/null || cargo install --locked -q pjdfstest fsx
# Real format writers used by the mount tests (fixtures are committed).
python3 -m pip install -q numpy safetensors h5py
