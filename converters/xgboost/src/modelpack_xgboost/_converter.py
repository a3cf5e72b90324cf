"""XGBoost models to ONNX through onnxmltools.

Handles the scikit-learn wrappers (``XGBClassifier``, ``XGBRegressor``,
``XGBRFClassifier``, ``XGBRFRegressor``) and raw ``xgboost.Booster`` objects,
whose task is read from their objective. XGBoost itself compares features as
float32, so the float32 ONNX trees reproduce it exactly.

onnxmltools reads split features from the tree dump and only understands the
generic names ``f0, f1, ...``: a model trained on a DataFrame is converted from a
copy without feature names, and the real names become the columns of the 2-D
input, so ``predict(df)`` still selects and orders columns by name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelpack.plugin import (
    ColumnSpec,
    Conversion,
    ConversionError,
    Source,
    TensorSpec,
    check_opset,
    check_request,
    declare_signature,
)

__all__ = ["XGBoostConverter"]

INPUT = "X"
# The ML-domain converters of onnxmltools stop at this opset.
MAX_OPSET = 15
OPTIONS = ("dtype", "target_opset")

# objective -> role of the second classifier output (multi:softmax gives raw scores).
_CLASSIFIERS = {"binary:logistic": "probabilities", "binary:hinge": "probabilities",
                "multi:softprob": "probabilities", "multi:softmax": "scores"}
_REGRESSORS = ("reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror",
               "reg:absoluteerror", "reg:quantileerror", "count:poisson", "reg:gamma",
               "reg:tweedie")
_FIX_OBJECTIVE = ("Train with one of the objectives onnxmltools converts: "
                  f"{', '.join([*_CLASSIFIERS, *_REGRESSORS])}.")


class XGBoostConverter:
    """Converts fitted XGBoost models to ONNX.

    Options (``modelpack.export(..., options={...})``): ``target_opset`` (at
    most 15) and ``dtype`` (``"float32"`` only: onnxmltools' tree converters take
    no other input type).

    Example
    -------
    >>> import numpy as np, xgboost, modelpack
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> clf = xgboost.XGBClassifier(n_estimators=3).fit(X, X[:, 0] > 0)
    >>> conv = XGBoostConverter().convert(clf, X, format="onnx", options={})
    >>> conv.task, conv.classes
    ('classification', (0, 1))
    """

    name = "xgboost"
    frameworks = ("xgboost",)
    formats = ("onnx",)

    def convert(self, model: Any, sample: Any, *, format: str,
                options: Mapping[str, Any]) -> Conversion:
        """Convert ``model``; ``reference`` holds its own predictions on ``sample``."""
        opset = _check_request(format, options)
        import onnxmltools
        import xgboost

        booster = _booster(model, xgboost)
        objective = _objective(booster)
        n_features, columns = _features(booster)
        outputs = _outputs(objective, booster)
        onnx_model = _to_onnx(model, booster, n_features, opset, xgboost, onnxmltools)
        inputs = (TensorSpec(INPUT, "float32", ("N", n_features), columns=columns),)
        return Conversion(
            # onnxmltools names a regressor's output "variable" and leaves batch dimensions unnamed.
            model=declare_signature(onnx_model, [*inputs, *outputs.values()],
                                    renames={old: spec.name for old, spec in outputs.items()}),
            format="onnx",
            task="classification" if objective in _CLASSIFIERS else "regression",
            source=Source(framework="xgboost", framework_version=xgboost.__version__,
                          model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                          converter="onnxmltools", converter_version=onnxmltools.__version__),
            reference=_reference(model, booster, objective, sample, xgboost),
            classes=_classes(model, objective, booster),
            inputs=inputs,
            outputs=tuple(outputs.values()),
            columns=columns,
            dtype="float32",
            metadata={"objective": objective},
        )

    def __repr__(self) -> str:
        return f"<modelpack_xgboost.XGBoostConverter formats={list(self.formats)}>"


def _check_request(format: str, options: Mapping[str, Any]) -> int | None:
    check_request(format, options, OPTIONS, "XGBoost", float32_only=(
        "onnxmltools' tree converters take float32 inputs only (XGBoost itself compares features as "
        "float32, so nothing is lost)"))
    return check_opset(options, MAX_OPSET, "onnxmltools' tree converter")


def _booster(model: Any, xgboost: Any) -> Any:
    if isinstance(model, xgboost.Booster):
        booster = model
    elif isinstance(model, xgboost.XGBModel):
        try:
            booster = model.get_booster()
        except ValueError as exc:  # sklearn's NotFittedError is a ValueError
            raise ConversionError(f"this {type(model).__name__} is not fitted",
                                  fix="Call fit() before exporting it.") from exc
    else:
        raise ConversionError(f"{type(model).__qualname__} is not an XGBoost model this converter knows",
                              fix="Pass an xgboost.Booster or an XGBoost scikit-learn estimator.")
    try:
        booster.num_boosted_rounds()
    except xgboost.core.XGBoostError as exc:
        raise ConversionError("the XGBoost Booster holds no trained model",
                              fix="Train it (xgboost.train) or load a model before exporting.") from exc
    return booster


def _objective(booster: Any) -> str:
    objective = str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    if objective.startswith("rank:"):
        raise ConversionError(f"ranking objective {objective!r}: onnxmltools does not convert XGBoost "
                              "rankers", fix=_FIX_OBJECTIVE)
    if objective not in _CLASSIFIERS and objective not in _REGRESSORS:
        raise ConversionError(f"objective {objective!r} is not converted by onnxmltools",
                              fix=_FIX_OBJECTIVE)
    return objective


def _features(booster: Any) -> tuple[int, tuple[ColumnSpec, ...] | None]:
    names, types = booster.feature_names, booster.feature_types or ()
    categorical = [n for n, t in zip(names or range(len(types)), types, strict=False) if t == "c"]
    if categorical:
        raise ConversionError(
            f"categorical features {categorical[:5]} (enable_categorical=True) cannot be fed to the "
            "ONNX model, which takes one float matrix",
            fix="One-hot or ordinal encode those columns before training (e.g. in a scikit-learn "
                "pipeline, exported with the sklearn converter).")
    n = booster.num_features()
    if names is None:
        return n, None
    return n, tuple(ColumnSpec(str(name), "float32", optype="continuous") for name in names)


def _outputs(objective: str, booster: Any) -> dict[str, TensorSpec]:
    """The outputs' specs, keyed by the name onnxmltools gives each."""
    config = json.loads(booster.save_config())["learner"]["learner_model_param"]
    if objective in _CLASSIFIERS:
        n_classes = max(int(config.get("num_class", 0)), 2)
        return {"label": TensorSpec("label", "int64", ("N",), role="label"),
                "probabilities": TensorSpec("probabilities", "float32", ("N", n_classes),
                                            role=_CLASSIFIERS[objective])}
    n_targets = max(int(config.get("num_target", 1)), 1)
    return {"variable": TensorSpec("value", "float32", ("N", n_targets), role="value")}


