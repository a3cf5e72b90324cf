"""KServe ``InferenceService`` manifests for packages, on the Open Inference (V2) protocol.

The model format decides the serving runtime KServe picks:

* ONNX: ``modelFormat: onnx``, served by KServe's Triton runtime. The storage URI
  must hold a Triton model repository: write it with :func:`write_storage` (or
  ``modelpack export-triton``) and upload that folder.
* PMML: ``modelFormat: pmml``, served by KServe's PMML server, which reads
  ``model.pmml`` from the storage URI: :func:`write_storage` writes that file.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConversionError, ModelpackError

if TYPE_CHECKING:
    from .._types import PathLike

__all__ = ["inference_service", "to_yaml", "write_storage"]

API_VERSION = "serving.kserve.io/v1beta1"
# Schemes KServe's storage initializer downloads from.
STORAGE_SCHEMES = ("s3", "gs", "pvc", "http", "https", "hdfs", "webhdfs", "hf", "oci")
MAX_NAME = 63
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def inference_service(package: PathLike, *, storage_uri: str, name: str | None = None,
                      namespace: str | None = None, runtime: str | None = None, gpus: int = 0,
                      min_replicas: int | None = None, max_replicas: int | None = None,
                      resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``InferenceService`` resource serving ``package`` from ``storage_uri``, as a dict.

    Parameters
    ----------
    package:
        Package path or URL; only its manifest is read.
    storage_uri:
        Where KServe downloads the model (``s3://``, ``gs://``, ``pvc://``, ``https://``...):
        the folder written by :func:`write_storage`, uploaded.
    name, namespace:
        Kubernetes names (DNS labels); ``name`` defaults to the package name made into one.
    runtime:
        A serving runtime to pin (e.g. ``kserve-tritonserver``); by default KServe picks it.
    gpus:
        ``nvidia.com/gpu`` limit of the predictor.
    min_replicas, max_replicas, resources:
        The predictor's scaling and its ``resources`` (requests/limits), passed through.

    Example
    -------
    >>> from modelpack.deploy import inference_service, to_yaml
    >>> print(to_yaml(inference_service("iris.mpk", storage_uri="s3://models/iris")))  # doctest: +SKIP
    apiVersion: serving.kserve.io/v1beta1
    kind: InferenceService
    ...
    """
    from .._load import inspect

    manifest = inspect(package)
    _check_storage_uri(storage_uri)
    model: dict[str, Any] = {"modelFormat": {"name": manifest.model.format}, "protocolVersion": "v2",
                             "storageUri": storage_uri}
    if runtime:
        model["runtime"] = runtime
    limits = dict((resources or {}).get("limits", {}))
    if gpus:
        limits["nvidia.com/gpu"] = str(int(gpus))
    if resources or limits:
        model["resources"] = {**dict(resources or {}), **({"limits": limits} if limits else {})}
    predictor: dict[str, Any] = {"model": model}
    if min_replicas is not None:
        predictor["minReplicas"] = int(min_replicas)
    if max_replicas is not None:
        predictor["maxReplicas"] = int(max_replicas)
    metadata: dict[str, Any] = {"name": _service_name(name, manifest.name)}
    if namespace is not None:
        metadata["namespace"] = _checked_label(namespace, "namespace")
    metadata["annotations"] = {"modelpack/package": manifest.name, "modelpack/version": manifest.version}
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def to_yaml(resource: Mapping[str, Any]) -> str:
    """The resource as YAML for ``kubectl apply -f``, keys in the conventional order."""
    import yaml

    return yaml.safe_dump(dict(resource), sort_keys=False, default_flow_style=False)


def write_storage(package: PathLike, directory: PathLike, **triton_options: Any) -> Path:
    """Write what the storage URI must hold for ``package``; return ``directory``.

    ONNX: a Triton model repository (``triton_options`` go to
    :func:`~modelpack.deploy.export_triton`). PMML: ``directory/model.pmml``.

    Example
    -------
    >>> write_storage("iris.mpk", "upload/")   # then: aws s3 cp --recursive upload/ s3://models/iris  # doctest: +SKIP
    PosixPath('upload')
    """
    from .._load import inspect
    from .._package import open_package, resolve
    from ._triton import export_triton

    local = resolve(package)
    target = Path(directory)
    manifest = inspect(local)
    if manifest.model.format == "onnx":
        export_triton(local, target, **triton_options)
        return target
    if triton_options:
        raise ConversionError(f"options {sorted(triton_options)} apply to ONNX packages only",
                              package=manifest.name, fix="Leave them out for a PMML package.")
    with open_package(local) as pkg:  # verified before a byte is copied
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg.local_path(pkg.manifest.model.file), target / "model.pmml")
    return target


def _check_storage_uri(uri: str) -> None:
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in STORAGE_SCHEMES or not rest.strip("/"):
        raise ModelpackError(f"storage URI {uri!r} is not one KServe can download from",
                             fix=f"Pass a URI starting with one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}.")


def _service_name(name: str | None, package_name: str) -> str:
    if name is not None:
        return _checked_label(name, "name")
    derived = re.sub(r"[^a-z0-9]+", "-", package_name.lower()).strip("-")
    derived = re.sub(r"^[^a-z]+", "", derived)[:MAX_NAME].rstrip("-")
    return _checked_label(derived or package_name, "name")


def _checked_label(value: str, what: str) -> str:
    if len(value) > MAX_NAME or not _DNS_LABEL.match(value):
        raise ModelpackError(f"{what} {value!r} is not a Kubernetes DNS label (a-z, 0-9, '-', a letter "
                             f"first, at most {MAX_NAME} characters)", fix=f"Pass such a {what}.")
    return value
