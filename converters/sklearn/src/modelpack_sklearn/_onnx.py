"""scikit-learn to ONNX through skl2onnx, checked by running the result once.

Steps: check the model is fitted and every step has a skl2onnx converter (XGBoost
and LightGBM steps through onnxmltools), plan the inputs from the sample, convert
with ZipMap off for every classifier, give inputs back their column names (skl2onnx
rewrites ``"n kids"`` as ``n_kids``), run the graph once in ONNX Runtime (a converter
can emit a graph no runtime accepts, e.g. double-precision trees), then compute the
source model's reference outputs.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpack.plugin import (
    Conversion,
    ConversionError,
    ModelpackError,
    Source,
    adapt_sample,
    check_options,
    describe_model,
    rename_values,
)

from ._estimators import (
    check_fitted,
    classes_of,
    describe_step,
    leaf_classes,
    task_of,
    walk,
    without_passthrough,
)
from ._missing import refused_nan, string_imputers, string_markers, with_missing_values
from ._outputs import align_scores, assign_roles, reference
from ._sample import InputPlan, plan_inputs

__all__ = ["DEFAULT_TARGET_OPSET", "convert_onnx"]

#: The ML domain stays at 3: onnxmltools' tree converters emit nothing newer.
DEFAULT_TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}
_OPTIONS = ("dtype", "target_opset", "skl2onnx_options")
_WAYS_OUT = ("Export it as PMML with format='pmml', replace the step by one skl2onnx converts, or "
             "register a converter for it with skl2onnx.update_registered_converter().")


@dataclass(frozen=True)
class _Options:
    dtype: str
    target_opset: int | dict[str, int]
    skl2onnx_options: dict[Any, Any]


def convert_onnx(model: Any, sample: Any, options: Mapping[str, Any]) -> Conversion:
    """Convert a fitted scikit-learn model to ONNX; see the module docstring for the steps."""
    opts = _read_options(options)
    check_fitted(model)
    task = task_of(model)
    _register_boosting(model)
    _check_supported(model)
    plan = plan_inputs(model, sample, opts.dtype)
    imputers = string_imputers(model, plan)
    plan = with_missing_values(plan, {c: fill for c, (_, fill) in imputers.items()}, refused_nan(model, plan))
    with string_markers(imp for imp, _ in imputers.values()):
        onx = _to_onnx(without_passthrough(model), plan, opts)
    _rename_inputs(onx.graph, [name for name, _ in plan.initial_types])
    data = onx.SerializeToString()
    outputs = assign_roles(_described_outputs(data), task, model)
    expected = reference(model, task, plan.data, outputs)  # first: a bad sample is the sample's fault
    exported = _run_once(data, plan, opts.dtype)
    return Conversion(
        model=data, format="onnx", task=task, source=_source(model), inputs=plan.inputs,
        outputs=outputs, columns=plan.columns, dtype=_output_precision(model, opts.dtype),
        classes=classes_of(model) if task == "classification" else None,
        reference=align_scores(expected, outputs, exported))


# -- options --------------------------------------------------------------------------------
def _read_options(options: Mapping[str, Any]) -> _Options:
    check_options(options, _OPTIONS, "sklearn ONNX")
    dtype = options.get("dtype") or "float32"
    if dtype not in ("float32", "float64"):
        raise ConversionError(f"dtype {dtype!r} is not supported by the sklearn converter",
                              fix="Pass dtype='float32' (the default) or dtype='float64'.")
    target = options.get("target_opset") or DEFAULT_TARGET_OPSET
    if not isinstance(target, (int, dict)):
        raise ConversionError(f"target_opset must be an int or a dict of domain -> version, not {target!r}",
                              fix=f"Pass e.g. {DEFAULT_TARGET_OPSET}.")
    extra = options.get("skl2onnx_options") or {}
    if not isinstance(extra, Mapping):
        raise ConversionError(f"skl2onnx_options must be a dict, not {type(extra).__name__}",
                              fix="Pass e.g. {id(step): {'raw_scores': True}}.")
    return _Options(dtype, target, dict(extra))


# -- what skl2onnx can convert -------------------------------------------------------------------
def _boosting_libraries(model: Any) -> list[str]:
    """The boosting libraries (``xgboost``, ``lightgbm``) whose steps ``model`` holds."""
    roots = {cls.__module__.partition(".")[0] for cls in leaf_classes(model)}
    return sorted(roots & {"xgboost", "lightgbm"})


def _output_precision(model: Any, dtype: str) -> str:
    """The precision the outputs are computed in, which sets the fidelity tolerance.

    onnxmltools' trees compute in float32 even inside a float64 graph (see
    :func:`_float32_trees`), so their sums cannot meet the float64 tolerance.
    """
    return "float32" if dtype == "float64" and _boosting_libraries(model) else dtype


def _register_boosting(model: Any) -> None:
    """Teach skl2onnx the XGBoost and LightGBM steps that ``model`` holds."""
    for library in _boosting_libraries(model):
        # A model holding such a step implies its library is already imported.
        if library in sys.modules:
            _register(library)


@functools.cache
def _register(library: str) -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    try:
        if library == "xgboost":
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
            from xgboost import XGBClassifier as Classifier
            from xgboost import XGBRegressor as Regressor
        else:
            from lightgbm import LGBMClassifier as Classifier
            from lightgbm import LGBMRegressor as Regressor
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
    except ImportError as exc:
        raise ConversionError(f"the model holds a {library} step, which converts through onnxmltools "
                              f"({exc})", fix="pip install onnxmltools") from exc
    prefix = "XGBoost" if library == "xgboost" else "LightGbm"
    convert = _float32_trees(convert)
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    update_registered_converter(Classifier, f"{prefix}{Classifier.__name__}",
                                calculate_linear_classifier_output_shapes, convert,
                                options=classifier_options)
    update_registered_converter(Regressor, f"{prefix}{Regressor.__name__}",
                                calculate_linear_regressor_output_shapes, convert,
                                options={"split": None} if library == "lightgbm" else None)


class _Float32View:
    """The operator as a float32-only tree converter must see it: other inputs and outputs."""

    def __init__(self, operator: Any, inputs: list[Any], outputs: list[Any]) -> None:
        self._operator, self.inputs, self.outputs = operator, inputs, outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)

    @property
    def input_full_names(self) -> list[str]:
        return [v.full_name for v in self.inputs]

    @property
    def output_full_names(self) -> list[str]:
        return [v.full_name for v in self.outputs]


def _float32_trees(convert: Callable[..., Any]) -> Callable[..., Any]:
    """Let onnxmltools' tree converters, which emit float32 operators only, sit in a float64 graph.

    With a double input, the trees read a float32 Cast of it and their double outputs
    come from Casts back. XGBoost itself compares features as float32 (and the ONNX
    trees hold float32 thresholds for LightGBM too), so this is what it computes; a
    float64 scaler before the trees no longer rounds rows across split thresholds
    as a float32 one does.
    """
    @functools.wraps(convert)
    def convert_in_float32(scope: Any, operator: Any, container: Any) -> Any:
        from onnx import TensorProto
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            return convert(scope, operator, container)
        source = operator.inputs[0]
        floats = scope.declare_local_variable(f"{source.onnx_name}_float", FloatTensorType(source.type.shape))
        container.add_node("Cast", [source.full_name], [floats.full_name], to=TensorProto.FLOAT,
                           name=scope.get_unique_operator_name("CastToFloat"))
        outputs = [scope.declare_local_variable(f"{o.onnx_name}_float", FloatTensorType(o.type.shape))
                   if isinstance(o.type, DoubleTensorType) else o for o in operator.outputs]
        result = convert(scope, _Float32View(operator, [floats], outputs), container)
        for out, wanted in zip(outputs, operator.outputs, strict=True):
            if out is not wanted:
                container.add_node("Cast", [out.full_name], [wanted.full_name], to=TensorProto.DOUBLE,
                                   name=scope.get_unique_operator_name("CastToDouble"))
        return result

    return convert_in_float32


def _check_supported(model: Any) -> None:
    import skl2onnx
    from skl2onnx._supported_operators import sklearn_operator_name_map

    for path, est in walk(model):
        if type(est) not in sklearn_operator_name_map:
            raise ConversionError(
                f"skl2onnx {skl2onnx.__version__} has no converter for {describe_step(path, est)}",
                fix=_WAYS_OUT)


def _converter_options(model: Any, extra: Mapping[Any, Any]) -> dict[Any, Any]:
    """ZipMap off for every classifier whose converter has the option, then the user's."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.base import is_classifier

    options: dict[Any, Any] = {}
    for _, est in walk(model):
        alias = sklearn_operator_name_map.get(type(est))
        try:
            allowed = get_converter(alias).get_allowed_options() or {}
        except (ValueError, KeyError, AttributeError):  # containers are parsed, not converted
            allowed = {}
        if is_classifier(est) and "zipmap" in allowed:
            options[id(est)] = {"zipmap": False}
    for key, value in extra.items():
        options[key] = {**options.get(key, {}), **value} if isinstance(value, Mapping) else value
    return options


