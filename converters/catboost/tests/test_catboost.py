"""CatBoost models through export -> package -> load -> predict, against CatBoost itself."""

from __future__ import annotations

import numpy as np
import pytest

catboost = pytest.importorskip("catboost")
pytest.importorskip("onnx")
pd = pytest.importorskip("pandas")

from modelpack_catboost import CatBoostConverter, converter  # noqa: E402

import modelpack  # noqa: E402
from modelpack import ConversionError, TaskError  # noqa: E402
from modelpack.plugin import available_converters, find_converter  # noqa: E402
from modelpack.testing import assert_roundtrip  # noqa: E402

N_SAMPLES = 160
N_FEATURES = 4
COLUMNS = ["age", "income", "tenure", "score"]
# allow_writing_files=False: CatBoost otherwise writes catboost_info/ into the working directory.
SMALL = {"iterations": 8, "depth": 3, "verbose": 0, "thread_count": 1, "allow_writing_files": False}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES)).astype(np.float32)
    X_test = rng.normal(size=(60, N_FEATURES)).astype(np.float32)
    return {
        "X": X,
        "X_test": X_test,
        "binary": (X[:, 0] + X[:, 1] > 0).astype(int),
        "multi": np.array(["low", "mid", "high"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)],
        "value": 3 * X[:, 0] - X[:, 2] + 0.1 * rng.normal(size=N_SAMPLES),
    }


def _classifier_expected(model, X):
    return {"label": np.asarray(model.predict(X)).reshape(-1), "probabilities": model.predict_proba(X)}


