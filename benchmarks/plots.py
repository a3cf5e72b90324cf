"""Plots of the measured benchmarks, drawn from the tables in docs/benchmarks.md.

The tables are the record (each section carries its date, machine and
versions); the plots are drawn from them, never from numbers of their own, so
the two cannot disagree. ``mkdocs build`` runs this as a hook and adds the
images to the site; ``python benchmarks/plots.py OUT_DIR`` writes them to a folder.
A table that is no longer where a plot expects it stops the build, naming it.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "benchmarks.md"
IMAGE_DIR = "img/benchmarks"


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table of the page, keyed by the heading above it (later ones get ' #2'...)."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, lines = "", text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            header = _unique(_cells(lines[i]))
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]), strict=False)))
                i += 1
            key = heading if heading not in found else next(f"{heading} #{n}" for n in range(2, 99)
                                                               if f"{heading} #{n}" not in found)
            found[key] = rows
            continue
        i += 1
    return found


def _unique(names: list[str]) -> list[str]:
    """Repeated column names get ' #2', ' #3'... (two 'speed-up' columns: 1 row, then 10k rows)."""
    out: list[str] = []
    for name in names:
        out.append(name if name not in out else next(f"{name} #{n}" for n in range(2, 99) if f"{name} #{n}" not in out))
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def ratio(cell: str) -> float:
    """``'1.80×'``, ``'2.17x'``, ``'1.064× throughput'`` -> 1.8, 2.17, 1.064."""
    match = re.match(r"^([0-9.]+)\s*[×x]", cell)
    if match is None:
        raise ValueError(f"{cell!r} is not a ratio like 1.8×")
    return float(match.group(1))


def _table(all_tables: dict[str, list[dict[str, str]]], heading_start: str, *columns: str) -> list[dict[str, str]]:
    for heading, rows in all_tables.items():
        if heading.startswith(heading_start) and rows and all(c in rows[0] for c in columns):
            return rows
    raise LookupError(f"docs/benchmarks.md has no table under a heading starting {heading_start!r} "
                      f"with the columns {columns}: update benchmarks/plots.py to follow the page")


def _bars(title: str, labels: list[str], series: dict[str, list[float]], note: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(10.0, 0.32 * len(labels) * len(series) + 1.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    height = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax.barh([i + k * height for i in range(len(labels))], values, height=height, label=name)
    ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_xlabel("speed relative to the alternative (× faster; left of the line: slower)")
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(note, loc="left", fontsize=8, color="#57606a")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _trees(t: dict[str, list[dict[str, str]]]) -> bytes:
    rows = [r for r in _table(t, "Tree ensembles", "model", "threads", "rows", "vs ONNX Runtime", "vs native")
            if r["rows"] == "1,000,000"]
    labels = [f"{r['model']}, {r['threads']} thr." for r in rows]
    return _bars("Tree engine, 1M rows: vs ONNX Runtime's tree operator and vs the framework", labels,
                 {"vs ONNX Runtime": [ratio(r["vs ONNX Runtime"]) for r in rows],
                  "vs native": [ratio(r["vs native"]) for r in rows]},
                 "Source: docs/benchmarks.md, 'Tree ensembles at batch scale' (regressors, 2-core machine).")


def _speedups(heading: str, name: str) -> Callable[[dict[str, list[dict[str, str]]]], bytes]:
    def draw(t: dict[str, list[dict[str, str]]]) -> bytes:
        rows = _table(t, heading, "model", "speed-up", "speed-up #2")
        return _bars(f"{name}: modelpack predict vs the framework's own", [r["model"] for r in rows],
                     {"1 row": [ratio(r["speed-up"]) for r in rows],
                      "10k rows": [ratio(r["speed-up #2"]) for r in rows]},
                     f"Source: docs/benchmarks.md, '{heading}' (2-core machine).")
    return draw


PLOTS: dict[str, Callable[[dict[str, list[dict[str, str]]]], bytes]] = {
    "trees.png": _trees,
    "sklearn.png": _speedups("scikit-learn: export time and predict speed", "scikit-learn"),
    "boosting.png": _speedups("Gradient boosting: export time and predict speed", "Gradient boosting"),
    "deep.png": _speedups("PyTorch and Keras: export time and predict speed", "PyTorch and Keras"),
}


def draw_all() -> dict[str, bytes]:
    """Every plot as PNG bytes, by file name."""
    found = tables(SOURCE.read_text(encoding="utf-8"))
    return {name: draw(found) for name, draw in PLOTS.items()}


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the plots to the site under img/benchmarks/."""
    from mkdocs.structure.files import File

    for name, png in draw_all().items():
        files.append(File.generated(config, f"{IMAGE_DIR}/{name}", content=png))
    return files


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/benchmark-plots")
    out.mkdir(parents=True, exist_ok=True)
    for file_name, data in draw_all().items():
        (out / file_name).write_bytes(data)
        print(f"wrote {out / file_name}")
