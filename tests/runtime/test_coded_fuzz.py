"""Random graphs over a string column: the rewritten graph must answer as the exported one, to the bit.

Each graph is a random chain of the operators a cone may take (encoders, casts,
reshapes, concatenations, squeezes, gathers, comparisons, Where) mixed with ones
that mix rows or read a second, numeric input (Flatten at axis 0, Reshape to one
row, Concat on the rows, ReduceSum over the rows, Add of a per-row input). Those
must stay outside the cone; whatever the rewrite decides, the answers must not move.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from modelpack._runtime.coded import rewrite

ort = pytest.importorskip("onnxruntime")

WORDS = ["a", "b", "c", "dd", ""]
ELEM = {"s": TensorProto.STRING, "i": TensorProto.INT64, "f": TensorProto.FLOAT, "b": TensorProto.BOOL}


class _Builder:
    """A graph being drawn: its tensors as (name, kind, row shape), nodes and constants."""

    def __init__(self, width: int) -> None:
        self.tensors: list[tuple[str, str, tuple[int, ...]]] = [("s", "s", (width,))]
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self.per_row_used = False

    def name(self) -> str:
        return f"t{len(self.nodes)}"

    def const(self, values: np.ndarray) -> str:
        name = f"c{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(values, name))
        return name

    def add(self, op: str, inputs: list[str], kind: str, shape: tuple[int, ...] | None, **attrs: Any) -> None:
        out = self.name()
        domain = "ai.onnx.ml" if op in ("LabelEncoder", "OneHotEncoder", "ArrayFeatureExtractor") else ""
        self.nodes.append(helper.make_node(op, inputs, [out], domain=domain, **attrs))
        if shape is not None:  # None: rows mixed, nothing is drawn from it again
            self.tensors.append((out, kind, shape))


def _step(b: _Builder, draw: Any) -> None:
    name, kind, shape = draw(st.sampled_from(b.tensors))
    size = math.prod(shape)
    choices = ["reshape", "reshape_mix", "flatten", "flatten0", "unsqueeze", "concat", "concat0", "cast"]
    choices += {"s": ["label", "onehot"], "i": ["onehot", "equal", "label_int", "reducesum"],
                "f": ["where", "add_row", "reducesum", "less"], "b": ["not", "where_b"]}[kind]
    if len(shape) >= 1:
        choices += ["gather1", "afe"]
    if len(shape) >= 1 and shape[0] == 1:
        choices.append("squeeze")
    op = draw(st.sampled_from(choices))
    rank = len(shape) + 1
    if op == "label":
        keys = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True))
        b.add("LabelEncoder", [name], "i", shape, keys_strings=keys, values_int64s=list(range(len(keys))),
              default_int64=-1)
    elif op == "label_int":
        b.add("LabelEncoder", [name], "f", shape, keys_int64s=[-1, 0, 1, 2], values_floats=[0.5, 1.5, 2.5, 3.5],
              default_float=-2.0)
    elif op == "onehot":
        cats = {"cats_strings": ["a", "b", "zz"]} if kind == "s" else {"cats_int64s": [-1, 0, 2]}
        b.add("OneHotEncoder", [name], "f", (*shape, 3), **cats, zeros=1)
    elif op == "cast" and kind != "s":
        to = {"i": TensorProto.FLOAT, "f": TensorProto.INT64, "b": TensorProto.INT64}[kind]
        b.add("Cast", [name], "f" if to == TensorProto.FLOAT else "i", shape, to=to)
    elif op == "reshape":
        b.add("Reshape", [name, b.const(np.array([-1, size], dtype=np.int64))], kind, (size,))
    elif op == "reshape_mix" and size > 1:
        b.add("Reshape", [name, b.const(np.array([-1, 1], dtype=np.int64))], kind, None)
    elif op == "flatten":
        b.add("Flatten", [name], kind, (size,), axis=1)
    elif op == "flatten0":
        b.add("Flatten", [name], kind, None, axis=0)
    elif op == "unsqueeze":
        axis = draw(st.integers(1, rank))
        out = list(shape)
        out.insert(axis - 1, 1)
        b.add("Unsqueeze", [name, b.const(np.array([axis], dtype=np.int64))], kind, tuple(out))
    elif op == "squeeze":
        b.add("Squeeze", [name, b.const(np.array([1], dtype=np.int64))], kind, shape[1:])
    elif op == "concat":
        b.add("Concat", [name, name], kind, (*shape[:-1], shape[-1] * 2) if shape else None, axis=-1)
    elif op == "concat0":
        b.add("Concat", [name, name], kind, None, axis=0)
    elif op == "gather1":
        index = draw(st.integers(0, shape[0] - 1))
        b.add("Gather", [name, b.const(np.array([index], dtype=np.int64))], kind, (1, *shape[1:]), axis=1)
    elif op == "afe" and kind != "b":
        index = draw(st.integers(0, shape[-1] - 1))
        b.add("ArrayFeatureExtractor", [name, b.const(np.array([index], dtype=np.int64))], kind,
              (*shape[:-1], 1))
    elif op == "equal":
        b.add("Equal", [name, b.const(np.array([1], dtype=np.int64))], "b", shape)
    elif op == "less":
        b.add("Less", [name, b.const(np.array([0.5], dtype=np.float32))], "b", shape)
    elif op == "not":
        b.add("Not", [name], "b", shape)
    elif op == "where":
        cond = b.const(np.array([True, False] * (shape[-1] // 2 + 1), dtype=bool)[:shape[-1]]) if shape else None
        if cond is not None:
            b.add("Where", [cond, name, b.const(np.array([7.0], dtype=np.float32))], "f", shape)
    elif op == "where_b":
        b.add("Where", [name, b.const(np.array([1], dtype=np.int64)), b.const(np.array([2], dtype=np.int64))],
              "i", shape)
    elif op == "reducesum":
        b.add("ReduceSum", [name, b.const(np.array([0], dtype=np.int64))], kind, None, keepdims=1)
    elif op == "add_row" and shape == (1,):
        b.per_row_used = True
        b.add("Add", [name, "f"], "f", shape)


@st.composite
def graphs(draw: Any) -> tuple[bytes, int]:
    width = draw(st.integers(1, 2))
    b = _Builder(width)
    if draw(st.booleans()):  # most real graphs start with an encoder
        keys = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True))
        b.add("LabelEncoder", ["s"], "i", (width,), keys_strings=keys, values_int64s=list(range(len(keys))),
              default_int64=-1)
    for _ in range(draw(st.integers(1, 7))):
        _step(b, draw)
    if not b.nodes:
        b.add("Identity", ["s"], "s", (width,))
    outs = {b.nodes[-1].output[0]} | set(draw(st.lists(st.sampled_from([n.output[0] for n in b.nodes]), max_size=2)))
    kinds = {n: k for n, k, _ in b.tensors}
    elem = {o: ELEM[kinds[o]] if o in kinds else _kind_of(b, o) for o in outs}
    inputs = [helper.make_tensor_value_info("s", TensorProto.STRING, ["N", width])]
    if b.per_row_used:
        inputs.append(helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(b.nodes, "fuzz", inputs,
                              [helper.make_tensor_value_info(o, elem[o], None) for o in sorted(outs)],
                              initializer=b.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    return model.SerializeToString(), width


def _kind_of(b: _Builder, name: str) -> int:
    """The element type of an output drawn from nothing afterwards (rows mixed): its input's, or the op's."""
    node = next(n for n in b.nodes if n.output[0] == name)
    kinds = {n: k for n, k, _ in b.tensors}
    return ELEM[kinds.get(node.input[0], "f")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.integers(0, 2**32 - 1))
def test_a_random_graph_answers_alike_rewritten(drawn: tuple[bytes, int], seed: int) -> None:
    data, width = drawn
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 40))
    words = np.array(rng.choice(WORDS[: int(rng.integers(1, len(WORDS) + 1))], size=(rows, width)), dtype=object)
    feeds = {"s": words}
    try:
        original = ort.InferenceSession(data)
    except Exception:  # noqa: BLE001  (a drawn graph ONNX Runtime will not load: nothing to compare)
        return
    if "f" in [i.name for i in original.get_inputs()]:
        feeds["f"] = rng.normal(size=(rows, 1)).astype(np.float32)
    try:
        expected = original.run(None, feeds)
    except Exception as exc:  # noqa: BLE001  (refused on these rows: the rewritten graph must refuse too)
        expected = exc
    found = rewrite(data, ["s"])
    if found is None:
        return
    rewritten, codes = found
    session = ort.InferenceSession(rewritten)
    categories, inverse = np.unique(words.astype(str), axis=0, return_inverse=True)
    for fed in ({**feeds, codes["s"]: np.arange(rows, dtype=np.int64)},
                {**feeds, "s": categories.astype(object), codes["s"]: inverse.reshape(-1).astype(np.int64)}):
        if isinstance(expected, Exception):
            with pytest.raises(Exception):  # noqa: B017, PT011  (onnxruntime's own error types)
                session.run(None, fed)
            continue
        for ours, theirs in zip(session.run(None, fed), expected, strict=True):
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
            assert np.array_equal(ours, theirs)
