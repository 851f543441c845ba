#!/usr/bin/env bash
# Produce small sample files with the real writers (numpy, h5py, safetensors,
# gguf, sqlite3, python-docx, reportlab, Pillow, pyarrow, gzip/zstd/xz/bzip2, tar)
# plus torn copies of each (cut at half and just before the end), and a manifest
# with what the classifier must say about each. Output: tests/fixtures/.
#
#   pip install numpy h5py safetensors gguf python-docx reportlab pillow pyarrow pyyaml
#   scripts/make-fixtures.sh
set -euo pipefail
OUT=$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures
# Everything but store-v1/, the committed format-1 store (tests/store_format.rs),
# which no writer here can make again.
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 ! -name store-v1 -exec rm -rf {} +
cd "$OUT"
python3 - <<'PY'
import json, os, pickle, sqlite3, subprocess, tarfile, io

manifest = []
# complete_torn: what a torn copy must report: False (the format has a check that
# catches it) or None (no completeness check exists for the format).
def add(name, category, mime, complete=True, complete_torn=False):
    manifest.append(dict(file=name, category=category, mime=mime, complete=complete))
    data = open(name, "rb").read()
    for tag, cut in (("half", len(data) // 2 + 3), ("tail", len(data) - 7)):
        if cut <= 0 or cut >= len(data):
            continue
        torn = f"torn-{tag}-{name}"
        open(torn, "wb").write(data[:cut])
        manifest.append(dict(file=torn, category=category, mime=mime, complete=complete_torn))

def skip(what, err):
    print(f"skipped {what}: {err}")

try:
    import numpy as np
    np.save("array.npy", np.arange(2000, dtype=np.float32).reshape(40, 50))
    add("array.npy", "numpy", "application/x-npy")
    np.savez("arrays.npz", a=np.arange(100), b=np.ones((3, 3)))
    add("arrays.npz", "numpy", "application/x-npz")
except Exception as e: skip("numpy", e)
try:
    import numpy as np
    from safetensors.numpy import save_file
    save_file({"w": np.ones((64, 64), dtype=np.float32), "b": np.zeros(64, dtype=np.float16)}, "model.safetensors")
    add("model.safetensors", "safetensors", "application/x-safetensors")
except Exception as e: skip("safetensors", e)
try:
    import h5py, numpy as np
    with h5py.File("weights.h5", "w") as f:
        f["layer/kernel"] = np.arange(1000.0)
    add("weights.h5", "hdf5", "application/x-hdf5")
except Exception as e: skip("h5py", e)
try:
    import gguf, numpy as np
    w = gguf.GGUFWriter("tiny.gguf", "llama")
    w.add_block_count(1)
    w.add_tensor("tok_embd", np.ones((16, 8), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    add("tiny.gguf", "gguf", "application/x-gguf")
except Exception as e: skip("gguf", e)
# big headers: begin (headers longer than the classifier's 64 KiB window)
try:
    import numpy as np
    from safetensors.numpy import save_file
    save_file({f"layers.{i}.w": np.full(2, i, dtype=np.float32) for i in range(1500)}, "big-header.safetensors")
    assert int.from_bytes(open("big-header.safetensors", "rb").read(8), "little") > 64 * 1024
    add("big-header.safetensors", "safetensors", "application/x-safetensors")
except Exception as e: skip("safetensors (big header)", e)
try:
    import gguf, numpy as np
    w = gguf.GGUFWriter("big-vocab.gguf", "llama")
    w.add_block_count(1)
    w.add_token_list([f"token-{i:05d}" for i in range(20000)])
    w.add_tensor("tok_embd", np.ones((16, 8), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    add("big-vocab.gguf", "gguf", "application/x-gguf")
except Exception as e: skip("gguf (big vocabulary)", e)
# big headers: end
db = sqlite3.connect("app.sqlite")
db.execute("create table t(x, y)"); db.executemany("insert into t values (?, ?)", [(i, "v" * 50) for i in range(300)])
db.commit(); db.close()
add("app.sqlite", "sqlite", "application/vnd.sqlite3")
try:
    import docx
    d = docx.Document(); d.add_paragraph("checkpoint notes"); d.save("notes.docx")
    add("notes.docx", "document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
except Exception as e: skip("python-docx", e)
try:
    from reportlab.pdfgen import canvas
    c = canvas.Canvas("report.pdf"); c.drawString(100, 750, "loss curve"); c.save()
    add("report.pdf", "document", "application/pdf")
except Exception as e: skip("reportlab", e)
try:
    from PIL import Image
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    img.save("sample.png"); add("sample.png", "image", "image/png")
    img.save("sample.jpg", quality=90); add("sample.jpg", "image", "image/jpeg")
except Exception as e: skip("Pillow", e)
try:
    import pyarrow as pa, pyarrow.parquet as pq, pyarrow.feather as feather
    t = pa.table({"step": list(range(200)), "loss": [1.0 / (i + 1) for i in range(200)]})
    pq.write_table(t, "metrics.parquet"); add("metrics.parquet", "parquet", "application/vnd.apache.parquet")
    feather.write_feather(t, "metrics.arrow", compression="uncompressed")
    add("metrics.arrow", "arrow", "application/vnd.apache.arrow.file")
except Exception as e: skip("pyarrow", e)
pickle.dump({"step": 10, "lr": [0.1] * 100}, open("state.pkl", "wb"), protocol=4)
add("state.pkl", "pickle", "application/x-pickle")
json.dump({"global_step": 300, "log_history": [{"loss": 0.5, "step": i} for i in range(50)]}, open("trainer_state.json", "w"), indent=2)
add("trainer_state.json", "json", "application/json")
with open("events.jsonl", "w") as f:
    for i in range(50): f.write(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n")
add("events.jsonl", "json", "application/jsonl")
try:
    import yaml
    yaml.safe_dump({"model": {"layers": 12, "hidden": 768}, "lr": 0.0003, "epochs": 3}, open("config.yaml", "w"))
    add("config.yaml", "yaml", "application/yaml", complete=None, complete_torn=None)
except Exception as e: skip("pyyaml", e)
with open("metrics.csv", "w") as f:
    f.write("step,loss,lr\n"); [f.write(f"{i},{1/(i+1):.5f},0.001\n") for i in range(100)]
add("metrics.csv", "csv", "text/csv", complete=None, complete_torn=None)
with open("train.log", "w") as f:
    [f.write(f"2026-11-26 10:{i // 60:02d}:{i % 60:02d} INFO step {i} loss {1/(i+1):.4f}\n") for i in range(120)]
add("train.log", "log", "text/x-log", complete=None, complete_torn=None)
open("README.txt", "w").write("These files were written by the real writers; see scripts/make-fixtures.sh.\n" * 5)
add("README.txt", "text", "text/plain", complete=None, complete_torn=None)
raw = open("train.log", "rb").read()
for tool, ext, mime in (("gzip", "gz", "application/gzip"), ("zstd", "zst", "application/zstd"), ("xz", "xz", "application/x-xz"), ("bzip2", "bz2", "application/x-bzip2")):
    try:
        out = subprocess.run([tool, "-c"], input=raw, capture_output=True, check=True).stdout
        open(f"train.log.{ext}", "wb").write(out)
        add(f"train.log.{ext}", "compressed", mime, complete=None, complete_torn=None)
    except Exception as e: skip(tool, e)
with tarfile.open("bundle.tar", "w", format=tarfile.GNU_FORMAT) as t:
    t.add("metrics.csv"); t.add("config.yaml") if os.path.exists("config.yaml") else None
add("bundle.tar", "archive", "application/x-tar")
json.dump(manifest, open("manifest.json", "w"), indent=1)
print(f"{len(manifest)} fixtures")
PY
du -sh "$OUT"
