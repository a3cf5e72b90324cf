"""PyTorch modules exported, packed, loaded and run: outputs must match torch's own."""

from __future__ import annotations

import numpy as np
import pytest

import modelpack
from modelpack.plugin import find_converter
from modelpack.testing import assert_outputs_close, assert_roundtrip

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")

import modelpack_torch  # noqa: E402  (after the importorskip above)

ROWS = 40


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    torch.manual_seed(0)
    return np.random.default_rng(0)


def _torch(module: torch.nn.Module, *arrays: np.ndarray) -> tuple[np.ndarray, ...] | np.ndarray:
    training = module.training
    with torch.no_grad():
        out = module.eval()(*(torch.from_numpy(a) for a in arrays))
    module.train(training)
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(6, 4)
        self.extra = torch.nn.Linear(2, 4)

    def forward(self, features: torch.Tensor, extra: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = torch.relu(self.dense(features) + self.extra(extra))
        return {"score": hidden.sum(dim=1, keepdim=True), "hidden": hidden}


class Bag(torch.nn.Module):
    """Mean of token embeddings, then a linear head: integer ids in, one value out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


def _cnn() -> torch.nn.Module:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():  # non-trivial running statistics, as after training
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net


# -- the five model families, through the public API ----------------------------------
def test_mlp_classifier_with_logits(rng, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    X, X_new = rng.normal(size=(ROWS, 6)), rng.normal(size=(7, 6)).astype(np.float32)
    probabilities = torch.softmax(torch.from_numpy(_torch(net, X_new)), dim=1).numpy()
    classes = ["low", "mid", "high"]
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"probabilities": probabilities},
                          options={"task": "classification", "logits": True, "classes": classes}) as m:
        assert m.manifest.task == "classification"
        assert list(m.classes) == classes
        assert m.predict(X_new).tolist() == [classes[i] for i in probabilities.argmax(axis=1)]
        assert m.manifest.source.converter == "torch.onnx.export (dynamo)"
        assert m.manifest.metadata["torch_exporter"] == "dynamo"


def test_mlp_regressor(rng, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X, X_new = rng.normal(size=(ROWS, 5)), rng.normal(size=(11, 5)).astype(np.float32)
    expected = _torch(net, X_new)
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"value": expected},
                          options={"task": "regression"}) as m:
        assert m.predict(X_new).shape == (11,)
        assert m.outputs[0].name == "value" and m.outputs[0].role == "value"
        fid = m.manifest.fidelity.outputs[0]
        np.testing.assert_allclose(m.predict(X_new), expected.reshape(-1), atol=fid.tolerance,
                                   rtol=fid.tolerance)


def test_small_cnn(rng, tmp_path):
    net = _cnn()
    X = rng.normal(size=(16, 1, 8, 8)).astype(np.float32)
    X_new = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    with assert_roundtrip(net, X, tmp_path, X=X_new, expected={"output": _torch(net, X_new)}) as m:
        assert m.inputs[0].shape == ("N", 1, 8, 8)
        assert m.manifest.task == "other"
    assert net[1].training, "the module's training flag must be restored after export"


def test_two_inputs_and_named_outputs(rng, tmp_path):
    net = TwoInputs()
    sample = {"features": rng.normal(size=(ROWS, 6)), "extra": rng.normal(size=(ROWS, 2))}
    new = {"features": rng.normal(size=(5, 6)).astype(np.float32),
           "extra": rng.normal(size=(5, 2)).astype(np.float32)}
    with torch.no_grad():
        out = net(*(torch.from_numpy(new[k]) for k in ("features", "extra")))
    expected = {"score": out["score"].numpy(), "hidden": out["hidden"].numpy()}
    with assert_roundtrip(net, sample, tmp_path, X=new, expected=expected) as m:
        assert [i.name for i in m.inputs] == ["features", "extra"]
        assert [o.name for o in m.outputs] == ["score", "hidden"]
        run = m.run(new)
        np.testing.assert_allclose(run["hidden"], expected["hidden"], atol=1e-5, rtol=1e-5)


def test_embedding_on_integer_ids_with_variable_length(rng, tmp_path):
    net = Bag()
    ids = rng.integers(0, 50, size=(ROWS, 6))
    longer = rng.integers(0, 50, size=(4, 9))
    with assert_roundtrip(net, ids, tmp_path, X=longer, expected={"value": _torch(net, longer)},
                          options={"task": "regression", "dynamic_axes": {"ids": {0: "N", 1: "T"}}}) as m:
        assert m.inputs[0].dtype == "int64"
        assert m.inputs[0].shape == ("N", "T")


# -- conventions ------------------------------------------------------------------------------
def test_entry_point_finds_the_plugin():
    found = find_converter(torch.nn.Linear(2, 2))
    assert found is modelpack_torch.converter
    assert "torch" in {fw for c in modelpack.list_converters() for fw in c["frameworks"]}


def test_binary_sigmoid_output_is_widened(rng, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    p = _torch(net, X)
    options = {"task": "classification", "classes": [False, True], "exporter": "torchscript"}
    with assert_roundtrip(net, X, tmp_path, options=options,
                          expected={"probabilities": np.hstack([1 - p, p])}) as m:
        assert m.predict_proba(X).shape == (ROWS, 2)
        assert m.predict(X).tolist() == (p[:, 0] > 0.5).tolist()


def test_tuple_sample_names_inputs_after_forward(rng):
    ort = pytest.importorskip("onnxruntime")
    net = TwoInputs()
    sample = (rng.normal(size=(8, 6)), rng.normal(size=(8, 2)))
    conv = modelpack_torch.converter.convert(net, sample, format="onnx", options={"exporter": "torchscript"})
    session = ort.InferenceSession(conv.model, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features", "extra"]
    feeds = {"features": sample[0].astype(np.float32), "extra": sample[1].astype(np.float32)}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    np.testing.assert_allclose(got["hidden"], conv.reference["hidden"], atol=1e-5, rtol=1e-5)


def test_float64_export_keeps_the_callers_module(rng, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    X = rng.normal(size=(ROWS, 4))
    manifest = modelpack.export(net, tmp_path / "f64.mpk", sample=X, dtype="float64",
                                options={"exporter": "torchscript"})
    assert manifest.inputs[0].dtype == "float64"
    assert manifest.fidelity.dtype == "float64" and manifest.fidelity.passed
    assert next(net.parameters()).dtype == torch.float32


def test_data_dependent_branch_falls_back_to_torchscript(rng, tmp_path):
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent: torch.export refuses, the tracer takes this branch
                return self.lin(x) * 2
            return self.lin(x) - 1

    X = np.abs(rng.normal(size=(ROWS, 4))).astype(np.float32)
    with pytest.warns(torch.jit.TracerWarning, match="trace might not generalize"):
        manifest = modelpack.export(Branchy(), tmp_path / "branchy.mpk", sample=X)
    assert manifest.source.converter == "torch.onnx.export (torchscript)"
    assert "data-dependent" in manifest.metadata["torch_dynamo_error"]


# -- bad paths ----------------------------------------------------------------------------------
def test_unexportable_operator_names_the_op_and_the_way_out():
    class Histogram(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.histc(x, bins=4)

    with pytest.raises(modelpack.ConversionError) as info:
        modelpack_torch.converter.convert(Histogram(), torch.rand(6, 4), format="onnx",
                                          options={"exporter": "torchscript"})
    message = str(info.value)
    assert "aten.histc" in message
    assert "custom_translation_table" in message and "Rewrite forward()" in message
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(("options", "match"), [
    ({"taks": "regression"}, "Did you mean 'task'"),
    ({"task": "ranking"}, "not one of"),
    ({"exporter": "onnxscript"}, "'auto', 'dynamo' or 'torchscript'"),
    ({"logits": True}, "applies to classifiers"),
    ({"output_names": ["a", "b"]}, "2 name"),
    ({"dynamic_axes": {"nope": {0: "N"}}}, "must map input names"),
    ({"export_kwargs": {"opset_version": 17}}, r"Use options\['opset'\] instead"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(modelpack.ConversionError, match=match):
        modelpack_torch.converter.convert(torch.nn.Linear(3, 2), np.ones((4, 3)), format="onnx",
                                          options=options)


def test_repeated_output_names():
    sample = {"features": np.ones((2, 6)), "extra": np.ones((2, 2))}
    with pytest.raises(modelpack.ConversionError, match="repeats a name"):
        modelpack_torch.converter.convert(TwoInputs(), sample, format="onnx", options={"output_names": ["a", "a"]})


def test_classifier_without_probabilities_says_pass_logits(rng, tmp_path):
    net = torch.nn.Linear(3, 3)
    with torch.no_grad():
        net.bias.fill_(5.0)  # scores far outside [0, 1]
    with pytest.raises(modelpack.ConversionError, match="logits"):
        modelpack.export(net, tmp_path / "x.mpk", sample=rng.normal(size=(10, 3)),
                         options={"task": "classification"})
    assert not (tmp_path / "x.mpk").exists()


def test_wrong_number_of_classes(rng, tmp_path):
    with pytest.raises(modelpack.ConversionError, match="3 probabilities per row"):
        modelpack.export(torch.nn.Linear(3, 3), tmp_path / "x.mpk", sample=rng.normal(size=(10, 3)),
                         options={"task": "classification", "logits": True, "classes": ["a", "b"]})


def test_forward_returning_no_tensor():
    class Strings(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> str:
            return "no"

    with pytest.raises(modelpack.ConversionError, match="returns str, not tensors"):
        modelpack_torch.converter.convert(Strings(), torch.ones(2, 2), format="onnx", options={})


def test_dict_sample_with_unknown_key():
    with pytest.raises(modelpack.InputError, match="not parameters of TwoInputs.forward"):
        modelpack_torch.converter.convert(TwoInputs(), {"features": np.ones((2, 6)), "oops": np.ones((2, 2))},
                                          format="onnx", options={})


def test_not_a_module_and_not_onnx():
    with pytest.raises(modelpack.ConversionError, match="not a torch.nn.Module"):
        modelpack_torch.converter.convert(torch.ones(2), torch.ones(2), format="onnx", options={})
    with pytest.raises(modelpack.NoConverterError):
        modelpack.export(torch.nn.Linear(2, 2), "unused.mpk", sample=np.ones((2, 2)), format="pmml")


# -- above the 2 GB protobuf limit -------------------------------------------------------------
@pytest.mark.slow
def test_model_over_2gb_uses_external_data(tmp_path):
    """A 2.1 GB Linear: weights leave model.onnx, are packed, checksummed, loaded and run."""
    features = 2**15
    outputs = 2**31 // (4 * features) + 512  # just over 2 GiB of float32 weights
    net = torch.nn.Linear(features, outputs, bias=False)
    with torch.no_grad():
        net.weight.normal_(0, 0.01)
    X = np.random.default_rng(1).normal(size=(2, features)).astype(np.float32)
    expected = _torch(net, X)
    dest = tmp_path / "big"
    manifest = modelpack.export(net, dest, sample=X)
    assert manifest.model.external_data == ("model.onnx.data",)
    assert (dest / "model.onnx").stat().st_size < 2**20
    assert manifest.file("model.onnx.data").size > 2**31
    assert modelpack.verify(dest).ok
    del net
    with modelpack.load(dest) as m:
        assert_outputs_close(m, X, {"output": expected})


def test_classifier_exported_without_options_names_the_option(rng, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"options=\{'task': 'classification'\}"):
        modelpack.export(net, tmp_path / "plain.mpk", sample=X)
    with modelpack.load(tmp_path / "plain.mpk") as m:
        assert m.manifest.task == "other"
        with pytest.raises(modelpack.TaskError, match=r"options=\{'task': 'classification'\}") as caught:
            m.predict_proba(X)
        assert "'logits': True" in caught.value.fix
    # The fix the messages name works: the same network, told its task, is a classifier.
    modelpack.export(net, tmp_path / "told.mpk", sample=X, options={"task": "classification"})
    with modelpack.load(tmp_path / "told.mpk") as m:
        np.testing.assert_allclose(m.predict_proba(X), _torch(net, X), atol=1e-5)
        assert m.predict(X).tolist() == _torch(net, X).argmax(axis=1).tolist()


def test_scores_without_options_export_quietly_and_predict_proba_names_logits(rng, tmp_path):
    import warnings

    net = torch.nn.Linear(4, 3)  # raw scores: nothing says they are a classifier's
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        modelpack.export(net, tmp_path / "scores.mpk", sample=X)
    with modelpack.load(tmp_path / "scores.mpk") as m, pytest.raises(modelpack.TaskError, match="'logits': True"):
        m.predict_proba(X)
