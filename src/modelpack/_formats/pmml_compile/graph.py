"""The ONNX graph under construction, and the values a PMML document computes in it.

Every value is a 1-D double tensor of the batch: a number, NaN when missing. A
categorical string value is held as its code in a vocabulary known when the graph
is built (``Value.vocab``): code ``i`` is ``vocab[i]``, ``-1`` a string outside
the vocabulary, NaN missing. Booleans are 1.0 / 0.0, NaN when unknown, which is
PMML's three-valued logic. Doubles throughout: PMML computes in double.
"""

from __future__ import annotations

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


_SQRT_HALF = 0.70710678118654752440
_INV_SQRT_PI = 0.56418958354775628695
# Cody (1969): erf(u) = u P(u^2) / Q(u^2) for |u| <= 0.5 ...
_CODY_ERF_P = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
               3.77485237685302021e02, 3.20937758913846947e03)
_CODY_ERF_Q = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
               2.84423683343917062e03)
# ... erfc(z) = exp(-z^2) P(z) / Q(z) for 0.5 < z <= 4 ...
_CODY_ERFC_P = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
                6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
                1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_CODY_ERFC_Q = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
                1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
                3.43936767414372164e03, 1.23033935480374942e03)
# ... and erfc(z) = exp(-z^2) (1/sqrt(pi) - w P(w) / Q(w)) / z, w = 1/z^2, for z > 4
_CODY_ASYMPTOTIC_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
                      1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_CODY_ASYMPTOTIC_Q = (1.0, 2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
                      6.05183413124413191e-2, 2.33520497626869185e-3)
