"""What onnxruntime's refusals mean, and the fix that fits each.

onnxruntime reports most failures as one of a few status codes (FAIL, INVALID_GRAPH,
NOT_IMPLEMENTED) whose text tells the cases apart: an operator no opset defines, a
custom operator, a type an operator does not take, a type this build has no kernel
for, a node that fails on the given inputs. Each pattern below gets its own message
and fix; anything else keeps the status code's general advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Explained", "explain"]

_CHECKER = "onnx.checker.check_model(onnx.load(path), full_check=True) names the node"
_UPGRADE = "pip install -U onnxruntime"


@dataclass(frozen=True)
class Explained:
    """The message and fix for one onnxruntime refusal (its error class stays the status code's)."""

    message: str
    fix: str


#: (what onnxruntime says, our message, our fix); the messages are formatted with the
#: pattern's groups, ``version`` (onnxruntime's) and ``checker``/``upgrade`` (the commands).
_CASES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"No Op registered for (?P<op>[\w.]+) with domain_version of (?P<opset>\d+)"),
     "the model uses operator {op}, which opset {opset} of its domain does not define",
     "Re-export the model with standard ONNX operators ({checker}); if {op} is newer than onnxruntime "
     "{version}, upgrade it ({upgrade})."),
    (re.compile(r"(?P<domain>[\w.]+):(?P<op>[\w.]+)\(-?\d+\) is not a registered function/op"),
     "the model uses the custom operator {op} of domain {domain}, which onnxruntime {version} does not have",
     "Re-export the model without custom operators: modelpack runs standard ONNX and ONNX Runtime's own "
     "operators only, and loads no custom-operator libraries."),
    (re.compile(r"Could not find an implementation for (?P<op>[\w.]+)\((?P<opset>\d+)\)"),
     "onnxruntime {version} has no implementation of {op} (opset {opset}) for the types this model gives it",
     "Re-export the model so that {op} gets a type onnxruntime implements (float32 rather than "
     "bfloat16/float16 or float64, as a rule), or try a newer onnxruntime ({upgrade})."),
    (re.compile(r"Type '(?P<type>[^']+)' of input parameter \((?P<input>[^)]*)\) of operator \((?P<op>[\w.]+)\)"),
     "the model gives operator {op} a {type} input ({input}), which the operator does not take",
     "The model file is malformed: re-export it ({checker})."),
    (re.compile(r"Non-zero status code returned while running (?P<op>[\w.]+) node\..*?Status Message: "
                r"(?:\S+:\d+ )?(?:\S+\([^)]*\) )?(?P<status>[^\n]{0,300})", re.DOTALL),
     "the model failed in its {op} node on these inputs: {status}",
     "Check the inputs' shapes and values against Model.inputs (a fixed size the model expects, a count it "
     "reshapes to); if they match, the model itself fails on them: tell its author which node."),
    (re.compile(r"Exception during initialization: (?:\S+:\d+ )?(?P<detail>[^\n]{0,300})"),
     "onnxruntime {version} refused a node's settings while preparing the model: {detail}",
     "The model file sets an attribute onnxruntime does not accept: re-export it ({checker}), or run it with "
     "the onnxruntime that made it (source.environment in the manifest)."),
)


def explain(text: str, version: str) -> Explained | None:
    """The explanation of onnxruntime's error ``text``, or None when no pattern fits.

    Example
    -------
    >>> explain("Fatal error: my.ops:MyOp(-1) is not a registered function/op", "1.32.0").message
    'the model uses the custom operator MyOp of domain my.ops, which onnxruntime 1.32.0 does not have'
    """
    for pattern, message, fix in _CASES:
        found = pattern.search(text)
        if found:
            words = {k: v.strip() for k, v in found.groupdict().items()}
            words.update(version=version, checker=_CHECKER, upgrade=_UPGRADE)
            return Explained(message.format(**words), fix.format(**words))
    return None
