"""modelpack.ray: the callable class on its own, and predict on a real local Ray cluster (slow)."""

from __future__ import annotations

import numpy as np
import pytest

import modelpack
from modelpack.errors import InputError, TaskError

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'modelpack[ray]')")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

from modelpack.ray import Predictor, predict  # noqa: E402

COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def table(features):
    return pd.DataFrame(features.astype(np.float64), columns=COLUMNS).assign(id=np.arange(len(features)))


# -- the callable class, as each actor runs it ---------------------------------------------------
def test_the_callable_scores_pandas_and_arrow_batches(named_classifier, table, features):
    by_path = Predictor(str(named_classifier.path))
    by_bytes = Predictor(named_classifier.path.read_bytes(), result="proba")
    with modelpack.load(named_classifier.path) as model:
        labels = by_path(table)
        np.testing.assert_array_equal(labels["prediction"], model.predict(table))
        arrow = by_bytes(pa.Table.from_pandas(table))
        assert isinstance(arrow, pa.Table) and arrow.column_names == [*COLUMNS, "id", "proba_10", "proba_20",
                                                                       "proba_30"]
        np.testing.assert_array_equal(np.column_stack([arrow[f"proba_{c}"].to_numpy() for c in (10, 20, 30)]),
                                      model.predict_proba(table))
    np.testing.assert_array_equal(labels["prediction"], named_classifier.labels(features))


def test_the_callable_refuses_bad_results_and_clashing_columns(named_classifier, table):
    with pytest.raises(TaskError, match="not one of label, proba, all"):
        Predictor(str(named_classifier.path), result="scores")
    with pytest.raises(InputError, match="already has the result column"):
        Predictor(str(named_classifier.path))(table.assign(prediction=1))
    with pytest.raises(InputError, match="batch_format='numpy' is not one of pandas, pyarrow"):
        predict(None, named_classifier.path, batch_format="numpy")


# -- a real local cluster ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_an_actor_pool_adds_the_predictions(cluster, named_classifier, zipmap_classifier, table, features):
    dataset = ray.data.from_pandas([table[i::4] for i in range(4)])  # four blocks, no shuffle stage
    with modelpack.load(named_classifier.path) as model:
        expected = model.predict(table)
    labels = predict(dataset, named_classifier.path, actors=2, batch_size=16).to_pandas().sort_values("id")
    np.testing.assert_array_equal(labels["prediction"], expected)
    every = predict(dataset, named_classifier.path, result="all", batch_format="pyarrow", actors=(1, 2),
                    ship=False).to_pandas().sort_values("id")
    np.testing.assert_array_equal(every["label"], named_classifier.labels(features))
    probabilities = every[["probabilities_10", "probabilities_20", "probabilities_30"]]
    np.testing.assert_allclose(probabilities.to_numpy(dtype=np.float64), named_classifier.proba(features), atol=1e-6)
