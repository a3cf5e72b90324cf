"""The manifest, ``modelpack.json``: what a package holds, described as data.

The manifest is a tree of frozen dataclasses read from and written to one JSON
document. It imports nothing beyond the standard library, so ``inspect`` works
with no runtime installed.

Versioning
----------
``schema_version`` is ``"MAJOR.MINOR"``. A reader accepts every major version it
knows, refuses a newer major with :class:`~modelpack.SchemaVersionError` naming
the modelpack release that wrote it, and reads a newer minor of its own major
while dropping (with a warning) the keys it does not know. Within a known
version, unknown keys are refused: third parties put their data under
``extensions``.

To change the format: add optional keys with a default and bump the minor; for
anything else bump the major, keep the old reader as an entry of ``_UPGRADES``
(a function that turns an old document into the current one) and add a test
that reads a committed package of the old version.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import ManifestError, SchemaVersionError

__all__ = [
    "ColumnSpec",
    "Compiled",
    "FileEntry",
    "Fidelity",
    "Manifest",
    "ModelInfo",
    "OutputFidelity",
    "Runtime",
    "SCHEMA_VERSION",
    "Samples",
    "Source",
    "TensorSpec",
]

SCHEMA_VERSION = "1.2"  # 1.1: source.environment; 1.2: compiled (a PMML model compiled to ONNX)
TASKS = ("classification", "regression", "clustering", "transform", "other")
FORMATS = ("onnx", "pmml")
ROLES = ("label", "probabilities", "value", "cluster", "distances", "scores")
KINDS = ("tensor", "sequence", "map", "optional")

Scalar = str | int | float | bool
Dim = int | str | None


@dataclass(frozen=True)
class ColumnSpec:
    """One named feature of a tabular input: a DataFrame column or a PMML field."""

    name: str
    dtype: str
    optype: str | None = None  # continuous | categorical | ordinal
    categories: tuple[Scalar, ...] | None = None
    missing_value_treatment: str | None = None
    missing_value_replacement: Scalar | None = None
    invalid_value_treatment: str | None = None


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    ``shape`` holds ints for fixed sizes, strings for named dynamic dimensions
    (``"N"``) and ``None`` for unnamed dynamic ones; ``shape=None`` means the rank
    is unknown. ``role`` tells modelpack what a classifier or regressor output
    means (``label``, ``probabilities``, ``value``...), so ``predict`` does not
    guess from names. A model may give probabilities as one ``[N, C]`` output,
    or as one output per class (``role="probabilities"``, ``for_class=`` the class).
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None = None
    kind: str = "tensor"
    role: str | None = None
    for_class: Scalar | None = None  # a per-class probability output (PMML): its class
    columns: tuple[ColumnSpec, ...] | None = None
    description: str | None = None

    def __repr__(self) -> str:
        from ._display import spec_text

        return f"<TensorSpec {spec_text(self)}>"

    def _repr_html_(self) -> str:
        from ._display import specs_html

        return specs_html((self,))


@dataclass(frozen=True)
class ModelInfo:
    """The model file: its format and what its header says."""

    format: str
    file: str
    ir_version: int | None = None
    opsets: dict[str, int] | None = None
    pmml_version: str | None = None
    producer: str | None = None
    producer_version: str | None = None
    external_data: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where the model came from: training framework and converter, with versions."""

    framework: str | None = None
    framework_version: str | None = None
    model_class: str | None = None
    converter: str | None = None
    converter_version: str | None = None
    # Where the package was written: python, platform, and the versions of numpy, onnx
    # and the runtime that checked it (schema 1.1).
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFidelity:
    """How far one exported output is from the source model's, on the sample."""

    output: str
    max_abs_diff: float
    max_rel_diff: float
    worst_row: int
    tolerance: float | None = None
    label_agreement: float | None = None
    passed: bool = True


@dataclass(frozen=True)
class Fidelity:
    """The fidelity certificate measured at export."""

    rows: int
    passed: bool
    outputs: tuple[OutputFidelity, ...] = ()
    dtype: str | None = None

    def __repr__(self) -> str:
        worst = max((o.max_abs_diff for o in self.outputs), default=0.0)
        return (f"<Fidelity {'passed' if self.passed else 'FAILED'} on {self.rows} rows: "
                f"{len(self.outputs)} output(s), max abs diff {worst:.3g}>")

    def _repr_html_(self) -> str:
        from ._display import fidelity_html

        return fidelity_html(self)


@dataclass(frozen=True)
class Compiled:
    """A PMML model's ONNX translation, kept beside the document (schema 1.2).

    ``file`` is the compiled model in the package (None when the document was not
    compiled); ``default`` says which runs when ``load(compile="auto")``: ``"onnx"``
    or ``"pmml"``; ``reason`` why the document was not compiled, or why the
    evaluator stays the default; ``fidelity`` the compiled model against the PMML
    evaluator on the certification rows.
    """

    default: str = "pmml"
    file: str | None = None
    reason: str = ""
    fidelity: Fidelity | None = None


