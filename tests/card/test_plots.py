"""The card's plot on hostile data: bounded panels and artists, non-finite rows counted, not hidden."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plot needs matplotlib (modelpack[card])")
from matplotlib.figure import Figure  # noqa: E402

from modelpack._card.plots import _panel, fidelity_png  # noqa: E402

PANELS = 6  # the most outputs drawn


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    return width, height


def test_many_outputs_draw_a_bounded_number_of_panels():
    png = fidelity_png({f"o{i}": np.full(5, 1e-6) for i in range(PANELS + 6)}, None)
    one = fidelity_png({"o0": np.full(5, 1e-6)}, None)
    assert png is not None and one is not None
    assert _png_size(png)[1] <= PANELS * _png_size(one)[1] * 1.05


def test_a_label_panel_is_one_artist_whatever_the_rows():
    ax = Figure().subplots()
    values = np.zeros(5000)
    values[[3, 4000]] = 1
    _panel(ax, "label", values, None)
    assert len(ax.patches) + len(ax.collections) == 1
    assert ax.get_title(loc="left") == "label: 2 of 5000 rows differ"


def test_non_finite_differences_are_counted_in_the_title():
    ax = Figure().subplots()
    _panel(ax, "probabilities", np.array([np.nan, np.inf, 1e-3, 0.0]), 1e-4)
    title = ax.get_title(loc="left")
    assert title.startswith("probabilities: max 0.001, 2 row(s) NaN or infinite, not drawn"), title
    assert len(ax.lines[0].get_xdata()) == 2
