"""What to convert: one callable over named, batch-dynamic input specs.

Four kinds of model reach this converter, and each becomes a :class:`Target`:

- a Keras 3 model: inputs from its declared ``Input`` layers (names, dtypes, shapes),
  or, for a subclassed model without them, from the sample; called with
  ``training=False``;
- a ``tf.function``: inputs from its ``input_signature``, else from the sample;
- a concrete function, such as a SavedModel signature (called by keyword);
- a loaded SavedModel (``tf.saved_model.load``), or the path of its folder: its
  signature ``options["signature"]`` (default ``serving_default``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelpack.plugin import ConversionError, InputError

__all__ = ["Target", "target_for"]

_AUTO_KERAS_NAME = "keras_tensor"  # Keras' name for an Input that was given none


@dataclass(frozen=True)
class Target:
    """A model as ``call(list of tensors) -> outputs`` over ``specs`` (named, batch None)."""

    kind: str
    specs: tuple[Any, ...]
    call: Callable[[Sequence[Any]], Any]
    framework: str
    output_names: tuple[str, ...] | None = None  # a multi-output Keras model's, in order
    # A SavedModel loaded from a path: its functions reference its variables weakly, so the
    # loaded object must live as long as the target does.
    owner: Any = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)


def target_for(model: Any, sample: Any, options: Mapping[str, Any]) -> Target:
    """The :class:`Target` of any supported model, or a ConversionError saying what is supported."""
    import tensorflow as tf

    if isinstance(model, (str, os.PathLike)):
        loaded = load_saved_model(model)
        return replace(target_for(loaded, sample, options), owner=loaded)
    if any(cls.__module__.partition(".")[0] == "keras" for cls in type(model).__mro__):
        return _keras(model, sample, options)
    if isinstance(model, tf.types.experimental.PolymorphicFunction):
        return _function(model, sample, options)
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        return _concrete(model, "concrete function", options)
    if hasattr(model, "signatures"):
        return _saved_model(model, options)
    raise ConversionError(f"{type(model).__qualname__} is not a Keras model, a tf.function or a SavedModel",
                          fix="Pass a keras.Model, a tf.function with an input_signature, or a SavedModel "
                              "(tf.saved_model.load(path) or the folder's path).")


def load_saved_model(path: str | os.PathLike[str]) -> Any:
    """``tf.saved_model.load(path)``, with errors that say what the folder lacks."""
    import tensorflow as tf

    folder = Path(path)
    if not (folder / "saved_model.pb").is_file():
        hint = "Pass the folder written by tf.saved_model.save()."
        if folder.suffix in (".keras", ".h5"):
            hint = "Load a .keras file with keras.saving.load_model() and pass the model."
        raise ConversionError(f"{folder} is not a SavedModel folder (no saved_model.pb)", fix=hint)
    return tf.saved_model.load(str(folder))


# -- Keras --------------------------------------------------------------------------------
def _declared_inputs(model: Any) -> Any:
    try:
        return model.input  # a KerasTensor, or a list / dict of them
    except (AttributeError, ValueError):  # subclassed models declare none
        return None


def _keras(model: Any, sample: Any, options: Mapping[str, Any]) -> Target:
    import tensorflow as tf

    declared = _declared_inputs(model)
    if declared is None:
        def call(structure: Any) -> Any:
            return model(structure, training=False)

        return _from_sample("Keras model", sample, options, [], framework="keras",
                            positional=call, keyword=call)
    flat = tf.nest.flatten(declared)
    if isinstance(declared, Mapping):
        default = [str(k) for k in sorted(declared)]  # tf.nest's order
    else:
        default = [_keras_name(t.name, i, len(flat)) for i, t in enumerate(flat)]
    names = _names(options, default)
    specs = tuple(tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n)
                  for t, n in zip(flat, names, strict=True))
    outputs = getattr(model, "output_names", None)
    return Target(kind="Keras model", specs=specs, framework="keras",
                  call=lambda args: model(tf.nest.pack_sequence_as(declared, list(args)), training=False),
                  output_names=tuple(outputs) if outputs else None)


def _keras_name(name: str, index: int, count: int) -> str:
    if name and not name.startswith(_AUTO_KERAS_NAME):
        return name
    return "input" if count == 1 else f"input_{index}"


# -- TensorFlow functions and SavedModels --------------------------------------------------------
def _function(fn: Any, sample: Any, options: Mapping[str, Any]) -> Target:
    import tensorflow as tf

    params = _parameters(getattr(fn, "python_function", fn))
    if fn.input_signature is None:
        return _from_sample("tf.function", sample, options, params, framework="tensorflow",
                            positional=lambda s: fn(*s) if isinstance(s, list) else fn(s),
                            keyword=lambda kwargs: fn(**kwargs))
    signature = fn.input_signature
    flat = tf.nest.flatten(signature)
    default = [s.name or (params[i] if i < len(params) else f"input_{i}") for i, s in enumerate(flat)]
    specs = _renamed(flat, _names(options, default))
    return Target(kind="tf.function", specs=specs, framework="tensorflow",
                  call=lambda args: fn(*tf.nest.pack_sequence_as(signature, list(args))))


def _concrete(fn: Any, kind: str, options: Mapping[str, Any]) -> Target:
    import tensorflow as tf

    args, kwargs = fn.structured_input_signature
    if kwargs:
        keys = list(kwargs)
        specs = _renamed([kwargs[k] for k in keys], _names(options, keys))
        return Target(kind=kind, specs=specs, framework="tensorflow",
                      call=lambda values: fn(**dict(zip(keys, values, strict=True))))
    flat = tf.nest.flatten(args)
    specs = _renamed(flat, _names(options, [s.name or f"input_{i}" for i, s in enumerate(flat)]))
    return Target(kind=kind, specs=specs, framework="tensorflow",
                  call=lambda values: fn(*tf.nest.pack_sequence_as(args, list(values))))


def _saved_model(loaded: Any, options: Mapping[str, Any]) -> Target:
    key = options.get("signature", "serving_default")
    signatures = dict(loaded.signatures)
    if key not in signatures:
        raise ConversionError(f"the SavedModel has no signature {key!r} "
                              f"(it has {sorted(signatures) or 'none'})",
                              fix="Pass options={'signature': name} with one of those, or save the model "
                                  "with tf.saved_model.save(obj, path, signatures=...).")
    return _concrete(signatures[key], "SavedModel", options)


# -- from the sample ------------------------------------------------------------------------------
def _from_sample(kind: str, sample: Any, options: Mapping[str, Any], params: Sequence[str], *,
                 framework: str, positional: Callable[[Any], Any],
                 keyword: Callable[[dict[str, Any]], Any]) -> Target:
    """Inputs read off the sample: shapes with the first axis dynamic, float64 read as float32.

    A dict sample calls ``keyword(dict)``; a tuple or list ``positional(list)``; one
    array ``positional(tensor)``.
    """
    arrays, keys = sample_arrays(sample)
    if keys is not None:
        specs = _specs_of(arrays, _names(options, keys))
        return Target(kind, specs, lambda values: keyword(dict(zip(keys, values, strict=True))), framework)
    default = [params[i] if i < len(params) else ("input" if len(arrays) == 1 else f"input_{i}")
               for i in range(len(arrays))]
    specs = _specs_of(arrays, _names(options, default))
    single = not isinstance(sample, (tuple, list))
    return Target(kind, specs, lambda values: positional(values[0] if single else list(values)), framework)


def sample_arrays(sample: Any) -> tuple[list[np.ndarray], list[str] | None]:
    """The sample as arrays (and its keys when it is a dict)."""
    if isinstance(sample, Mapping):
        return [_array(v, str(k)) for k, v in sample.items()], [str(k) for k in sample]
    values = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    if not values:
        raise InputError("the sample is empty", expected="one array per input", got="nothing",
                         fix="Pass a few rows of real input data as sample=.")
    return [_array(v, f"input_{i}") for i, v in enumerate(values)], None


def _array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot be read as an array ({exc})", input=name, expected="a numeric array",
                         got=type(value).__name__, fix="Pass numpy arrays or tensors.") from exc
    if arr.dtype.kind not in "biuf":
        raise InputError("is not numeric", input=name, expected="a numeric array", got=f"{arr.dtype} array",
                         fix="Encode text or objects as numbers before the model.")
    return arr


def _specs_of(arrays: Sequence[np.ndarray], names: Sequence[str]) -> tuple[Any, ...]:
    import tensorflow as tf

    specs = []
    for arr, name in zip(arrays, names, strict=True):
        dtype = tf.float32 if arr.dtype == np.float64 else tf.as_dtype(arr.dtype)
        specs.append(tf.TensorSpec((None, *arr.shape[1:]), dtype, name=name))
    return tuple(specs)


def _renamed(specs: Sequence[Any], names: Sequence[str]) -> tuple[Any, ...]:
    import tensorflow as tf

    return tuple(tf.TensorSpec(s.shape, s.dtype, name=n) for s, n in zip(specs, names, strict=True))


def _names(options: Mapping[str, Any], default: Sequence[str]) -> list[str]:
    given = options.get("input_names")
    if given is None:
        return list(default)
    if len(given) != len(default):
        raise ConversionError(f"options['input_names'] has {len(given)} name(s) for {len(default)} input(s)",
                              fix="Give one name per model input.")
    return [str(n) for n in given]


def _parameters(fn: Any) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.kind in kinds and p.name != "self"]
