"""Every file in examples/ runs, as a user would run it, so none can rot.

An example names the modules it needs in ``REQUIRES`` (``"java"``: a Java runtime on the
PATH) and is skipped, with the reason, without them; one that takes long says why in ``SLOW``.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py")
                  if not p.name.startswith("_"))  # _example.py: the folder handling they share
DEFAULT_REQUIRES = ("sklearn", "modelpack_sklearn")  # quickstart.py trains a scikit-learn model


def _constant(path: Path, name: str):
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def _param(path: Path):
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if _constant(path, "SLOW") else [])


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert "quickstart" in names, "examples/quickstart.py is what `make demo` runs"
    assert {"sklearn_dataframe", "xgboost_model", "lightgbm_model", "catboost_model", "torch_model",
            "keras_model", "pmml_file"} <= names


@pytest.mark.parametrize("example", [_param(p) for p in EXAMPLES])
def test_example_runs_and_says_ok(example: Path, tmp_path: Path):
    for module in _constant(example, "REQUIRES") or DEFAULT_REQUIRES:
        if module == "java":
            if shutil.which("java") is None:
                pytest.skip(f"{example.name} needs a Java runtime on the PATH")
        elif importlib.util.find_spec(module) is None:
            pytest.skip(f"{example.name} needs {module}, which is not installed")
    done = subprocess.run([sys.executable, str(example), str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("OK"), done.stdout
    assert list(tmp_path.iterdir()), "the example wrote nothing where it was told to"
