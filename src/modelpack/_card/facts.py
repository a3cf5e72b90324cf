"""What a model card says, gathered from a manifest and the package's samples.

Everything here is package data, so attacker-controlled: values are turned
into bounded plain strings here, and escaped by whoever renders them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._formats.samples import read_samples
from ..errors import ModelpackError
from ..manifest import Manifest, Samples, TensorSpec

__all__ = ["CARD_FIELDS", "FRONT_MATTER_FIELDS", "Facts", "gather", "text"]

#: User metadata keys the card shows as sections of their own (Hugging Face's layout), in this order.
CARD_FIELDS = {
    "intended_use": "Intended uses",
    "limitations": "Limitations",
    "training_data": "Training data",
    "evaluation_data": "Evaluation data",
    "authors": "Model card authors",
    "contact": "Contact",
    "citation": "Citation",
}
#: User metadata keys that go to the YAML front matter as they are (strings or lists of strings).
FRONT_MATTER_FIELDS = ("license", "language", "datasets", "tags", "base_model")

_MAX_TEXT = 2000      # characters of one metadata value shown
_MAX_CATEGORIES = 20  # categories shown per column
_SAMPLE_ROWS = 5
_WIDGET_ROWS = 3


def text(value: Any, limit: int = _MAX_TEXT) -> str:
    """A bounded one-string view of any JSON value (strings as they are)."""
    out = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return out if len(out) <= limit else out[:limit] + " …"


@dataclass
class Facts:
    """The card's content as plain data, rendered to Markdown and HTML by render.py."""

    manifest: Manifest
    signature: str
    sections: dict[str, str] = field(default_factory=dict)          # CARD_FIELDS title -> text
    other_metadata: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    columns: list[dict[str, str]] = field(default_factory=list)     # one per input column
    provenance: list[tuple[str, str]] = field(default_factory=list)
    placement: str = ""
    row_diffs: dict[str, np.ndarray] = field(default_factory=dict)  # output -> per-row |exported - source|
    sample_header: list[str] = field(default_factory=list)
    sample_rows: list[list[str]] = field(default_factory=list)
    widget: dict[str, list[Any]] = field(default_factory=dict)      # column -> first sample values
    notes: list[str] = field(default_factory=list)                  # what could not be shown, and why


def gather(manifest: Manifest, read: Callable[[str], bytes], *, package: str, signature: str) -> Facts:
    """Collect the card's facts; ``read(name)`` returns a verified file of the package."""
    facts = Facts(manifest=manifest, signature=signature)
    _metadata(facts)
    facts.columns = [c for spec in manifest.inputs for c in _columns(spec)]
    facts.provenance = _provenance(manifest, read)
    facts.placement = _placement(manifest)
    if manifest.samples is None:
        facts.notes.append("The package stores no samples: no sample predictions, no per-row differences.")
        return facts
    try:
        _samples(facts, manifest.samples, read, package)
    except ModelpackError as exc:  # damaged or hostile samples: the card says so instead
        facts.notes.append(f"The stored samples could not be read: {exc}")
    return facts


def _metadata(facts: Facts) -> None:
    for key, value in facts.manifest.metadata.items():
        if key in CARD_FIELDS:
            facts.sections[CARD_FIELDS[key]] = text(value)
        elif key == "metrics" and isinstance(value, Mapping):
            facts.metrics.update({str(k): text(v, 200) for k, v in value.items()})
        elif key not in FRONT_MATTER_FIELDS:
            target = facts.metrics if isinstance(value, (int, float)) and not isinstance(value, bool) \
                else facts.other_metadata
            target[str(key)] = text(value, 500)


def _columns(spec: TensorSpec) -> list[dict[str, str]]:
    if not spec.columns:
        return [{"name": spec.name, "dtype": spec.dtype, "kind": "tensor " + _shape(spec), "categories": ""}]
    rows = []
    for c in spec.columns:
        cats = ""
        if c.categories:
            cats = ", ".join(str(v) for v in c.categories[:_MAX_CATEGORIES])
            cats += f" … ({len(c.categories)} in all)" if len(c.categories) > _MAX_CATEGORIES else ""
        rows.append({"name": c.name, "dtype": c.dtype, "kind": c.optype or "", "categories": cats})
    return rows


def _shape(spec: TensorSpec) -> str:
    from .._display import shape_text

    return shape_text(spec.shape)


def _provenance(m: Manifest, read: Callable[[str], bytes]) -> list[tuple[str, str]]:
    s = m.source
    rows = [("created", m.created), ("written by", m.generator),
            ("framework", " ".join(filter(None, [s.framework, s.framework_version]))),
            ("model class", s.model_class or ""),
            ("converter", " ".join(filter(None, [s.converter, s.converter_version]))),
            ("model file", f"{m.model.file} ({m.model.format}"
             + (f", IR {m.model.ir_version}" if m.model.ir_version else "")
             + (f", PMML {m.model.pmml_version}" if m.model.pmml_version else "") + ")"),
            ("producer", " ".join(filter(None, [m.model.producer, m.model.producer_version]))),
            ("opsets", ", ".join(f"{k or 'ai.onnx'} {v}" for k, v in (m.model.opsets or {}).items())),
            ("environment", ", ".join(f"{k} {v}" for k, v in s.environment.items()))]
    entry = m.file(m.model.file)  # None while an export is being written: hashed here instead
    rows.append(("model file SHA-256", entry.sha256 if entry else hashlib.sha256(read(m.model.file)).hexdigest()))
    return [(k, text(v, 500)) for k, v in rows if v]


