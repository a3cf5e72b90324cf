"""Peak memory of `modelpack predict` on files 10x and 20x the batch, against one whole-file batch.

Each case runs the command line in a fresh process under /usr/bin/time and reads its
maximum resident set size. Run: .venv/bin/python benchmarks/bench_batch.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_section  # noqa: E402

import modelpack  # noqa: E402

FEATURES = 16
ROWS = 1_000_000
BATCH = 100_000
CLI = Path(sys.executable).parent / "modelpack"


def build_model(folder: Path) -> Path:
    """A 3-class linear classifier over 16 float features, as an ONNX-ML graph."""
    rng = np.random.default_rng(0)
    node = helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
                            coefficients=rng.normal(size=3 * FEATURES).tolist(), intercepts=[0.0, 0.1, -0.1],
                            classlabels_ints=[0, 1, 2], post_transform="SOFTMAX", multi_class=1)
    graph = helper.make_graph([node], "bench", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", FEATURES])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx")
    modelpack.pack(folder / "model.onnx", folder / "model.mpk", name="bench")
    return folder / "model.mpk"


def build_data(folder: Path, rows: int) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    table = pa.table({f"f{i}": rng.normal(size=rows) for i in range(FEATURES)})
    paths = {"parquet (row groups of 100k)": folder / f"{rows}.parquet",
             "parquet (one row group)": folder / f"{rows}-one-group.parquet", "csv": folder / f"{rows}.csv"}
    pq.write_table(table, paths["parquet (row groups of 100k)"], row_group_size=BATCH)
    pq.write_table(table, paths["parquet (one row group)"], row_group_size=rows)
    pacsv.write_csv(table, paths["csv"])
    return paths


def peak_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command run in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *args], capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        package = build_model(folder)
        idle, _ = peak_mb([sys.executable, "-c", "import modelpack, pandas, pyarrow.dataset, onnxruntime"])
        table = [f"| imports only (modelpack, pandas, pyarrow, onnxruntime) | | | {idle:,.0f} | |"]
        for rows in (ROWS, 2 * ROWS):
            for label, source in build_data(folder, rows).items():
                one_group = "one row group" in label
                for batch in (BATCH,) if one_group else (BATCH, rows):
                    if one_group and rows != ROWS:
                        continue
                    mb, secs = peak_mb([str(CLI), "predict", str(package), "--input", str(source), "--output",
                                        str(folder / "out.parquet"), "--batch-size", str(batch), "--result", "proba"])
                    share = f"1/{rows // batch} of the file" if batch < rows else "the whole file"
                    table.append(f"| {label} | {rows:,} | {batch:,} ({share}) | {mb:,.0f} | {secs:.1f} |")
                    print(table[-1])
                source.unlink()
        body = "\n".join([
            f"Input: {FEATURES} float64 columns; model: a 3-class linear classifier; `--result proba` "
            "(3 float columns, written to Parquet). Peak resident memory of the whole process "
            "(`/usr/bin/time -f %M`), each case in a fresh process. A batch of 100k rows on files of "
            "10× and 20× the batch, against one batch holding the whole file.",
            "",
            "| input | rows in file | batch | peak MB | seconds |",
            "|---|---:|---:|---:|---:|",
            *table,
            "",
            "Command: `.venv/bin/python benchmarks/bench_batch.py`; each case runs "
            "`/usr/bin/time -f %M modelpack predict model.mpk --input FILE --output out.parquet "
            "--batch-size 100000 --result proba`.",
        ])
        path = write_section("batch", "Batch prediction: peak memory", body,
                             ["modelpack", "onnxruntime", "pyarrow", "pandas", "numpy"])
        print(f"wrote {path}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
