"""XGBoost models through export -> package -> load -> predict, against XGBoost itself."""

from __future__ import annotations

import numpy as np
import pytest

xgboost = pytest.importorskip("xgboost")
pytest.importorskip("onnxmltools")
pd = pytest.importorskip("pandas")

from modelpack_xgboost import XGBoostConverter, converter  # noqa: E402

import modelpack  # noqa: E402
from modelpack import ConversionError, TaskError  # noqa: E402
from modelpack.plugin import available_converters, find_converter  # noqa: E402
from modelpack.testing import assert_roundtrip  # noqa: E402

N_SAMPLES = 120
N_FEATURES = 4
COLUMNS = ["age", "income", "tenure", "score"]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES)).astype(np.float32)
    X_test = rng.normal(size=(60, N_FEATURES)).astype(np.float32)
    return {
        "X": X,
        "X_test": X_test,
        "binary": (X[:, 0] + X[:, 1] > 0).astype(int),
        "multi": (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5),
        "value": 3 * X[:, 0] - X[:, 2] + 0.1 * rng.normal(size=N_SAMPLES),
    }


def _classifier_expected(model, X):
    return {"label": model.predict(X), "probabilities": model.predict_proba(X)}


class TestRoundtrip:
    def test_binary_classifier(self, data, tmp_path):
        clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(data["X"], data["binary"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.manifest.task == "classification"
            assert m.classes.tolist() == [0, 1]
            assert m.manifest.source.framework == "xgboost"
            np.testing.assert_array_equal(m.predict(data["X_test"]), clf.predict(data["X_test"]))

    def test_multiclass_classifier(self, data, tmp_path):
        clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(data["X"], data["multi"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])) as m:
            assert m.predict_proba(data["X_test"]).shape == (60, 3)
            assert m.classes.tolist() == [0, 1, 2]

    def test_regressor(self, data, tmp_path):
        reg = xgboost.XGBRegressor(n_estimators=8, max_depth=3).fit(data["X"], data["value"])
        with assert_roundtrip(reg, data["X"], tmp_path, X=data["X_test"],
                              expected={"value": reg.predict(data["X_test"])}) as m:
            assert m.manifest.task == "regression"
            assert m.predict(data["X_test"]).shape == (60,)
            with pytest.raises(TaskError):
                m.predict_proba(data["X_test"])

    def test_random_forest_classifier(self, data, tmp_path):
        clf = xgboost.XGBRFClassifier(n_estimators=6, max_depth=3).fit(data["X"], data["binary"])
        with assert_roundtrip(clf, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(clf, data["X_test"])):
            pass

    def test_missing_values_follow_the_default_branch(self, data, tmp_path):
        X = data["X"].copy()
        X[::5, 1] = np.nan
        reg = xgboost.XGBRegressor(n_estimators=8, max_depth=3).fit(X, data["value"])
        X_test = data["X_test"].copy()
        X_test[::3, 1] = np.nan
        with assert_roundtrip(reg, X, tmp_path, X=X_test, expected={"value": reg.predict(X_test)}):
            pass


class TestFeatureNames:
    @pytest.fixture()
    def frames(self, data):
        return pd.DataFrame(data["X"], columns=COLUMNS), pd.DataFrame(data["X_test"], columns=COLUMNS)

    def test_dataframe_model_takes_columns_by_name(self, data, frames, tmp_path):
        df, df_test = frames
        clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(df, data["multi"])
        with assert_roundtrip(clf, df, tmp_path, X=df_test, expected=_classifier_expected(clf, df_test)) as m:
            assert [c.name for c in m.inputs[0].columns] == COLUMNS
            shuffled = df_test[COLUMNS[::-1]]
            np.testing.assert_array_equal(m.predict(shuffled), clf.predict(df_test))
            record = df_test.iloc[0].to_dict()
            np.testing.assert_array_equal(m.predict(record), clf.predict(df_test.iloc[:1]))

    def test_caller_model_keeps_its_feature_names(self, data, frames):
        df, _ = frames
        clf = xgboost.XGBRegressor(n_estimators=4).fit(df, data["value"])
        converter.convert(clf, df, format="onnx", options={})
        assert clf.get_booster().feature_names == COLUMNS

    def test_missing_column_is_named(self, data, frames, tmp_path):
        df, df_test = frames
        reg = xgboost.XGBRegressor(n_estimators=4).fit(df, data["value"])
        modelpack.export(reg, tmp_path / "m.mpk", sample=df)
        with modelpack.load(tmp_path / "m.mpk") as m, pytest.raises(modelpack.MissingColumnError, match="tenure"):
            m.predict(df_test.drop(columns=["tenure"]))


class TestBooster:
    @pytest.mark.parametrize("params, target", [
        ({"objective": "binary:logistic"}, "binary"),
        ({"objective": "multi:softprob", "num_class": 3}, "multi"),
        ({"objective": "reg:squarederror"}, "value"),
        ({"objective": "count:poisson"}, "poisson"),
    ])
    def test_booster_task_from_objective(self, data, tmp_path, params, target):
        y = np.abs(data["value"]).round() if target == "poisson" else data[target]
        booster = xgboost.train(params, xgboost.DMatrix(data["X"], label=y), num_boost_round=6)
        raw = booster.predict(xgboost.DMatrix(data["X_test"]))
        if params["objective"].startswith("binary"):
            expected = {"probabilities": np.column_stack([1 - raw, raw]), "label": (raw > 0.5).astype(int)}
        elif params["objective"].startswith("multi"):
            expected = {"probabilities": raw, "label": raw.argmax(axis=1)}
        else:
            expected = {"value": raw}
        with assert_roundtrip(booster, data["X"], tmp_path, X=data["X_test"], expected=expected) as m:
            assert m.manifest.task == ("classification" if "label" in expected else "regression")

    def test_softmax_objective_gives_labels_and_scores(self, data, tmp_path):
        booster = xgboost.train({"objective": "multi:softmax", "num_class": 3},
                                xgboost.DMatrix(data["X"], label=data["multi"]), num_boost_round=6)
        labels = booster.predict(xgboost.DMatrix(data["X_test"])).astype(int)
        with assert_roundtrip(booster, data["X"], tmp_path, X=data["X_test"], expected={"label": labels}) as m:
            assert [o.role for o in m.outputs] == ["label", "scores"]
            with pytest.raises(TaskError):
                m.predict_proba(data["X_test"])

    def test_named_booster_with_array_sample(self, data, tmp_path):
        dtrain = xgboost.DMatrix(data["X"], label=data["value"], feature_names=COLUMNS)
        booster = xgboost.train({"objective": "reg:squarederror"}, dtrain, num_boost_round=4)
        raw = booster.predict(xgboost.DMatrix(data["X_test"], feature_names=COLUMNS))
        with assert_roundtrip(booster, data["X"], tmp_path, X=data["X_test"], expected={"value": raw}) as m:
            assert [c.name for c in m.inputs[0].columns] == COLUMNS


class TestPipeline:
    def test_xgboost_step_in_a_pipeline(self, data, tmp_path):
        if "sklearn" not in available_converters():
            pytest.skip("the scikit-learn converter plugin (modelpack-sklearn) is not installed")
        from sklearn.feature_selection import VarianceThreshold
        from sklearn.pipeline import make_pipeline

        pipe = make_pipeline(VarianceThreshold(), xgboost.XGBClassifier(n_estimators=8, max_depth=3))
        pipe.fit(data["X"], data["binary"])
        with assert_roundtrip(pipe, data["X"], tmp_path, X=data["X_test"],
                              expected=_classifier_expected(pipe, data["X_test"])) as m:
            assert m.manifest.task == "classification"


class TestRegistry:
    def test_xgboost_models_reach_this_plugin_before_sklearn(self):
        # XGBClassifier also subclasses sklearn's BaseEstimator: the MRO walk must stop here.
        assert isinstance(find_converter(xgboost.XGBClassifier()), XGBoostConverter)
        assert isinstance(find_converter(xgboost.Booster()), XGBoostConverter)

    def test_entry_point_is_installed(self):
        assert "xgboost" in available_converters()


class TestBadPaths:
    def test_unfitted_model(self, data, tmp_path):
        with pytest.raises(ConversionError, match="not fitted.*fit"):
            modelpack.export(xgboost.XGBClassifier(), tmp_path / "m.mpk", sample=data["X"])
        assert not (tmp_path / "m.mpk").exists()

    def test_untrained_booster(self, data):
        with pytest.raises(ConversionError, match="no trained model"):
            converter.convert(xgboost.Booster(), data["X"], format="onnx", options={})

    def test_categorical_features_are_refused(self, data):
        df = pd.DataFrame({"colour": pd.Categorical(["red", "green", "blue"] * 40), "size": data["X"][:, 0]})
        clf = xgboost.XGBClassifier(n_estimators=3, enable_categorical=True, tree_method="hist")
        clf.fit(df, data["binary"])
        with pytest.raises(ConversionError, match="categorical.*colour.*encode"):
            converter.convert(clf, df, format="onnx", options={})

    def test_ranker_is_refused(self, data):
        ranker = xgboost.XGBRanker(n_estimators=3).fit(data["X"], data["multi"], qid=np.repeat(np.arange(12), 10))
        with pytest.raises(ConversionError, match="ranking"):
            converter.convert(ranker, data["X"], format="onnx", options={})

    @pytest.mark.parametrize("options, match", [
        ({"dtype": "float64"}, "float32"),
        ({"target_opset": 17}, "up to 15"),
        ({"zipmap": False}, "unknown option"),
    ])
    def test_bad_options(self, data, options, match):
        reg = xgboost.XGBRegressor(n_estimators=2).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match=match):
            converter.convert(reg, data["X"], format="onnx", options=options)

    def test_pmml_is_not_written(self, data):
        reg = xgboost.XGBRegressor(n_estimators=2).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match="onnx only"):
            converter.convert(reg, data["X"], format="pmml", options={})

    def test_sample_with_wrong_width(self, data, tmp_path):
        reg = xgboost.XGBRegressor(n_estimators=2).fit(data["X"], data["value"])
        with pytest.raises(ConversionError, match="sample"):
            modelpack.export(reg, tmp_path / "m.mpk", sample=data["X"][:, :2])
        assert not (tmp_path / "m.mpk").exists()
