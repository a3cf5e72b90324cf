"""MLflow, both ways: a package logged as an MLflow model, and an MLflow model made a package.

:func:`log_package` logs a package as an MLflow model of the ``python_function``
flavour whose loader is this module: the package's own files are the model's data
(nothing of ours is pickled), the signature and an input example come from the
manifest and the package's samples, and ``mlflow.pyfunc.load_model(uri).predict(df)``
gives what :meth:`modelpack.Model.predict` gives. The model can be registered in a
model registry like any other.

:func:`from_mlflow` goes the other way: an MLflow model of the ``onnx``, ``sklearn``,
``xgboost`` or ``lightgbm`` flavour becomes a package through modelpack's converters
and fidelity check. Loading an MLflow scikit-learn, XGBoost or LightGBM model
unpickles or deserializes it with its framework: do it only for models you trust.

Install with ``pip install "modelpack[mlflow]"`` (``mlflow-skinny`` is enough). This
module imports MLflow only when one of its functions runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import check_result
from .errors import ConversionError, ModelpackError

if TYPE_CHECKING:
    from ._model import Model
    from ._types import InputData, PathLike
    from .manifest import Manifest, TensorSpec

__all__ = ["from_mlflow", "log_package", "signature"]

_EXAMPLE_ROWS = 5
# MLflow refuses narrowing casts of columns (float64 -> float32) at its own door, so column
# specs declare the widest type of each kind and the model's casting rules take it from there.
# Tensor specs it enforces exactly: they keep the model's own dtype.
_COLUMN_TYPES = {"f": "double", "i": "long", "u": "long", "b": "boolean"}
_WIDE = {"f": np.float64, "i": np.int64, "u": np.int64, "b": np.bool_}
# Flavours converted, in the order they are tried: the most specific first.
_FLAVOURS = ("onnx", "xgboost", "lightgbm", "sklearn")


def log_package(package: PathLike, name: str = "model", *, result: str = "label",
                registered_model_name: str | None = None, input_example: bool = True,
                pip_requirements: Sequence[str] | None = None, **log_args: Any) -> Any:
    """Log ``package`` to the active MLflow run as a ``python_function`` model; return its ModelInfo.

    Parameters
    ----------
    package:
        A package (folder or ``.mpk``) or URL; its files are copied into the model's artifacts.
    name:
        The model's name in the run.
    result:
        What ``predict`` returns by default: ``"label"`` (as :meth:`Model.predict`),
        ``"proba"`` (:meth:`Model.predict_proba`) or ``"all"`` (every output, one column
        per value). A caller may choose per call with ``params={"result": ...}``.
    registered_model_name:
        Also register the model under this name in the model registry.
    input_example:
        Store the first rows of the package's samples as the input example.
    pip_requirements:
        The serving environment's requirements; by default ``modelpack``, ``pandas`` and the
        runtime the manifest requires.
    log_args:
        Passed on to ``mlflow.pyfunc.log_model`` (``metadata``, ``tags``...).

    Example
    -------
    >>> import mlflow, modelpack.mlflow
    >>> with mlflow.start_run():                                          # doctest: +SKIP
    ...     info = modelpack.mlflow.log_package("churn.mpk", registered_model_name="churn")
    >>> mlflow.pyfunc.load_model(info.model_uri).predict(df)              # doctest: +SKIP
    """
    import mlflow.pyfunc

    from ._load import inspect
    from ._package import fetch, is_url

    check_result(result)
    local = Path(fetch(str(package)) if is_url(package) else package).resolve()
    manifest = inspect(local)
    requirements = (list(pip_requirements) if pip_requirements is not None
                    else ["modelpack", "pandas", *manifest.runtime.requires])
    example = _input_example(local, manifest) if input_example else None
    return mlflow.pyfunc.log_model(
        name=name, loader_module=__name__, data_path=str(local),
        signature=signature(manifest, result), input_example=example, pip_requirements=requirements,
        registered_model_name=registered_model_name, model_config={"result": result}, **log_args)


def signature(manifest: Manifest, result: str = "label") -> Any:
    """The MLflow ``ModelSignature`` of a package: inputs from the manifest, a ``result`` parameter.

    Tabular inputs (named columns, or one ``[N]``/``[N, 1]`` input per column) become
    column specs, float and integer columns declared as float64 and int64 (MLflow refuses
    narrowing casts of columns); other inputs become tensor specs of the model's own dtype
    with ``-1`` for dynamic dimensions (MLflow checks tensor dtypes exactly).

    Example
    -------
    >>> signature(modelpack.inspect("iris.mpk")).inputs.input_names()   # doctest: +SKIP
    ['sepal length (cm)', 'sepal width (cm)', 'petal length (cm)', 'petal width (cm)']
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    columns = _columns(manifest)
    if columns is not None:
        inputs = Schema([ColSpec(_column_type(dtype), name) for name, dtype in columns])
    else:
        inputs = Schema([TensorSpec(np.dtype(s.dtype), tuple(d if isinstance(d, int) else -1 for d in s.shape or (-1,)),
                                    s.name) for s in manifest.inputs])
    params = ParamSchema([ParamSpec("result", "string", result)])
    return ModelSignature(inputs=inputs, params=params)