# -- conversion ------------------------------------------------------------------------------------
def _to_onnx(model: Any, plan: InputPlan, opts: _Options) -> Any:
    from skl2onnx import convert_sklearn

    try:
        with warnings.catch_warnings():
            # skl2onnx reads attributes scikit-learn 1.9 deprecates (SVC's probA_): the
            # warning concerns skl2onnx's code, not the user's.
            warnings.filterwarnings("ignore", message=r"Attribute `\w+` was deprecated", category=FutureWarning)
            # Its HistGradientBoosting converter writes numpy booleans into integer attributes,
            # which protobuf 6 still takes (as 0/1) with a DeprecationWarning; the node is the same.
            warnings.filterwarnings("ignore", message=r"Field onnx\.AttributeProto\.ints: Expected an int, got a boolean",
                                    category=DeprecationWarning)
            return convert_sklearn(model, initial_types=plan.initial_types, target_opset=opts.target_opset,
                                   options=_converter_options(model, opts.skl2onnx_options))
    except ModelpackError:
        raise
    except Exception as exc:  # skl2onnx raises anything from its converters
        raise _conversion_error(model, exc, opts.dtype) from exc


def _conversion_error(model: Any, exc: BaseException, dtype: str) -> ConversionError:
    import skl2onnx

    root = exc
    for _ in range(20):  # bounded: exception chains can loop
        nested = root.__cause__ or root.__context__
        if nested is None:
            break
        root = nested
    detail = _brief(exc) + (f" (caused by {_brief(root)})" if root is not exc else "")
    fix = _WAYS_OUT
    if dtype == "float64":
        fix = "Export with dtype='float32' (the default), or: " + fix[0].lower() + fix[1:]
    return ConversionError(f"skl2onnx {skl2onnx.__version__} cannot convert "
                           f"{_failing_step(model, exc)}: {detail}", fix=fix)


