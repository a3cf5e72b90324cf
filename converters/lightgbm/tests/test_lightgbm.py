"""LightGBM models through export -> package -> load -> predict, against LightGBM itself."""

from __future__ import annotations

import numpy as np
import pytest

lightgbm = pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")
pd = pytest.importorskip("pandas")

from modelpack_lightgbm import LightGBMConverter, converter  # noqa: E402

import modelpack  # noqa: E402
from modelpack import ConversionError, TaskError  # noqa: E402
from modelpack.plugin import available_converters, find_converter  # noqa: E402
from modelpack.testing import assert_roundtrip  # noqa: E402

N_SAMPLES = 200
N_FEATURES = 4
COLUMNS = ["age", "income", "tenure", "score"]
SMALL = {"n_estimators": 8, "num_leaves": 7, "min_child_samples": 5, "verbose": -1}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    X_test = rng.normal(size=(60, N_FEATURES))
    return {
        "X": X,
        "X_test": X_test,
        "binary": (X[:, 0] + X[:, 1] > 0).astype(int),
        "multi": np.array(["low", "mid", "high"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)],
        "value": 3 * X[:, 0] - X[:, 2] + 0.1 * rng.normal(size=N_SAMPLES),
    }


def _classifier_expected(model, X):
    return {"label": model.predict(X), "probabilities": model.predict_proba(X)}