def _columns(manifest: Manifest) -> list[tuple[str, str]] | None:
    """(name, dtype) of a tabular model's columns, or None for tensor inputs."""
    if len(manifest.inputs) == 1 and manifest.inputs[0].columns:
        return [(c.name, c.dtype) for c in manifest.inputs[0].columns]
    if all(s.kind == "tensor" and _one_per_row(s) for s in manifest.inputs):
        return [(s.name, s.dtype) for s in manifest.inputs]
    return None


def _one_per_row(spec: TensorSpec) -> bool:
    return spec.shape is not None and (len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[1] == 1))


def _column_type(dtype: str) -> str:
    try:
        return _COLUMN_TYPES.get(np.dtype(dtype).kind, "string")
    except TypeError:  # "string" and other names numpy does not know
        return "string"


def _input_example(package: PathLike, manifest: Manifest) -> Any:
    """The first rows of the package's samples, shaped as the signature declares; None without samples."""
    from ._formats.samples import read_samples
    from ._package import open_package

    if manifest.samples is None:
        return None
    with open_package(package) as opened:
        arrays = read_samples(opened.read_bytes(manifest.samples.inputs), manifest.samples.inputs, str(package))
    arrays = {name: value[:_EXAMPLE_ROWS] for name, value in arrays.items()}
    columns = _columns(manifest)
    if columns is None:
        return arrays if len(arrays) > 1 else next(iter(arrays.values()))
    import pandas as pd

    arrays = {name: _widened(value) for name, value in arrays.items()}

    if len(manifest.inputs) == 1 and manifest.inputs[0].columns:
        matrix = arrays[manifest.inputs[0].name]
        return pd.DataFrame({name: matrix[:, j] for j, (name, _) in enumerate(columns)})
    return pd.DataFrame({name: arrays[name].reshape(len(arrays[name]), -1)[:, 0] for name, _ in columns})


