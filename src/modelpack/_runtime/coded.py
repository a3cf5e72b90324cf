"""String columns run on their distinct values: :func:`rewrite` and :class:`CodedBackend`.

A string column of a table usually holds a few distinct values (a plan, a region)
over many rows, and ONNX Runtime spends most of a ColumnTransformer's time hashing
each row's string in a OneHotEncoder or LabelEncoder: 4.5 ms per 100k-row column,
where the rest of the graph takes 2 ms. So the graph is rewritten at load:

* the string input ``x`` keeps its name and takes the column's distinct values
  (``[K, 1]`` where the model declares ``[N, 1]``);
* a second input, ``x`` + :data:`CODES`, takes each row's position among them (int64 ``[N]``);
* the nodes that read only ``x`` and constants (its *cone*), when each of them
  computes every row from that row alone, run on the ``K`` values; each tensor the
  cone hands to the rest of the graph is then taken row by row from the codes
  with ``Gather(axis=0)``, under its own name, so the rest of the graph is unchanged.

Only operators known to work row by row, whose outputs stay one row per input row
and equal bit for bit what they give on the whole column, enter a cone: encoders and
lookups, casts, reshapes that keep the rows, concatenation and selection along
other axes, comparisons and ``Where`` against constants that broadcast over the
rows. No arithmetic, so no fused or reordered floating-point operation can tell the
two graphs apart. Anything else ends the cone, which only makes it smaller.

The input adapter gives such an input as a :class:`~.base.CodedColumn` (from
Arrow's dictionary encoding, a pandas Categorical, or pandas' factorize of an object
column). :class:`CodedBackend`
sends a call with no coded column to a session on the graph as exported, where it
has one, and otherwise gives each column that came whole codes ``0..N-1``.
``engine="onnxruntime"`` runs the graph as it was exported, always.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from .base import BesideExported, CodedColumn
from .graph_edits import add_default_opset, has_subgraphs, names_in, unique

__all__ = ["CODES", "CodedBackend", "rewrite"]

#: Appended to a string input's name to name the input of its codes.
CODES = ".codes"

Shape = tuple[int, ...]  # a tensor's shape without its first axis (the rows)

# Operators that compute each row from that row alone, and whose output keeps the
# input's shape: ai.onnx.ml encoders and lookups, and exact conversions.
_SAME_SHAPE = frozenset({("ai.onnx.ml", "LabelEncoder"), ("ai.onnx.ml", "CategoryMapper"),
                         ("", "Cast"), ("", "Identity"), ("", "Not"), ("", "IsNaN")})
# Element-wise operators with broadcasting: in a cone when every operand outside it
# is a constant that cannot reach the rows' axis.
_BROADCAST = frozenset({"Where", "Equal", "And", "Or", "Xor", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"})


def rewrite(data: bytes, string_inputs: Collection[str]) -> tuple[bytes, dict[str, str]] | None:
    """The graph with ``string_inputs`` run on their distinct values, and each one's codes input.

    None when no input has a cone worth the rewrite (see the module docstring), or
    when the graph has a node with a subgraph, which may read any tensor by name.

    Example
    -------
    >>> rewritten, codes = rewrite(model_bytes, ["plan"])   # doctest: +SKIP
    >>> codes   # doctest: +SKIP
    {'plan': 'plan.codes'}
    """
    import onnx

    model = onnx.load_model_from_string(data)
    graph = model.graph
    if has_subgraphs(graph):
        return None
    constants = _Constants(graph)
    taken = names_in(graph)
    outputs = {o.name for o in graph.output}
    codes: dict[str, str] = {}
    gathers = []
    defaults = {t.name for t in graph.initializer}  # an input with a default may be left out
    for inp in list(graph.input):  # (codes inputs are appended below)
        if inp.name not in string_inputs or inp.name in outputs or inp.name in defaults:
            continue
        rows = _rows_shape(inp)
        if rows is None:
            continue
        excluded: set[int] = set()
        while True:
            cone, texts = _cone(graph.node, inp.name, rows, constants, excluded)
            inside = {o for i in cone for o in graph.node[i].output}
            read_outside = {t for j, n in enumerate(graph.node) if j not in cone for t in n.input}
            frontier = sorted((inside & read_outside) | (inside & outputs))
            # Strings leave a cone only as the column itself: a gathered string tensor would
            # save nothing, and ONNX Runtime's Gather copies one string per row of a wider one.
            text = {i for i in cone if any(o in texts for o in graph.node[i].output if o in frontier)}
            if not text:
                break
            excluded |= text
        if not cone or not frontier or inp.name in read_outside:
            continue  # nothing to gain, or the whole column is wanted elsewhere too
        name = unique(inp.name + CODES, taken)
        codes[inp.name] = name
        renamed = {t: unique(f"{t}.distinct", taken) for t in inside}
        for i in cone:
            node = graph.node[i]
            node.input[:] = [renamed.get(t, t) for t in node.input]
            node.output[:] = [renamed.get(t, t) for t in node.output]
        gathers += [onnx.helper.make_node("Gather", [renamed[t], name], [t], axis=0, name=unique(f"{t}.rows", taken))
                    for t in frontier]
        _rename_rows(inp)
        graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["N"]))
    if not codes:
        return None
    add_default_opset(model)  # Gather's domain (an ML-only graph may import none)
    # Each Gather goes right after the cone's last node, so the nodes stay in topological order.
    nodes = list(graph.node)
    produced = {o: j for j, n in enumerate(nodes) for o in n.output}
    placed: dict[int, list[Any]] = {}
    for g in gathers:
        placed.setdefault(produced[g.input[0]], []).append(g)
    del graph.node[:]
    for j, node in enumerate(nodes):
        graph.node.append(node)
        graph.node.extend(placed.get(j, []))
    # (value_info stays true: a frontier tensor keeps its name and its rows; the cone's
    # tensors have new names, and the input's first axis no size.)
    return model.SerializeToString(), codes


def _rows_shape(inp: Any) -> Shape | None:
    """The shape of one row of a ``[N]`` or ``[N, 1]``-like string input with static row dims, else None."""
    import onnx

    t = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or t.elem_type != onnx.TensorProto.STRING or not t.HasField("shape"):
        return None
    dims = list(t.shape.dim)
    if not dims or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
        return None
    return tuple(int(d.dim_value) for d in dims[1:])


def _rename_rows(inp: Any) -> None:
    """The input's first axis is now its distinct values, not the rows: give it no fixed size or name."""
    dims = inp.type.tensor_type.shape.dim
    dims[0].Clear()


