"""The converter object that modelpack's registry loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelpack.plugin import Conversion, ConversionError, OutputPlan, Source, check_options, plan_outputs

from ._targets import Target, target_for
from ._tf2onnx import convert_function, feeds_for, flatten, serving_function

__all__ = ["OPTIONS", "KerasConverter"]

#: The keys ``options`` may hold; see the package README for each.
OPTIONS = ("task", "classes", "logits", "input_names", "output_names", "signature", "opset",
           "tf2onnx_kwargs", "dtype")
#: The 2 GiB protobuf limit: tf2onnx's external-data path does not run with numpy 2.
INLINE_LIMIT = 2**31 - 2**26


class KerasConverter:
    """Convert Keras 3 models, ``tf.function``\\ s and SavedModels to ONNX with tf2onnx.

    Inputs keep their declared names, dtypes and shapes with a dynamic first axis
    (``N``). ``options`` (all optional): ``task``, ``classes``, ``logits``,
    ``output_names`` (see :mod:`modelpack.converting`), ``input_names``,
    ``signature`` (of a SavedModel; default ``serving_default``), ``opset`` and
    ``tf2onnx_kwargs`` (passed to ``tf2onnx.convert.from_function``).

    Example
    -------
    >>> import keras, numpy as np
    >>> inputs = keras.Input((4,), name="features")
    >>> net = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    >>> conv = KerasConverter().convert(net, np.ones((8, 4)), format="onnx",
    ...                                 options={"task": "regression"})
    >>> conv.task, [o.name for o in conv.outputs], conv.source.converter
    ('regression', ['value'], 'tf2onnx')
    """

    name = "keras"
    frameworks = ("keras", "tensorflow")
    formats = ("onnx",)

    def convert(self, model: Any, sample: Any, *, format: str, options: Mapping[str, Any]) -> Conversion:
        """Export ``model`` to ONNX; ``sample`` fixes the inputs and gives the reference outputs.

        Raises
        ------
        modelpack.ConversionError
            The object is not a supported model, an option is wrong, or tf2onnx cannot
            translate one of its operators (named in the message, with the ways out).
        modelpack.InputError
            ``sample`` does not fit the model's inputs.
        """
        if format != "onnx":
            raise ConversionError(f"the keras converter writes ONNX, not {format!r}",
                                  fix="Pass format='onnx'.")
        check_options(options, OPTIONS, self.name)
        plan = plan_outputs(options)
        target = target_for(model, sample, options)
        _check_dtype(target, options.get("dtype"))
        _check_size(model)
        feeds = feeds_for(target, sample)
        raw, keys = flatten(target.call([_constant(f) for f in feeds]), target.kind)
        if keys is None and len(raw) > 1 and target.output_names and len(target.output_names) == len(raw):
            keys = list(target.output_names)  # single outputs keep the role's name, not "dense_3"
        names = plan.output_names(len(raw), keys)
        binary = plan.classifier and len(raw[0].shape) == 2 and raw[0].shape[1] == 1
        fn = serving_function(target, plan, names, binary)
        result = fn(*[_constant(f) for f in feeds])
        values = [np.asarray(result[n]) for n in names]
        # Checked before the slow conversion, so a wrong option fails fast.
        reference, classes = plan.reference(names, values), plan.classes_for(values[0])
        data = convert_function(fn, target, names, opset=options.get("opset"),
                                extra=_extra_kwargs(options))
        return _conversion(model, target, data, plan, reference, classes, values)

    def __repr__(self) -> str:
        return "<modelpack_keras.KerasConverter formats=['onnx']>"


def _extra_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(options.get("tf2onnx_kwargs") or {})
    own = sorted(set(extra) & {"function", "input_signature", "opset", "output_path", "large_model"})
    if own:
        raise ConversionError(f"options['tf2onnx_kwargs'] sets {own}, which the keras converter sets itself",
                              fix="Leave them out (the opset is options['opset']).")
    return extra


def _constant(array: Any) -> Any:
    import tensorflow as tf

    return tf.constant(array)


def _check_dtype(target: Target, dtype: str | None) -> None:
    floats = {s.dtype.name for s in target.specs if s.dtype.is_floating}
    if dtype is not None and floats and floats != {dtype}:
        raise ConversionError(f"the model computes in {', '.join(sorted(floats))}; dtype={dtype!r} would "
                              "need a rebuilt model", fix="Build the model in that precision (e.g. "
                              f"keras.config.set_floatx({dtype!r}) before creating it), or leave dtype out.")


def _check_size(model: Any) -> None:
    weights = getattr(model, "weights", None) or ()
    size = sum(int(np.prod(w.shape)) * np.dtype(_numpy_dtype(w)).itemsize for w in weights)
    if size > INLINE_LIMIT:
        raise ConversionError(f"the model's weights take {size / 2**30:.1f} GiB, beyond the 2 GiB that "
                              "tf2onnx can write", fix="Export it with model.export(path, format='onnx') "
                                                       "and wrap the file with modelpack.pack().")


def _numpy_dtype(weight: Any) -> Any:
    dtype = weight.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)


def _conversion(model: Any, target: Target, data: bytes, plan: OutputPlan, reference: dict[str, Any],
                classes: tuple[Any, ...] | None, values: list[Any]) -> Conversion:
    import tensorflow as tf
    import tf2onnx

    from modelpack.plugin import describe_model

    if target.framework == "keras":
        import keras

        framework_version = keras.__version__
    else:
        framework_version = tf.__version__
    floats = [str(v.dtype) for v in values if v.dtype.kind == "f"]
    model_class = ("tensorflow SavedModel" if target.kind == "SavedModel"
                   else f"{type(model).__module__}.{type(model).__qualname__}")
    return Conversion(
        model=data, format="onnx", task=plan.task,
        source=Source(framework=target.framework, framework_version=framework_version,
                      model_class=model_class,
                      converter="tf2onnx", converter_version=tf2onnx.__version__),
        reference=reference, classes=classes,
        outputs=plan.with_roles(describe_model(data).outputs),
        dtype=floats[0] if floats else None,
        metadata={"keras_source": target.kind, "tensorflow_version": tf.__version__})
