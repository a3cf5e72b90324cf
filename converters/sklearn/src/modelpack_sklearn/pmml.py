"""scikit-learn to PMML through sklearn2pmml (JPMML-SkLearn, a Java program).

sklearn2pmml pickles the model and runs Java on it; it reports success and failure
by printing. Its printing is captured here: a failure becomes a
:class:`~modelpack.ConversionError` naming the step Java could not convert and
the exception's own first line, never a Java stack trace.

Fields are named after the sample's columns (or the model's ``feature_names_in_``).
A numeric array sample gives fields ``x1`` ... ``xN``, as sklearn2pmml names them,
declared as the columns of one ``[N, n_features]`` input ``X``: the package then
takes the same arrays as the ONNX export of the same model. Options:

``target_name``
    Name of the target field (default ``"y"``).
``feature_names``
    Names for the columns of an array sample.
``dtype``
    Ignored except ``"float32"``, refused: PMML evaluators compute in double precision.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelpack.plugin import Conversion, ConversionError, InputError

from ._estimators import check_fitted, classes_of, describe_step, task_of, walk

__all__ = ["convert_pmml"]

OPTIONS = ("target_name", "feature_names", "dtype")
INSTALL = "Install the PMML exporter: pip install sklearn2pmml, and Java 8 or newer."
_EXCEPTION = re.compile(r"^\s*((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)): (.+)$", re.MULTILINE)
_PYTHON_CLASS = re.compile(r"Python class ([\w.]+)")


def convert_pmml(model: Any, sample: Any, options: Mapping[str, Any]) -> Conversion:
    """Convert a fitted scikit-learn model (or Pipeline) to PMML with sklearn2pmml.

    The reference outputs are the model's own, on ``sample``, keyed by role.

    Example
    -------
    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    >>> conv = convert_pmml(DecisionTreeClassifier(max_depth=2).fit(X, y), X, {})  # doctest: +SKIP
    >>> conv.format, conv.task, sorted(conv.reference)                              # doctest: +SKIP
    ('pmml', 'classification', ['label', 'probabilities'])
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConversionError(f"unknown PMML export option(s) {unknown}", fix=f"Use only {list(OPTIONS)}.")
    if options.get("dtype") not in (None, "float64"):
        raise ConversionError(f"PMML is evaluated in double precision, not {options['dtype']}",
                              fix="Leave dtype= unset (or 'float64') for format='pmml'.")
    check_fitted(model)
    sklearn2pmml = _import()
    data, fields = _fields(model, sample, options.get("feature_names"))
    pipeline = sklearn2pmml.make_pmml_pipeline(model, active_fields=fields,
                                               target_fields=[str(options.get("target_name", "y"))])
    document = _run_sklearn2pmml(sklearn2pmml, pipeline, model)
    task = task_of(model)
    return Conversion(model=document, format="pmml", task=task, source=_source(model, sklearn2pmml),
                      reference=_reference(model, data, task), classes=classes_of(model),
                      inputs=_matrix_input(data, fields, document), dtype="float64", metadata={})


def _import() -> Any:
    try:
        import sklearn2pmml
    except ImportError as exc:
        raise ConversionError(f"sklearn2pmml is not installed ({exc})", fix=INSTALL) from exc
    return sklearn2pmml


def _fields(model: Any, sample: Any, names: Any) -> tuple[Any, list[str]]:
    """The data the model predicts on, and the PMML field name of each of its columns."""
    if sample is None:
        raise InputError("no sample given", input="sample", expected="a 2-D array or a DataFrame",
                         fix="Pass sample= as a few rows of the training data.")
    trained = getattr(model, "feature_names_in_", None)
    if hasattr(sample, "columns"):
        columns = [str(c) for c in (trained if trained is not None else sample.columns)]
        missing = [c for c in columns if c not in sample.columns]
        if missing:
            raise InputError(f"the sample lacks column(s) {missing[:10]} the model was fitted on",
                             input="sample", fix="Pass rows with every training column.")
        return sample[columns], columns
    data = np.asarray(sample)
    if data.ndim != 2:
        raise InputError(f"wrong rank {data.ndim}", input="sample", expected="a 2-D array [rows, features]",
                         fix="For one row use X.reshape(1, -1).")
    if names is None:
        names = trained if trained is not None else [f"x{i + 1}" for i in range(data.shape[1])]
    names = [str(n) for n in names]
    if len(names) != data.shape[1]:
        raise InputError(f"{len(names)} feature names for {data.shape[1]} columns", input="feature_names",
                         fix="Give one name per column.")
    return data, names


