"""Model: predict / predict_proba / run over real sessions, task rules, lifecycle."""

import pickle

import numpy as np
import pytest

import modelpack


@pytest.mark.parametrize("zipmap", [True, False])
def test_classifier_outputs_are_normalised(iris_onnx, iris, tmp_path, zipmap):
    X, _ = iris
    path, clf = iris_onnx(zipmap)
    modelpack.pack(path, tmp_path / "iris.mpk", name="iris", classes=[0, 1, 2])
    with modelpack.load(tmp_path / "iris.mpk") as m:
        np.testing.assert_array_equal(m.predict(X), clf.predict(X))
        proba = m.predict_proba(X)
        assert proba.shape == (150, 3)
        np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)
        assert m.classes.tolist() == [0, 1, 2]
        run = m.run(X[:2])
        assert list(run) == [o.name for o in m.outputs]
        if zipmap:
            assert isinstance(run["output_probability"], list) and set(run["output_probability"][0]) == {0, 1, 2}


def test_classes_are_read_from_the_graph(iris_onnx, tmp_path):
    path, _ = iris_onnx(False)
    modelpack.pack(path, tmp_path / "iris.mpk")
    assert modelpack.inspect(tmp_path / "iris.mpk").classes == (0, 1, 2)


def test_string_classes_keep_their_dtype():
    with modelpack.load("tests/data/golden-1.0") as m:
        labels = m.predict(np.eye(3))
        assert labels.dtype.kind == "U" or labels.dtype == object
        assert set(labels) <= set(m.classes)
        proba = m.predict_proba(np.eye(3))
        np.testing.assert_array_equal(m.classes[np.argmax(proba, axis=1)], labels)


def test_predict_proba_on_a_transform_is_a_task_error(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "add.mpk")
    with modelpack.load(tmp_path / "add.mpk") as m:
        with pytest.raises(modelpack.TaskError, match="needs a classifier"):
            m.predict_proba(np.zeros((1, 4)))
        np.testing.assert_array_equal(m.predict(np.zeros((1, 4))), np.ones((1, 4)))


def test_predict_on_several_outputs_without_roles_points_to_run(multi_io, tmp_path):
    modelpack.pack(multi_io, tmp_path / "multi.mpk")
    with modelpack.load(tmp_path / "multi.mpk") as m:
        with pytest.raises(modelpack.TaskError, match=r"Use run\(\)"):
            m.predict({"num": [[1.0, 2.0]], "word": ["a"], "count": [1]})


def test_model_pickles_by_reopening_its_package(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "add.mpk")
    with modelpack.load(tmp_path / "add.mpk") as m:
        clone = pickle.loads(pickle.dumps(m))
    with clone:
        np.testing.assert_array_equal(clone.predict(np.zeros((1, 4))), np.ones((1, 4)))


def test_closed_model_says_so(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "add.mpk")
    m = modelpack.load(tmp_path / "add.mpk")
    m.close()
    m.close()  # idempotent
    with pytest.raises(modelpack.RuntimeBackendError, match="the model was closed"):
        m.predict(np.zeros((1, 4)))


def test_repr_and_html(iris_onnx, tmp_path):
    path, _ = iris_onnx(False)
    modelpack.pack(path, tmp_path / "iris.mpk", name="iris", version="2.0.0")
    with modelpack.load(tmp_path / "iris.mpk") as m:
        assert repr(m) == ("<modelpack.Model iris 2.0.0: classification, onnx, 3 classes, 1 input(s), "
                           "on CPUExecutionProvider>")
        assert "runs on" in m._repr_html_() and "CPUExecutionProvider" in m._repr_html_()
        assert m.providers == ["CPUExecutionProvider"]


def test_predict_proba_on_a_float_matrix_output_says_how_to_pack_a_classifier(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "other.mpk")
    with modelpack.load(tmp_path / "other.mpk") as m, pytest.raises(modelpack.TaskError) as caught:
        m.predict_proba(np.zeros((2, 4), np.float32))
    assert "task='classification'" in caught.value.fix and "--task classification" in caught.value.fix
    # the fix works: packed with that task, the matrix is the probabilities
    modelpack.pack(add_one, tmp_path / "told.mpk", task="classification")
    with modelpack.load(tmp_path / "told.mpk") as m:
        assert m.predict_proba(np.zeros((2, 4), np.float32)).tolist() == [[1.0] * 4] * 2
