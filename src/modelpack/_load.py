"""The loading side of the API: ``load`` and ``inspect``, and models held in memory.

``load`` resolves a URL, opens and verifies the package (or packs a bare model
file in memory), checks its signature when asked, and starts the runtime
backend. Nothing here imports the export side: data flows from the package to
the backend to :class:`~modelpack.Model`, never back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._formats import build_manifest, format_of, read_model_file
from ._model import Model
from ._package import Package, open_package, read_manifest, resolve
from .errors import PackageError, _unrelated_to_the_caller

if TYPE_CHECKING:
    from ._devices import ProviderSpec
    from ._types import DeviceSpec, PathLike
    from .manifest import Manifest

__all__ = ["inspect", "load", "load_memory", "open_for_reading"]


@_unrelated_to_the_caller
def load(path: PathLike, *, device: DeviceSpec = "cpu", providers: Sequence[ProviderSpec] | None = None,
         fallback: bool = True, session_options: Mapping[str, Any] | None = None,
         trusted_keys: Sequence[PathLike | bytes] | None = None, engine: str = "auto",
         compile: str = "auto") -> Model:
    """Load a package (folder or ``.mpk``) or a bare ``.onnx``/``.pmml`` file.

    Every file is checked against the manifest's SHA-256 before the runtime
    reads a byte. No code from the package is executed.

    Parameters
    ----------
    path:
        A package folder, a ``.mpk`` archive, a bare model file (packed on the fly),
        or a URL (``s3://``, ``https://``, ...; see :func:`modelpack.fetch`).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"tensorrt"``, ``"openvino"``, ``"coreml"``,
        ``"directml"``, ``"rocm"``, ``"auto"``, or a list in order of preference.
    providers:
        ONNX Runtime provider names or ``(name, options)`` pairs, passed through unchanged.
    fallback:
        If False, a requested provider that is not available raises
        :class:`~modelpack.DeviceUnavailableError` instead of running elsewhere.
    session_options:
        Runtime settings overriding those stored in the package
        (``intra_op_num_threads``, ``graph_optimization_level``, ...).
    trusted_keys:
        Ed25519 public keys; when given, the package must be signed by one of them.
    engine:
        ``"auto"`` (the default): a tree ensemble runs on modelpack's tree engine on the
        CPU for batches of 32 rows or more, ONNX Runtime running the rest of the graph
        and everything the engine does not take; on another device it is rewritten into
        standard operators that run there; string columns of a table run their encoders
        on the column's distinct values (docs/casting.md), and scikit-learn's scalers run
        in the forms ONNX Runtime runs fastest (docs/faq.md), each with the graph's
        answers; ``"onnxruntime"``: ONNX
        Runtime only, on the graph as exported;
        ``"modelpack-trees"``: the tree engine for every batch, an error where it cannot
        run the model. :attr:`Model.engine` says which runs and why (docs/trees.md).
    compile:
        For a PMML model: ``"auto"`` (the default) runs the ONNX translation of the
        document where the package holds one as its default, and compiles a bare
        ``.pmml`` file now, the PMML evaluator (Java) running what the compiler does
        not take; ``"onnx"``: the compiled model or an error naming the PMML element
        that stops it; ``"never"``: the PMML evaluator. :attr:`Model.engine_reason`
        says why (docs/pmml.md).

    Example
    -------
    >>> import modelpack
    >>> m = modelpack.load("churn.mpk", device=["cuda", "cpu"])   # doctest: +SKIP
    >>> m.providers                                               # doctest: +SKIP
    ['CPUExecutionProvider']
    """
    from ._package import verify_signature
    from ._runtime import open_backend

    source = str(path)  # a URL stays a URL when the model is pickled and opened again
    package = _open(resolve(path))
    options: dict[str, Any] = {"device": device, "providers": providers, "fallback": fallback,
                               "session_options": session_options, "engine": engine, "compile": compile}
    try:
        if trusted_keys is not None:
            package.trusted_signer = verify_signature(package, trusted_keys)
        backend = open_backend(package, **options)
    except BaseException:
        package.close()
        raise
    return Model(package, backend, reopen=functools.partial(load, source, **options, trusted_keys=trusted_keys))


def inspect(path: PathLike) -> Manifest:
    """Read a package's manifest without verifying checksums or starting a runtime.

    The container checks (names, links, limits, listing) still run. A URL is
    fetched first, as :func:`load` does.

    Example
    -------
    >>> import modelpack
    >>> modelpack.inspect("churn.mpk").task  # doctest: +SKIP
    'classification'
    """
    return read_manifest(resolve(path))


def load_memory(manifest: Manifest, files: Mapping[str, bytes], **load_args: Any) -> Model:
    """A Model over files held in memory: a package checked before it is written.

    The files are trusted as given (this process built them); the result cannot
    be pickled, as there is no package to open again.
    """
    from ._runtime import open_backend

    package = Package.from_memory(manifest, files)
    try:
        backend = open_backend(package, **load_args)
    except BaseException:
        package.close()
        raise
    return Model(package, backend)


# A framework's own save files: opening one runs code (pickle) or needs the framework.
_FRAMEWORK_FILES = {".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib", ".sav": "pickle",
                    ".pt": "torch", ".pth": "torch", ".ckpt": "a checkpoint", ".h5": "Keras",
                    ".keras": "Keras", ".cbm": "CatBoost", ".ubj": "XGBoost"}


def _refuse_framework_file(p: Path) -> None:
    kind = _FRAMEWORK_FILES.get(p.suffix.lower())
    if kind is None and p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(2)
        kind = "pickle" if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5 else None
    if kind is not None:
        raise PackageError(f"{p.name} is a {kind} file, not a package: modelpack loads no pickles or "
                           "framework files, since opening one runs code or needs its framework", package=str(p),
                           fix="Load it with its framework in a process you trust, then export it once: "
                               "modelpack.export(model, 'model.mpk', sample=X); load that package anywhere.")


def open_for_reading(path: PathLike) -> Package:
    """A package (or a bare model file) at a path or URL, verified, with no runtime started."""
    return _open(resolve(path))


def _open(path: PathLike) -> Package:
    p = Path(path)
    _refuse_framework_file(p)
    if p.is_file() and format_of(p.name) is not None:
        _, data, external, desc = read_model_file(p)
        manifest = build_manifest(desc, name=p.stem)
        return Package.from_memory(manifest, {manifest.model.file: data, **external}, path=p)
    return open_package(p)
