"""The ONNX graph under construction, and the values a PMML document computes in it.

Every value is a 1-D double tensor of the batch: a number, NaN when missing. A
categorical string value is held as its code in a vocabulary known when the graph
is built (``Value.vocab``): code ``i`` is ``vocab[i]``, ``-1`` a string outside
the vocabulary, NaN missing. Booleans are 1.0 / 0.0, NaN when unknown, which is
PMML's three-valued logic. Doubles throughout: PMML computes in double.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MAX_GRAPH_NODES", "MISSING", "ML_OPSET", "NotCompiled", "Graph", "OPSET", "Value", "code_table"]

OPSET = 18
ML_OPSET = 3
#: The string a missing string input or output is carried as: no data holds it.
MISSING = "\x00modelpack:missing"
#: The most ONNX nodes and constants one compiled graph holds. The document is attacker-controlled
#: and compiled at load: past this (a million segments, a table of a million rows) the compiler
#: stops and the evaluator runs the model, so compiling stays within seconds. Tree nodes live in
#: the tree operator's attributes and have their own limit (``forest.MAX_NODES``).
MAX_GRAPH_NODES = 200_000
#: Metadata key of a compiled model that must be run this many rows at a time (or fewer):
#: it holds a tensor of every row against every training instance.
ROWS_PER_CALL = "modelpack.rows_per_call"


class NotCompiled(Exception):
    """The document holds something the compiler does not translate; the message names it."""

    def __init__(self, element: str, reason: str) -> None:
        super().__init__(f"<{element}>: {reason}")
        self.element = element
        self.reason = reason


@dataclass(frozen=True)
class Value:
    """A tensor of the graph: numbers, or codes into ``vocab`` for categorical strings."""

    name: str
    vocab: tuple[str, ...] | None = None

    @property
    def categorical(self) -> bool:
        return self.vocab is not None

    @cached_property
    def codes(self) -> dict[str, int]:
        """Each word's code (its first place in ``vocab``): one look-up, not a scan of the vocabulary."""
        return code_table(self.vocab or ())


def code_table(vocab: tuple[str, ...]) -> dict[str, int]:
    """``{word: its first index in vocab}``."""
    table: dict[str, int] = {}
    for i, word in enumerate(vocab):
        table.setdefault(word, i)
    return table


