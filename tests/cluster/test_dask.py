"""modelpack.dask on real local Dask clusters, compared with Model.predict and the closed form."""

from __future__ import annotations

import numpy as np
import pytest

import modelpack
from modelpack.errors import InputError

pytest.importorskip("dask.dataframe", reason="dask is not installed (pip install 'modelpack[dask]')")
distributed = pytest.importorskip("distributed", reason="distributed is not installed (pip install 'modelpack[dask]')")
pd = pytest.importorskip("pandas")
import dask.dataframe as dd  # noqa: E402

from modelpack.dask import predict  # noqa: E402

COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def table(features):
    return pd.DataFrame(features.astype(np.float64), columns=COLUMNS).assign(id=np.arange(len(features)))


def scored(cluster, frame):
    with distributed.Client(cluster) as client:
        return client.compute(frame).result().sort_values("id")


def test_threads_cluster_adds_labels_and_probabilities(named_classifier, table, features):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        frame = dd.from_pandas(table, npartitions=3)
        labels = scored(cluster, predict(frame, named_classifier.path))
        proba = scored(cluster, predict(frame, named_classifier.path, result="proba", ship=False))
    with modelpack.load(named_classifier.path) as model:
        np.testing.assert_array_equal(labels["prediction"], model.predict(table))
        np.testing.assert_array_equal(proba[["proba_10", "proba_20", "proba_30"]], model.predict_proba(table))
    np.testing.assert_array_equal(labels["prediction"], named_classifier.labels(features))
    assert list(labels.columns) == [*COLUMNS, "id", "prediction"]


def test_result_columns_never_overwrite_the_data(named_classifier, table):
    frame = dd.from_pandas(table.assign(prediction=0), npartitions=2)
    with pytest.raises(InputError, match=r"already has the result column\(s\) \['prediction'\]"):
        predict(frame, named_classifier.path)


def test_two_worker_processes_each_open_the_shipped_package(named_classifier, table, features, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        frame = dd.from_pandas(table, npartitions=4)
        every = scored(cluster, predict(frame, named_classifier.path, result="all"))
        with distributed.Client(cluster) as client:
            opened = client.run(lambda: len(__import__("modelpack._workers")._workers._MODELS))
    np.testing.assert_array_equal(every["label"], named_classifier.labels(features))
    np.testing.assert_allclose(every[["probabilities_10", "probabilities_20", "probabilities_30"]],
                               named_classifier.proba(features), atol=1e-6)
    assert len(opened) == 2 and all(n == 1 for n in opened.values()), opened


def test_trusted_keys_are_checked_on_the_driver_and_in_the_workers(named_classifier, table, features, tmp_path):
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
    import shutil

    from modelpack._package import generate_key, sign
    from modelpack.errors import SignatureError

    public, other = generate_key(tmp_path / "alice"), generate_key(tmp_path / "mallory")
    signed = tmp_path / "signed.mpk"
    shutil.copy(named_classifier.path, signed)
    sign(signed, tmp_path / "alice")
    frame = dd.from_pandas(table, npartitions=2)
    with pytest.raises(SignatureError, match="none of them is trusted"):
        predict(frame, signed, trusted_keys=[other])
    with pytest.raises(SignatureError, match="not signed"):
        predict(frame, named_classifier.path, trusted_keys=[public])
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        got = scored(cluster, predict(frame, signed, trusted_keys=[public]))
    np.testing.assert_array_equal(got["prediction"], named_classifier.labels(features))
