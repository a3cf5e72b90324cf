"""Rows that test a compiled model where it could go wrong: at and beside every constant
the document compares a field with, with missing values and unseen categories mixed in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..pmml import parse_document
from .document import Document

if TYPE_CHECKING:
    from ...manifest import TensorSpec

__all__ = ["probe_rows"]

#: A category no document names: scored as an invalid or unmatched value.
UNSEEN = "modelpack-unseen-category"


def _constants(doc: Document, field: str) -> list[float]:
    found = []
    for text in doc.literals.get(field, {}):
        try:
            found.append(float(text))
        except ValueError:
            continue
    for element in doc.root.iter():
        if element.get("field") != field or element.tag not in ("NormContinuous", "Discretize"):
            continue
        found += [float(p.get("orig", "nan")) for p in element.iter("LinearNorm")]
        found += [float(i.get(k, "nan")) for i in element.iter("Interval") for k in ("leftMargin", "rightMargin")]
    data_field = doc.fields.get(field)
    if data_field is not None:
        found += [float(i.get(k, "nan")) for i in data_field.iter("Interval") for k in ("leftMargin", "rightMargin")]
    return [v for v in found if math.isfinite(v)]


def _numbers(constants: list[float], rows: int, rng: np.random.Generator, missing: float) -> np.ndarray:
    if not constants:
        out = rng.normal(0.0, 10.0, rows)
    else:
        near = np.array([f(c) for c in constants for f in (
            lambda c: c, lambda c: np.nextafter(c, np.inf), lambda c: np.nextafter(c, -np.inf))])
        low, high = min(constants), max(constants)
        span = (high - low) or max(abs(high), 1.0)
        out = rng.uniform(low - 0.25 * span, high + 0.25 * span, rows)
        pick = rng.random(rows) < 0.4
        out[pick] = near[rng.integers(0, len(near), int(pick.sum()))]
    out[rng.random(rows) < missing] = np.nan
    return out


def _strings(words: Sequence[str], rows: int, rng: np.random.Generator, missing: float) -> np.ndarray:
    pool = [*words, UNSEEN] if words else [UNSEEN]
    out = np.array([pool[i] for i in rng.integers(0, len(pool), rows)], dtype=object)
    out[rng.random(rows) < missing] = None
    return out


def probe_rows(data: bytes, inputs: Sequence[TensorSpec], *, rows: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """One column per input field of the PMML document ``data``.

    Example
    -------
    >>> from modelpack.manifest import TensorSpec
    >>> pmml = b'<PMML version="4.4"><DataDictionary><DataField name="x" optype="continuous" dataType="double"/>'\\
    ...        b'</DataDictionary><TreeModel><Node><SimplePredicate field="x" operator="lessThan" value="2"/>'\\
    ...        b'</Node></TreeModel></PMML>'
    >>> probe_rows(pmml, [TensorSpec("x", "float64")], rows=8)["x"].shape
    (8,)
    """
    doc = Document(parse_document(data, "model.pmml"))
    rng = np.random.default_rng(seed)
    # Each field is missing on up to 10% of the rows, and about half the rows miss none.
    missing = min(0.1, 1.0 - 0.5 ** (1.0 / max(len(inputs), 1)))
    out = {}
    for spec in inputs:
        if spec.dtype == "string":
            out[spec.name] = _strings(doc.vocab(spec.name), rows, rng, missing)
        else:
            column = _numbers(_constants(doc, spec.name), rows, rng, missing)
            out[spec.name] = column if spec.dtype != "bool" else column > 0
    return out