@dataclass(frozen=True)
class Samples:
    """Reference inputs and outputs recorded when the package was written."""

    rows: int
    inputs: str = "samples/inputs.npz"
    outputs: str = "samples/outputs.npz"
    reference: str | None = None


@dataclass(frozen=True)
class Runtime:
    """What is needed to run the model, and the session settings stored with it."""

    requires: tuple[str, ...] = ()
    session: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileEntry:
    """One file of the package, with the SHA-256 and size checked before use."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """Everything ``modelpack.json`` says about a package.

    Example
    -------
    >>> from modelpack.manifest import Manifest, ModelInfo, TensorSpec
    >>> m = Manifest(name="iris", task="classification",
    ...              model=ModelInfo(format="onnx", file="model.onnx"),
    ...              inputs=(TensorSpec("X", "float32", ("N", 4)),),
    ...              outputs=(TensorSpec("label", "int64", ("N",), role="label"),))
    >>> Manifest.from_json(m.to_json()) == m
    True
    """

    name: str
    task: str
    model: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    schema_version: str = SCHEMA_VERSION
    version: str = "0.0.0"
    description: str = ""
    created: str = ""
    generator: str = ""
    classes: tuple[Scalar, ...] | None = None
    source: Source = field(default_factory=Source)
    runtime: Runtime = field(default_factory=Runtime)
    fidelity: Fidelity | None = None
    samples: Samples | None = None
    compiled: Compiled | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_values(self)

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON data; fields at their default are left out."""
        out = _to_dict(self)
        out.pop("schema_version", None)
        return {"schema_version": self.schema_version, **out}  # first, and even at its default

    def to_json(self) -> bytes:
        """The UTF-8 bytes of ``modelpack.json``; equal manifests give equal bytes."""
        return (json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Read a manifest from parsed JSON, upgrading older versions, refusing newer majors."""
        if not isinstance(data, dict):
            raise ManifestError(f"the manifest must be a JSON object, not {type(data).__name__}",
                                fix="Rewrite the package with modelpack.pack().")
        data = _upgrade(data)
        return _from_dict(cls, data, "manifest")

    @classmethod
    def from_json(cls, text: bytes | str) -> Manifest:
        """Parse ``modelpack.json``; raises :class:`~modelpack.ManifestError` on bad JSON."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"modelpack.json is not valid JSON ({exc})",
                                fix="Rewrite the package with modelpack.pack().") from exc
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Manifest:
        """A copy with some fields changed (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)

    def file(self, path: str) -> FileEntry | None:
        """The entry of ``path`` in :attr:`files`, or None."""
        return next((f for f in self.files if f.path == path), None)

    # -- display --------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<Manifest {self.name} {self.version} {self.task} {self.model.format}: "
                f"{len(self.inputs)} input(s), {len(self.outputs)} output(s)>")

    def _repr_html_(self) -> str:
        from ._display import manifest_html

        return manifest_html(self)


def now_utc() -> str:
    """The current time as an ISO 8601 UTC string, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- value checks -------------------------------------------------------------
def _check_values(m: Manifest) -> None:
    if not m.name or not isinstance(m.name, str):
        raise ManifestError("the manifest has no name", fix="Pass name= to pack() or export().")
    if m.task not in TASKS:
        raise ManifestError(f"task {m.task!r} is not one of {', '.join(TASKS)}",
                            fix="Pass one of those as task=.")
    if m.model.format not in FORMATS:
        raise ManifestError(f"model format {m.model.format!r} is not one of {', '.join(FORMATS)}",
                            fix="Package an ONNX or a PMML file.")
    for spec in (*m.inputs, *m.outputs):
        if spec.kind not in KINDS:
            raise ManifestError(f"{spec.name!r} has kind {spec.kind!r}, not one of {KINDS}",
                                fix="Use 'tensor', 'sequence', 'map' or 'optional'.")
        if spec.role is not None and spec.role not in ROLES:
            raise ManifestError(f"output {spec.name!r} has role {spec.role!r}, not one of {ROLES}",
                                fix="Use one of those roles or none.")
    for what, specs in (("input", m.inputs), ("output", m.outputs)):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ManifestError(f"{what} names repeat: {names[:20]}", fix=f"Give each {what} its own name.")
    _check_compiled(m)
    for role in ("label", "value", "cluster"):  # predict() returns the one output of that role
        holders = [s.name for s in m.outputs if s.role == role]
        if len(holders) > 1:
            raise ManifestError(f"outputs {holders[:10]} all have the role {role!r}",
                                fix=f"Give the role {role!r} to one output only.")


