"""Special functions in double from ONNX operators, against mpmath at 40 digits."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from modelpack._formats.pmml_compile import special
from modelpack._formats.pmml_compile.graph import Graph


def _graph_function(method: str) -> Any:
    """``special.<method>`` as a function of a double array, run on ONNX Runtime."""
    import onnxruntime as ort

    g = Graph()
    g.inputs.append(onnx.helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [None]))
    g.batch = "x"
    out = getattr(special, method)(g, "x")
    g.outputs.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.DOUBLE, [None]))
    session = ort.InferenceSession(g.model(), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": np.asarray(x, dtype=np.float64)})[0]


def _both_signs(low: float, high: float, n: int) -> np.ndarray:
    magnitudes = np.geomspace(low, high, n)
    return np.concatenate([-magnitudes, magnitudes])


# Phi down to its last normal double (x = -37.5), across Cody's three ranges (|x| = 0.707 and
# 5.66) and into the upper tail where it rounds to 1; arctan across the whole double range.
ACCURACY_GRIDS = {
    "normal_cdf": np.concatenate([np.linspace(-37.5, 9.0, 9301), _both_signs(1e-300, 37.5, 2000),
                                  np.linspace(-0.8, 0.8, 1601), np.linspace(-5.8, -5.5, 301)]),
    "atan": np.concatenate([np.linspace(-5.0, 5.0, 10001), _both_signs(1e-300, 1e300, 3000)]),
    "cauchy_cdf": np.concatenate([np.linspace(-5.0, 5.0, 10001), _both_signs(1e-300, 1e300, 3000)]),
}


def _reference(method: str, x: float) -> float:
    import mpmath

    v = mpmath.mpf(x)
    if method == "normal_cdf":
        return float(mpmath.ncdf(v))
    if method == "atan":
        return float(mpmath.atan(v))
    # the lower tail as arctan(-1/x)/pi: 1/2 + arctan(x)/pi would cancel at any working precision
    return float(mpmath.atan(-1 / v) / mpmath.pi if x < 0 else 0.5 + mpmath.atan(v) / mpmath.pi)


@pytest.mark.parametrize("method", ["normal_cdf", "atan", "cauchy_cdf"])
def test_double_distribution_functions_are_accurate_to_the_last_digits(method: str) -> None:
    mpmath = pytest.importorskip("mpmath")
    x = ACCURACY_GRIDS[method]
    with mpmath.workdps(40):
        want = np.array([_reference(method, v) for v in x])
    got = _graph_function(method)(x)
    error = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float64).tiny)  # arctan(0) is 0
    worst = int(np.argmax(error))
    assert error[worst] <= 1e-14, f"{method}({x[worst]!r}) = {got[worst]!r}, not {want[worst]!r}"


def test_distribution_functions_at_the_edges() -> None:
    phi, atan, cauchy = (_graph_function(m) for m in ("normal_cdf", "atan", "cauchy_cdf"))
    edges = np.array([-np.inf, np.inf, np.nan, -40.0, -38.5])
    # Phi(-40) and Phi(-38.5) are below the smallest double (pmml4s gives 0 too); missing stays missing
    np.testing.assert_array_equal(phi(edges), [0.0, 1.0, np.nan, 0.0, 0.0])
    np.testing.assert_allclose(phi(np.array([-30.0, -38.0])), [4.906713927148187e-198, 2.88542835e-316],
                               rtol=1e-14)
    np.testing.assert_array_equal(atan(edges[:3]), [-np.pi / 2, np.pi / 2, np.nan])
    np.testing.assert_array_equal(cauchy(edges[:3]), [0.0, 1.0, np.nan])
    np.testing.assert_allclose(cauchy(np.array([-1e300])), [1 / (np.pi * 1e300)], rtol=1e-15)