def _placement(m: Manifest) -> str:
    from .._devices.placement import describe

    if m.model.format != "onnx":
        return "No forecast: a PMML model runs in the JVM, on the CPU."
    try:
        return describe(m.runtime.placement)
    except (AttributeError, TypeError, ValueError, KeyError):
        return "The stored placement forecast is not in the expected form."


def _samples(facts: Facts, samples: Samples, read: Callable[[str], bytes], package: str) -> None:
    inputs = read_samples(read(samples.inputs), samples.inputs, package)
    outputs = read_samples(read(samples.outputs), samples.outputs, package)
    _sample_table(facts, inputs, outputs)
    if samples.reference is not None:
        reference = read_samples(read(samples.reference), samples.reference, package)
        facts.row_diffs = _row_diffs(facts.manifest, outputs, reference)


def _cells(name: str, arr: np.ndarray, rows: int) -> tuple[list[str], list[list[str]]]:
    """Column names and cells for the first ``rows`` rows of one array (2-D: one column per feature)."""
    flat = arr[:rows].reshape(min(rows, len(arr)), -1)
    if flat.shape[1] == 1:
        return [name], [[_cell(v)] for v in flat[:, 0]]
    shown = min(flat.shape[1], 6)
    header = [f"{name}[{j}]" for j in range(shown)] + ([f"{name}[…]"] if flat.shape[1] > shown else [])
    return header, [[_cell(v) for v in row[:shown]] + (["…"] if flat.shape[1] > shown else []) for row in flat]


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return text(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v), 60)


def _sample_table(facts: Facts, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
    columns = {s.name: [c.name for c in s.columns] for s in facts.manifest.inputs if s.columns}
    classes = [str(c) for c in facts.manifest.classes or ()]
    probability_names = {s.name: [f"P({c})" for c in classes] for s in facts.manifest.outputs
                         if s.role == "probabilities" and s.for_class is None}
    rows = min(_SAMPLE_ROWS, min((len(a) for a in inputs.values() if a.ndim), default=0))
    if rows == 0:  # no input has a row to show (empty or 0-d arrays)
        facts.notes.append("The stored sample inputs hold no rows: no sample predictions.")
        return
    header: list[str] = []
    body: list[list[str]] = [[] for _ in range(rows)]
    for kind, arrays in (("in", inputs), ("out", outputs)):
        for name, arr in arrays.items():
            if arr.ndim == 0 or arr.size == 0 or len(arr) < rows:  # nothing to show (or hostile)
                continue
            names, cells = _cells(name, arr, rows)
            known = columns.get(name) if kind == "in" else probability_names.get(name)
            if known and len(names) > 1 and len(known) == arr.shape[-1]:
                names = (known[:len(names) - 1] + ["…"]) if names[-1].endswith("[…]") else known[:len(names)]
            header += [f"{n} →" if kind == "out" else n for n in names]
            for row, extra in zip(body, cells, strict=True):
                row += extra
    facts.sample_header, facts.sample_rows = header, body
    facts.widget = _widget(facts.manifest, inputs)


def _widget(m: Manifest, inputs: Mapping[str, np.ndarray]) -> dict[str, list[Any]]:
    """The first rows by column, for the front matter's ``widget`` (tabular models only)."""
    out: dict[str, list[Any]] = {}
    for spec in m.inputs:
        arr = inputs.get(spec.name)
        if arr is None or arr.ndim != 2 or not arr.shape[1] or not spec.columns \
                or len(spec.columns) not in (1, arr.shape[1]):
            return {}
        for j, column in enumerate(spec.columns):
            out[column.name] = [_scalar(v) for v in arr[:_WIDGET_ROWS, j if arr.shape[1] > 1 else 0]]
    return out


def _scalar(v: Any) -> Any:
    """A JSON value: floats as numpy prints them (5.1, not 5.099999904632568), missing as null."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (float, np.floating)):
        return float(str(v)) if np.isfinite(v) else None
    return v.item() if isinstance(v, np.generic) else v


def _row_diffs(m: Manifest, outputs: Mapping[str, np.ndarray],
               reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per row, the largest |exported - source| of each output the certificate compared."""
    by_role = {s.role: s.name for s in m.outputs if s.role}
    diffs = {}
    for key, ref in reference.items():
        got = outputs.get(by_role.get(key, key))
        if got is None or got.size != ref.size or ref.ndim == 0 or ref.size == 0:
            continue
        got, ref = got.reshape(len(ref), -1), ref.reshape(len(ref), -1)
        numeric = ref.dtype.kind in "fiub" and got.dtype.kind in "fiub"
        if numeric:
            got, ref = got.astype(np.float64), ref.astype(np.float64)
        else:  # string labels: compared as text
            got, ref = got.astype(str), ref.astype(str)
        if key in ("label", "cluster") or not numeric:  # 1 where the row's label differs
            diffs[key] = (got != ref).any(axis=1).astype(np.float64)
        else:
            diffs[key] = np.abs(got - ref).max(axis=1)
    return diffs
