"""Reading a fitted scikit-learn model: its steps, its task, its encoders' categories.

A model is a tree: ``Pipeline``, ``ColumnTransformer`` and ``FeatureUnion`` hold
steps, everything else is a leaf (meta-estimators such as ``VotingClassifier``
included, because skl2onnx converts those as one operator). Each step gets a
readable path such as ``Pipeline step 'pre' > ColumnTransformer 'cat'`` so that
error messages can point at it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import dropwhile
from typing import Any

from modelpack.plugin import ConversionError

__all__ = ["check_fitted", "classes_of", "describe_step", "encoder_categories", "final_estimator",
           "column_readers", "has_column_transformer", "leaf_classes", "selected_columns", "task_of", "walk", "without_passthrough"]

_SKIPPED = ("drop", "passthrough", None)


def describe_step(path: str, est: Any) -> str:
    """``"Pipeline step 'clf' (LogisticRegression)"``, or the class alone at the top."""
    name = type(est).__name__
    return f"{path} ({name})" if path else name


def walk(model: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every estimator of ``model`` with its path, containers before their steps."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    yield path, model
    prefix = f"{path} > " if path else ""
    if isinstance(model, Pipeline):
        children = [(f"Pipeline step {n!r}", s) for n, s in model.steps]
    elif isinstance(model, ColumnTransformer):
        fitted = getattr(model, "transformers_", model.transformers)
        children = [(f"ColumnTransformer {n!r}", t) for n, t, _ in fitted]
    elif isinstance(model, FeatureUnion):
        children = [(f"FeatureUnion {n!r}", t) for n, t in model.transformer_list]
    else:
        return
    for name, child in children:
        if not (isinstance(child, str) or child is None):
            yield from walk(child, prefix + name)


def leaf_classes(model: Any) -> set[type]:
    return {type(est) for _, est in walk(model)}


def final_estimator(model: Any) -> Any:
    """The step whose outputs are the model's: the last real step of nested pipelines."""
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        steps = [s for _, s in model.steps if s not in _SKIPPED]
        if not steps:
            return model
        model = steps[-1]
    return model


def without_passthrough(model: Any) -> Any:
    """``model`` with its pipelines' ``"passthrough"`` steps left out (skl2onnx refuses them).

    The fitted steps are shared, not copied: the result is only read by the converter.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return model
    steps = [(name, without_passthrough(step)) for name, step in model.steps if step not in _SKIPPED]
    if len(steps) == len(model.steps) and all(a[1] is b[1] for a, b in zip(steps, model.steps, strict=True)):
        return model
    return Pipeline(steps) if steps else model


def check_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ConversionError(f"{type(model).__name__} is not fitted",
                              fix="Call fit() on it before exporting.") from exc
    except TypeError as exc:  # not an estimator at all
        raise ConversionError(f"{type(model).__name__} is not a scikit-learn estimator ({exc})",
                              fix="Pass a fitted scikit-learn estimator or Pipeline.") from exc


def task_of(model: Any) -> str:
    """classification, regression, clustering, transform or other (outlier detectors)."""
    from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor
    from sklearn.mixture._base import BaseMixture

    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    if is_clusterer(model) or isinstance(final_estimator(model), BaseMixture):
        return "clustering"
    if is_outlier_detector(model):
        return "other"
    if hasattr(model, "transform"):
        return "transform"
    raise ConversionError(f"{type(model).__name__} neither predicts nor transforms",
                          fix="Export a fitted predictor, transformer or Pipeline.")


def classes_of(model: Any) -> tuple[Any, ...] | None:
    """The class labels as plain Python scalars (str, int, float, bool), or None."""
    classes = getattr(model, "classes_", None)
    if classes is None or not hasattr(classes, "tolist"):
        return None  # multi-output classifiers keep a list of arrays
    values = classes.tolist()
    if any(isinstance(v, list) for v in values):
        return None
    return tuple(values)


def has_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    return any(isinstance(est, ColumnTransformer) for _, est in walk(model))


# -- categories learnt by encoders ------------------------------------------------------
def column_readers(model: Any, columns: list[str], *, through_imputers: bool = False) -> Iterator[tuple[Any, list[str]]]:
    """Each estimator that reads input columns as they are given, with those columns.

    A pipeline's first step reads its input; a fitted ColumnTransformer sends each
    transformer its own columns. With ``through_imputers``, a pipeline's leading
    ``SimpleImputer`` steps (without ``add_indicator``) are looked through: they keep
    each column in place, so the step after them reads the same columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        steps = [s for _, s in model.steps if s not in _SKIPPED]
        if through_imputers:
            steps = list(dropwhile(_keeps_columns, steps))
        if steps:
            yield from column_readers(steps[0], columns, through_imputers=through_imputers)
    elif isinstance(model, ColumnTransformer):
        for name, trans, _ in getattr(model, "transformers_", ()):
            if trans not in _SKIPPED:
                yield from column_readers(trans, selected_columns(model, name, columns),
                                          through_imputers=through_imputers)
    else:
        yield model, columns


def _keeps_columns(est: Any) -> bool:
    from sklearn.impute import SimpleImputer

    # An imputer may still drop a column that was empty at fit time; the encoder behind
    # it then has fewer category lists than columns, and nothing is recorded.
    return isinstance(est, SimpleImputer) and not est.add_indicator


def encoder_categories(model: Any, columns: list[str]) -> dict[str, tuple[Any, ...]]:
    """Column name -> categories, for columns that reach a fitted encoder unchanged or imputed."""
    found: dict[str, tuple[Any, ...]] = {}
    for reader, read in column_readers(model, columns, through_imputers=True):
        found.update(_leaf_categories(reader, read))
    return found


def selected_columns(ct: Any, name: str, columns: list[str]) -> list[str]:
    """The input columns a fitted ColumnTransformer sends to its transformer ``name``."""
    # The fitted ColumnTransformer resolves every selector (names, indices, masks,
    # callables) to input positions; it only keeps them in a private attribute.
    names = list(getattr(ct, "feature_names_in_", columns))
    indices = getattr(ct, "_transformer_to_input_indices", {}).get(name, [])
    return [str(names[i]) for i in indices if i < len(names)]


def _leaf_categories(est: Any, columns: list[str]) -> dict[str, tuple[Any, ...]]:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if not isinstance(est, (OneHotEncoder, OrdinalEncoder)) or not hasattr(est, "categories_"):
        return {}
    if len(est.categories_) != len(columns):
        return {}
    return {col: _plain(cats) for col, cats in zip(columns, est.categories_, strict=True)}


def _plain(categories: Any) -> tuple[Any, ...]:
    # Missing values learnt as a category cannot be written to JSON; leave them out.
    values = categories.tolist() if hasattr(categories, "tolist") else list(categories)
    return tuple(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