def _to_onnx(model: Any, booster: Any, n_features: int, opset: int | None,
             xgboost: Any, onnxmltools: Any) -> Any:
    from onnxmltools.convert.common.data_types import FloatTensorType

    if booster.feature_names is not None:
        # A copy, so the caller's model keeps its names.
        model = booster.copy() if model is booster else copy.deepcopy(model)
        (model if isinstance(model, xgboost.Booster) else model.get_booster()).feature_names = None
    try:
        return onnxmltools.convert_xgboost(model, name=type(model).__name__,
                                           initial_types=[(INPUT, FloatTensorType([None, n_features]))],
                                           target_opset=opset)
    except (RuntimeError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise ConversionError(f"onnxmltools could not convert this {type(model).__name__}: {exc}",
                              fix="Check the model's objective and parameters against onnxmltools' "
                                  "XGBoost support, or report the failure with the model attached.") from exc


def _classes(model: Any, objective: str, booster: Any) -> tuple[Any, ...] | None:
    if objective not in _CLASSIFIERS:
        return None
    classes = getattr(model, "classes_", None)
    if classes is None:  # a Booster: xgboost numbers classes from 0
        n = json.loads(booster.save_config())["learner"]["learner_model_param"].get("num_class", "0")
        classes = np.arange(max(int(n), 2))
    return tuple(np.asarray(classes).tolist())


def _reference(model: Any, booster: Any, objective: str, sample: Any,
               xgboost: Any) -> dict[str, np.ndarray]:
    if sample is None:
        return {}
    try:
        if model is booster:
            return _booster_reference(booster, objective, sample, xgboost)
        if objective not in _CLASSIFIERS:
            return {"value": np.asarray(model.predict(sample))}
        out = {"label": np.asarray(model.predict(sample))}
        if _CLASSIFIERS[objective] == "probabilities":
            out["probabilities"] = np.asarray(model.predict_proba(sample))
        return out
    except (ValueError, TypeError, KeyError, xgboost.core.XGBoostError) as exc:
        raise ConversionError(f"the XGBoost model cannot predict on the sample: {exc}",
                              fix="Pass a sample with the features the model was trained on.") from exc


def _booster_reference(booster: Any, objective: str, sample: Any, xgboost: Any) -> dict[str, np.ndarray]:
    names = None if hasattr(sample, "columns") else booster.feature_names
    raw = np.asarray(booster.predict(xgboost.DMatrix(sample, feature_names=names)))
    if objective not in _CLASSIFIERS:
        return {"value": raw}
    if objective == "multi:softmax":
        return {"label": raw.astype(np.int64)}
    if raw.ndim == 1:  # binary: the probability of class 1
        raw = np.column_stack([1.0 - raw, raw])
    return {"label": np.argmax(raw, axis=1).astype(np.int64), "probabilities": raw}
