"""Element-wise preprocessing in the forms ONNX Runtime runs fast, with the graph's answers.

scikit-learn's StandardScaler, RobustScaler and MaxAbsScaler export as ai.onnx.ml's
``Scaler``: ``y = (x - offset) * scale`` per feature. ONNX Runtime 1.32 runs it as a
call through a ``std::function`` per element: 0.56 ms per 100k rows of 4 features, 9 ms
of 64, where its ``Sub`` and ``Mul`` take a tenth of that. Those two are slow only where
a short constant is broadcast over many rows (0.5 ms for ``[N, 4] - [4]`` or
``[N, 1] - []``, against 0.05 ms for ``[N, 4] - []``), so a Scaler's form depends on
its input:

* columns concatenated just before (a ColumnTransformer over a table's columns: one
  ``[N, 1]`` input per column, a ``Concat``, the ``Scaler``): each column flattened,
  offset and scaled by its own two scalars, reshaped back, then concatenated;
* one offset and one scale for every feature: the same on the input flattened;
* ``2 <= F <= 16`` features: the offsets and scales ``Expand``-ed to the input's shape,
  then an element-wise ``Sub`` and ``Mul`` of equal shapes;
* more features: ``Sub`` and ``Mul`` with the ``[F]`` constants, whose rows are then
  long enough for ONNX Runtime's broadcasting.

For the same reason an ``Add``, ``Sub``, ``Mul`` or ``Div`` of a ``[N, F]`` tensor and a
``[F]`` constant (MinMaxScaler exports as ``Mul`` and ``Add``), ``2 <= F <= 16``, takes
its constant ``Expand``-ed to the tensor's shape, in a graph that imports ai.onnx.ml
(scikit-learn's, not a network's) and where it sits among preprocessing (see
:func:`_among_preprocessing`).

The arithmetic is the operator's own, in its order and precision (a ``double`` input
is offset and scaled in ``double`` and cast to ``float`` at the end, as ONNX Runtime's
kernel does), so the outputs are equal to the bit: signed zeros, subnormals and
infinities included, and NaN where the Scaler gives NaN (which NaN, its sign and
payload, depends on the order of operands, which neither ONNX nor IEEE 754 fixes).

ONNX Runtime's optimizer drops a ``Sub`` of a constant zero, which is exact for
``+0.0`` but not for ``-0.0`` (``-0.0 - -0.0`` is ``+0.0``). So columns with a ``-0.0``
offset are scaled together, and a ``Scaler`` whose offsets are all zeros with a
``-0.0`` among them is left as it is. So is one whose input's rank and feature count
the graph's inputs do not pin down, one whose attributes ONNX Runtime would refuse, and
any in a graph with subgraphs.

Measured and left to ONNX Runtime: ``Imputer`` (``IsNaN`` + ``Where`` are slower) and
``LinearClassifier`` (``Gemm`` + ``Sigmoid`` + ``ArgMax`` are no faster, and a one-row
``Gemm`` rounds otherwise). A call of fewer than :data:`LARGE` rows runs the graph as
exported (:class:`ByRows`), as does every call with ``engine="onnxruntime"``; so does a
tree model, whose Scaler is a small part of its time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import BesideExported, batch_rows
from .graph_edits import add_default_opset, has_subgraphs, names_in, unique

__all__ = ["LARGE", "ByRows", "rewrite"]

#: Up to this many features, the constants are expanded to the input's shape (see above).
EXPAND_UP_TO = 16
_ML = "ai.onnx.ml"
_TYPES = {1: np.float32, 11: np.float64}  # TensorProto.FLOAT, TensorProto.DOUBLE
Typed = tuple[int, tuple[int | None, ...]]  # a tensor's element type and shape (None: a dim not known)
_ARITHMETIC = frozenset({"Add", "Sub", "Mul", "Div"})
# Default-domain operators ONNX Runtime fuses no arithmetic with (see _among_preprocessing).
_PREPROCESSING = _ARITHMETIC | {"Cast", "Concat", "Identity"}


def rewrite(data: bytes) -> bytes | None:
    """The graph with each node it can take in a faster form (see above), or None if none.

    Example
    -------
    >>> faster = rewrite(model_bytes)   # doctest: +SKIP
    """
    import onnx

    model = onnx.load_model_from_string(data)
    graph = model.graph
    scalers = [n for n in graph.node if n.op_type == "Scaler" and n.domain == _ML]
    # Arithmetic only in graphs of ai.onnx.ml operators (scikit-learn's and the like): a
    # network's arithmetic is ONNX Runtime's to fuse.
    ml = any(o.domain == _ML for o in model.opset_import)
    arithmetic = [n for n in graph.node if ml and n.op_type in _ARITHMETIC and n.domain in ("", "ai.onnx")
                  and len(n.input) == 2]
    inputs = {i.name for i in graph.input}  # (an initializer that is an input is only its default)
    fixed = {t.name: t for t in graph.initializer if t.name not in inputs}
    arithmetic = [n for n in arithmetic if any(t in fixed and _short(fixed[t].dims) for t in n.input)]
    if not (scalers or arithmetic) or has_subgraphs(graph):
        return None  # (before the shapes are inferred, which costs a copy of the graph)
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    for o in graph.output:
        readers.setdefault(o.name, []).append(None)
    concats = {n.input[0]: producers[n.input[0]] for n in scalers if _is_concat(producers.get(n.input[0]))}
    shapes = _shapes(model, {n.input[0] for n in scalers} | {t for c in concats.values() for t in c.input}
                     | {t for n in arithmetic for t in n.input})
    taken = names_in(graph)
    replaced: dict[int, list[Any]] = {}
    initializers: list[Any] = []
    for node in scalers:
        attributes, typed = _attributes(node), shapes.get(node.input[0])
        if attributes is None or typed is None or _TYPES.get(typed[0]) is None or not typed[1]:
            continue
        offset, scale = attributes
        form = _Form(node, _TYPES[typed[0]], taken)
        concat = concats.get(node.input[0])
        pieces = [shapes.get(t) for t in concat.input] if concat is not None else []
        if concat is not None and len(readers[concat.output[0]]) == 1 and len(offset) in (1, len(pieces)) \
                and all(p is not None and len(p[1]) == 2 and p[1][1] == 1 for p in pieces) \
                and not any(v == 0 and math.copysign(1.0, v) < 0 for v in offset):
            # (each column's Sub by a zero would be dropped by ONNX Runtime's optimizer: see below)
            replaced[id(concat)] = []
            replaced[id(node)] = form.columns(list(concat.input), concat, offset, scale)
        else:
            found = form.whole(typed[1], offset, scale)
            if found is None:
                continue
            replaced[id(node)] = found
        initializers += form.constants
    for node in arithmetic:
        if not _among_preprocessing(node, producers, readers):
            continue
        operand = _short_constant(node, fixed, shapes)
        if operand is not None:
            form = _Form(node, None, taken)
            replaced[id(node)] = form.expanded(operand)
    if not replaced:
        return None
    if add_default_opset(model) < 9:  # (Expand needs 8, Shape's output type of 9 onwards)
        return None
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        graph.node.extend(replaced.get(id(node), [node]))
    graph.initializer.extend(initializers)
    return model.SerializeToString()


def _short(dims: Sequence[int]) -> bool:
    """Whether a constant of ``dims`` is one short row: ``[F]`` or ``[1, F]``, ``2 <= F <= EXPAND_UP_TO``."""
    return len(dims) in (1, 2) and all(d == 1 for d in dims[:-1]) and 2 <= dims[-1] <= EXPAND_UP_TO


def _among_preprocessing(node: Any, producers: Mapping[str, Any], readers: Mapping[str, list[Any]]) -> bool:
    """Whether ``node`` reads and feeds only what ONNX Runtime fuses no arithmetic with.

    ONNX Runtime fuses an Add after a MatMul into a Gemm, one before a Gelu into a BiasGelu,
    and so on: the fused kernel rounds otherwise, so expanding its constant would change the
    graph's answers. Between inputs, casts, concatenations, ai.onnx.ml operators and other
    arithmetic (a MinMaxScaler's Mul and Add, a normalisation's Sub and Div) it fuses none.
    """
    def plain(other: Any) -> bool:
        return other is None or other.domain == _ML or (
            other.domain in ("", "ai.onnx") and other.op_type in _PREPROCESSING)

    return all(plain(producers.get(t)) for t in node.input) and all(plain(r) for r in readers.get(node.output[0], []))


def _short_constant(node: Any, fixed: Mapping[str, Any], shapes: Mapping[str, Typed]) -> tuple[int, str] | None:
    """(the position of the tensor, the constant's name) where ``node`` computes a ``[N, F]``
    float tensor with a ``[F]`` or ``[1, F]`` constant, ``2 <= F <= EXPAND_UP_TO``; else None.

    A constant ONNX Runtime's optimizer drops (adding zeros, multiplying or dividing by ones)
    is left: dropped, ``-0.0 + 0.0`` stays ``-0.0``, expanded it would become ``+0.0``.
    """
    from onnx import numpy_helper

    for position in (0, 1):
        tensor, constant = node.input[position], node.input[1 - position]
        initializer, typed = fixed.get(constant), shapes.get(tensor)
        if initializer is None or tensor in fixed or typed is None or _TYPES.get(typed[0]) is None:
            continue
        width = typed[1][-1] if len(typed[1]) == 2 else None
        if initializer.data_type != typed[0] or not _short(initializer.dims) or initializer.dims[-1] != width:
            continue
        values = numpy_helper.to_array(initializer)
        if np.all(values == (0 if node.op_type in ("Add", "Sub") else 1)):
            return None
        return position, constant
    return None


def _is_concat(node: Any) -> bool:
    """A Concat along the second of two axes (the rank is checked with the shapes of its inputs)."""
    if node is None or node.op_type != "Concat" or node.domain not in ("", "ai.onnx"):
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    return axis in (1, -1)


def _attributes(node: Any) -> tuple[list[float], list[float]] | None:
    """The Scaler's offsets and scales where ONNX Runtime takes them, else None."""
    from onnx import helper

    attrs = {a.name: list(helper.get_attribute_value(a)) for a in node.attribute}
    offset, scale = attrs.pop("offset", []), attrs.pop("scale", [])
    if attrs or not offset or len(offset) != len(scale):
        return None
    return offset, scale


def _shapes(model: Any, names: set[str]) -> dict[str, Typed]:
    """Element type and shape of each tensor in ``names``, inferred from the graph's inputs alone.

    The graph's own ``value_info`` is left out: a package may declare any shape there,
    while ONNX Runtime holds each feed to the declared input shape.
    """
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=False).graph
    except Exception:  # noqa: BLE001  (no shapes: no rewrite)
        return {}
    found = {}
    for info in list(inferred.input) + list(inferred.value_info):
        t = info.type.tensor_type
        if info.name in names and info.type.HasField("tensor_type") and t.HasField("shape"):
            found[info.name] = (t.elem_type, tuple(d.dim_value if d.HasField("dim_value") else None
                                                   for d in t.shape.dim))
    return found