def _widened(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    return values.astype(_WIDE[kind]) if kind in _WIDE else values


# -- the pyfunc loader: MLflow calls _load_pyfunc with the package's local copy ----------------
class PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: a loaded package and the default ``result``."""

    def __init__(self, model: Model, result: str = "label") -> None:
        self.model = model
        self.result = result

    def predict(self, model_input: InputData, params: dict[str, Any] | None = None) -> Any:
        """Score ``model_input``: labels or values, probabilities, or every output as columns."""
        result = (params or {}).get("result") or self.result
        check_result(result)
        if result == "label":
            return self.model.predict(model_input)
        if result == "proba":
            return self.model.predict_proba(model_input)
        import pandas as pd

        from .batch import score

        if isinstance(model_input, pd.DataFrame):  # one column per value, as `modelpack predict` writes
            return score(self.model, model_input, "all")
        return self.model.run(model_input)

    def get_raw_model(self) -> Model:
        """The :class:`modelpack.Model` inside (MLflow's ``unwrap_python_model``-style access)."""
        return self.model


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> PyfuncModel:
    """MLflow's entry point: open the package MLflow copied, with load options from ``model_config``.

    ``model_config`` may hold ``result`` and any keyword of :func:`modelpack.load`
    (``device``, ``engine``, ...), so ``mlflow.pyfunc.load_model(uri, model_config={"device":
    "cuda"})`` opens the package on a GPU.
    """
    import inspect

    from ._load import load

    options = dict(model_config or {})  # the MLmodel file's model_config, under the caller's
    result = options.pop("result", "label")
    check_result(result)
    known = [n for n, p in inspect.signature(load).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise ConversionError(f"model_config holds {unknown}, which are not options of modelpack.load",
                              package=data_path, fix=f"Give only 'result' and {', '.join(known)} in model_config.")
    return PyfuncModel(load(_own_data(data_path), **options), result)


def _own_data(data_path: str) -> Path:
    """The package MLflow hands to the loader, once it is known to lie inside its model folder.

    MLflow joins the MLmodel file's ``data`` to the model's folder, so an absolute path
    or a ``..`` written there would make the loader open a file anywhere on the machine.
    The loader is given the joined path only: the model folder is the nearest one above
    it that holds an MLmodel file, and its ``python_function`` flavour must name this
    very path, inside the folder.
    """
    from mlflow.models import Model as MlflowModel

    path = Path(data_path).absolute()
    folder = next((p for p in path.parents if (p / "MLmodel").is_file()), None)
    fix = "Load only MLflow models logged by modelpack.mlflow.log_package, or log the package again."
    if folder is not None:
        flavour = MlflowModel.load(str(folder)).flavors.get("python_function")
        if _model_file(folder.resolve(), flavour, "python_function", str(folder), fix, folder_ok=True) == path.resolve():
            return path
    raise ConversionError(f"the package {data_path} is not the data of an MLflow model folder that holds it "
                          "(its MLmodel file's data points elsewhere)", fix=fix)


# -- from MLflow ------------------------------------------------------------------------------
def from_mlflow(model_uri: str, dest: PathLike, *, sample: InputData, **export_args: Any) -> Manifest:
    """Convert the MLflow model at ``model_uri`` into a package at ``dest``; return its manifest.

    An ``onnx`` model is packed as it is (with ``sample`` as its samples); an
    ``xgboost``, ``lightgbm`` or ``sklearn`` model is loaded with its MLflow flavour
    and exported through modelpack's converter, which checks the package against it
    on ``sample`` (:func:`modelpack.export`). Loading such a model runs its framework's
    deserializer (pickle for scikit-learn): convert only models you trust.

    Example
    -------
    >>> modelpack.from_mlflow("models:/churn/3", "churn.mpk", sample=X[:200])   # doctest: +SKIP
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model as MlflowModel

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri)).resolve()
        flavors = MlflowModel.load(str(local)).flavors
    except (MlflowException, OSError) as exc:
        raise ConversionError(f"cannot read the MLflow model at {model_uri}: {exc}",
                              fix="Check the model URI, and the tracking and registry URIs MLflow uses "
                                  "(mlflow.set_tracking_uri).") from None
    flavour = next((f for f in _FLAVOURS if f in flavors), None)
    if flavour is None:
        raise ConversionError(f"the MLflow model at {model_uri} has the flavours {sorted(flavors)}; "
                              f"modelpack converts {', '.join(_FLAVOURS)}",
                              fix="Load the model with its own flavour and pass it to modelpack.export, "
                                  "or log it with one of these flavours.")
    from ._export import export, pack

    if flavour == "onnx":  # already the portable form: packed as it is, options as pack takes them
        path = _model_file(local, flavors["onnx"], "onnx", model_uri, "Log the model again with mlflow.onnx.log_model.")
        return pack(path, dest, sample=sample, **export_args)
    return export(_native(flavour, local), dest, sample=sample, **export_args)


def _model_file(local: Path, flavour: Any, name: str, model: str, fix: str, *, folder_ok: bool = False) -> Path:
    """The file (or, with ``folder_ok``, the package folder) a flavour's ``data`` names,
    which must lie inside the model folder ``local`` (resolved)."""
    data = flavour.get("data") if isinstance(flavour, dict) else None
    path = (local / data).resolve() if isinstance(data, str) else None
    if path is None or not path.is_relative_to(local) or not (path.is_file() or folder_ok and path.is_dir()):
        raise ConversionError(f"the {name} flavour of {model} names {data!r}, which is not a file of the model",
                              fix=fix)
    return path


def _native(flavour: str, local: Path) -> Any:
    """The framework object of an MLflow model, loaded by its own flavour."""
    import importlib

    try:
        module = importlib.import_module(f"mlflow.{flavour}")
        return module.load_model(str(local))
    except ImportError as exc:
        raise ModelpackError(f"loading an MLflow {flavour} model needs its framework: {exc}",
                             fix=f"Install the framework the model was trained with ({flavour}).") from None
