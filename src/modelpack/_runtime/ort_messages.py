"""What onnxruntime's refusals mean, and the fix that fits each.

onnxruntime reports most failures as one of a few status codes (FAIL, INVALID_GRAPH,
NOT_IMPLEMENTED) whose text tells the cases apart: an operator no opset defines, a
custom operator, a type an operator does not take, a type this build has no kernel
for, a node that fails on the given inputs. Each pattern below gets its own message
and fix; anything else keeps the status code's general advice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Explained", "explain"]

_CHECKER = "onnx.checker.check_model(onnx.load(path), full_check=True) names the node"


@dataclass(frozen=True)
class Explained:
    """The message and fix for one onnxruntime refusal (its error class stays the status code's)."""

    message: str
    fix: str


def _unknown_op(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"the model uses operator {m['op']}, which opset {m['opset']} of its domain does not define",
        f"Re-export the model with standard ONNX operators ({_CHECKER}); if {m['op']} is newer than "
        f"onnxruntime {version}, upgrade it (pip install -U onnxruntime).")


def _custom_op(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"the model uses the custom operator {m['op']} of domain {m['domain']}, which "
        f"onnxruntime {version} does not have",
        "Re-export the model without custom operators: modelpack runs standard ONNX and ONNX Runtime's own "
        "operators only, and loads no custom-operator libraries.")


def _no_kernel(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"onnxruntime {version} has no implementation of {m['op']} (opset {m['opset']}) "
        "for the types this model gives it",
        f"Re-export the model so that {m['op']} gets a type onnxruntime implements (float32 rather than "
        "bfloat16/float16 or float64, as a rule), or try a newer onnxruntime (pip install -U onnxruntime).")


def _bad_type(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"the model gives operator {m['op']} a {m['type']} input ({m['input']}), which the "
        "operator does not take", f"The model file is malformed: re-export it ({_CHECKER}).")


def _node_failed(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"the model failed in its {m['op']} node on these inputs: {m['status'].strip()}",
        "Check the inputs' shapes and values against Model.inputs (a fixed size the model expects, a "
        "count it reshapes to); if they match, the model itself fails on them: tell its author which node.")


def _init_failed(m: re.Match[str], version: str) -> Explained:
    return Explained(
        f"onnxruntime {version} refused a node's settings while preparing the model: "
        f"{m['detail'].strip()}",
        f"The model file sets an attribute onnxruntime does not accept: re-export it ({_CHECKER}), or run it "
        "with the onnxruntime that made it (source.environment in the manifest).")


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], Explained]], ...] = (
    (re.compile(r"No Op registered for (?P<op>[\w.]+) with domain_version of (?P<opset>\d+)"), _unknown_op),
    (re.compile(r"(?P<domain>[\w.]+):(?P<op>[\w.]+)\(-?\d+\) is not a registered function/op"), _custom_op),
    (re.compile(r"Could not find an implementation for (?P<op>[\w.]+)\((?P<opset>\d+)\)"), _no_kernel),
    (re.compile(r"Type '(?P<type>[^']+)' of input parameter \((?P<input>[^)]*)\) of operator "
                r"\((?P<op>[\w.]+)\)"), _bad_type),
    (re.compile(r"Non-zero status code returned while running (?P<op>[\w.]+) node\..*?Status Message: "
                r"(?:\S+:\d+ )?(?:\S+\([^)]*\) )?(?P<status>[^\n]{0,300})", re.DOTALL), _node_failed),
    (re.compile(r"Exception during initialization: (?:\S+:\d+ )?(?P<detail>[^\n]{0,300})"), _init_failed),
)


def explain(text: str, version: str) -> Explained | None:
    """The explanation of onnxruntime's error ``text``, or None when no pattern fits.

    Example
    -------
    >>> explain("Fatal error: my.ops:MyOp(-1) is not a registered function/op", "1.32.0").message
    'the model uses the custom operator MyOp of domain my.ops, which onnxruntime 1.32.0 does not have'
    """
    for pattern, build in _PATTERNS:
        found = pattern.search(text)
        if found:
            return build(found, version)
    return None