_TAN_PI_8 = 0.41421356237309504880  # sqrt(2) - 1
_TAN_3PI_8 = 2.41421356237309504880  # sqrt(2) + 1
#: arctan(r) = r + r^3 S(r^2): S's coefficients (-1)^k / (2k + 1), highest power first
_ATAN_TERMS = 19
_ATAN_SERIES = tuple((-1.0) ** k / (2 * k + 1) for k in range(_ATAN_TERMS, 0, -1))


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

    def polynomial(self, x: str, coefficients: tuple[float, ...]) -> str:
        """``c0 x^n + c1 x^(n-1) + ... + cn`` by Horner's rule; a leading 1 costs no Mul."""
        head, *rest = coefficients
        total = x if head == 1.0 else self.op("Mul", x, self.const(head))
        total = self.op("Add", total, self.const(rest[0]))
        for c in rest[1:]:
            total = self.op("Add", self.op("Mul", total, x), self.const(c))
        return total

    def normal_cdf(self, x: str) -> str:
        """The standard normal distribution function Phi(x) = erfc(-x / sqrt(2)) / 2 in double.

        ONNX Runtime's Erf is single precision only. The three rational approximations of
        W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
        (1969), 631-637: erf on |z| <= 0.5, erfc(z) = exp(-z^2) R(z) on 0.5 < z <= 4, and
        erfc(z) = exp(-z^2) (1/sqrt(pi) - w P(w)/Q(w)) / z with w = 1/z^2 beyond. exp(-x^2/2) is
        taken from x itself, not from z = |x|/sqrt(2): the rounding of z would be multiplied by
        z^2 (1e-13 relative at x = -30). It is the product of exp(-h^2/2), h = |x| rounded down to
        1/16 (h^2 exact), and exp(-(|x| - h)(|x| + h)/2), whose argument is small: the lower tail
        keeps its relative accuracy down to the smallest normal double (x = -37.5). NaN stays NaN.
        """
        t = self.op("Abs", x)
        # Phi(-40) is below the smallest double; the bound keeps Floor and Sub away from inf - inf
        t = self.where(self.op("Greater", t, self.const(40.0)), self.const(40.0), t)
        z = self.op("Mul", t, self.const(_SQRT_HALF))
        # |x| <= sqrt(2)/2: 1/2 + erf(x/sqrt(2))/2, no exponential and no cancellation
        u = self.op("Mul", x, self.const(_SQRT_HALF))
        u2 = self.op("Mul", u, u)
        erf = self.op("Div", self.op("Mul", u, self.polynomial(u2, _CODY_ERF_P)), self.polynomial(u2, _CODY_ERF_Q))
        central = self.op("Add", self.const(0.5), self.op("Mul", erf, self.const(0.5)))
        # erfc(z) / exp(-z^2), on (0.5, 4] and beyond
        middle = self.op("Div", self.polynomial(z, _CODY_ERFC_P), self.polynomial(z, _CODY_ERFC_Q))
        w = self.op("Reciprocal", self.op("Mul", z, z))
        ratio = self.op("Div", self.op("Mul", w, self.polynomial(w, _CODY_ASYMPTOTIC_P)),
                        self.polynomial(w, _CODY_ASYMPTOTIC_Q))
        far = self.op("Div", self.op("Sub", self.const(_INV_SQRT_PI), ratio), z)
        scaled = self.where(self.op("Greater", z, self.const(4.0)), far, middle)
        h = self.op("Div", self.op("Floor", self.op("Mul", t, self.const(16.0))), self.const(16.0))
        near = self.op("Exp", self.op("Mul", self.op("Mul", h, h), self.const(-0.5)))
        rest = self.op("Exp", self.op("Mul", self.op("Mul", self.op("Sub", t, h), self.op("Add", t, h)),
                                      self.const(-0.5)))
        tail = self.op("Mul", self.op("Mul", near, rest), self.op("Mul", scaled, self.const(0.5)))
        outer = self.where(self.op("Less", x, self.const(0.0)), tail, self.op("Sub", self.const(1.0), tail))
        return self.where(self.op("Greater", z, self.const(0.5)), outer, central)

    def atan(self, x: str) -> str:
        """arctan(x) in double: ONNX Runtime's Atan is single precision only.

        The argument is reduced as in S. L. Moshier's Cephes library to |r| <= tan(pi/8), by
        arctan(a) = pi/2 + arctan(-1/a) above tan(3 pi/8) and arctan(a) = pi/4 + arctan((a-1)/(a+1))
        above tan(pi/8); arctan(r) is then the Taylor series r - r^3/3 + r^5/5 - ...
        (Abramowitz and Stegun 4.4.42), whose terms past the last one kept are below 2^-56 of r
        for |r| <= tan(pi/8). NaN stays NaN; arctan(+-inf) is +-pi/2.
        """
        a = self.op("Abs", x)
        big = self.op("Greater", a, self.const(_TAN_3PI_8))
        mid = self.op("Greater", a, self.const(_TAN_PI_8))
        r = self.where(big, self.op("Neg", self.op("Reciprocal", a)),
                       self.where(mid, self.op("Div", self.op("Sub", a, self.const(1.0)),
                                               self.op("Add", a, self.const(1.0))), a))
        base = self.where(big, self.const(np.pi / 2), self.where(mid, self.const(np.pi / 4), self.const(0.0)))
        r2 = self.op("Mul", r, r)
        series = self.op("Add", r, self.op("Mul", self.op("Mul", r, r2), self.polynomial(r2, _ATAN_SERIES)))
        value = self.op("Add", base, series)
        return self.where(self.op("Less", x, self.const(0.0)), self.op("Neg", value), value)

    def cauchy_cdf(self, x: str) -> str:
        """The standard Cauchy distribution function 1/2 + arctan(x)/pi.

        Below 0 it is taken as arctan(-1/x)/pi, the same number without the cancellation of
        1/2 - 1/2 + 1/(pi |x|): relative accuracy in the lower tail, as :meth:`normal_cdf` has.
        """
        negative = self.op("Less", x, self.const(0.0))
        angle = self.op("Div", self.atan(self.where(negative, self.op("Neg", self.op("Reciprocal", x)), x)),
                        self.const(np.pi))
        return self.where(negative, angle, self.op("Add", self.const(0.5), angle))

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
        model.ir_version = 8
        return model.SerializeToString()
