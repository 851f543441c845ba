#!/usr/bin/env python3
"""A trainer's checkpoint rotation, as HF Trainer `save_total_limit` does it.

Each save writes `checkpoint-N/` (model.safetensors, optimizer.pt,
trainer_state.json) under a new name, then deletes the oldest beyond `--keep`.
A save that fails (OSError) is counted, never fatal. Prints one JSON line per
finished save with `--progress`, then a summary line:

  {"failed": 0, "seconds": 1.9, "opens": 120, "saves": 40,
   "live": {"checkpoint-39/model.safetensors": "<blake2b>", ...}}

Used by tests/space.rs and scripts/bench-space.sh.
"""
import argparse, hashlib, json, os, shutil, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--saves", type=int, required=True)
ap.add_argument("--mb", type=int, default=24, help="size of one checkpoint in MiB")
ap.add_argument("--keep", type=int, default=2)
ap.add_argument("--fsync", action="store_true", help="fsync the model file")
ap.add_argument("--progress", action="store_true")
a = ap.parse_args()

model_mb = max(1, a.mb * 2 // 3)
optim_mb = max(1, a.mb - model_mb)
block = os.urandom(1 << 20)
failed, opens = 0, 0
live = {}
t0 = time.monotonic()
for n in range(1, a.saves + 1):
    ck = f"checkpoint-{n}"
    # Distinct content per save: the step number heads every file.
    files = {
        "model.safetensors": n.to_bytes(8, "little") + block * model_mb,
        "optimizer.pt": n.to_bytes(8, "little") + block * optim_mb,
        "trainer_state.json": json.dumps({"global_step": n}).encode(),
    }
    try:
        os.makedirs(os.path.join(a.dir, ck), exist_ok=True)
        for name, data in files.items():
            opens += 1
            with open(os.path.join(a.dir, ck, name), "wb") as f:
                f.write(data)
                f.flush()
                if a.fsync and name == "model.safetensors":
                    os.fsync(f.fileno())
        for name, data in files.items():
            live[f"{ck}/{name}"] = hashlib.blake2b(data).hexdigest()
        if a.progress:
            print(json.dumps({"saved": n}), flush=True)
    except OSError as e:
        failed += 1
        print(f"save {n}: {e}", file=sys.stderr, flush=True)
    old = f"checkpoint-{n - a.keep}"
    if n - a.keep >= 1 and os.path.isdir(os.path.join(a.dir, old)):
        try:
            shutil.rmtree(os.path.join(a.dir, old))
        except OSError as e:  # the rotation itself failing fails the job too
            failed += 1
            print(f"rotating {old}: {e}", file=sys.stderr, flush=True)
        live = {k: v for k, v in live.items() if not k.startswith(old + "/")}
print(json.dumps({"failed": failed, "seconds": round(time.monotonic() - t0, 3),
                  "opens": opens, "saves": a.saves, "live": live}), flush=True)
