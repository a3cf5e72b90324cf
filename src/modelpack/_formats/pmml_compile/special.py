"""Special functions in double precision, built from ONNX operators ONNX Runtime runs in double.

ONNX Runtime's Erf and Atan kernels are single precision only; the probit and cauchit
links (RegressionModel, GeneralRegressionModel) need the normal and Cauchy
distribution functions to the last digits, the lower tails included.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph

__all__ = ["atan", "cauchy_cdf", "normal_cdf", "polynomial"]

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


def polynomial(g: Graph, x: str, coefficients: tuple[float, ...]) -> str:
    """``c0 x^n + c1 x^(n-1) + ... + cn`` by Horner's rule; a leading 1 costs no Mul."""
    head, *rest = coefficients
    total = x if head == 1.0 else g.op("Mul", x, g.const(head))
    total = g.op("Add", total, g.const(rest[0]))
    for c in rest[1:]:
        total = g.op("Add", g.op("Mul", total, x), g.const(c))
    return total


def normal_cdf(g: Graph, x: str) -> str:
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
    t = g.op("Abs", x)
    # Phi(-40) is below the smallest double; the bound keeps Floor and Sub away from inf - inf
    t = g.where(g.op("Greater", t, g.const(40.0)), g.const(40.0), t)
    z = g.op("Mul", t, g.const(_SQRT_HALF))
    # |x| <= sqrt(2)/2: 1/2 + erf(x/sqrt(2))/2, no exponential and no cancellation
    u = g.op("Mul", x, g.const(_SQRT_HALF))
    u2 = g.op("Mul", u, u)
    erf = g.op("Div", g.op("Mul", u, polynomial(g, u2, _CODY_ERF_P)), polynomial(g, u2, _CODY_ERF_Q))
    central = g.op("Add", g.const(0.5), g.op("Mul", erf, g.const(0.5)))
    # erfc(z) / exp(-z^2), on (0.5, 4] and beyond
    middle = g.op("Div", polynomial(g, z, _CODY_ERFC_P), polynomial(g, z, _CODY_ERFC_Q))
    w = g.op("Reciprocal", g.op("Mul", z, z))
    ratio = g.op("Div", g.op("Mul", w, polynomial(g, w, _CODY_ASYMPTOTIC_P)),
                    polynomial(g, w, _CODY_ASYMPTOTIC_Q))
    far = g.op("Div", g.op("Sub", g.const(_INV_SQRT_PI), ratio), z)
    scaled = g.where(g.op("Greater", z, g.const(4.0)), far, middle)
    h = g.op("Div", g.op("Floor", g.op("Mul", t, g.const(16.0))), g.const(16.0))
    near = g.op("Exp", g.op("Mul", g.op("Mul", h, h), g.const(-0.5)))
    rest = g.op("Exp", g.op("Mul", g.op("Mul", g.op("Sub", t, h), g.op("Add", t, h)),
                                  g.const(-0.5)))
    tail = g.op("Mul", g.op("Mul", near, rest), g.op("Mul", scaled, g.const(0.5)))
    outer = g.where(g.op("Less", x, g.const(0.0)), tail, g.op("Sub", g.const(1.0), tail))
    return g.where(g.op("Greater", z, g.const(0.5)), outer, central)


def atan(g: Graph, x: str) -> str:
    """arctan(x) in double: ONNX Runtime's Atan is single precision only.

    The argument is reduced as in S. L. Moshier's Cephes library to |r| <= tan(pi/8), by
    arctan(a) = pi/2 + arctan(-1/a) above tan(3 pi/8) and arctan(a) = pi/4 + arctan((a-1)/(a+1))
    above tan(pi/8); arctan(r) is then the Taylor series r - r^3/3 + r^5/5 - ...
    (Abramowitz and Stegun 4.4.42), whose terms past the last one kept are below 2^-56 of r
    for |r| <= tan(pi/8). NaN stays NaN; arctan(+-inf) is +-pi/2.
    """
    a = g.op("Abs", x)
    big = g.op("Greater", a, g.const(_TAN_3PI_8))
    mid = g.op("Greater", a, g.const(_TAN_PI_8))
    r = g.where(big, g.op("Neg", g.op("Reciprocal", a)),
                   g.where(mid, g.op("Div", g.op("Sub", a, g.const(1.0)),
                                           g.op("Add", a, g.const(1.0))), a))
    base = g.where(big, g.const(np.pi / 2), g.where(mid, g.const(np.pi / 4), g.const(0.0)))
    r2 = g.op("Mul", r, r)
    series = g.op("Add", r, g.op("Mul", g.op("Mul", r, r2), polynomial(g, r2, _ATAN_SERIES)))
    value = g.op("Add", base, series)
    return g.where(g.op("Less", x, g.const(0.0)), g.op("Neg", value), value)


def cauchy_cdf(g: Graph, x: str) -> str:
    """The standard Cauchy distribution function 1/2 + arctan(x)/pi.

    Below 0 it is taken as arctan(-1/x)/pi, the same number without the cancellation of
    1/2 - 1/2 + 1/(pi |x|): relative accuracy in the lower tail, as :func:`normal_cdf` has.
    """
    negative = g.op("Less", x, g.const(0.0))
    angle = g.op("Div", atan(g, g.where(negative, g.op("Neg", g.op("Reciprocal", x)), x)),
                    g.const(np.pi))
    return g.where(negative, angle, g.op("Add", g.const(0.5), angle))
