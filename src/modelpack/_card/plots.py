"""The card's plot: per-row differences between the exported and the source model.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global
figure state and no GUI backend), into PNG bytes. matplotlib comes with the
``modelpack[card]`` extra; without it :func:`fidelity_png` returns None and the
card says how to get the plot.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..manifest import Fidelity

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOT_EXTRA", "fidelity_png"]

PLOT_EXTRA = 'pip install "modelpack[card]"'
_FLOOR = 1e-12  # zero differences are drawn at this height on the log scale
_MAX_PANELS = 6  # outputs drawn, one panel each


def fidelity_png(diffs: Mapping[str, np.ndarray], fidelity: Fidelity | None) -> bytes | None:
    """A PNG of per-row differences, one panel per output; None without matplotlib or data."""
    if not diffs:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    tolerances = {o.output: o.tolerance for o in fidelity.outputs} if fidelity else {}
    # The outputs come from the package: a bounded number of panels keeps the time and the image bounded.
    shown = list(diffs.items())[:_MAX_PANELS]
    fig = Figure(figsize=(7.0, 2.2 * len(shown)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (output, values) in zip(fig.subplots(len(shown), 1, squeeze=False)[:, 0], shown, strict=True):
        _panel(ax, output, np.asarray(values, dtype=np.float64), tolerances.get(output))
    if len(diffs) > len(shown):
        fig.suptitle(f"the first {len(shown)} of {len(diffs)} outputs", x=0.01, ha="left", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _panel(ax: Axes, output: str, values: np.ndarray, tolerance: float | None) -> None:
    rows = np.arange(len(values))
    if output in ("label", "cluster"):
        # One filled outline of steps a row wide, not a bar per row: bars take seconds per ten thousand rows.
        ax.stairs(values, np.arange(len(values) + 1) - 0.5, fill=True, color="#cf222e")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("differs (1) or not (0)")
        ax.set_title(f"{output}: {int(values.sum())} of {len(values)} rows differ", loc="left")
        if not values.any():
            ax.text(0.5, 0.5, "every row agrees", transform=ax.transAxes, ha="center", va="center", color="#1a7f37")
    else:
        finite = np.isfinite(values)  # NaN or infinite differences have no place on the axis: counted instead
        ax.semilogy(rows[finite], np.maximum(values[finite], _FLOOR), ".", markersize=4, color="#0969da")
        if tolerance:
            ax.axhline(tolerance, color="#cf222e", linewidth=1, label=f"tolerance {tolerance:g}")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_ylabel("|exported − source|")
        odd = f", {len(values) - finite.sum()} row(s) NaN or infinite, not drawn" if not finite.all() else ""
        ax.set_title(f"{output}: max {values[finite].max(initial=0.0):.3g}{odd} "
                     f"(zeros drawn at {_FLOOR:g})", loc="left")
    ax.set_xlabel("sample row")
