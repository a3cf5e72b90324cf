"""The notebooks: stored without outputs, and each runs top to bottom on this environment's kernel."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "docs" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120
nbformat = pytest.importorskip("nbformat", reason="the docs extra (nbformat, nbclient, ipykernel) is not installed")


def test_one_notebook_per_main_path():
    assert {p.stem for p in NOTEBOOKS} >= {"sklearn-pipeline", "pmml-from-elsewhere", "devices", "serving"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    assert "requires" in notebook.metadata.get("modelpack", {}), f"{path.name}: list what it needs"


def _skip_without(requires: list[str], name: str) -> None:
    for module in requires:
        if module == "java":
            if shutil.which("java") is None:
                pytest.skip(f"{name} needs a Java runtime on the PATH (PMML)")
        elif importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs the module {module}, which is not installed")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs(path: Path, tmp_path: Path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="the docs extra is not installed")
    pytest.importorskip("ipykernel", reason="the docs extra is not installed")
    notebook = nbformat.read(path, as_version=4)
    _skip_without(notebook.metadata["modelpack"]["requires"], path.name)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's scratch folder (its first cell) lands here
    # ipykernel's "python3" spec: jupyter_client starts it with this interpreter (sys.executable).
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert shown, "the notebook printed or displayed nothing"
