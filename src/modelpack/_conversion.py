"""Shared by converter plugins: what a network's outputs mean, from the caller's options.

A network does not say whether it classifies or regresses, so the caller tells it
through ``options``:

``task``
    ``"classification"``: the first output holds class probabilities ``[N, C]``
    (or ``[N, 1]``, the probability of the positive class, widened to ``[1 - p, p]``);
    ``"regression"``: the first output holds the predicted values; anything else
    (the default, ``"other"``) keeps every output as it is, under its name.
``classes``
    The class labels in column order (default ``0 .. C-1``).
``logits``
    True when the first output of a classifier is unnormalised scores: a softmax
    (a sigmoid for one column) is added to the exported graph.
``output_names``
    One name per output; otherwise the keys of a dict output, else ``probabilities``
    / ``value`` for the first output of a classifier / regressor, else ``output``
    or ``output_0``, ``output_1``...

This module knows no framework: the converters apply the softmax themselves.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import ConversionError
from .manifest import TASKS, TensorSpec

__all__ = ["OutputPlan", "check_options", "check_opset", "check_request", "plan_outputs"]

ROLE_OF_TASK = {"classification": "probabilities", "regression": "value"}


def check_options(options: Mapping[str, Any], known: Sequence[str], converter: str) -> None:
    """Refuse option keys this converter does not know, suggesting the nearest one."""
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"Did you mean {near[0]!r}? " if near else ""
            raise ConversionError(f"unknown option {key!r} for the {converter} converter",
                                  fix=f"{hint}Known options: {', '.join(sorted(known))}.")


def check_request(format: str, options: Mapping[str, Any], known: Sequence[str], converter: str, *,
                  formats: Sequence[str] = ("onnx",), float32_only: str | None = None) -> None:
    """Refuse a format the converter does not write and options it does not know.

    ``float32_only`` is the reason, for a converter that writes float32 graphs only,
    why ``dtype`` can be nothing else.

    Example
    -------
    >>> check_request("pmml", {}, ("dtype",), "XGBoost")
    Traceback (most recent call last):
    modelpack.ConversionError: the XGBoost converter writes onnx only, not 'pmml'. Export with format='onnx'.
    """
    if format not in formats:
        raise ConversionError(f"the {converter} converter writes {' or '.join(formats)} only, not {format!r}",
                              fix=f"Export with format={formats[0]!r}.")
    check_options(options, known, converter)
    dtype = options.get("dtype")
    if float32_only is not None and dtype not in (None, "float32"):
        raise ConversionError(f"dtype={dtype!r} is not possible for {converter}: {float32_only}",
                              fix="Leave dtype unset or pass 'float32'.")


def check_opset(options: Mapping[str, Any], highest: int, converter: str) -> int | None:
    """The ``target_opset`` option, if it is an int the converter can reach."""
    opset = options.get("target_opset")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool) or opset > highest):
        raise ConversionError(f"target_opset={opset!r} is beyond what {converter} converts",
                              fix=f"Pass an int up to {highest}, or leave it unset.")
    return opset


@dataclass(frozen=True)
class OutputPlan:
    """The task, the classes and how to turn the first output into probabilities."""

    task: str
    logits: bool
    classes: tuple[Any, ...] | None
    names: tuple[str, ...] | None

    @property
    def classifier(self) -> bool:
        return self.task == "classification"

    def output_names(self, count: int, keys: Sequence[str] | None = None) -> list[str]:
        """One name per output, in model order."""
        if self.names is not None:
            if len(self.names) != count:
                raise ConversionError(f"options['output_names'] has {len(self.names)} name(s) for "
                                      f"{count} output(s)", fix="Give one name per output.")
            if len(set(self.names)) != count:
                raise ConversionError(f"options['output_names'] repeats a name: {list(self.names)}",
                                      fix="Give each output its own name.")
            return list(self.names)
        if keys is not None:
            return [str(k) for k in keys]
        names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        if self.task in ROLE_OF_TASK:
            names[0] = ROLE_OF_TASK[self.task]
        return names

    def reference(self, names: Sequence[str], values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The source model's outputs keyed as export compares them: by role, else by name."""
        reference = dict(zip(names, values, strict=True))
        if self.task in ROLE_OF_TASK:
            reference = {ROLE_OF_TASK[self.task]: values[0],
                         **{n: v for n, v in zip(names[1:], values[1:], strict=True)}}
        if self.classifier:
            _check_probabilities(values[0], self.logits)
        return reference

    def classes_for(self, probabilities: np.ndarray | None) -> tuple[Any, ...] | None:
        """The class labels, checked against the width of the probabilities."""
        if not self.classifier or probabilities is None:
            return None
        width = probabilities.shape[1]
        if self.classes is None:
            return tuple(range(width))
        if len(self.classes) != width:
            raise ConversionError(f"options['classes'] names {len(self.classes)} classes but the model "
                                  f"gives {width} probabilities per row",
                                  fix="Pass one label per output column, in column order.")
        return self.classes

    def with_roles(self, outputs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
        """The model file's outputs, the first one marked with the task's role."""
        specs = list(outputs)
        if specs and self.task in ROLE_OF_TASK:
            specs[0] = replace(specs[0], role=ROLE_OF_TASK[self.task])
        return tuple(specs)


def plan_outputs(options: Mapping[str, Any]) -> OutputPlan:
    """Read ``task``, ``logits``, ``classes`` and ``output_names`` from the options."""
    task = options.get("task", "other")
    if task not in TASKS:
        raise ConversionError(f"options['task'] is {task!r}, not one of {', '.join(TASKS)}",
                              fix="Pass task='classification', 'regression' or leave it out.")
    logits = bool(options.get("logits", False))
    if logits and task != "classification":
        raise ConversionError(f"options['logits'] applies to classifiers, and the task is {task!r}",
                              fix="Pass task='classification' with it, or drop logits.")
    classes = options.get("classes")
    if classes is not None and task != "classification":
        raise ConversionError(f"options['classes'] applies to classifiers, and the task is {task!r}",
                              fix="Pass task='classification' with it, or drop classes.")
    names = options.get("output_names")
    return OutputPlan(task=task, logits=logits,
                      classes=None if classes is None else tuple(_plain(c) for c in classes),
                      names=None if names is None else tuple(str(n) for n in names))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_probabilities(values: np.ndarray, logits: bool) -> None:
    if values.ndim != 2:
        raise ConversionError(f"a classifier's first output must be [rows, classes]; it has shape "
                              f"{values.shape}", fix="Return class scores as a 2-D tensor, or pass "
                                                     "task='other' to keep the outputs as they are.")
    if logits or not values.size:
        return
    sums = values.sum(axis=1) if values.shape[1] > 1 else None
    outside = float(values.min()) < -1e-6 or float(values.max()) > 1 + 1e-6
    if outside or (sums is not None and np.abs(sums - 1).max() > 1e-3):
        raise ConversionError("the classifier's first output does not hold probabilities (values outside "
                              "[0, 1] or rows that do not sum to 1)",
                              fix="Pass options={'logits': True} to add a softmax, or end the model "
                                  "with one.")
