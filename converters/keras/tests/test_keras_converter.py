"""Keras models, tf.functions and SavedModels exported, packed, loaded and run.

Outputs must match TensorFlow's own within the tolerance recorded in the package.
"""

from __future__ import annotations

import numpy as np
import pytest

import modelpack
from modelpack.plugin import find_converter
from modelpack.testing import assert_roundtrip

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

import modelpack_keras  # noqa: E402  (after the importorskip above)

ROWS = 40


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A SavedModel folder with a named serving signature (two outputs)."""

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2))

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="rows")])
        def score(self, rows):
            logits = tf.matmul(rows, self.w)
            return {"logits": logits, "total": tf.reduce_sum(logits, axis=1)}

    scorer = Scorer()
    folder = tmp_path_factory.mktemp("saved") / "scorer"
    tf.saved_model.save(scorer, str(folder), signatures={"scores": scorer.score})
    return folder, scorer


def _dense_classifier() -> keras.Model:
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


# -- the five model families, through the public API ------------------------------------------
def test_mlp_classifier(rng, tmp_path):
    net = _dense_classifier()
    X, X_new = rng.normal(size=(ROWS, 6)), rng.normal(size=(9, 6)).astype(np.float32)
    expected = net.predict(X_new, verbose=0)
    classes = ["cat", "dog", "eel"]
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"probabilities": expected},
                          options={"task": "classification", "classes": classes}) as m:
        assert list(m.classes) == classes
        assert m.predict(X_new).tolist() == [classes[i] for i in expected.argmax(axis=1)]
        assert m.inputs[0].name == "features" and m.inputs[0].shape == ("N", 6)
        assert m.manifest.source.framework == "keras"
        assert m.manifest.source.converter == "tf2onnx"


def test_mlp_regressor_sequential(rng, tmp_path):
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    X, X_new = rng.normal(size=(ROWS, 5)), rng.normal(size=(3, 5)).astype(np.float32)
    expected = net.predict(X_new, verbose=0)
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"value": expected},
                          options={"task": "regression"}) as m:
        assert m.predict(X_new).shape == (3,)
        assert [i.name for i in m.inputs] == ["input"]
        assert m.outputs[0].role == "value"


def test_small_cnn(rng, tmp_path):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(keras.layers.ReLU()(x))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    net = keras.Model(inputs, outputs)
    net.layers[2].moving_variance.assign(np.linspace(0.5, 2.0, 4).astype(np.float32))
    X = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
    X_new = rng.normal(size=(5, 8, 8, 1)).astype(np.float32)
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"output": net.predict(X_new, verbose=0)}) as m:
        assert m.inputs[0].shape == ("N", 8, 8, 1)
        assert m.manifest.task == "other"


def test_two_inputs(rng, tmp_path):
    a, b = keras.Input((4,), name="numbers"), keras.Input((2,), name="flags")
    merged = keras.layers.Concatenate()([a, b])
    net = keras.Model([a, b], [keras.layers.Dense(1, name="score")(merged),
                               keras.layers.Dense(3, name="embedding")(merged)])
    sample = {"numbers": rng.normal(size=(ROWS, 4)), "flags": rng.integers(0, 2, size=(ROWS, 2)).astype(float)}
    new = {"numbers": rng.normal(size=(6, 4)).astype(np.float32),
           "flags": rng.integers(0, 2, size=(6, 2)).astype(np.float32)}
    score, embedding = net.predict([new["numbers"], new["flags"]], verbose=0)
    with assert_roundtrip(net, sample, tmp_path, X=new, expected={"score": score, "embedding": embedding}) as m:
        assert [i.name for i in m.inputs] == ["numbers", "flags"]
        assert [o.name for o in m.outputs] == ["score", "embedding"]


def test_embedding_on_integer_ids(rng, tmp_path):
    ids = keras.Input((7,), dtype="int32", name="ids")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 8)(ids))
    net = keras.Model(ids, keras.layers.Dense(1)(pooled))
    X = rng.integers(0, 50, size=(ROWS, 7))  # int64: cast to the declared int32
    X_new = rng.integers(0, 50, size=(4, 7)).astype(np.int32)
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"value": net.predict(X_new, verbose=0)},
                          options={"task": "regression"}) as m:
        assert m.inputs[0].dtype == "int32"


# -- tf.function, SavedModel, subclassed models ------------------------------------------------
def test_tf_function_with_signature(rng, tmp_path):
    scale = tf.Variable([[2.0, -1.0, 0.5]])

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
    def scaled(x):
        return {"scaled": x * scale, "norm": tf.norm(x, axis=1)}

    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    expected = {k: v.numpy() for k, v in scaled(X).items()}
    with assert_roundtrip(scaled, X, tmp_path, expected=expected) as m:
        assert m.manifest.source.framework == "tensorflow"
        assert m.manifest.metadata["keras_source"] == "tf.function"
        assert m.outputs[1].shape == ("N",)


def test_saved_model_folder(rng, tmp_path, saved_model):
    folder, scorer = saved_model
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    expected = {k: v.numpy() for k, v in scorer.score(X).items()}
    manifest = modelpack_keras.export_saved_model(folder, tmp_path / "s.mpk", sample={"rows": X},
                                                  signature="scores")
    assert manifest.source.model_class == "tensorflow SavedModel"
    assert manifest.name == "scorer"
    with modelpack.load(tmp_path / "s.mpk") as m:
        out = m.run({"rows": X})
        tol = manifest.fidelity.outputs[0].tolerance
        np.testing.assert_allclose(out["logits"], expected["logits"], rtol=tol, atol=tol)
        np.testing.assert_allclose(out["total"], expected["total"], rtol=tol, atol=tol)


def test_saved_model_folder_through_modelpack_export(rng, tmp_path, saved_model):
    folder, scorer = saved_model
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    manifest = modelpack.export(folder, tmp_path / "s.mpk", sample={"rows": X}, options={"signature": "scores"})
    assert manifest.name == folder.name and manifest.fidelity.passed
    with modelpack.load(tmp_path / "s.mpk") as m:
        np.testing.assert_allclose(m.run({"rows": X})["total"], scorer.score(X)["total"].numpy(),
                                   rtol=1e-4, atol=1e-4)


def test_loaded_saved_model_object(rng, tmp_path, saved_model):
    folder, scorer = saved_model
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    manifest = modelpack.export(tf.saved_model.load(str(folder)), tmp_path / "s", sample={"rows": X},
                                options={"signature": "scores", "output_names": ["l", "t"]})
    assert [o.name for o in manifest.outputs] == ["l", "t"]
    assert manifest.fidelity.passed and manifest.metadata["keras_source"] == "SavedModel"


def test_tf_function_without_signature_takes_the_sample(rng):
    ort = pytest.importorskip("onnxruntime")

    @tf.function
    def blend(left, right):
        return left * 0.25 + tf.reduce_mean(right, axis=1, keepdims=True)

    sample = (rng.normal(size=(8, 3)), rng.normal(size=(8, 5)).astype(np.float32))
    conv = modelpack_keras.converter.convert(blend, sample, format="onnx", options={})
    session = ort.InferenceSession(conv.model, providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("left", ["N", 3]), ("right", ["N", 5])]
    new = {"left": np.ones((2, 3), np.float32), "right": np.full((2, 5), 2.0, np.float32)}
    np.testing.assert_allclose(session.run(None, new)[0], np.full((2, 3), 2.25), rtol=1e-6)
    expected = blend(sample[0].astype(np.float32), sample[1]).numpy()
    np.testing.assert_allclose(conv.reference["output"], expected, rtol=1e-6)


def test_subclassed_model_with_logits_and_binary_output(rng, tmp_path):
    class Scorer(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs) * 3.0

    net = Scorer()
    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    p = 1 / (1 + np.exp(-net(X).numpy()))
    with assert_roundtrip(net, X, tmp_path, expected={"probabilities": np.hstack([1 - p, p])},
                          options={"task": "classification", "logits": True, "classes": ["no", "yes"]}) as m:
        assert m.predict_proba(X).shape == (ROWS, 2)


def test_entry_points_find_the_plugin(saved_model):
    assert find_converter(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])) is modelpack_keras.converter
    assert find_converter(tf.saved_model.load(str(saved_model[0]))) is modelpack_keras.converter


# -- bad paths ------------------------------------------------------------------------------------
def test_untranslatable_operator_names_the_op_and_the_way_out(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
    def incomplete_gamma(x):
        return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0)

    with pytest.raises(modelpack.ConversionError) as info:
        modelpack.export(incomplete_gamma, tmp_path / "x.mpk", sample=np.ones((4, 3), np.float32))
    assert "Igamma" in str(info.value)
    assert "custom_op_handlers" in str(info.value) and "Rewrite the model" in str(info.value)
    assert not (tmp_path / "x.mpk").exists()


def test_not_a_saved_model_folder(tmp_path):
    with pytest.raises(modelpack.ConversionError, match="no saved_model.pb"):
        modelpack_keras.export_saved_model(tmp_path, tmp_path / "x.mpk", sample=np.ones((2, 2)))


def test_missing_signature(saved_model, tmp_path):
    with pytest.raises(modelpack.ConversionError, match=r"no signature 'serving_default' \(it has \['scores'\]\)"):
        modelpack_keras.export_saved_model(saved_model[0], tmp_path / "x.mpk", sample={"rows": np.ones((2, 4))})


@pytest.mark.parametrize(("options", "match"), [
    ({"signatur": "x"}, "Did you mean 'signature'"),
    ({"task": "classification"}, "does not hold probabilities"),
    ({"task": "classification", "logits": True, "classes": [1, 2]}, "3 probabilities per row"),
    ({"input_names": ["a", "b"]}, "2 name"),
    ({"dtype": "float64"}, "set_floatx"),
    ({"tf2onnx_kwargs": {"opset": 17}}, r"options\['opset'\]"),
])
def test_bad_options_are_refused(options, match):
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="ones")])
    with pytest.raises(modelpack.ConversionError, match=match):
        modelpack_keras.converter.convert(net, np.full((5, 4), 3.0), format="onnx", options=options)


def test_bad_samples_are_refused(rng):
    net = keras.Model(*_two_input_layers())
    with pytest.raises(modelpack.InputError, match=r"lacks input\(s\) \['flags'\]"):
        modelpack_keras.converter.convert(net, {"numbers": np.ones((2, 4))}, format="onnx", options={})
    ids = keras.Input((3,), dtype="int64", name="ids")
    embed = keras.Model(ids, keras.layers.Embedding(5, 2)(ids))
    with pytest.raises(modelpack.InputError, match="floats where the model takes integers"):
        modelpack_keras.converter.convert(embed, np.ones((2, 3)), format="onnx", options={})


def test_not_a_model():
    with pytest.raises(modelpack.ConversionError, match="not a Keras model, a tf.function or a SavedModel"):
        modelpack_keras.converter.convert(tf.constant([1.0]), np.ones(1), format="onnx", options={})


def _two_input_layers() -> tuple[list, list]:
    a, b = keras.Input((4,), name="numbers"), keras.Input((2,), name="flags")
    return [a, b], [keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))]
