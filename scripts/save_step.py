#!/usr/bin/env python3
"""One training step's checkpoint, written by the libraries trainers use.

  save_step.py save RUN STEP [--keep K]   write RUN/checkpoint-STEP/ then delete
                                          the oldest checkpoints beyond K
  save_step.py check DIR STEP             load DIR back with the same libraries
                                          and compare with what STEP saved

The directory holds model.safetensors (safetensors.numpy), optimizer.npy
(numpy), extra.h5 (h5py) and trainer_state.json (json); the values are a
function of STEP, so `check` knows what it must find. Used by
tests/generations.rs (restore --at step-N).
"""
import argparse, json, os, re, shutil, sys

import h5py
import numpy as np
from safetensors.numpy import load_file, save_file


def values(step):
    rng = np.random.default_rng(step)
    return {
        "weights": {
            "embed": rng.standard_normal((64, 32)).astype(np.float32),
            "head.bias": rng.standard_normal(32).astype(np.float32),
        },
        "moments": rng.standard_normal((64, 32)),
        "h5": rng.integers(0, 1000, size=(16, 8)),
        "state": {"global_step": step, "loss": float(rng.random())},
    }


def save(run, step, keep):
    v = values(step)
    d = os.path.join(run, f"checkpoint-{step}")
    os.makedirs(d, exist_ok=True)
    save_file(v["weights"], os.path.join(d, "model.safetensors"))
    np.save(os.path.join(d, "optimizer.npy"), v["moments"])
    with h5py.File(os.path.join(d, "extra.h5"), "w") as f:
        f.create_dataset("table", data=v["h5"])
    with open(os.path.join(d, "trainer_state.json"), "w") as f:
        json.dump(v["state"], f)
    # Rotate as HF Trainer's save_total_limit does: oldest first.
    steps = sorted(
        int(m.group(1))
        for m in (re.fullmatch(r"checkpoint-(\d+)", n) for n in os.listdir(run))
        if m
    )
    for old in steps[: max(0, len(steps) - keep)]:
        shutil.rmtree(os.path.join(run, f"checkpoint-{old}"))


def check(d, step):
    v = values(step)
    w = load_file(os.path.join(d, "model.safetensors"))
    assert sorted(w) == sorted(v["weights"]), sorted(w)
    for k, a in v["weights"].items():
        assert np.array_equal(w[k], a), k
    assert np.array_equal(np.load(os.path.join(d, "optimizer.npy")), v["moments"])
    with h5py.File(os.path.join(d, "extra.h5"), "r") as f:
        assert np.array_equal(f["table"][()], v["h5"])
    with open(os.path.join(d, "trainer_state.json")) as f:
        assert json.load(f) == v["state"]
    print(f"step {step} ok")


ap = argparse.ArgumentParser()
ap.add_argument("cmd", choices=["save", "check"])
ap.add_argument("dir")
ap.add_argument("step", type=int)
ap.add_argument("--keep", type=int, default=1)
a = ap.parse_args()
if a.cmd == "save":
    os.makedirs(a.dir, exist_ok=True)
    save(a.dir, a.step, a.keep)
else:
    try:
        check(a.dir, a.step)
    except AssertionError as e:
        sys.exit(f"step {a.step}: {a.dir} differs from what was saved: {e}")