class TestRoundtrip:
    def test_binary_classifier(self, data, tmp_path):
        clf = catboost.CatBoostClassifier(**SMALL).fit(data["X"], data["binary"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.manifest.task == "classification"
            assert m.classes.tolist() == [0, 1]
            assert m.manifest.source.converter == "catboost"
            assert [(o.name, o.kind) for o in m.outputs] == [("label", "tensor"), ("probabilities", "sequence")]

    def test_multiclass_with_string_labels(self, data, tmp_path):
        clf = catboost.CatBoostClassifier(**SMALL).fit(data["X"], data["multi"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.classes.tolist() == clf.classes_.tolist()
            assert m.predict_proba(data["X_test"]).shape == (60, 3)

    def test_probability_tensor_without_zipmap(self, data, tmp_path):
        clf = catboost.CatBoostClassifier(**SMALL).fit(data["X"], data["multi"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"], options={"zipmap": False},
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.outputs[1].kind == "tensor"
            assert m.run(data["X_test"])["probabilities"].shape == (60, 3)

    def test_regressor(self, data, tmp_path):
        reg = catboost.CatBoostRegressor(**SMALL).fit(data["X"], data["value"])
        with assert_roundtrip(reg, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": reg.predict(data["X_test"])}) as m:
            assert m.predict(data["X_test"]).shape == (60,)
            with pytest.raises(TaskError):
                m.predict_proba(data["X_test"])

    def test_poisson_regressor_gets_the_exponential(self, data, tmp_path):
        y = np.abs(data["value"]).round()
        reg = catboost.CatBoostRegressor(loss_function="Poisson", **SMALL).fit(data["X"], y)
        with assert_roundtrip(reg, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": reg.predict(data["X_test"])}) as m:
            assert (m.predict(data["X_test"]) > 0).all()

    def test_ranker(self, data, tmp_path):
        relevance = (data["X"][:, 0] > 0).astype(int)
        ranker = catboost.CatBoostRanker(**SMALL).fit(data["X"], relevance,
                                                      group_id=np.repeat(np.arange(16), 10))
        with assert_roundtrip(ranker, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": ranker.predict(data["X_test"])}):
            pass

    def test_base_class_classifier_task_from_loss(self, data, tmp_path):
        model = catboost.CatBoost({**SMALL, "loss_function": "MultiClass"}).fit(data["X"], data["multi"])
        expected = {"label": model.predict(data["X_test"], prediction_type="Class").reshape(-1),
                    "probabilities": model.predict(data["X_test"], prediction_type="Probability")}
        with assert_roundtrip(model, data["X"], tmp_path, X=data["X_test"], expected=expected) as m:
            assert m.manifest.task == "classification"

    def test_base_class_poisson_regressor(self, data, tmp_path):
        y = np.abs(data["value"]).round()
        model = catboost.CatBoost({**SMALL, "loss_function": "Poisson"}).fit(data["X"], y)
        expected = {"value": model.predict(data["X_test"], prediction_type="Exponent")}
        with assert_roundtrip(model, data["X"], tmp_path, X=data["X_test"], expected=expected) as m:
            assert m.manifest.task == "regression"


class TestFeatureNames:
    def test_dataframe_model_takes_columns_by_name(self, data, tmp_path):
        df = pd.DataFrame(data["X"], columns=COLUMNS)
        df_test = pd.DataFrame(data["X_test"], columns=COLUMNS)
        clf = catboost.CatBoostClassifier(**SMALL).fit(df, data["binary"])
        with assert_roundtrip(clf, df, tmp_path, X=df_test, expected=_classifier_expected(clf, df_test)) as m:
            assert [c.name for c in m.inputs[0].columns] == COLUMNS
            np.testing.assert_array_equal(m.predict(df_test[COLUMNS[::-1]]), clf.predict(df_test))

    def test_array_model_records_no_generic_names(self, data):
        reg = catboost.CatBoostRegressor(**SMALL).fit(data["X"], data["value"])
        conv = converter.convert(reg, data["X"], format="onnx", options={})
        assert conv.inputs[0].columns is None


class TestRegistry:
    def test_catboost_models_reach_this_plugin(self):
        assert isinstance(find_converter(catboost.CatBoostClassifier()), CatBoostConverter)

    def test_entry_point_is_installed(self):
        assert "catboost" in available_converters()


class TestBadPaths:
    def test_categorical_features_are_refused_with_alternatives(self, data, tmp_path):
        df = pd.DataFrame({"colour": ["red", "green", "blue", "grey"] * 40, "size": data["X"][:, 0]})
        clf = catboost.CatBoostClassifier(cat_features=["colour"], **SMALL).fit(df, data["binary"])
        with pytest.raises(ConversionError, match=r"categorical features \['colour'\].*One-hot encode"):
            modelpack.export(clf, tmp_path / "m.mpk", sample=df)
        assert not (tmp_path / "m.mpk").exists()

    def test_unfitted_model(self, data, tmp_path):
        with pytest.raises(ConversionError, match="not fitted.*fit"):
            modelpack.export(catboost.CatBoostClassifier(), tmp_path / "m.mpk", sample=data["X"])

    def test_boolean_labels_are_refused(self, data):
        clf = catboost.CatBoostClassifier(**SMALL).fit(data["X"], data["binary"].astype(bool))
        with pytest.raises(ConversionError, match="integer or string labels.*astype"):
            converter.convert(clf, data["X"], format="onnx", options={})

    def test_unfaithful_loss_is_refused(self, data):
        codes = np.unique(data["multi"], return_inverse=True)[1]
        clf = catboost.CatBoostClassifier(loss_function="MultiClassOneVsAll", **SMALL).fit(data["X"], codes)
        with pytest.raises(ConversionError, match="MultiClassOneVsAll"):
            converter.convert(clf, data["X"], format="onnx", options={})

    @pytest.mark.parametrize("options, match", [
        ({"dtype": "float64"}, "float32"),
        ({"zipmap": "no"}, "True or False"),
        ({"target_opset": 15}, "unknown option"),
    ])
    def test_bad_options(self, data, options, match):
        reg = catboost.CatBoostRegressor(**SMALL).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match=match):
            converter.convert(reg, data["X"], format="onnx", options=options)

    def test_pmml_is_not_written(self, data):
        reg = catboost.CatBoostRegressor(**SMALL).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match="onnx only"):
            converter.convert(reg, data["X"], format="pmml", options={})

    def test_sample_with_wrong_width(self, data, tmp_path):
        reg = catboost.CatBoostRegressor(**SMALL).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match="sample"):
            modelpack.export(reg, tmp_path / "m.mpk", sample=data["X"][:, :2])
        assert not (tmp_path / "m.mpk").exists()
