"""Every file in examples/ runs, as a user would run it, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_there_are_examples():
    assert [p.name for p in EXAMPLES if p.name == "quickstart.py"], "examples/quickstart.py is what `make demo` runs"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_says_ok(example: Path, tmp_path: Path):
    pytest.importorskip("sklearn", reason="the examples train scikit-learn models")
    pytest.importorskip("modelpack_sklearn", reason="the examples export through the scikit-learn plugin")
    done = subprocess.run([sys.executable, str(example), str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("OK"), done.stdout
    assert list(tmp_path.iterdir()), "the example wrote nothing where it was told to"
