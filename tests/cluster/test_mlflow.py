"""MLflow both ways, against a real file-based tracking store and model registry in a tmp folder."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack.errors import ConversionError, TaskError

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'modelpack[mlflow]')")
pd = pytest.importorskip("pandas")
with warnings.catch_warnings():  # MLflow warns about its own type hints while importing
    warnings.simplefilter("ignore")
    import mlflow.pyfunc

from modelpack.mlflow import from_mlflow, log_package, signature  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning")
COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory):
    """A tracking store and registry in files; MLflow 3 asks for this opt-in to its file store."""
    root = tmp_path_factory.mktemp("mlflow") / "mlruns"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # tests send nothing anywhere
        mlflow.set_tracking_uri(root.as_uri())
        mlflow.set_registry_uri(root.as_uri())
        yield root
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A scikit-learn classifier exported from a DataFrame: named columns in the manifest."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(120, 4)), columns=COLUMNS)
    y = np.where(X.f0 + X.f1 > 0, "yes", "no")
    clf = LogisticRegression().fit(X, y)
    path = tmp_path_factory.mktemp("tabular") / "churn.mpk"
    modelpack.export(clf, path, sample=X[:30])
    return clf, X, path


def test_a_logged_package_predicts_what_the_model_predicts(tabular):
    clf, X, path = tabular
    with mlflow.start_run():
        info = log_package(path, "churn", registered_model_name="churn")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    with modelpack.load(path) as model:
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
        proba = loaded.predict(X, params={"result": "proba"})
        np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=0)
    every = loaded.predict(X.astype(np.float32), params={"result": "all"})
    assert list(every.columns) == ["label", "probabilities_no", "probabilities_yes"]
    np.testing.assert_array_equal(every["label"], clf.predict(X))
    assert loaded.metadata.get_input_schema().input_names() == COLUMNS
    example = loaded.input_example
    assert list(example.columns) == COLUMNS and len(example) == 5
    registered = mlflow.pyfunc.load_model("models:/churn/1")
    np.testing.assert_array_equal(registered.predict(X), clf.predict(X))
    assert registered.get_raw_model().manifest.name == model.manifest.name


def test_the_package_files_are_the_artifacts_and_nothing_is_pickled(tabular, tmp_path):
    _, _, path = tabular
    with mlflow.start_run():
        info = log_package(path, result="proba")
    local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(tmp_path))
    files = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "churn.mpk" in files and not any(f.endswith((".pkl", ".pickle")) for f in files)
    assert modelpack.inspect(next(tmp_path.rglob("churn.mpk"))).name == modelpack.inspect(path).name
    flavour = mlflow.models.Model.load(local).flavors["python_function"]
    assert flavour["loader_module"] == "modelpack.mlflow" and flavour["config"] == {"result": "proba"}


def test_tensor_packages_get_tensor_signatures(classifier, features):
    sig = signature(modelpack.inspect(classifier.path))
    spec = sig.inputs.inputs[0]
    assert spec.name == "X" and spec.type == np.dtype("float32") and spec.shape == (-1, 4)
    with mlflow.start_run():
        info = log_package(classifier.path.resolve().as_uri())  # a URL: fetched, then logged
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(features), classifier.labels(features))
    np.testing.assert_allclose(loaded.predict(features, params={"result": "proba"}), classifier.proba(features),
                               atol=1e-6)
    with pytest.raises(mlflow.exceptions.MlflowException, match="does not match expected dtype float32"):
        loaded.predict(features.astype(np.float64))  # MLflow checks tensor dtypes exactly, before the model
    with pytest.raises(TaskError, match="not one of label, proba, all"):
        loaded.predict(features, params={"result": "scores"})


def test_load_options_travel_in_the_model_config(classifier, features):
    with mlflow.start_run():
        info = log_package(classifier.path)
    loaded = mlflow.pyfunc.load_model(info.model_uri, model_config={"engine": "onnxruntime"})
    model = loaded.get_raw_model()
    assert model.engine == "onnxruntime"
    np.testing.assert_array_equal(loaded.predict(features), classifier.labels(features))


# -- from MLflow -------------------------------------------------------------------------------
def test_an_mlflow_sklearn_model_becomes_a_checked_package(tabular, tmp_path):
    import mlflow.sklearn

    clf, X, _ = tabular
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(clf, name="clf", registered_model_name="clf",
                                        pip_requirements=["scikit-learn"])  # skips a slow inference
    manifest = from_mlflow("models:/clf/1", tmp_path / "clf.mpk", sample=X[:40])
    assert manifest.fidelity is not None and manifest.fidelity.passed
    with modelpack.load(tmp_path / "clf.mpk") as model:
        np.testing.assert_array_equal(model.predict(X), clf.predict(X))
    assert info.model_uri


def test_mlflow_xgboost_and_lightgbm_models_become_packages(tmp_path):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    import mlflow.lightgbm
    import mlflow.xgboost

    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    boosters = {"xgboost": xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y),
                "lightgbm": lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)}
    for flavour, clf in boosters.items():
        with mlflow.start_run():
            info = getattr(mlflow, flavour).log_model(clf, name=flavour, pip_requirements=[flavour])
        from_mlflow(info.model_uri, tmp_path / f"{flavour}.mpk", sample=X[:50])
        with modelpack.load(tmp_path / f"{flavour}.mpk") as model:
            np.testing.assert_array_equal(model.predict(X), clf.predict(X), err_msg=flavour)
            np.testing.assert_allclose(model.predict_proba(X), clf.predict_proba(X), atol=1e-5, err_msg=flavour)


def test_an_mlflow_onnx_model_is_packed_as_it_is(classifier, features, tmp_path):
    import mlflow.onnx
    import onnx

    proto = onnx.load(classifier.path.with_suffix(".onnx"))
    with mlflow.start_run():
        info = mlflow.onnx.log_model(proto, name="onnx", pip_requirements=["onnx"])
    manifest = from_mlflow(info.model_uri, tmp_path / "onnx.mpk", sample=features[:10], name="from-mlflow")
    assert manifest.name == "from-mlflow" and manifest.samples is not None
    with modelpack.load(tmp_path / "onnx.mpk") as model:
        np.testing.assert_array_equal(model.predict(features), classifier.labels(features))
        np.testing.assert_allclose(model.predict_proba(features), classifier.proba(features), atol=1e-6)


def test_other_flavours_are_refused_with_the_way_out(classifier, tmp_path):
    with mlflow.start_run():
        info = log_package(classifier.path)
    with pytest.raises(ConversionError, match=r"flavours \['python_function'\].*modelpack.export"):
        from_mlflow(info.model_uri, tmp_path / "x.mpk", sample=np.zeros((2, 4), np.float32))
    assert not (tmp_path / "x.mpk").exists()


def test_the_scoring_server_answers_with_the_package(tabular):
    """What `mlflow models serve` runs, driven over HTTP by its own JSON protocol."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    clf, X, path = tabular
    with mlflow.start_run():
        info = log_package(path, "served")
    app = scoring_server.init(mlflow.pyfunc.load_model(info.model_uri))
    with TestClient(app) as client:
        body = {"dataframe_split": X[:7].to_dict(orient="split"), "params": {"result": "label"}}
        answer = client.post("/invocations", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == clf.predict(X[:7]).tolist()


def test_unreadable_and_escaping_models_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="cannot read the MLflow model at models:/nothing/1"):
        from_mlflow("models:/nothing/1", tmp_path / "x.mpk", sample=np.zeros((2, 4), np.float32))
    (tmp_path / "outside.onnx").write_bytes(b"not a model")
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  onnx:\n    data: ../outside.onnx\n")
    with pytest.raises(ConversionError, match="names '../outside.onnx', which is not a file of the model"):
        from_mlflow(str(model), tmp_path / "x.mpk", sample=np.zeros((2, 4), np.float32))
    assert not (tmp_path / "x.mpk").exists()


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_package(tabular, store):
    """The real `mlflow models serve` command on loopback, in this environment (no new one built)."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    clf, X, path = tabular
    command = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or shutil.which("mlflow")
    if command is None:
        pytest.skip("the mlflow command is not on PATH")
    with mlflow.start_run():
        info = log_package(path, "cli")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([command, "models", "serve", "-m", info.model_uri, "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"mlflow models serve exited: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        body = json.dumps({"dataframe_split": X[:9].to_dict(orient="split")}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer["predictions"] == clf.predict(X[:9]).tolist()


def _downloaded(package, folder):
    """A package logged by log_package, downloaded into ``folder``: (model folder, its package)."""
    with mlflow.start_run():
        info = log_package(package)
    local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(folder))
    model = Path(local)
    return model, next(model.rglob(package.name))


def test_a_model_config_with_other_keys_or_results_is_refused_at_load(classifier, tmp_path):
    from modelpack.errors import ModelpackError
    from modelpack.mlflow import _load_pyfunc

    _, data = _downloaded(classifier.path, tmp_path)
    with pytest.raises(ModelpackError, match=r"\['cwd'\], which are not options of modelpack.load"):
        _load_pyfunc(str(data), {"cwd": "/", "device": "cpu"})
    with pytest.raises(TaskError, match="not one of label, proba, all"):
        _load_pyfunc(str(data), {"result": "scores"})
    assert _load_pyfunc(str(data), {"result": "proba", "engine": "onnxruntime"}).result == "proba"


@pytest.mark.parametrize("where", ["absolute", "parent", "no model folder"])
def test_a_package_outside_its_model_folder_is_not_opened(classifier, tmp_path, where):
    """An MLmodel file whose data names a package elsewhere (MLflow joins it to the folder)."""
    import shutil

    from modelpack.mlflow import _load_pyfunc

    model, _ = _downloaded(classifier.path, tmp_path / "models")
    elsewhere = tmp_path / "elsewhere.mpk"
    shutil.copy(classifier.path, elsewhere)  # a good package: only where it lies is wrong
    if where == "no model folder":
        with pytest.raises(ConversionError, match="is not the data of an MLflow model folder"):
            _load_pyfunc(str(elsewhere))
        return
    named = str(elsewhere) if where == "absolute" else os.path.relpath(elsewhere, model)
    text = (model / "MLmodel").read_text()
    (model / "MLmodel").write_text(re.sub(r"(python_function:\n(?:    .*\n)*?    data: ).*", rf"\g<1>{named}", text))
    assert mlflow.models.Model.load(str(model)).flavors["python_function"]["data"] == named
    with pytest.raises(ConversionError, match="is not the data of an MLflow model folder|not a file of the model") as caught:
        mlflow.pyfunc.load_model(str(model))
    assert "Load only MLflow models logged by modelpack.mlflow.log_package" in caught.value.fix
