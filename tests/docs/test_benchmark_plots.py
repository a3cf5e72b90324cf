"""The benchmark plots are drawn from docs/benchmarks.md's tables, and a moved table stops the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib (modelpack[docs])")
_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "plots.py"
_spec = importlib.util.spec_from_file_location("benchmark_plots", _PATH)
plots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plots)


def test_tables_are_read_by_heading_with_repeated_columns_numbered():
    text = "# T\n\n## Speed\n\n| model | speed-up | speed-up |\n|---|---:|---:|\n| a | 2.5× | 0.5× |\n"
    assert plots.tables(text) == {"Speed": [{"model": "a", "speed-up": "2.5×", "speed-up #2": "0.5×"}]}
    assert plots.ratio("1.064× throughput") == 1.064 and plots.ratio("2.17x") == 2.17
    with pytest.raises(ValueError, match="not a ratio"):
        plots.ratio("n/a")


def test_every_plot_is_drawn_from_the_page():
    drawn = plots.draw_all()
    assert set(drawn) == {"trees.png", "sklearn.png", "boosting.png", "deep.png"}
    assert all(png.startswith(b"\x89PNG") and len(png) > 10_000 for png in drawn.values())
    page = (_PATH.parents[1] / "docs" / "benchmark-plots.md").read_text(encoding="utf-8")
    assert all(f"img/benchmarks/{name}" in page for name in drawn)


def test_a_missing_table_names_itself():
    with pytest.raises(LookupError, match="Tree ensembles"):
        plots._trees({"Something else": [{"model": "x"}]})