class _Constants:
    """The graph's constant tensors: initializers, Constant nodes, and what nodes compute from them alone.

    Tensors are read only when a cone needs their values (a Reshape's shape, a
    Gather's indices), and only small ones: a model's weights are never copied here.
    """

    def __init__(self, graph: Any) -> None:
        import onnx

        inputs = {i.name for i in graph.input}  # an initializer that is an input is only its default
        fixed = [t for t in graph.initializer if t.name not in inputs]
        self._tensors: dict[str, Any] = {t.name: t for t in fixed}
        self._shapes: dict[str, Shape] = {t.name: tuple(int(d) for d in t.dims) for t in fixed}
        self._derived: set[str] = {t.values.name for t in graph.sparse_initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None and value.type == onnx.AttributeProto.TENSOR:
                    self._tensors[node.output[0]] = value.t
                    self._shapes[node.output[0]] = tuple(int(d) for d in value.t.dims)
                else:
                    self._derived.add(node.output[0])
            elif node.input and all(not t or t in self for t in node.input):
                # From constants alone (a fill value through a LabelEncoder): its shape is known
                # where the operator keeps the shape of its one input.
                self._derived.update(node.output)
                first = self._shapes.get(node.input[0])
                if (node.domain or "", node.op_type) in _SAME_SHAPE and len(node.input) == 1 and first is not None:
                    self._shapes[node.output[0]] = first

    def __contains__(self, name: str) -> bool:
        return name in self._tensors or name in self._derived

    def shape(self, name: str) -> Shape | None:
        return self._shapes.get(name)

    def ints(self, name: str) -> list[int] | None:
        """The values of a small integer constant of rank 0 or 1, else None."""
        from onnx import TensorProto, numpy_helper

        tensor = self._tensors.get(name)
        if tensor is None or tensor.data_type not in (TensorProto.INT64, TensorProto.INT32) or len(tensor.dims) > 1 \
                or math.prod(tensor.dims) > 4096 or tensor.external_data or tensor.data_location == 1:
            return None  # external data is never read here: only the session reads it, under its checks
        try:
            return [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
        except Exception:  # noqa: BLE001  (a malformed tensor: the session will say so)
            return None

    def is_text(self, name: str) -> bool:
        """Whether the constant holds strings (yes, when unknown)."""
        from onnx import TensorProto

        tensor = self._tensors.get(name)
        return tensor is None or tensor.data_type == TensorProto.STRING


def _cone(nodes: Sequence[Any], name: str, rows: Shape, constants: _Constants,
          excluded: set[int]) -> tuple[set[int], set[str]]:
    """The nodes computed from input ``name`` and constants alone, row by row, and their string tensors."""
    shapes: dict[str, Shape] = {name: rows}
    texts = {name}
    cone: set[int] = set()
    changed = True
    while changed:  # the list is topologically sorted in a valid graph; a hostile one only shrinks the cone
        changed = False
        for i, node in enumerate(nodes):
            if i in cone or i in excluded or not node.input or not any(t in shapes for t in node.input):
                continue
            if any(t and t not in shapes and t not in constants for t in node.input):
                continue
            out = _row_shapes(node, shapes, constants)
            if out is None:
                continue
            cone.add(i)
            shapes.update(zip(node.output, out, strict=True))
            if _gives_text(node, texts, constants):
                texts.update(node.output)
            changed = True
    return cone, texts


def _gives_text(node: Any, texts: set[str], constants: _Constants) -> bool:
    """Whether the node's output holds strings (when unsure: yes, which keeps it from the cone's edge)."""
    import onnx

    op, first = node.op_type, node.input[0]
    if op in ("OneHotEncoder", "Not", "IsNaN") or op in _BROADCAST and op != "Where":
        return False
    if op == "Cast":
        return bool(_attr(node, "to") == onnx.TensorProto.STRING)
    if op == "LabelEncoder":
        tensor = _attr(node, "values_tensor")
        return _attr(node, "values_strings") is not None or (
            tensor is not None and tensor.data_type == onnx.TensorProto.STRING)
    if op == "CategoryMapper":
        return first not in texts
    source = node.input[1] if op == "Where" else first
    if source in texts:
        return True
    return constants.is_text(source) if source in constants else False


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _row_shapes(node: Any, shapes: Mapping[str, Shape], constants: _Constants) -> list[Shape] | None:
    """The row shape of each output when ``node`` works row by row on its cone inputs, else None."""
    domain = "ai.onnx.ml" if node.domain == "ai.onnx.ml" else "" if node.domain in ("", "ai.onnx") else None
    op = node.op_type
    ins = list(node.input)
    if domain is None or len(node.output) != 1:
        return None
    first = shapes.get(ins[0])
    if (domain, op) in _SAME_SHAPE:
        return [first] if first is not None and len(ins) == 1 else None
    if domain == "ai.onnx.ml":
        if op == "OneHotEncoder" and first is not None and len(ins) == 1:
            categories = _attr(node, "cats_strings") or _attr(node, "cats_int64s") or []
            return [(*first, len(categories))] if categories else None
        if op == "ArrayFeatureExtractor" and first and len(ins) == 2 and ins[1] not in shapes:
            indices = constants.ints(ins[1])
            return [(*first[:-1], len(indices))] if indices else None
        return None
    if op in _BROADCAST:
        return _broadcast(ins, shapes, constants)
    if first is None:
        return None
    if op == "Reshape":
        target = constants.ints(ins[1]) if len(ins) == 2 and ins[1] not in shapes else None
        out = _reshaped(first, target) if target is not None and not _attr(node, "allowzero", 0) else None
        return [out] if out is not None else None
    if op == "Flatten" and len(ins) == 1:
        return [(math.prod(first),)] if _attr(node, "axis", 1) == 1 else None
    if op == "Concat":
        parts = [shapes[t] for t in ins if t in shapes]
        axis = _axis(_attr(node, "axis"), len(first) + 1)
        if axis is None or len(parts) != len(ins) or any(
                len(p) != len(first) or p[:axis - 1] + p[axis:] != first[:axis - 1] + first[axis:] for p in parts):
            return None
        return [(*first[:axis - 1], sum(p[axis - 1] for p in parts), *first[axis:])]
    if op == "Gather" and len(ins) == 2 and ins[1] not in shapes:
        axis = _axis(_attr(node, "axis", 0), len(first) + 1)
        index_shape = constants.shape(ins[1])
        if axis is None or index_shape is None or constants.ints(ins[1]) is None:
            return None
        return [(*first[:axis - 1], *index_shape, *first[axis:])]
    if op in ("Squeeze", "Unsqueeze"):
        given = constants.ints(ins[1]) if len(ins) == 2 else _attr(node, "axes")
        return _squeezed(first, list(given) if given else None, op == "Unsqueeze")
    return None


def _axis(axis: int | None, rank: int) -> int | None:
    """A non-negative axis other than the rows', else None."""
    if axis is None or not -rank <= axis < rank:
        return None
    axis = axis + rank if axis < 0 else axis
    return axis or None


def _reshaped(rows: Shape, target: list[int]) -> Shape | None:
    """The row shape after Reshape(target), if it keeps the rows as rows."""
    if not target or target[0] not in (0, -1):
        return None
    rest, size = target[1:], math.prod(rows)
    dims = [rows[k] if d == 0 and k < len(rows) else d for k, d in enumerate(rest)]
    if any(d == 0 for d in dims) or dims.count(-1) > (1 if target[0] == 0 else 0):
        return None
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known <= 0 or size % known:
            return None
        dims[dims.index(-1)] = size // known
    return tuple(dims) if math.prod(dims) == size and all(d > 0 for d in dims) else None


def _squeezed(rows: Shape, axes: list[int] | None, unsqueeze: bool) -> list[Shape] | None:
    if not axes:
        return None
    rank = len(rows) + 1 + (len(axes) if unsqueeze else 0)
    normal = [_axis(a, rank) for a in axes]
    if any(a is None for a in normal) or len(set(normal)) != len(normal):
        return None
    if unsqueeze:
        out, it = [], iter(rows)
        for k in range(1, rank):
            out.append(1 if k in normal else next(it))
        return [tuple(out)]
    if any(rows[a - 1] != 1 for a in normal):  # type: ignore[operator]
        return None
    return [tuple(d for k, d in enumerate(rows, start=1) if k not in normal)]


def _broadcast(ins: list[str], shapes: Mapping[str, Shape], constants: _Constants) -> list[Shape] | None:
    """Row shape of an element-wise operator over cone tensors of one rank and constants below it."""
    inside = [shapes[t] for t in ins if t in shapes]
    if not inside or any(len(s) != len(inside[0]) for s in inside):
        return None
    rank = len(inside[0]) + 1
    operands: list[Shape] = list(inside)
    for t in ins:
        if t in shapes:
            continue
        shape = constants.shape(t)
        if shape is None or len(shape) > rank or (len(shape) == rank and shape[0] != 1):
            return None  # a constant that could reach the rows' axis
        operands.append(shape[1:] if len(shape) == rank else shape)
    try:
        out = np.broadcast_shapes(*operands)
    except ValueError:
        return None
    return [tuple(int(d) for d in out)] if len(out) == rank - 1 else None


class CodedBackend(BesideExported):
    """A backend on the rewritten graph that takes the original inputs, coded or not.

    ``codes`` maps each rewritten string input to its codes input. ``exported``, if
    given, is a backend on the graph as exported: it runs every call where no column
    came coded, which then pays for no Gather. Everything but ``run``, ``run_proba``,
    ``run_bound``, ``session`` and ``close`` is the inner backend's (``engine`` too).
    """

    def __init__(self, inner: Any, codes: Mapping[str, str], exported: Any = None) -> None:
        super().__init__(inner, exported)
        self._codes = dict(codes)
        self.coded_inputs = frozenset(codes)
        hidden = set(codes.values())
        self.input_names = [n for n in inner.input_names if n not in hidden]
        if hasattr(inner, "run_proba"):
            self.run_proba = self._run_proba

    def feeds(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """``feeds`` for the rewritten graph: each coded input as its distinct values and codes."""
        out = dict(feeds)
        for name, codes_name in self._codes.items():
            value = out.get(name)
            if value.__class__ is CodedColumn:
                out[name] = value.categories
                out[codes_name] = value.codes
            elif value is not None:
                out[codes_name] = _identity(value)
        return out

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        exported = self._exported
        if exported is not None:
            for name in self._codes:  # (a loop, not any(): this is the one-record path too)
                if feeds.get(name).__class__ is CodedColumn:
                    break
            else:
                return exported.run(feeds, outputs)
        return self._inner.run(self.feeds(feeds), outputs)

    def _run_proba(self, feeds: Mapping[str, Any], name: str, classes: Any) -> Any:
        return self._inner.run_proba(self.feeds(feeds), name, classes)

    def run_bound(self, feeds: Any, outputs: Sequence[str] | None = None) -> list[Any]:
        if self._exported is not None:
            return self._exported.run_bound(feeds, outputs)
        if not isinstance(feeds, Mapping) and len(self.input_names) == 1:
            feeds = {self.input_names[0]: feeds}
        return self._inner.run_bound(self.feeds(feeds) if isinstance(feeds, Mapping) else feeds,
                                     outputs)


_IDENTITY = np.arange(1 << 16, dtype=np.int64)
_IDENTITY.flags.writeable = False


def _identity(value: Any) -> np.ndarray:
    """Codes 0..N-1 for a value given whole (N: its first axis; an OrtValue's ``shape()``)."""
    shape = getattr(value, "shape", None)
    if callable(shape):
        shape = shape()
    n = int(shape[0]) if shape else 1
    # A slice of one read-only array: no allocation per call for the usual batch sizes.
    return _IDENTITY[:n] if n <= len(_IDENTITY) else np.arange(n, dtype=np.int64)
