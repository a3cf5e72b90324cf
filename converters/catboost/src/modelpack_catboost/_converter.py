"""CatBoost models to ONNX with CatBoost's own exporter (``save_model(format="onnx")``).

Handles ``CatBoostClassifier``, ``CatBoostRegressor``, ``CatBoostRanker`` and the
``CatBoost`` base class, whose task is read from its loss function. CatBoost
compares features as float32, as the ONNX trees do.

A classifier's probabilities come as CatBoost writes them, a ZipMap (a list of
``{class: probability}``), declared as a sequence output that modelpack decodes
into an ``(n, n_classes)`` matrix in class order; ``options={"zipmap": False}``
drops the ZipMap and gives the tensor, which is faster on large batches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelpack.plugin import (
    ColumnSpec,
    Conversion,
    ConversionError,
    Source,
    TensorSpec,
    check_request,
    declare_signature,
)

from ._graph import add_exp, drop_zipmap

__all__ = ["CatBoostConverter"]

INPUT = "X"
OPTIONS = ("dtype", "zipmap")

_CLASSIFIERS = ("Logloss", "CrossEntropy", "MultiClass")
# CatBoost's predict() gives exp(raw) for these; its ONNX graph stops at raw.
_LOG_LINK = ("Poisson", "Tweedie")
_REGRESSORS = ("RMSE", "MAE", "Quantile", "MAPE", "Huber", "LogCosh", "Lq", "LogLinQuantile",
               "Expectile", *_LOG_LINK)
_RANKERS = ("YetiRank", "YetiRankPairwise", "PairLogit", "PairLogitPairwise", "QueryRMSE",
            "QuerySoftMax", "LambdaMart", "StochasticRank")
_FIX_LOSS = ("Train with a loss function CatBoost's ONNX export computes faithfully: "
             f"{', '.join([*_CLASSIFIERS, *_REGRESSORS, *_RANKERS])}.")


class CatBoostConverter:
    """Converts fitted CatBoost models to ONNX.

    Options (``modelpack.export(..., options={...})``): ``zipmap`` (default
    True: probabilities as CatBoost writes them; False: an ``[N, C]`` tensor)
    and ``dtype`` (``"float32"`` only, CatBoost's own precision).

    Example
    -------
    >>> import numpy as np, catboost
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = catboost.CatBoostClassifier(iterations=3, verbose=0, allow_writing_files=False).fit(X, y)
    >>> conv = CatBoostConverter().convert(clf, X, format="onnx", options={})
    >>> conv.task, [(o.name, o.kind) for o in conv.outputs]
    ('classification', [('label', 'tensor'), ('probabilities', 'sequence')])
    """

    name = "catboost"
    frameworks = ("catboost",)
    formats = ("onnx",)

    def convert(self, model: Any, sample: Any, *, format: str,
                options: Mapping[str, Any]) -> Conversion:
        """Convert ``model``; ``reference`` holds its own predictions on ``sample``."""
        zipmap = _check_request(format, options)
        import catboost

        _check_model(model, catboost)
        loss = _loss(model)
        n_features, columns = _features(model)
        classes = _classes(model, loss)
        inputs = (TensorSpec(INPUT, "float32", ("N", n_features), columns=columns),)
        outputs = _outputs(classes, zipmap)
        return Conversion(
            model=_to_onnx(model, loss, inputs, outputs, zipmap, catboost),
            format="onnx",
            task="classification" if classes is not None else "regression",
            source=Source(framework="catboost", framework_version=catboost.__version__,
                          model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                          converter="catboost", converter_version=catboost.__version__),
            reference=_reference(model, loss, sample, catboost),
            classes=classes,
            inputs=inputs,
            outputs=outputs,
            columns=columns,
            dtype="float32",
            metadata={"loss_function": loss},
        )

    def __repr__(self) -> str:
        return f"<modelpack_catboost.CatBoostConverter formats={list(self.formats)}>"


def _check_request(format: str, options: Mapping[str, Any]) -> bool:
    check_request(format, options, OPTIONS, "CatBoost", float32_only=(
        "its ONNX export is float32, as are its own feature comparisons, so nothing is lost"))
    zipmap = options.get("zipmap", True)
    if not isinstance(zipmap, bool):
        raise ConversionError(f"zipmap={zipmap!r} must be True or False",
                              fix="Pass zipmap=False for a probability tensor, or leave it unset.")
    return zipmap


def _check_model(model: Any, catboost: Any) -> None:
    if not isinstance(model, catboost.CatBoost):
        raise ConversionError(f"{type(model).__qualname__} is not a CatBoost model this converter knows",
                              fix="Pass a fitted CatBoostClassifier, CatBoostRegressor, CatBoostRanker "
                                  "or CatBoost.")
    if not model.is_fitted():
        raise ConversionError(f"this {type(model).__name__} is not fitted",
                              fix="Call fit() (or load_model()) before exporting it.")


def _loss(model: Any) -> str:
    loss = str(model.get_all_params().get("loss_function", "")).split(":")[0]
    if loss not in (*_CLASSIFIERS, *_REGRESSORS, *_RANKERS):
        raise ConversionError(f"loss function {loss!r}: CatBoost's ONNX export does not reproduce "
                              "its predictions", fix=_FIX_LOSS)
    return loss


def _features(model: Any) -> tuple[int, tuple[ColumnSpec, ...] | None]:
    special = {kind: [model.feature_names_[i] for i in getter()] for kind, getter in (
        ("categorical", model.get_cat_feature_indices), ("text", model.get_text_feature_indices),
        ("embedding", model.get_embedding_feature_indices))}
    special = {kind: names for kind, names in special.items() if names}
    if special:
        kinds = " and ".join(f"{kind} features {names[:5]}" for kind, names in special.items())
        raise ConversionError(
            f"CatBoost's ONNX export refuses models with {kinds}",
            fix="One-hot encode those columns before training (pandas.get_dummies or scikit-learn's "
                "OneHotEncoder, exported together as a pipeline), or train a model without them. "
                "(CatBoost's PMML export handles one-hot categories only and gives no probabilities.)")
    names = [str(n) for n in model.feature_names_]
    if names == [str(i) for i in range(len(names))]:  # trained on an array
        return len(names), None
    return len(names), tuple(ColumnSpec(n, "float32", optype="continuous") for n in names)


def _classes(model: Any, loss: str) -> tuple[Any, ...] | None:
    if loss not in _CLASSIFIERS:
        return None
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iuUO":
        raise ConversionError(f"class labels of dtype {classes.dtype} ({classes.tolist()}): CatBoost's ONNX "
                              "export takes integer or string labels only",
                              fix="Train on y.astype(int) or y.astype(str).")
    return tuple(classes.tolist())


def _outputs(classes: tuple[Any, ...] | None, zipmap: bool) -> tuple[TensorSpec, ...]:
    if classes is None:
        return (TensorSpec("value", "float32", ("N", 1), role="value"),)
    label_type = "string" if isinstance(classes[0], str) else "int64"
    probabilities = (TensorSpec("probabilities", "float32", None, kind="sequence", role="probabilities")
                     if zipmap else
                     TensorSpec("probabilities", "float32", ("N", len(classes)), role="probabilities"))
    return TensorSpec("label", label_type, ("N",), role="label"), probabilities


def _to_onnx(model: Any, loss: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
             zipmap: bool, catboost: Any) -> bytes:
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx")
        except catboost.CatBoostError as exc:
            raise ConversionError(f"CatBoost could not export this {type(model).__name__} to ONNX: {exc}",
                                  fix="Check the model against CatBoost's ONNX export limits "
                                      "(numeric features only, supported losses).") from exc
        proto = onnx.load_model_from_string(path.read_bytes())
    renames = {proto.graph.input[0].name: INPUT}
    if outputs[0].role == "value":
        if loss in _LOG_LINK:
            add_exp(proto, proto.graph.output[0].name)
        renames[proto.graph.output[0].name] = "value"
    elif not zipmap:
        drop_zipmap(proto, "probabilities", outputs[1].shape[1])  # type: ignore[index]
    return declare_signature(proto, [*inputs, *outputs], renames=renames)


def _reference(model: Any, loss: str, sample: Any, catboost: Any) -> dict[str, np.ndarray]:
    if sample is None:
        return {}
    try:
        if type(model) is catboost.CatBoost:  # only the base class has no task-specific predict
            return _base_reference(model, loss, sample)
        if loss in _CLASSIFIERS:
            return {"label": np.asarray(model.predict(sample)).reshape(-1),
                    "probabilities": np.asarray(model.predict_proba(sample))}
        return {"value": np.asarray(model.predict(sample))}
    except (catboost.CatBoostError, ValueError, TypeError, KeyError) as exc:
        raise ConversionError(f"the CatBoost model cannot predict on the sample: {exc}",
                              fix="Pass a sample with the features the model was trained on.") from exc


def _base_reference(model: Any, loss: str, sample: Any) -> dict[str, np.ndarray]:
    if loss in _CLASSIFIERS:
        return {"label": np.asarray(model.predict(sample, prediction_type="Class")).reshape(-1),
                "probabilities": np.asarray(model.predict(sample, prediction_type="Probability"))}
    kind = "Exponent" if loss in _LOG_LINK else "RawFormulaVal"
    return {"value": np.asarray(model.predict(sample, prediction_type=kind))}
