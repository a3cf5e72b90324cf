"""Edits to the ONNX graph CatBoost writes, so that it agrees with the manifest.

CatBoost names its input ``features`` and a regressor's output ``predictions``
with shape ``[N]`` although it computes ``[N, 1]`` (the converter declares the
manifest's names and shapes with :func:`modelpack.formats.onnx.declare_signature`);
it leaves the exponential of log-link losses (Poisson, Tweedie) out of the graph;
and a classifier gives its probabilities as a ZipMap (a list of dicts), which
callers may prefer as a tensor. The two last are mended here.
"""

from __future__ import annotations

from typing import Any

from modelpack.plugin import rename_values

__all__ = ["add_exp", "drop_zipmap"]

# Exp needs the default domain, which CatBoost's graphs (IR 3, ai.onnx.ml only) do not import.
_DEFAULT_OPSET = 13
_MIN_IR_VERSION = 7


def add_exp(model: Any, output: str) -> None:
    """Append ``Exp`` to ``output``: CatBoost predicts exp(raw) for its log-link losses."""
    from onnx import helper

    raw = f"{output}_log"
    rename_values(model.graph, {output: raw}, graph_outputs=False)
    model.graph.node.append(helper.make_node("Exp", [raw], [output], name="log_link"))
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", _DEFAULT_OPSET))
    model.ir_version = max(model.ir_version, _MIN_IR_VERSION)


def drop_zipmap(model: Any, output: str, n_classes: int) -> None:
    """Replace the ZipMap that makes ``output`` by the probability tensor it reads."""
    from onnx import TensorProto, helper

    graph = model.graph
    zipmap = next(n for n in graph.node if n.op_type == "ZipMap" and output in n.output)
    tensor = zipmap.input[0]
    graph.node.remove(zipmap)
    rename_values(graph, {tensor: output}, graph_outputs=False)
    position = next(i for i, v in enumerate(graph.output) if v.name == output)
    graph.output.remove(graph.output[position])
    graph.output.insert(position, helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                                                ["N", n_classes]))

