"""``load``: open a package (or a bare model file), verify it, start its runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .formats import format_of
from .package import Package, open_package

if TYPE_CHECKING:
    from ._types import DeviceSpec, PathLike
    from .devices import ProviderSpec
    from .model import Model

__all__ = ["load"]


def load(path: PathLike, *, device: DeviceSpec = "cpu", providers: Sequence[ProviderSpec] | None = None,
         fallback: bool = True, session_options: Mapping[str, Any] | None = None,
         trusted_keys: Sequence[PathLike | bytes] | None = None) -> Model:
    """Load a package (folder or ``.mpk``) or a bare ``.onnx``/``.pmml`` file.

    Every file is checked against the manifest's SHA-256 before the runtime
    reads a byte. No code from the package is executed.

    Parameters
    ----------
    path:
        A package folder, a ``.mpk`` archive, or a bare model file (packed on the fly).
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

    Example
    -------
    >>> import modelpack
    >>> m = modelpack.load("churn.mpk", device=["cuda", "cpu"])   # doctest: +SKIP
    >>> m.providers                                               # doctest: +SKIP
    ['CPUExecutionProvider']
    """
    from .model import Model
    from .remote import resolve
    from .runtime import open_backend

    source = str(path)
    package = _open(resolve(path))
    try:
        if trusted_keys is not None:
            from .signing import verify_signature

            verify_signature(package, trusted_keys)
        options = {"device": device, "providers": providers, "fallback": fallback,
                   "session_options": session_options}
        backend = open_backend(package, **options)
    except BaseException:
        package.close()
        raise
    load_args = {**options, "trusted_keys": trusted_keys}
    return Model(package, backend, load_args=load_args, source=source)


def _open(path: PathLike) -> Package:
    p = Path(path)
    if p.is_file() and format_of(p.name) is not None:
        from .packing import build_manifest, read_model_file

        fmt, data, external, desc = read_model_file(p)
        manifest = build_manifest(desc, name=p.stem)
        return Package(path=p, manifest=manifest, manifest_bytes=b"",
                       _data={manifest.model.file: data, **external})
    return open_package(p)
