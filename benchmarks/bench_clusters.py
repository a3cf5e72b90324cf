"""Rows per second through Spark, Ray Data and Dask on one machine, for the same model and data.

Each engine runs as a local cluster of two workers (Spark local[2], Ray num_cpus=2, a Dask
LocalCluster of 2 worker processes with one thread each), all three up at once, and
scores the same rows with the same package; the rounds alternate between the engines
and the table gives medians. Results stay in each engine (Spark's noop sink, Ray's
materialize, Dask's persist), so what is timed is the scoring, not a collect to the
driver. The first run of each engine (workers start, open the package) is reported apart.

Run: .venv/bin/python benchmarks/bench_clusters.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_section  # noqa: E402
from bench_batch import FEATURES, build_model  # noqa: E402

import modelpack  # noqa: E402

ROWS = 400_000
PARTITIONS = 8
ROUNDS = 3


def data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({f"f{i}": rng.normal(size=ROWS) for i in range(FEATURES)})


def in_process(package: Path, frame: pd.DataFrame) -> Callable[[], object]:
    model = modelpack.load(package)
    return lambda: model.predict(frame)


def spark_runs(package: Path, frame: pd.DataFrame) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    from pyspark.sql import SparkSession

    import modelpack.spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("bench").config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame(frame).repartition(PARTITIONS).cache()
    df.count()
    udf = modelpack.spark.predict_udf(spark, package)
    columns = list(frame.columns)
    return ({
        "Spark local[2], pandas UDF": lambda: df.select(udf(*columns).alias("p")).write.format("noop")
        .mode("overwrite").save(),
        "Spark local[2], mapInArrow": lambda: modelpack.spark.predict(df, package, features=columns).write
        .format("noop").mode("overwrite").save(),
    }, spark.stop)


def ray_runs(package: Path, frame: pd.DataFrame) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    import ray

    import modelpack.ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    blocks = ray.data.from_pandas([frame[i::PARTITIONS] for i in range(PARTITIONS)]).materialize()
    return ({"Ray Data num_cpus=2, 2 actors": lambda: modelpack.ray.predict(
        blocks, package, actors=2, batch_size=ROWS // PARTITIONS).materialize()}, ray.shutdown)


def dask_runs(package: Path, frame: pd.DataFrame) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, wait

    import modelpack.dask

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    ddf = client.persist(dd.from_pandas(frame, npartitions=PARTITIONS))
    wait(ddf)
    meta = modelpack.dask.predict(ddf, package)._meta

    def run() -> None:
        scored = client.persist(modelpack.dask.predict(ddf, package, meta=meta))
        wait(scored)
        del scored

    def stop() -> None:
        client.close()
        cluster.close()

    return {"Dask LocalCluster, 2 worker processes": run}, stop


def main() -> None:
    frame = data()
    with tempfile.TemporaryDirectory() as folder:
        package = build_model(Path(folder))
        runs: dict[str, Callable[[], object]] = {"in process, Model.predict (one call)": in_process(package, frame)}
        stops = []
        for start in (spark_runs, ray_runs, dask_runs):
            engine_runs, stop = start(package, frame)
            runs.update(engine_runs)
            stops.append(stop)
        first = {name: _seconds(run) for name, run in runs.items()}
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, run in runs.items():
                samples[name].append(_seconds(run))
        for stop in stops:
            stop()
    rows = [f"| {name} | {ROWS / statistics.median(s):,.0f} | {statistics.median(s):.2f} | {first[name]:.2f} |"
            for name, s in samples.items()]
    body = (f"Model: a 3-class linear classifier over {FEATURES} float features (bench_batch's); data: "
            f"{ROWS:,} rows of float64 in {PARTITIONS} partitions, already in each engine's memory; result: labels. "
            f"All three clusters run at once on the same 2 cores, rounds alternate between engines, "
            f"medians of {ROUNDS}. 'first run' includes starting the workers' Python and opening the package. "
            "Ray Data starts its actor pool (and so opens the package) for every dataset execution, so its later "
            "runs pay that too; Spark and Dask reuse their Python workers and the package they opened.\n\n"
            "| engine | rows/s | seconds | first run, seconds |\n|---|---:|---:|---:|\n" + "\n".join(rows) +
            "\n\nCommand: `.venv/bin/python benchmarks/bench_clusters.py`.")
    path = write_section("clusters", "Clusters: Spark, Ray Data and Dask on one machine", body,
                         ["modelpack", "onnxruntime", "pyspark", "ray", "dask", "distributed", "pandas", "pyarrow"])
    print(path.read_text())


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
