"""Every code block of the guides runs, in page order, in a fresh folder (or says why it cannot).

Pages run in this process, one after another (docs/contributing-docs.md has the markers)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import warnings
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("run_page.py")
_spec = importlib.util.spec_from_file_location("run_page", RUNNER)
pages = sys.modules.setdefault("run_page", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(pages)
DOCS, GUIDE_PAGES, RUNNABLE = pages.DOCS, pages.GUIDE_PAGES, pages.RUNNABLE
blocks, requires, slow_reason = pages.blocks, pages.requires, pages.slow_reason


def _param(page: Path):
    reason = slow_reason(page.read_text(encoding="utf-8"))
    return pytest.param(page, id=str(page.relative_to(DOCS)), marks=[pytest.mark.slow] if reason else [])


def test_the_guides_are_there():
    names = {str(p.relative_to(DOCS)) for p in GUIDE_PAGES}
    for guide in ("sklearn", "xgboost", "lightgbm", "catboost", "torch", "keras", "onnx-file", "pmml-elsewhere", "cards"):
        assert f"guides/{guide}.md" in names


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=[str(p.relative_to(DOCS)) for p in GUIDE_PAGES])
def test_every_block_runs_or_says_why_not(page: Path):
    text = page.read_text(encoding="utf-8")
    for block in blocks(text):
        if block.language in RUNNABLE and block.not_run is not None:
            assert len(block.not_run.strip()) > 10, f"{page.name}:{block.line}: say why the block does not run"
        assert block.language, f"{page.name}:{block.line}: name the block's language (```python, ```text...)"


@pytest.mark.parametrize("page", [_param(p) for p in GUIDE_PAGES])
def test_guide_runs(page: Path, tmp_path: Path, monkeypatch, capsys):
    text = page.read_text(encoding="utf-8")
    if not [b for b in blocks(text) if b.language in RUNNABLE and not b.not_run]:
        pytest.skip(f"{page.name} has no block to run (each says why in the page)")
    for name in requires(text):
        if name == "java":
            if shutil.which("java") is None:
                pytest.skip(f"{page.name} needs a Java runtime on the PATH (PMML)")
        elif importlib.util.find_spec(name) is None:
            pytest.skip(f"{page.name} needs the module {name}, which is not installed")
    monkeypatch.chdir(tmp_path)  # in this process: the frameworks' imports are paid once for all pages
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # a library's deprecation warning is not the guide's failure
        status = pages.main(page)
    out = capsys.readouterr()
    assert status == 0, out.out[-3000:] + out.err[-6000:]
    assert "ran " in out.out
