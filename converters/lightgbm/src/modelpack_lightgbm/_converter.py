"""LightGBM models to ONNX through onnxmltools.

Handles ``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker`` and raw
``lightgbm.Booster`` objects, whose task is read from their objective.

LightGBM compares features in float64, the ONNX trees in float32: a value lying
between a threshold and its float32 rounding can take the other branch. That is
rare with real data, and the fidelity check at export measures it.
"""

from __future__ import annotations

import re
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

__all__ = ["LightGBMConverter"]

INPUT = "X"
# The ML-domain converters of onnxmltools stop at this opset.
MAX_OPSET = 15
OPTIONS = ("dtype", "split", "target_opset")

_CLASSIFIERS = ("binary", "multiclass")
_REGRESSORS = ("regression", "regression_l1", "huber", "quantile", "poisson", "gamma", "tweedie",
               "lambdarank", "rank_xendcg")
_FIX_OBJECTIVE = ("Train with one of the objectives onnxmltools converts: "
                  f"{', '.join([*_CLASSIFIERS, *_REGRESSORS])}.")
# LightGBM names the features of a model trained on an array Column_0, Column_1, ...
_GENERIC_NAME = re.compile(r"Column_\d+")


class LightGBMConverter:
    """Converts fitted LightGBM models to ONNX.

    Options (``modelpack.export(..., options={...})``): ``target_opset`` (at
    most 15), ``split`` (trees per ONNX node for regressors: the sums between
    nodes are done in float64, which keeps large forests closer to LightGBM) and
    ``dtype`` (``"float32"`` only: onnxmltools' tree converters take no other
    input type).

    Example
    -------
    >>> import numpy as np, lightgbm, modelpack
    >>> X = np.random.default_rng(0).normal(size=(64, 3))
    >>> reg = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, X[:, 0])
    >>> conv = LightGBMConverter().convert(reg, X, format="onnx", options={})
    >>> conv.task, [o.role for o in conv.outputs]
    ('regression', ['value'])
    """

    name = "lightgbm"
    frameworks = ("lightgbm",)
    formats = ("onnx",)

    def convert(self, model: Any, sample: Any, *, format: str,
                options: Mapping[str, Any]) -> Conversion:
        """Convert ``model``; ``reference`` holds its own predictions on ``sample``."""
        _check_request(format, options)
        import lightgbm
        import onnxmltools

        booster = _booster(model, lightgbm)
        objective = _objective(booster)
        n_features, columns = _features(booster)
        classes = _classes(model, objective, booster)
        outputs = _outputs(objective, classes)
        onnx_model = _to_onnx(model, booster, objective, n_features, options, lightgbm, onnxmltools)
        inputs = (TensorSpec(INPUT, "float32", ("N", n_features), columns=columns),)
        return Conversion(
            # onnxmltools names a regressor's output "variable" and leaves batch dimensions unnamed.
            model=declare_signature(onnx_model, [*inputs, *outputs.values()],
                                    renames={old: spec.name for old, spec in outputs.items()}),
            format="onnx",
            task="classification" if classes is not None else "regression",
            source=Source(framework="lightgbm", framework_version=lightgbm.__version__,
                          model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                          converter="onnxmltools", converter_version=onnxmltools.__version__),
            reference=_reference(model, booster, objective, sample, lightgbm),
            classes=classes,
            inputs=inputs,
            outputs=tuple(outputs.values()),
            columns=columns,
            dtype="float32",
            metadata={"objective": objective},
        )

    def __repr__(self) -> str:
        return f"<modelpack_lightgbm.LightGBMConverter formats={list(self.formats)}>"


def _check_request(format: str, options: Mapping[str, Any]) -> None:
    check_request(format, options, OPTIONS, "LightGBM", float32_only=(
        "onnxmltools' tree converters take float32 inputs and thresholds only (the fidelity check at "
        "export measures the difference)"))
    check_opset(options, MAX_OPSET, "onnxmltools' tree converter")
    split = options.get("split")
    if split is not None and (not isinstance(split, int) or split < 1):
        raise ConversionError(f"split={split!r} must be a positive number of trees",
                              fix="Pass e.g. split=100, or leave it unset.")


def _booster(model: Any, lightgbm: Any) -> Any:
    if isinstance(model, lightgbm.Booster):
        return model
    if isinstance(model, lightgbm.LGBMModel):
        try:
            return model.booster_
        except (ValueError, AttributeError) as exc:  # sklearn's NotFittedError is both
            raise ConversionError(f"this {type(model).__name__} is not fitted",
                                  fix="Call fit() before exporting it.") from exc
    raise ConversionError(f"{type(model).__qualname__} is not a LightGBM model this converter knows",
                          fix="Pass a lightgbm.Booster or a LightGBM scikit-learn estimator.")


