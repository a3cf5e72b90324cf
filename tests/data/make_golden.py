"""Writes tests/data/golden-1.0, the committed package that pins schema version 1.0.

Run once when the format gains a version; never rewrite an existing golden
package: its bytes are what older releases wrote, and readers must keep reading them.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import modelpack


def linear_classifier() -> onnx.ModelProto:
    """A 3-feature, 3-class linear classifier written with ai.onnx.ml operators."""
    node = helper.make_node(
        "LinearClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
        coefficients=[1.0, -1.0, 0.5, -0.5, 1.0, 0.0, 0.0, 0.5, -1.0],
        intercepts=[0.1, -0.2, 0.0], classlabels_strings=["setosa", "versicolor", "virginica"],
        post_transform="SOFTMAX")
    graph = helper.make_graph(
        [node], "golden",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)],
                              producer_name="modelpack-tests", producer_version="1")
    model.ir_version = 8
    return model


if __name__ == "__main__":
    here = Path(__file__).parent
    onnx_path = here / "golden.onnx"
    onnx.save(linear_classifier(), onnx_path)
    sample = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    modelpack.pack(onnx_path, here / "golden-1.0", name="golden", version="1.0.0",
                   description="A tiny linear classifier that pins the package format.",
                   metadata={"licence": "Apache-2.0", "tags": ["test"]}, sample=sample)
    onnx_path.unlink()
