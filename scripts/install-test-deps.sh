#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (root): FUSE, the
# conformance suites, the programs and Python writers the tests drive.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fuse3: fusermount3 (non-root mounts); sqlite3: a real in-place writer;
# btrfs-progs: the reflink test; e2fsprogs: the small-disk test; util-linux:
# setpriv, losetup, fincore (the page-cache test), dmesg; procps: ps (crash
# torture's report); attr: getfattr/setfattr;
# acl: setfacl/getfacl (the POSIX ACL test);
# prometheus: the metrics test's real server and promtool for the alert rules;
# bsdutils: script(1), the pseudo-terminal for the progress-bar test.
apt-get install -y -qq fuse3 sqlite3 btrfs-progs e2fsprogs util-linux bsdutils procps attr acl prometheus >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
# fmt and clippy run in scripts/test.sh.
command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true
command -v pjdfstest >/dev/null && command -v fsx >/dev/null || cargo install --locked -q pjdfstest fsx
# Real format writers used by the mount tests (fixtures are committed).
python3 -m pip --version >/dev/null 2>&1 || apt-get install -y -qq python3-pip >/dev/null
# A distribution Python refuses plain `pip install` (PEP 668); a venv/pyenv one does not.
# moto[server]: one of the two S3 servers the archive tests start (with boto3).
python3 -m pip install -q numpy safetensors h5py 'moto[server]' ||
    python3 -m pip install -q --break-system-packages numpy safetensors h5py 'moto[server]'
# s3s-fs: the other S3 server (0.14 builds with this toolchain; later ones need newer rustc).
command -v s3s-fs >/dev/null || [ -x "$HOME/.cargo/bin/s3s-fs" ] ||
    cargo install --locked -q s3s-fs --version '~0.14' --features binary