class _Form:
    """The nodes that compute one Scaler or arithmetic node in a faster form, with their
    constants and fresh names."""

    def __init__(self, node: Any, dtype: Any, taken: set[str]) -> None:
        self.node, self.dtype, self.taken = node, dtype, taken
        self.stem = node.name or node.output[0]
        self.constants: list[Any] = []
        self.nodes: list[Any] = []

    def name(self, suffix: str) -> str:
        return unique(f"{self.stem}.{suffix}", self.taken)

    def constant(self, values: Any, suffix: str, dtype: Any = None) -> str:
        from onnx import numpy_helper

        array = np.asarray(values, dtype or np.float32)
        if dtype is None:
            array = array.astype(self.dtype)  # float32 attributes, exactly widened
        self.constants.append(numpy_helper.from_array(array, self.name(suffix)))
        return self.constants[-1].name

    def add(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.name(op), **attrs))
        return output

    def whole(self, dims: tuple[int | None, ...], offset: list[float], scale: list[float]) -> list[Any] | None:
        """The Scaler on its input as it comes; None where the graph does not pin its shape down."""
        if all(v == 0 for v in offset) and any(math.copysign(1.0, v) < 0 for v in offset):
            # ONNX Runtime's optimizer drops a Sub of zeros, but x - (-0.0) turns -0.0 into +0.0.
            return None
        x = self.node.input[0]
        if len(offset) == 1:
            return self.finish(self.scalars(x, offset[0], scale[0]))
        if len(dims) != 2 or dims[1] != len(offset):
            return None  # (ONNX Runtime's kernel takes F values only along the second of two axes)
        subtrahend, factor = self.constant(offset, "offset"), self.constant(scale, "scale")
        if len(offset) <= EXPAND_UP_TO:
            shape = self.add("Shape", [x])
            subtrahend, factor = self.add("Expand", [subtrahend, shape]), self.add("Expand", [factor, shape])
        return self.finish(self.add("Mul", [self.add("Sub", [x, subtrahend]), factor]))

    def columns(self, pieces: list[str], concat: Any, offset: list[float], scale: list[float]) -> list[Any]:
        """Each [N, 1] column scaled by its own scalars, then concatenated as ``concat`` did."""
        if len(offset) == 1:
            offset, scale = offset * len(pieces), scale * len(pieces)
        scaled = [self.scalars(t, o, s) for t, o, s in zip(pieces, offset, scale, strict=True)]
        axis = next(a.i for a in concat.attribute if a.name == "axis")
        return self.finish(self.add("Concat", scaled, axis=axis))

    def expanded(self, operand: tuple[int, str]) -> list[Any]:
        """The node, its constant ``Expand``-ed to the shape of its other operand first."""
        position, constant = operand
        tensor = self.node.input[position]
        wide = self.add("Expand", [constant, self.add("Shape", [tensor])])
        inputs = [tensor, wide] if position == 0 else [wide, tensor]
        self.add(self.node.op_type, inputs)
        return self.finish(self.nodes[-1].output[0])

    def scalars(self, x: str, offset: float, scale: float) -> str:
        """``x`` offset and scaled by one value each: flattened first, where ONNX Runtime is fast."""
        flat = self.add("Reshape", [x, self.constant([-1], "flat", np.int64)])
        scaled = self.add("Mul", [self.add("Sub", [flat, self.constant(offset, "offset")]),
                                  self.constant(scale, "scale")])
        return self.add("Reshape", [scaled, self.add("Shape", [x])])

    def finish(self, result: str) -> list[Any]:
        """The nodes, the last one renamed to write the replaced node's output (so the rest of the
        graph is unchanged), after a cast to float for a Scaler's double input as its kernel does."""
        from onnx import TensorProto

        if self.dtype is np.float64:
            result = self.add("Cast", [result], to=TensorProto.FLOAT)
        last = self.nodes[-1]
        last.output[0] = self.node.output[0]
        return self.nodes


#: A call of fewer rows runs the graph as exported: there, the rewritten graph's extra nodes
#: cost more than the Scaler it replaces (one row of 4 columns: 13.8 against 8.5 µs; the
#: two cross near 700 rows; 4,096 rows: 54 against 69 µs).
LARGE = 1024


class ByRows(BesideExported):
    """A backend on the rewritten graph for calls of :data:`LARGE` rows or more, and one on
    the graph as exported for the others (see :class:`~.base.BesideExported`)."""

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        exported = self._exported
        if exported is not None and batch_rows(feeds) < LARGE:
            return exported.run(feeds, outputs)
        return self._inner.run(feeds, outputs)

    def run_bound(self, feeds: Any, outputs: Sequence[str] | None = None) -> list[Any]:
        return self._inner.run_bound(feeds, outputs)