def _objective(booster: Any) -> str:
    # The dump names the objective canonically ("binary sigmoid:1"), whatever alias trained it.
    objective = str(booster.dump_model(num_iteration=1).get("objective", "custom")).split(" ")[0]
    if objective == "multiclassova":
        raise ConversionError("objective 'multiclassova': onnxmltools normalises its one-vs-all "
                              "probabilities, which LightGBM does not", fix=_FIX_OBJECTIVE)
    if objective not in _CLASSIFIERS and objective not in _REGRESSORS:
        raise ConversionError(f"objective {objective!r} is not converted by onnxmltools", fix=_FIX_OBJECTIVE)
    if booster.params.get("linear_tree"):
        raise ConversionError("linear trees (linear_tree=True) are not converted by onnxmltools",
                              fix="Train with linear_tree=False.")
    return objective


def _features(booster: Any) -> tuple[int, tuple[ColumnSpec, ...] | None]:
    if booster.pandas_categorical:
        raise ConversionError(
            "the model was trained on pandas categorical columns, whose values the ONNX model, which "
            "takes one float matrix, cannot map to LightGBM's category codes",
            fix="Train on integer codes (categorical_feature= with int columns) or one-hot encode "
                "those columns first.")
    names = booster.feature_name()
    if all(_GENERIC_NAME.fullmatch(n) for n in names):
        return len(names), None
    return len(names), tuple(ColumnSpec(str(n), "float32", optype="continuous") for n in names)


def _classes(model: Any, objective: str, booster: Any) -> tuple[Any, ...] | None:
    if objective not in _CLASSIFIERS:
        return None
    classes = getattr(model, "classes_", None)
    if classes is None:  # a Booster: LightGBM numbers classes from 0
        n = booster.dump_model(num_iteration=1).get("num_class", 1)
        classes = np.arange(max(int(n), 2))
    return tuple(np.asarray(classes).tolist())


def _outputs(objective: str, classes: tuple[Any, ...] | None) -> dict[str, TensorSpec]:
    """The outputs' specs, keyed by the name onnxmltools gives each."""
    if classes is None:
        return {"variable": TensorSpec("value", "float32", ("N", 1), role="value")}
    label_type = "string" if isinstance(classes[0], str) else "int64"
    return {"label": TensorSpec("label", label_type, ("N",), role="label"),
            "probabilities": TensorSpec("probabilities", "float32", ("N", len(classes)),
                                        role="probabilities")}


def _to_onnx(model: Any, booster: Any, objective: str, n_features: int, options: Mapping[str, Any],
             lightgbm: Any, onnxmltools: Any) -> Any:
    from onnxmltools.convert.common.data_types import FloatTensorType

    if model is booster and booster.params.get("objective") != objective:
        # onnxmltools reads a Booster's objective from its params, which may hold an alias ("mse").
        model = lightgbm.Booster(model_str=booster.model_to_string())
        model.params["objective"] = objective
    try:
        return onnxmltools.convert_lightgbm(
            model, name=type(model).__name__, initial_types=[(INPUT, FloatTensorType([None, n_features]))],
            target_opset=options.get("target_opset"), zipmap=False, split=options.get("split"))
    except (RuntimeError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise ConversionError(f"onnxmltools could not convert this {type(model).__name__}: {exc}",
                              fix="Check the model's objective and parameters against onnxmltools' "
                                  "LightGBM support, or report the failure with the model attached.") from exc


def _reference(model: Any, booster: Any, objective: str, sample: Any,
               lightgbm: Any) -> dict[str, np.ndarray]:
    if sample is None:
        return {}
    try:
        if model is booster:
            return _booster_reference(booster, objective, sample)
        if objective not in _CLASSIFIERS:
            return {"value": np.asarray(model.predict(sample))}
        return {"label": np.asarray(model.predict(sample)),
                "probabilities": np.asarray(model.predict_proba(sample))}
    except (ValueError, TypeError, KeyError, lightgbm.basic.LightGBMError) as exc:
        raise ConversionError(f"the LightGBM model cannot predict on the sample: {exc}",
                              fix="Pass a sample with the features the model was trained on.") from exc


def _booster_reference(booster: Any, objective: str, sample: Any) -> dict[str, np.ndarray]:
    raw = np.asarray(booster.predict(sample))
    if objective not in _CLASSIFIERS:
        return {"value": raw}
    if raw.ndim == 1:  # binary: the probability of class 1
        raw = np.column_stack([1.0 - raw, raw])
    return {"label": np.argmax(raw, axis=1).astype(np.int64), "probabilities": raw}