class Graph:
    """Nodes, constants and names of one ONNX graph, built op by op."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}
        self._filled: dict[float, str] = {}
        self._split: dict[tuple[str, int, int], list[str]] = {}
        self._columns: dict[tuple[str, int, int], str] = {}
        self._stacked: dict[str, tuple[list[str], int]] = {}
        #: An input of the batch's length, for constants that fill it.
        self.batch: str | None = None
        #: The most rows one call should take (:data:`ROWS_PER_CALL`); None: any number.
        self.rows_per_call: int | None = None

    def name(self, hint: str) -> str:
        self._count += 1
        if self._count > MAX_GRAPH_NODES:
            raise NotCompiled("PMML", f"the compiled graph would hold more than {MAX_GRAPH_NODES} "
                                      "operators and constants")
        return f"{hint}_{self._count}"

    def const(self, value: Any, dtype: Any = np.float64) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.tobytes() if array.dtype != object else repr(array.tolist()).encode(),
               array.shape)
        if key not in self._constants:
            name = self.name("c")
            if array.dtype == object:
                words: Any = [str(v).encode() for v in array.ravel()]
                tensor = helper.make_tensor(name, TensorProto.STRING, array.shape, words)
            else:
                tensor = numpy_helper.from_array(array, name)
            self.initializers.append(tensor)
            self._constants[key] = name
        return self._constants[key]

    def op(self, op_type: str, *inputs: str, domain: str = "", outputs: int = 1, **attrs: Any) -> Any:
        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain, **attrs))
        return names[0] if outputs == 1 else names

    # -- helpers used everywhere -----------------------------------------------------------
    def stack(self, columns: list[str], axis: int = 1) -> str:
        """The 1-D tensors ``columns`` side by side, ``[N, len(columns)]`` (as rows,
        ``[len(columns), N]``, with ``axis=0``).

        ONNX Runtime stacks rows by whole copies and columns element by element (100k
        rows of 10 doubles: 0.24 against 0.49 ms), so a matrix that is read transposed
        is better stacked as rows. :meth:`column` gives a stacked column back as the
        tensor it was, with no Split.
        """
        axes = self.const([axis], dtype=np.int64)
        x = self.op("Concat", *[self.op("Unsqueeze", c, axes) for c in columns], axis=axis)
        self._stacked[x] = (list(columns), axis)
        return x

    def column(self, x: str, j: int, width: int, axis: int = 1) -> str:
        """Column ``j`` of the ``[N, width]`` tensor ``x`` (row ``j`` of ``[width, N]`` with
        ``axis=0``), as a 1-D tensor.

        One Split serves every column of ``x``: ONNX Runtime's Gather along axis 1 copies
        element by element (measured on 100k rows of two doubles: Gather 0.96 ms, Split 0.10 ms).
        """
        stacked = self._stacked.get(x)
        if stacked is not None and stacked[1] == axis:
            return stacked[0][j]
        if (x, j, axis) not in self._columns:
            if (x, width, axis) not in self._split:
                self._split[(x, width, axis)] = (self.op("Split", x, axis=axis, num_outputs=width, outputs=width)
                                                 if width > 1 else [x])
            self._columns[(x, j, axis)] = self.op("Squeeze", self._split[(x, width, axis)][j],
                                                  self.const([axis], dtype=np.int64))
        return self._columns[(x, j, axis)]

    def sigmoid(self, x: str) -> str:
        """``1 / (1 + exp(-x))``, as the PMML evaluators compute it; NaN stays NaN.

        Not ONNX's Sigmoid: ONNX Runtime's double Sigmoid takes twice as long (100k rows:
        0.54 ms against 0.28 ms) and gives 0.5 for NaN.
        """
        return self.op("Reciprocal", self.op("Add", self.op("Exp", self.op("Neg", x)), self.const(1.0)))

    def nan(self) -> str:
        return self.const(np.nan)

    def where(self, cond: str, yes: str, no: str) -> str:
        return self.op("Where", cond, yes, no)

    def is_nan(self, x: str) -> str:
        return self.op("IsNaN", x)

    def as_double(self, cond: str) -> str:
        return self.op("Cast", cond, to=TensorProto.DOUBLE)

    def missing_if(self, cond: str, x: str) -> str:
        """``x``, NaN where ``cond`` holds."""
        return self.where(cond, self.nan(), x)

    def fill(self, x: str, value: float) -> str:
        """``x`` with its missing values replaced by ``value``."""
        return self.where(self.is_nan(x), self.const(value), x)

    def const_like(self, value: float) -> str:
        """A double tensor of the batch's length filled with ``value``."""
        if self.batch is None:
            raise NotCompiled("MiningSchema", "the model has no input fields")
        if value not in self._filled:
            shape = self.op("Shape", self.batch)
            self._filled[value] = self.op("ConstantOfShape", shape, value=numpy_helper.from_array(
                np.array([value], dtype=np.float64)))
        return self._filled[value]

    @contextmanager
    def batch_of(self, x: str) -> Iterator[None]:
        """Values built inside are over the rows of ``x``, not the graph's inputs: the constants
        they fill have ``x``'s length (a nearest-neighbour model computes its training
        instances' transformations with the same expressions as the rows')."""
        saved = self.batch, self._filled
        self.batch, self._filled = x, {}
        try:
            yield
        finally:
            self.batch, self._filled = saved

    def missing_like(self) -> str:
        """A double tensor of the batch's length, every value missing."""
        return self.op("Mul", self.const_like(0.0), self.nan())

    def model(self) -> bytes:
        # Values computed on the way but read by no output (a predicted class beside the
        # probabilities asked for) are left out: ONNX Runtime would compute them on every call.
        needed = {o.name for o in self.outputs}
        nodes = []
        for node in reversed(self.nodes):  # built in order: a node's readers come after it
            if needed.intersection(node.output):
                nodes.append(node)
                needed.update(node.input)
        nodes.reverse()
        initializers = [t for t in self.initializers if t.name in needed]
        graph = helper.make_graph(nodes, "pmml", self.inputs, self.outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
                                  producer_name="modelpack-pmml-compiler")
        if self.rows_per_call is not None:
            helper.set_model_props(model, {ROWS_PER_CALL: str(self.rows_per_call)})
        model.ir_version = 8
        return model.SerializeToString()