class TestRoundtrip:
    def test_binary_classifier(self, data, tmp_path):
        clf = lightgbm.LGBMClassifier(**SMALL).fit(data["X"], data["binary"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.manifest.task == "classification"
            assert m.classes.tolist() == [0, 1]
            assert m.manifest.source.framework == "lightgbm"

    def test_multiclass_with_string_labels(self, data, tmp_path):
        clf = lightgbm.LGBMClassifier(**SMALL).fit(data["X"], data["multi"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.classes.tolist() == ["high", "low", "mid"]
            assert m.predict(data["X_test"]).dtype.kind == "U"
            np.testing.assert_array_equal(m.predict(data["X_test"]), clf.predict(data["X_test"]))

    def test_regressor(self, data, tmp_path):
        reg = lightgbm.LGBMRegressor(**SMALL).fit(data["X"], data["value"])
        with assert_roundtrip(reg, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": reg.predict(data["X_test"])}) as m:
            assert m.manifest.task == "regression"
            assert m.predict(data["X_test"]).shape == (60,)
            with pytest.raises(TaskError):
                m.predict_proba(data["X_test"])

    def test_poisson_regressor_applies_the_exp_link(self, data, tmp_path):
        y = np.abs(data["value"]).round()
        reg = lightgbm.LGBMRegressor(objective="poisson", **SMALL).fit(data["X"], y)
        with assert_roundtrip(reg, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": reg.predict(data["X_test"])}) as m:
            assert (m.predict(data["X_test"]) > 0).all()

    def test_ranker(self, data, tmp_path):
        relevance = (data["X"][:, 0] > 0).astype(int) + (data["X"][:, 1] > 0)
        ranker = lightgbm.LGBMRanker(**SMALL).fit(data["X"], relevance, group=[20] * 10)
        with assert_roundtrip(ranker, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": ranker.predict(data["X_test"])}) as m:
            assert m.manifest.metadata["objective"] == "lambdarank"

    def test_missing_values(self, data, tmp_path):
        X = data["X"].copy()
        X[::5, 1] = np.nan
        reg = lightgbm.LGBMRegressor(**SMALL).fit(X, data["value"])
        X_test = data["X_test"].copy()
        X_test[::3, 1] = np.nan
        with assert_roundtrip(reg, X, tmp_path, X=X_test, expected={"value": reg.predict(X_test)}):
            pass


class TestFeatureNames:
    def test_dataframe_model_takes_columns_by_name(self, data, tmp_path):
        df = pd.DataFrame(data["X"], columns=COLUMNS)
        df_test = pd.DataFrame(data["X_test"], columns=COLUMNS)
        clf = lightgbm.LGBMClassifier(**SMALL).fit(df, data["binary"])
        with assert_roundtrip(clf, df, tmp_path, X=df_test, expected=_classifier_expected(clf, df_test)) as m:
            assert [c.name for c in m.inputs[0].columns] == COLUMNS
            np.testing.assert_array_equal(m.predict(df_test[COLUMNS[::-1]]), clf.predict(df_test))

    def test_array_model_records_no_generic_names(self, data):
        reg = lightgbm.LGBMRegressor(**SMALL).fit(data["X"], data["value"])
        conv = converter.convert(reg, data["X"], format="onnx", options={})
        assert conv.inputs[0].columns is None
        assert conv.inputs[0].shape == ("N", N_FEATURES)


class TestBooster:
    @pytest.mark.parametrize("params, target", [
        ({"objective": "binary"}, "binary"),
        ({"objective": "multiclass", "num_class": 3}, "multi"),
        ({"objective": "mse"}, "value"),  # an alias of "regression"
    ])
    def test_booster_task_from_objective(self, data, tmp_path, params, target):
        y = data[target]
        if target == "multi":
            y = np.unique(y, return_inverse=True)[1]
        booster = lightgbm.train({**params, "verbose": -1, "num_leaves": 7},
                                 lightgbm.Dataset(data["X"], label=y), num_boost_round=6)
        raw = booster.predict(data["X_test"])
        if params["objective"] == "binary":
            expected = {"probabilities": np.column_stack([1 - raw, raw]), "label": (raw > 0.5).astype(int)}
        elif params["objective"] == "multiclass":
            expected = {"probabilities": raw, "label": raw.argmax(axis=1)}
        else:
            expected = {"value": raw}
        with assert_roundtrip(booster, data["X"], tmp_path, X=data["X_test"], expected=expected) as m:
            assert m.manifest.task == ("classification" if "label" in expected else "regression")

    def test_integer_coded_categorical_feature(self, data, tmp_path):
        X = data["X"].copy()
        X[:, 3] = np.arange(N_SAMPLES) % 5
        y = (X[:, 0] + (X[:, 3] == 3) > 0.5).astype(int)
        booster = lightgbm.train({"objective": "binary", "verbose": -1, "min_data_per_group": 5},
                                 lightgbm.Dataset(X, label=y, categorical_feature=[3]), num_boost_round=6)
        raw = booster.predict(X)
        with assert_roundtrip(booster, X, tmp_path, expected={"probabilities": np.column_stack([1 - raw, raw])}):
            pass


class TestPipeline:
    def test_lightgbm_step_in_a_pipeline(self, data, tmp_path):
        if "sklearn" not in available_converters():
            pytest.skip("the scikit-learn converter plugin (modelpack-sklearn) is not installed")
        from sklearn.feature_selection import VarianceThreshold
        from sklearn.pipeline import make_pipeline

        pipe = make_pipeline(VarianceThreshold(), lightgbm.LGBMClassifier(**SMALL))
        pipe.fit(data["X"], data["binary"])
        with assert_roundtrip(pipe, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(pipe, data["X_test"])) as m:
            assert m.manifest.task == "classification"


class TestRegistry:
    def test_lightgbm_models_reach_this_plugin_before_sklearn(self):
        assert isinstance(find_converter(lightgbm.LGBMClassifier()), LightGBMConverter)

    def test_entry_point_is_installed(self):
        assert "lightgbm" in available_converters()


class TestBadPaths:
    def test_unfitted_model(self, data, tmp_path):
        with pytest.raises(ConversionError, match="not fitted.*fit"):
            modelpack.export(lightgbm.LGBMRegressor(), tmp_path / "m.mpk", sample=data["X"])
        assert not (tmp_path / "m.mpk").exists()

    def test_pandas_categorical_is_refused(self, data):
        df = pd.DataFrame({"colour": pd.Categorical(["red", "green", "blue", "grey"] * 50),
                           "size": data["X"][:, 0]})
        clf = lightgbm.LGBMClassifier(**SMALL).fit(df, data["binary"])
        with pytest.raises(ConversionError, match="categorical.*one-hot"):
            converter.convert(clf, df, format="onnx", options={})

    @pytest.mark.parametrize("params, target, match", [
        ({"objective": "multiclassova", "num_class": 3}, "multi", "normalises"),
        ({"objective": "cross_entropy"}, "binary", "cross_entropy"),
        ({"objective": "regression", "linear_tree": True}, "value", "linear"),
    ])
    def test_unsupported_training_is_refused(self, data, params, target, match):
        y = np.unique(data[target], return_inverse=True)[1] if target == "multi" else data[target]
        booster = lightgbm.train({**params, "verbose": -1}, lightgbm.Dataset(data["X"], label=y),
                                 num_boost_round=3)
        with pytest.raises(ConversionError, match=match):
            converter.convert(booster, data["X"], format="onnx", options={})

    @pytest.mark.parametrize("options, match", [
        ({"dtype": "float64"}, "float32"),
        ({"target_opset": 17}, "up to 15"),
        ({"split": 0}, "positive"),
        ({"zipmap": False}, "unknown option"),
    ])
    def test_bad_options(self, data, options, match):
        reg = lightgbm.LGBMRegressor(**SMALL).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match=match):
            converter.convert(reg, data["X"], format="onnx", options=options)

    def test_sample_with_wrong_width(self, data, tmp_path):
        reg = lightgbm.LGBMRegressor(**SMALL).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match="sample"):
            modelpack.export(reg, tmp_path / "m.mpk", sample=np.ascontiguousarray(data["X"][:, :2]))
        assert not (tmp_path / "m.mpk").exists()
