"""Converters: the protocol a plugin implements, and how modelpack finds one.

Converter plugins are separate distributions that declare an entry point in the
group ``modelpack.converters``. The entry point's *name* is the top-level module
of the model classes it converts (``sklearn``, ``xgboost``, ``torch``...), so a
model is matched without importing any framework: :func:`find_converter` walks
``type(model).__mro__`` and loads only the plugin whose name matches the first
class that has one. ``XGBClassifier`` subclasses scikit-learn's ``BaseEstimator``
but is defined in ``xgboost``, so it reaches the XGBoost plugin.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import ModelpackError, NoConverterError
from .manifest import ColumnSpec, Source, TensorSpec

__all__ = ["Conversion", "Converter", "available_converters", "find_converter", "list_converters",
           "register"]

ENTRY_POINT_GROUP = "modelpack.converters"


@dataclass
class Conversion:
    """What a converter returns: the model file and what it knows about the model.

    ``reference`` holds the source model's own outputs on the sample, keyed by
    role (``label``, ``probabilities``, ``value``, ``cluster``, ``distances``) or,
    for other outputs, by output name; export compares the packaged model to it.
    ``inputs`` and ``outputs`` may refine what modelpack reads from the model file
    (columns and categories, output roles); leave them ``None`` to use the file's.
    """

    model: bytes
    format: str
    task: str
    source: Source
    reference: dict[str, np.ndarray]
    classes: tuple[Any, ...] | None = None
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    columns: tuple[ColumnSpec, ...] | None = None
    dtype: str | None = None
    external_data: dict[str, bytes] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Converter(Protocol):
    """What a converter plugin provides.

    ``frameworks`` are the top-level module names of the model classes it
    converts; ``formats`` the formats it writes (``"onnx"``, ``"pmml"``).
    ``convert`` imports its framework and converter library itself, so merely
    listing converters imports nothing heavy.
    """

    name: str
    frameworks: tuple[str, ...]
    formats: tuple[str, ...]

    def convert(self, model: Any, sample: Any, *, format: str, options: Mapping[str, Any]) -> Conversion:
        ...


_registered: dict[str, Converter] = {}


def register(converter: Converter, *, replace: bool = False) -> None:
    """Make ``converter`` available to :func:`modelpack.export` in this process.

    Example
    -------
    >>> class Identity:
    ...     name, frameworks, formats = "identity", ("mylib",), ("onnx",)
    ...     def convert(self, model, sample, *, format, options): ...
    >>> register(Identity())
    >>> "mylib" in [f for c in list_converters() for f in c["frameworks"]]
    True
    >>> register(Identity(), replace=True)

    Raises :class:`~modelpack.ModelpackError` if a converter already claims one of
    its frameworks and ``replace`` is False, or if it does not fit the protocol.
    """
    if not isinstance(converter, Converter):
        raise ModelpackError(f"{converter!r} is not a converter: it needs name, frameworks, formats "
                             "and convert(model, sample, *, format, options)",
                             fix="See converters/README.md for the protocol.")
    taken = {fw: _registered[fw].name for fw in converter.frameworks if fw in _registered}
    if taken and not replace:
        raise ModelpackError(f"frameworks already have a converter: {taken}",
                             fix="Pass replace=True to register() to replace it.")
    for fw in converter.frameworks:
        _registered[fw] = converter


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


@functools.cache
def _load_entry_point(name: str) -> Converter | None:
    ep = _entry_points()[name]
    try:
        converter = ep.load()
    except Exception as exc:  # a broken plugin must not break the others
        warnings.warn(f"modelpack converter plugin {ep.value!r} failed to import: {exc!r}; "
                      "reinstall it or uninstall it.", RuntimeWarning, stacklevel=3)
        return None
    if callable(converter) and not isinstance(converter, Converter):
        converter = converter()
    return converter


def _converter_for(framework: str) -> Converter | None:
    if framework in _registered:
        return _registered[framework]
    if framework in _entry_points():
        return _load_entry_point(framework)
    return None


def find_converter(model: Any, format: str = "onnx") -> Converter:
    """The converter for ``model``: the first class in its MRO whose module has one.

    A path to a TensorFlow SavedModel folder goes to the ``tensorflow`` converter.
    """
    if isinstance(model, (str, os.PathLike)) and (Path(model) / "saved_model.pb").is_file():
        converter = _converter_for("tensorflow")
        if converter is not None and format in converter.formats:
            return converter
    seen: list[str] = []
    for cls in type(model).__mro__:
        framework = cls.__module__.partition(".")[0]
        if framework in seen or framework == "builtins":
            continue
        seen.append(framework)
        converter = _converter_for(framework)
        if converter is not None and format in converter.formats:
            return converter
    raise NoConverterError(
        f"no installed converter exports {type(model).__module__}.{type(model).__qualname__} "
        f"to {format!r} (installed converters: {available_converters() or 'none'})",
        fix=f"Install the plugin for its framework: pip install 'modelpack[{seen[0] if seen else '...'}]' "
            f"(from a checkout: pip install -e converters/{seen[0] if seen else '...'}), "
            "or register your own with modelpack.register().")


def available_converters() -> list[str]:
    return sorted({*_entry_points(), *_registered})


def list_converters() -> list[dict[str, Any]]:
    """The installed and registered converters: name, frameworks, formats, where from.

    Installed plugins are imported to read their formats (their frameworks are not).
    """
    rows = {}
    for framework in sorted(_entry_points()):
        conv = _load_entry_point(framework)
        if conv is not None:
            rows[conv.name] = {"name": conv.name, "frameworks": list(conv.frameworks),
                               "formats": list(conv.formats), "origin": "plugin"}
    for conv in _registered.values():
        rows[conv.name] = {"name": conv.name, "frameworks": list(conv.frameworks),
                           "formats": list(conv.formats), "origin": "registered"}
    return list(rows.values())