def _check_compiled(m: Manifest) -> None:
    c = m.compiled
    if c is None:
        return
    fix = "Pack the PMML file again with modelpack.pack()."
    if m.model.format != "pmml":
        raise ManifestError("'compiled' describes a PMML model's ONNX translation, and the model is not PMML",
                            fix=fix)
    if c.default not in FORMATS:
        raise ManifestError(f"compiled.default {c.default!r} is not one of {', '.join(FORMATS)}", fix=fix)
    if c.file is not None and (c.file == m.model.file or not c.file.endswith(".onnx")):
        raise ManifestError(f"compiled.file {c.file!r} must be an .onnx file beside the PMML document", fix=fix)
    if c.default == "onnx" and (c.file is None or c.fidelity is not None and not c.fidelity.passed):
        why = "names no compiled file" if c.file is None else "records that it disagrees with the PMML evaluator"
        raise ManifestError(f"compiled.default is 'onnx', yet the entry {why}", fix=fix)


# -- generic dataclass <-> JSON -------------------------------------------------
def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value == default and default is not dataclasses.MISSING:
                continue
            out[f.name] = _to_dict(value)
        return out
    if isinstance(obj, (tuple, list)):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, globalns={**globals(), "Scalar": Scalar, "Dim": Dim})
    return _HINTS[cls]


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} must be a JSON object, not {type(data).__name__}",
                            fix="Rewrite the package with modelpack.pack().")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ManifestError(f"{where} has unknown key(s) {unknown}",
                            fix="Put your own data under 'metadata' or 'extensions'.")
    kwargs = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ManifestError(f"{where} lacks required key(s) {missing}",
                            fix="Rewrite the package with modelpack.pack().") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ManifestError as exc:
                errors.append(exc)
        raise ManifestError(f"{where} has an invalid value {value!r:.80}",
                            fix="Rewrite the package with modelpack.pack().")
    if origin is tuple:
        if not isinstance(value, list):
            raise _bad_type(where, "a list", value)
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad_type(where, "an object", value)
        item = typing.get_args(hint)[1]
        return {k: _coerce(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    return _check_scalar(hint, value, where)


def _check_scalar(hint: type, value: Any, where: str) -> Any:
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise _bad_type(where, hint.__name__, value)


def _bad_type(where: str, expected: str, value: Any) -> ManifestError:
    return ManifestError(f"{where} must be {expected}, not {type(value).__name__} {value!r:.80}",
                         fix="Rewrite the package with modelpack.pack().")


# -- versions ------------------------------------------------------------------
# Old major version -> function turning its document into the next major's.
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _parse_version(text: Any) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise ManifestError(f"schema_version {text!r} is not 'MAJOR.MINOR'",
                            fix="Rewrite the package with modelpack.pack().") from None


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    if "schema_version" not in data:
        raise ManifestError("the manifest has no schema_version",
                            fix="Rewrite the package with modelpack.pack().")
    major, minor = _parse_version(data["schema_version"])
    ours_major, ours_minor = _parse_version(SCHEMA_VERSION)
    if major > ours_major:
        from ._version import __version__

        writer = data.get("generator") or "a newer modelpack"
        raise SchemaVersionError(
            f"the manifest has schema version {data['schema_version']} (written by {writer}); "
            f"modelpack {__version__} reads schema versions up to {ours_major}.x",
            fix=f"Upgrade modelpack: pip install -U modelpack (to at least the release of {writer}).")
    while major < ours_major:
        if major not in _UPGRADES:
            raise SchemaVersionError(f"schema version {major}.x is no longer readable",
                                     fix="Re-export the model with this modelpack.")
        data = _UPGRADES[major](data)
        major, minor = _parse_version(data["schema_version"])
    if minor > ours_minor:
        dropped: list[str] = []
        data = _drop_unknown(data, Manifest, "manifest", dropped)
        if dropped:
            warnings.warn(f"ignoring {dropped} written by a newer modelpack (schema "
                          f"{major}.{minor}); upgrade modelpack to read them", stacklevel=4)
    return data


def _drop_unknown(data: Any, cls: type, where: str, dropped: list[str]) -> Any:
    """A newer minor version may add keys: keep what we know, note the rest in ``dropped``."""
    if not isinstance(data, dict):
        return data
    hints = _hints(cls)
    dropped.extend(f"{where}.{key}" for key in data if key not in hints)
    out = {}
    for key in [k for k in data if k in hints]:
        value, hint = data[key], hints[key]
        inner = [a for a in typing.get_args(hint) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        target = hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else (inner[0] if inner else None)
        if target is not None and isinstance(value, dict):
            value = _drop_unknown(value, target, f"{where}.{key}", dropped)
        elif target is not None and isinstance(value, list):
            value = [_drop_unknown(v, target, f"{where}.{key}[{i}]", dropped) for i, v in enumerate(value)]
        out[key] = value
    return out