def _brief(exc: BaseException) -> str:
    """The exception's type and first line, cut where converters start dumping attributes."""
    lines = str(exc).strip().splitlines()
    text = lines[0].split(" with name=")[0] if lines else ""
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _failing_step(model: Any, exc: BaseException) -> str:
    """The deepest step of ``model`` that skl2onnx was parsing or converting when it failed."""
    steps = {id(est): (path, est) for path, est in walk(model)}
    found = ("", model)
    tb = exc.__traceback__
    while tb is not None:
        frame_locals = tb.tb_frame.f_locals
        operator = frame_locals.get("operator")
        for candidate in (getattr(operator, "raw_operator", None), frame_locals.get("model")):
            if candidate is not None and id(candidate) in steps:
                found = steps[id(candidate)]
        tb = tb.tb_next
    return describe_step(*found)


def _rename_inputs(graph: Any, names: list[str]) -> None:
    """Give graph inputs the names of the columns they were declared for."""
    current = [i.name for i in graph.input]
    if len(current) != len(names):
        raise ConversionError(f"skl2onnx produced inputs {current} for the columns {names}",
                              fix="Report this model to modelpack with its sample's columns.")
    rename_values(graph, {old: new for old, new in zip(current, names, strict=True) if old != new})


# -- checking the result -------------------------------------------------------------------------------
def _run_once(data: bytes, plan: InputPlan, dtype: str) -> list[Any]:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # not a hard dependency: GPU and OpenVINO builds replace it
        raise ConversionError("exporting checks the model in ONNX Runtime, which is not installed",
                              fix="pip install 'modelpack[cpu]' (or the onnxruntime build for your "
                                  "hardware).") from exc

    feeds = adapt_sample(plan.inputs, plan.data)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are raised below with the fix; notices are noise
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return list(session.run(None, feeds))
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        detail = str(exc).strip().splitlines()[0][:300]
        fix = ("Export with dtype='float32' (the default): skl2onnx writes operators in double "
               "precision that ONNX Runtime does not implement." if dtype == "float64" else _WAYS_OUT)
        raise ConversionError(f"ONNX Runtime cannot run the converted model: {detail}", fix=fix) from exc


def _described_outputs(data: bytes) -> tuple[Any, ...]:
    return tuple(_named_batch(o) for o in describe_model(data).outputs)


def _named_batch(spec: Any) -> Any:
    """Name the batch dimension ``N`` where skl2onnx leaves it unnamed."""
    from dataclasses import replace

    if not spec.shape or spec.shape[0] not in (None, 0):
        return spec
    return replace(spec, shape=("N", *spec.shape[1:]))


def _source(model: Any) -> Source:
    import skl2onnx
    import sklearn

    cls = type(model)
    return Source(framework="scikit-learn", framework_version=sklearn.__version__,
                  model_class=f"{cls.__module__}.{cls.__qualname__}", converter="skl2onnx",
                  converter_version=skl2onnx.__version__)
