"""What an ONNX file declares: a classifier recognised from its outputs, whatever computes them."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelpack
from modelpack._formats.onnx import describe


def _linear_classifier(classes, *, label_type=TensorProto.STRING, extra_output=False, columns=None):
    """Scores by MatMul, probabilities by Sigmoid, the label gathered from a constant by ArgMax."""
    n = len(classes)
    constant = (helper.make_tensor("classes", TensorProto.STRING, [n], [c.encode() for c in classes])
                if label_type == TensorProto.STRING else helper.make_tensor("classes", label_type, [n], classes))
    weights = helper.make_tensor("W", TensorProto.FLOAT, [3, n], np.arange(3 * n, dtype=np.float32) / 10)
    nodes = [helper.make_node("MatMul", ["X", "W"], ["scores"]),
             helper.make_node("Sigmoid", ["scores"], ["probabilities"]),
             helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
             helper.make_node("Gather", ["classes", "index"], ["gathered"]),
             helper.make_node("Identity", ["gathered"], ["label"])]
    outputs = [helper.make_tensor_value_info("label", label_type, ["N"]),
               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", columns or n])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", n]))
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
                              outputs, initializer=[constant, weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_plain_operators_with_label_and_probabilities_are_a_classifier(tmp_path):
    model = _linear_classifier(["cat", "dog", "eel"])
    onnx.save(model, tmp_path / "m.onnx")
    manifest = modelpack.pack(tmp_path / "m.onnx", tmp_path / "m.mpk")
    assert manifest.task == "classification" and manifest.classes == ("cat", "dog", "eel")
    assert {o.name: o.role for o in manifest.outputs} == {"label": "label", "probabilities": "probabilities"}
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    with modelpack.load(tmp_path / "m.mpk") as m:
        assert list(m.predict(X)) == list(m.run(X)["label"])
        np.testing.assert_array_equal(m.predict_proba(X), m.run(X)["probabilities"])


def test_integer_classes_are_read_from_the_gathered_constant():
    desc = describe(_linear_classifier([3, 7], label_type=TensorProto.INT64).SerializeToString(), name="m.onnx")
    assert desc.task == "classification" and desc.classes == (3, 7)


@pytest.mark.parametrize("case", ["third output", "columns disagree", "bad utf-8", "short data", "huge table"])
def test_what_is_not_plainly_a_classifier_stays_unclaimed(case):
    if case == "third output":  # e.g. a detector's boxes, labels and scores
        desc = describe(_linear_classifier(["a", "b"], extra_output=True).SerializeToString(), name="m.onnx")
        assert desc.task is None and desc.classes is None
        return
    model = _linear_classifier(["a", "b"], columns=3 if case == "columns disagree" else None)
    table = model.graph.initializer[0]
    if case == "bad utf-8":
        table.string_data[0] = b"\xff\xfe"
    elif case == "short data":  # a hostile header: more classes declared than held
        table.dims[0] = 5
    elif case == "huge table":  # nothing is allocated for what a header declares
        table.dims[0] = 10**12
    desc = describe(model.SerializeToString(), name="m.onnx")
    assert desc.task == "classification" and desc.classes is None


@pytest.mark.parametrize("binary", [False, True])
def test_skl2onnx_float64_pipeline_packs_as_a_classifier(tmp_path, binary):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(0).normal(size=(80, 3))
    y = np.array(["no", "yes"])[(X[:, 0] > 0).astype(int)] if binary else np.array(["a", "b", "c"])[
        np.digitize(X[:, 0], [-0.4, 0.4])]
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={LogisticRegression: {"zipmap": False}})
    assert not {n.op_type for n in onx.graph.node} & {"LinearClassifier", "ZipMap"}  # plain operators
    onnx.save(onx, tmp_path / "pipe.onnx")
    manifest = modelpack.pack(tmp_path / "pipe.onnx", tmp_path / "pipe.mpk", sample=X[:10])
    assert manifest.task == "classification" and manifest.classes == tuple(pipe.classes_)
    with modelpack.load(tmp_path / "pipe.mpk") as m:
        np.testing.assert_array_equal(m.predict(X), pipe.predict(X))
        np.testing.assert_allclose(m.predict_proba(X), pipe.predict_proba(X), atol=1e-9)


def test_labels_that_are_the_argmin_of_distances_are_a_clusterers_not_a_classifiers():
    model = _linear_classifier([0, 1, 2], label_type=TensorProto.INT64)
    argmax = next(n for n in model.graph.node if n.op_type == "ArgMax")
    argmax.op_type = "ArgMin"  # KMeans: the nearest centre, from a distance matrix
    desc = describe(model.SerializeToString(), name="m.onnx")
    assert desc.task is None and desc.classes is None


def test_skl2onnx_kmeans_packs_as_what_it_is(tmp_path):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.cluster import KMeans

    X = np.random.default_rng(0).normal(size=(60, 3))
    onnx.save(skl2onnx.to_onnx(KMeans(3, n_init=2, random_state=0).fit(X), X[:1].astype(np.float32)),
              tmp_path / "km.onnx")
    assert modelpack.pack(tmp_path / "km.onnx", tmp_path / "km.mpk").task != "classification"
