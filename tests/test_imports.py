"""`import modelpack` stays light: no runtime, no framework, no converter library."""

import subprocess
import sys

import pytest

HEAVY = ["onnxruntime", "sklearn", "xgboost", "lightgbm", "catboost", "tensorflow", "keras", "torch",
         "skl2onnx", "onnxmltools", "tf2onnx", "pypmml", "jpype", "pandas", "pyarrow", "onnx",
         "fastapi", "uvicorn", "pyspark", "fsspec", "cryptography", "mlflow", "ray", "dask", "distributed",
         "grpc"]


def test_import_modelpack_imports_nothing_heavy():
    code = ("import sys, modelpack\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_inspect_needs_no_runtime(tmp_path):
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import modelpack\n"
            "print(modelpack.inspect('tests/data/golden-1.0').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "golden"


def test_serving_imports_grpc_only_for_a_grpc_port():
    pytest.importorskip("fastapi", reason="modelpack[serve] is not installed")
    code = ("import sys, modelpack.serve\n"
            "from modelpack.serve import create_app\n"
            "create_app(['tests/data/golden-1.0'])\n"
            "print('grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
