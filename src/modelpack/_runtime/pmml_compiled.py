"""A PMML model run as its ONNX translation, and the choice between it and the evaluator.

The compiled model is an ONNX model like any other: it is read from the package
through the same checksum, external-data and interface checks, and run by the
ONNX backend (any device it offers). This module only puts the PMML field
conventions around it: a number is fed as a double, a string field's integer or
integral float is matched by its text, and a missing string travels as a marker
no data holds, given back as None.

``compile`` of :func:`modelpack.load`:

* ``"never"``: the PMML evaluator (Java);
* ``"onnx"``: the compiled model, compiled now if the package holds none, or an
  error naming the PMML element that stops it;
* ``"auto"``: what the package's manifest says runs by default (``compiled.default``);
  a bare ``.pmml`` file, or a package written before schema 1.2, is compiled now,
  and the evaluator runs it where the compiler stops, with the reason in
  :attr:`Model.engine_reason`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._fidelity import summary
from ..errors import RuntimeBackendError
from ..manifest import ModelInfo
from .pmml_fields import field_columns, number_column, text_column

if TYPE_CHECKING:
    from .._package import Package
    from .base import Backend

__all__ = ["COMPILE", "CompiledBackend", "ENGINE", "check_compile", "open_compiled"]

COMPILE = ("auto", "onnx", "never")
#: ``Model.engine`` of a PMML model running as its ONNX translation.
ENGINE = "onnx (compiled from PMML)"


def check_compile(compile: str, package: str) -> None:
    if compile not in COMPILE:
        raise RuntimeBackendError(f"unknown compile option {compile!r}", package=package,
                                  fix=f"Use one of {', '.join(map(repr, COMPILE))}.")


class CompiledBackend:
    """The ONNX backend of the compiled model, fed and read as the PMML evaluator is."""

    def __init__(self, inner: Backend, package: Package, reason: str, rows_per_call: int | None = None) -> None:
        manifest = package.manifest
        self._inner, self._package = inner, str(package.path)
        self._rows_per_call = rows_per_call
        self.providers = inner.providers
        self.engine, self.engine_reason = ENGINE, reason
        self._texts = {s.name for s in manifest.inputs if s.dtype == "string"}
        self._strings = {s.name for s in manifest.outputs if s.dtype == "string"}
        self._fields = [s.name for s in manifest.inputs]
        self._matrices = {i.name: [c.name for c in i.columns] for i in manifest.inputs
                          if i.shape is not None and len(i.shape) == 2 and i.columns}
        self._outputs = [s.name for s in manifest.outputs]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        from .._formats.pmml_compile import MISSING

        n, columns = field_columns(feeds, self._fields, self._matrices, self._package)
        prepared = {}
        for name in self._fields:
            if name in self._texts:
                texts = text_column(columns[name]) if name in columns else [None] * n
                prepared[name] = np.array([MISSING if t is None else str(t) for t in texts], dtype=object)
            else:
                prepared[name] = number_column(name, columns[name], self._package) if name in columns \
                    else np.full(n, np.nan)
        names = list(outputs) if outputs is not None else self._outputs
        step = self._rows_per_call
        if step is None or n <= step:
            results = self._inner.run(prepared, names)
        else:  # a model holding every row against every training instance: a slice of rows at a time
            parts = [self._inner.run({k: v[i:i + step] for k, v in prepared.items()}, names) for i in range(0, n, step)]
            results = [np.concatenate(pieces) for pieces in zip(*parts, strict=True)]
        return [_missing_strings(r, MISSING) if name in self._strings else r for name, r in zip(names, results,
                                                                                                 strict=True)]

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:  # placement, io binding... of the ONNX backend
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _missing_strings(values: Any, marker: str) -> Any:
    out = np.asarray(values, dtype=object)
    out[out == marker] = None
    return out


def open_compiled(package: Package, *, compile: str, **options: Any) -> tuple[Backend | None, str]:
    """(the compiled model's backend, why) or (None, why the PMML evaluator runs)."""
    record = package.manifest.compiled
    if record is not None and record.file:
        if compile == "auto" and record.default != "onnx":
            return None, record.reason or "the package names the PMML evaluator as its default"
        return _open_onnx(package, package.read_bytes(record.file), record.file, _certified(record), options), ""
    if record is not None and compile == "auto":
        return None, record.reason or "the package holds no compiled model"
    return _compile_now(package, compile, options)


def _certified(record: Any) -> str:
    if record.fidelity is None:
        return f"compiled from the PMML document when packed ({record.reason or 'not compared with the evaluator'})"
    return (f"compiled from the PMML document when packed; against the PMML evaluator on "
            f"{record.fidelity.rows} rows: {summary(record.fidelity)}")


def _compile_now(package: Package, compile: str, options: Mapping[str, Any]) -> tuple[Backend | None, str]:
    from .._formats.pmml_compile import NotCompiled, compile_pmml
    from ..errors import PackageError

    name = str(package.path)
    try:
        data = compile_pmml(package.read_bytes(package.manifest.model.file), name=name)
    except NotCompiled as exc:
        reason = f"the PMML document is not compiled: {exc}"
        if compile == "onnx":
            raise PackageError(reason, package=name, fix="Load with compile='auto' or 'never' to run it on the "
                               "PMML evaluator (Java).") from None
        return None, reason
    why = "compiled from the PMML document at load (its translation is checked by modelpack's tests, " \
          "not against the evaluator here)"
    return _open_onnx(package, data, "model.onnx", why, options), ""


def _open_onnx(package: Package, data: bytes, file: str, reason: str, options: Mapping[str, Any]) -> Backend:
    from .._package import Package as PackageType
    from . import onnx as onnx_backend

    manifest = package.manifest
    view = manifest.replace(model=ModelInfo(format="onnx", file=file), compiled=None,
                            runtime=dataclasses.replace(manifest.runtime, placement=None))
    inner = onnx_backend.open(PackageType.from_memory(view, {file: data}, path=package.path), **options)
    inner_reason = getattr(inner, "engine_reason", "")
    return CompiledBackend(inner, package, reason + (f"; tree engine: {inner_reason}" if inner_reason else ""),
                           _rows_per_call(inner))


def _rows_per_call(inner: Backend) -> int | None:
    """The compiled model's ROWS_PER_CALL, if it names one (any number it names only slices
    the calls: at least 1 row)."""
    from .._formats.pmml_compile import ROWS_PER_CALL

    session = getattr(inner, "session", None)
    value = session.get_modelmeta().custom_metadata_map.get(ROWS_PER_CALL) if session is not None else None
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10):
        return None
    return max(1, int(value))
