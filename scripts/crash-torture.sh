#!/usr/bin/env bash
# Crash torture: N rounds of "writers busy → SIGKILL the daemon at a random
# moment → remount → every state whose close()/fsync() returned is present and
# byte-identical (as a version or as the live file) → ckptfs verify is clean".
#
# Rounds take the data paths in turn (kernel passthrough, the daemon path, the
# daemon path with the kernel's writeback cache) and kill only after at least MIN_STATES (default 20) saves were acknowledged
# in that round, so a round that checks nothing fails.
#
#   scripts/crash-torture.sh [N]     (default 5; CRASH_ROUNDS=N for long runs)
set -euo pipefail
N=${1:-${CRASH_ROUNDS:-5}}
MIN_STATES=${MIN_STATES:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CKPTFS_BIN:-$ROOT/target/release/ckptfs}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
BASE=$(mktemp -d /var/tmp/ckptfs-torture.XXXX)
DIR=$BASE/data; MNT=$BASE/mnt; LOG=$BASE/saved.log
mkdir -p "$DIR" "$MNT"
echo '{ "autosave": { "settle_ms": 100 }, "retention": { "keep_last": 100000, "keep_within": "1y" } }' > "$BASE/cfg.json"
cleanup() { umount -l "$MNT" 2>/dev/null || true; rm -rf "$BASE"; }
trap cleanup EXIT
fail=0
acked() { [ -f "$LOG" ] && wc -l < "$LOG" || echo 0; }
for round in $(seq "$N"); do
    args=(--config "$BASE/cfg.json")
    case $((round % 3)) in
        1) want="kernel passthrough" ;;
        2) args+=(--no-passthrough); want="daemon," ;;
        0) args+=(--no-passthrough --writeback-cache); want="daemon, writeback cache" ;;
    esac
    # Info level: the daemon's log then says when and why it stopped serving.
    line=$(RUST_LOG=info,fuser=warn "$BIN" mount "$DIR" "$MNT" "${args[@]}")
    case "$line" in *"data path: $want"*) ;; *) echo "round $round: expected data path $want: $line"; exit 1 ;; esac
    # The mount names its daemon; a pgrep could also find the last round's,
    # still exiting.
    pid=$(sed -n 's/.*(pid \([0-9]*\),.*/\1/p' <<<"$line")
    [ -n "$pid" ] || { echo "round $round: no daemon pid in: $line"; exit 1; }
    before=$(acked)
    # Writer: after each close/fsync returns, append the state's digest to a log
    # outside the mount (fsynced), so we know what must survive.
    python3 - "$MNT" "$LOG" "$round" <<'PY' &
import os, sys, random, hashlib
mnt, log, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(rnd)
lf = open(log, "a")
i = 0
while True:
    name = f"f{random.randrange(4)}.bin"
    data = os.urandom(random.randrange(1, 300_000))
    try:
        mode = random.randrange(3)
        if mode == 0:
            with open(f"{mnt}/{name}.tmp", "wb") as f: f.write(data)
            os.replace(f"{mnt}/{name}.tmp", f"{mnt}/{name}")
        elif mode == 1:
            with open(f"{mnt}/{name}", "wb") as f:
                f.write(data); f.flush(); os.fsync(f.fileno())
        else:
            with open(f"{mnt}/{name}", "wb") as f: f.write(data)
    except OSError as e:
        # Said, so a round that stops early names why.
        print(f"writer: {name}: {e!r}", file=sys.stderr)
        break
    lf.write(f"{name} {hashlib.blake2b(data).hexdigest()}\n"); lf.flush(); os.fsync(lf.fileno())
    i += 1
PY
    wpid=$!
    for _ in $(seq 600); do
        [ $(( $(acked) - before )) -ge "$MIN_STATES" ] && break
        sleep 0.05
    done
    sleep "0.$((RANDOM % 5))"
    kill -0 "$wpid" 2>/dev/null || {
        echo "round $round: the writer stopped before the kill; the daemon's log ends:"
        tail -20 "$DIR/.ckptfs/daemon.log" 2>/dev/null
        # ECONNABORTED means the daemon closed /dev/fuse (died) mid-request.
        echo "daemon $pid: $(kill -0 "$pid" 2>/dev/null && echo alive || echo gone)"
        ps -o pid,stat,etime,args -C ckptfs 2>/dev/null || true
        grep " $MNT " /proc/mounts || echo "nothing mounted on $MNT"
        dmesg 2>/dev/null | tail -5 || true
        exit 1
    }
    kill -9 "$pid"
    this=$(( $(acked) - before ))
    [ "$this" -ge "$MIN_STATES" ] || { echo "round $round: only $this states acknowledged (< $MIN_STATES)"; fail=1; }
    wait "$wpid" 2>/dev/null || true
    umount -l "$MNT" 2>/dev/null || true
    RUST_LOG=info,fuser=warn "$BIN" mount "$DIR" "$MNT" "${args[@]}" >/dev/null
    if ! python3 - "$MNT" "$LOG" <<'PY'
import os, sys, hashlib
mnt, log = sys.argv[1], sys.argv[2]
have = {}
for name in {l.split()[0] for l in open(log)}:
    ds = set()
    vdir = f"{mnt}/.versions/{name}"
    if os.path.isdir(vdir):
        for e in os.listdir(vdir):
            if e[8:9] == "T" and not e.startswith("."):
                ds.add(hashlib.blake2b(open(f"{vdir}/{e}", "rb").read()).hexdigest())
    if os.path.exists(f"{mnt}/{name}"):
        ds.add(hashlib.blake2b(open(f"{mnt}/{name}", "rb").read()).hexdigest())
    have[name] = ds
lost = [l for l in open(log) if l.split()[1] not in have[l.split()[0]]]
total = sum(1 for _ in open(log))
print(f"  {total} saved states checked, {len(lost)} lost")
sys.exit(1 if lost else 0)
PY
    then fail=1; fi
    "$BIN" verify "$MNT" >/dev/null || { echo "  verify found problems"; "$BIN" verify "$MNT" | tail -5; fail=1; }
    "$BIN" umount "$MNT"
    echo "round $round (${want%,}): $this states acknowledged this round; $([ $fail = 0 ] && echo ok || echo FAILED)"
done
exit $fail
