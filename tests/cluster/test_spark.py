"""predict_udf on a local Spark session, compared with the closed form and with Model.predict."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

import modelpack
from modelpack.errors import TaskError

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark)")
pd = pytest.importorskip("pandas")
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from modelpack.spark import predict_udf, result_type  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
COLUMNS = ["f0", "f1", "f2", "f3"]


# -- result types: read from the manifest, no JVM ----------------------------------------------
def test_result_types_come_from_the_manifest(classifier, zipmap_classifier, regressor):
    m = modelpack.inspect(classifier.path)
    assert result_type(m, "label") == T.LongType()
    assert result_type(m, "proba") == T.ArrayType(T.DoubleType())
    assert result_type(m, "all") == T.StructType([T.StructField("label", T.LongType()),
                                                  T.StructField("probabilities", T.ArrayType(T.FloatType()))])
    z = modelpack.inspect(zipmap_classifier.path)
    assert result_type(z, "label") == T.StringType()
    assert result_type(z, "all")["output_probability"].dataType == T.ArrayType(T.DoubleType())
    r = modelpack.inspect(regressor.path)
    assert result_type(r, "label") == T.ArrayType(T.FloatType())
    with pytest.raises(TaskError, match="result='proba' needs a classifier"):
        result_type(r, "proba")
    with pytest.raises(TaskError, match="not one of label, proba, all"):
        result_type(r, "scores")


# -- a real local session ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (java on PATH or JAVA_HOME)")
    from pyspark.sql import SparkSession

    previous = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import this environment's modelpack
    session = (SparkSession.builder.master("local[2]").appName("modelpack-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "16").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if previous is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = previous


@pytest.fixture(scope="module")
def frame(spark, features):
    table = pd.DataFrame(features.astype(np.float64), columns=COLUMNS).assign(id=np.arange(len(features)))
    return spark.createDataFrame(table).repartition(2)


def collect(df, column="p"):
    rows = df.orderBy("id").collect()
    return [r[column] for r in rows]


@pytest.mark.slow
def test_labels_by_name_by_position_and_as_vectors(spark, frame, classifier, named_classifier, features):
    expected = classifier.labels(features)
    with modelpack.load(named_classifier.path) as m:
        np.testing.assert_array_equal(m.predict(pd.DataFrame(features, columns=COLUMNS)), expected)
    named, plain = predict_udf(spark, named_classifier.path), predict_udf(spark, classifier.path)
    scored = frame.select("id", named(F.struct(*reversed(COLUMNS))).alias("by_name"),
                          named(*COLUMNS).alias("by_position"), plain(*COLUMNS).alias("stacked"),
                          plain(F.array(*COLUMNS)).alias("vector"))
    rows = scored.orderBy("id").collect()
    for column in ("by_name", "by_position", "stacked", "vector"):
        np.testing.assert_array_equal([r[column] for r in rows], expected, err_msg=column)


@pytest.mark.slow
def test_probabilities_and_every_output(spark, frame, zipmap_classifier, features):
    proba = collect(frame.select("id", predict_udf(spark, zipmap_classifier.path, result="proba")(
        *COLUMNS).alias("p")))
    np.testing.assert_allclose(np.array(proba), zipmap_classifier.proba(features), atol=1e-6)
    every = collect(frame.select("id", predict_udf(spark, zipmap_classifier.path, result="all")(
        *COLUMNS).alias("p")))
    np.testing.assert_array_equal([r["label"] for r in every], zipmap_classifier.labels(features))
    np.testing.assert_allclose([r["output_probability"] for r in every], zipmap_classifier.proba(features),
                               atol=1e-6)


@pytest.mark.slow
def test_shipped_folder_and_url_packages(spark, frame, regressor, features, tmp_path):
    folder = tmp_path / "reg-folder"
    modelpack.pack(regressor.path.with_suffix(".onnx"), folder, name="reg")
    shipped = collect(frame.select("id", predict_udf(spark, folder, ship=True)(*COLUMNS).alias("p")))
    np.testing.assert_allclose(np.array(shipped), regressor.scores(features), rtol=1e-5, atol=1e-5)
    fetched = collect(frame.select("id", predict_udf(spark, regressor.path.resolve().as_uri())(
        *COLUMNS).alias("p")))
    np.testing.assert_allclose(np.array(fetched), regressor.scores(features), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_wrong_columns_fail_the_job_with_the_fix(spark, frame, classifier, named_classifier, regressor):
    from pyspark.errors import PythonException

    with pytest.raises(PythonException, match="axis 1 has 2 values where the model takes 4"):
        frame.select(predict_udf(spark, classifier.path)("f0", "f1")).collect()
    with pytest.raises(PythonException, match="the UDF was given 2 column.*takes 4.*struct"):
        frame.select(predict_udf(spark, named_classifier.path)("f0", "f1")).collect()
    with pytest.raises(TaskError, match="result='proba' needs a classifier"):
        predict_udf(spark, regressor.path, result="proba")


@pytest.mark.slow
def test_trusted_keys_are_checked_on_the_driver_and_the_workers(spark, frame, regressor, features, tmp_path):
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
    from modelpack._package import generate_key, sign
    from modelpack.errors import SignatureError

    public, other = generate_key(tmp_path / "alice"), generate_key(tmp_path / "mallory")
    signed = tmp_path / "signed.mpk"
    shutil.copy(regressor.path, signed)
    sign(signed, tmp_path / "alice")
    udf = predict_udf(spark, signed, ship=True, trusted_keys=[public])
    got = collect(frame.select("id", udf(*COLUMNS).alias("p")))
    np.testing.assert_allclose(np.array(got), regressor.scores(features), rtol=1e-5, atol=1e-5)
    with pytest.raises(SignatureError, match="none of them is trusted"):
        predict_udf(spark, signed, trusted_keys=[other])
    with pytest.raises(SignatureError, match="not signed"):
        predict_udf(spark, regressor.path, trusted_keys=[public])


# -- mapInArrow: whole DataFrames ---------------------------------------------------------------
@pytest.mark.slow
def test_predict_adds_a_column_through_arrow_batches(spark, frame, classifier, named_classifier,
                                                     zipmap_classifier, features):
    from modelpack.spark import predict

    with modelpack.load(named_classifier.path) as model:
        expected = model.predict(pd.DataFrame(features, columns=COLUMNS))
    by_name = predict(frame, named_classifier.path).orderBy("id")
    assert by_name.columns == [*COLUMNS, "id", "prediction"]
    np.testing.assert_array_equal([r["prediction"] for r in by_name.collect()], expected)
    positional = collect(predict(frame, classifier.path, features=COLUMNS, column="p"))
    np.testing.assert_array_equal(positional, classifier.labels(features))
    proba = collect(predict(frame, zipmap_classifier.path, result="proba", features=COLUMNS, column="p",
                            ship=True))
    np.testing.assert_allclose(np.array(proba), zipmap_classifier.proba(features), atol=1e-6)
    every = collect(predict(frame, classifier.path, result="all", features=COLUMNS, column="p"))
    np.testing.assert_array_equal([r["label"] for r in every], classifier.labels(features))
    np.testing.assert_allclose([r["probabilities"] for r in every], classifier.proba(features), atol=1e-6)


@pytest.mark.slow
def test_predict_refuses_clashing_and_missing_columns(spark, frame, named_classifier):
    from modelpack.errors import InputError
    from modelpack.spark import predict

    with pytest.raises(InputError, match="already has a column 'id'"):
        predict(frame, named_classifier.path, column="id")
    with pytest.raises(InputError, match=r"does not have: \['g0'\]"):
        predict(frame, named_classifier.path, features=["g0"])


def test_a_worker_python_without_modelpack_is_explained(tmp_path):
    from types import SimpleNamespace

    from modelpack.errors import ModelpackError
    from modelpack.spark import _check_worker_python

    _check_worker_python(SimpleNamespace(pythonExec=sys.executable))  # this interpreter: fine
    bare = tmp_path / "python3"
    bare.write_text("#!/bin/sh\nexit 1\n")  # an interpreter on which `import modelpack` fails
    bare.chmod(0o755)
    for python in (str(bare), str(tmp_path / "missing-python")):
        with pytest.raises(ModelpackError, match=r"cannot import modelpack.*Set PYSPARK_PYTHON=") as caught:
            _check_worker_python(SimpleNamespace(pythonExec=python))
        assert sys.executable in str(caught.value)