def _matrix_input(data: Any, fields: list[str], document: bytes) -> tuple[Any, ...] | None:
    """One [N, n_features] input for a numeric array sample; None keeps one input per field."""
    if hasattr(data, "columns") or data.dtype.kind not in "fiub":
        return None
    from modelpack.plugin import ColumnSpec, TensorSpec, describe_model

    described = {i.name: i.columns[0] for i in describe_model(document, "pmml").inputs if i.columns}
    columns = tuple(described.get(f, ColumnSpec(f, "float64", optype="continuous")) for f in fields)
    return (TensorSpec("X", "float64", ("N", len(fields)), columns=columns),)


def _run_sklearn2pmml(sklearn2pmml: Any, pipeline: Any, model: Any) -> bytes:
    java_home = os.environ.get("JAVA_HOME") or None  # as modelpack finds Java at load time
    with tempfile.TemporaryDirectory(prefix="modelpack-pmml-") as folder:
        target = Path(folder) / "model.pmml"
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                sklearn2pmml.sklearn2pmml(pipeline, str(target), java_home=java_home)
        except RuntimeError as exc:
            raise _failure(printed.getvalue(), str(exc), model) from exc
        except (TypeError, ValueError) as exc:  # refused before Java ran
            raise ConversionError(f"sklearn2pmml refused {type(model).__name__}: {exc}",
                                  fix="Pass a fitted scikit-learn estimator or Pipeline.") from exc
        if not target.is_file():
            raise ConversionError("sklearn2pmml wrote no PMML file", fix="Run sklearn2pmml(..., debug=True) "
                                  "on the model to see why.")
        return target.read_bytes()


def _failure(printed: str, error: str, model: Any) -> ConversionError:
    if "Java is not installed" in error:
        return ConversionError("sklearn2pmml needs Java, and none was found",
                               fix="Install Java 8 or newer and put `java` on PATH (or set JAVA_HOME).")
    found = _EXCEPTION.search(printed)
    reason = found.group(2).strip() if found else "Java failed without a message"
    named = _PYTHON_CLASS.search(reason)
    step = _step_of(model, named.group(1)) if named else None
    where = f"{step}: " if step else ""
    fix = ("Replace that step by one sklearn2pmml supports (see the JPMML-SkLearn list of supported "
           "classes), or export to ONNX with format='onnx'.")
    if "version" in reason.lower() and "scikit-learn" in reason.lower():
        fix = "Install the scikit-learn version sklearn2pmml names, or upgrade sklearn2pmml."
    return ConversionError(f"sklearn2pmml cannot convert {where}{reason}", fix=fix)


def _step_of(model: Any, python_class: str) -> str | None:
    """The readable path of the step whose class Java named (its private module path)."""
    for path, est in walk(model):
        cls = type(est)
        if f"{cls.__module__}.{cls.__qualname__}" == python_class or cls.__name__ == python_class.rpartition(".")[2]:
            return describe_step(path, est)
    return None


def _reference(model: Any, data: Any, task: str) -> dict[str, np.ndarray]:
    if task == "classification":
        reference = {"label": np.asarray(model.predict(data))}
        if hasattr(model, "predict_proba"):
            reference["probabilities"] = np.asarray(model.predict_proba(data), dtype=np.float64)
        return reference
    if task == "regression":
        return {"value": np.asarray(model.predict(data), dtype=np.float64)}
    if task == "clustering" and hasattr(model, "predict"):
        return {"cluster": np.asarray(model.predict(data))}
    return {}


def _source(model: Any, sklearn2pmml: Any) -> Any:
    import sklearn

    from modelpack.plugin import Source

    cls = type(model)
    return Source(framework="scikit-learn", framework_version=sklearn.__version__,
                  model_class=f"{cls.__module__}.{cls.__qualname__}", converter="sklearn2pmml",
                  converter_version=getattr(sklearn2pmml, "__version__", None))
