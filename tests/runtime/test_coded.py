"""String columns run on their distinct values (modelpack._runtime.coded): same answers, to the bit."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelpack
from modelpack._runtime.coded import CODES, CodedBackend, rewrite

from ..conftest import save_model

ort = pytest.importorskip("onnxruntime")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pytest.importorskip("skl2onnx")
from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler  # noqa: E402

PLANS, REGIONS = ["basic", "pro", "team"], ["north", "south", "east", "west"]


def _frame(n: int, seed: int, missing: float = 0.0) -> Any:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(40, 10, n), "plan": rng.choice(PLANS, n).astype(object),
                          "region": rng.choice(REGIONS, n).astype(object)})
    if missing:
        frame.loc[rng.random(n) < missing, "plan"] = None
    return frame


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three exported pipelines: one-hot columns, imputed and ordinal columns, and a tree model."""
    folder = tmp_path_factory.mktemp("coded")
    train = _frame(600, 0, missing=0.1)
    target = (train["age"] > 40) ^ (train["plan"] == "pro") ^ (train["region"] == "east")
    onehot = make_column_transformer((StandardScaler(), ["age"]),
                                     (OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]))
    imputed = make_column_transformer(
        (StandardScaler(), ["age"]),
        (make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="ignore")),
         ["plan"]),
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["region"]))
    made = {"onehot": make_pipeline(onehot, LogisticRegression()).fit(train.fillna("basic"), target),
            "imputed": make_pipeline(imputed, LogisticRegression()).fit(train, target),
            "trees": make_pipeline(make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan", "region"]),
                remainder="passthrough"), HistGradientBoostingClassifier(max_iter=20)).fit(
                    train.fillna("basic")[["plan", "region", "age"]], target)}  # a string input first
    paths = {}
    for name, pipe in made.items():
        paths[name] = folder / f"{name}.mpk"
        sample = train[:50] if name == "imputed" else train.fillna("basic")[:50]
        sample = sample[["plan", "region", "age"]] if name == "trees" else sample
        modelpack.export(pipe, paths[name], sample=sample)
    return paths


def _same(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    assert list(ours) == list(reference)
    for name, value in reference.items():
        assert np.array_equal(np.asarray(ours[name]), np.asarray(value)), name


@pytest.mark.parametrize("name", ["onehot", "imputed"])
def test_tables_give_the_exported_graphs_answers_to_the_bit(pipelines: dict[str, Path], name: str) -> None:
    frame = _frame(3000, 1, missing=0.1 if name == "imputed" else 0.0)
    frame.loc[5, "region"] = "nowhere"  # a category the model never saw
    with modelpack.load(pipelines[name]) as m, modelpack.load(pipelines[name], engine="onnxruntime") as plain:
        assert m.backend.coded_inputs == {"plan", "region"}
        assert not hasattr(plain.backend, "coded_inputs")
        reference = plain.run(frame)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        given = {"pandas (object)": frame.astype({"plan": object, "region": object}), "Arrow": table,
                 "Arrow in chunks": pa.Table.from_batches(table.to_batches(max_chunksize=700)),
                 "Arrow dictionaries": table.set_column(1, "plan", table.column("plan").dictionary_encode()),
                 "pandas (Arrow strings)": frame.astype({"plan": "string[pyarrow]", "region": "str"}),
                 "pandas (categorical)": frame.astype({"plan": "category", "region": "category"})}
        pl = pytest.importorskip("polars")
        given["polars"] = pl.from_arrow(table)
        given["polars (categorical)"] = pl.from_arrow(table).with_columns(pl.col("plan").cast(pl.Categorical))
        for what, data in given.items():
            _same(m.run(data), reference)
            assert np.array_equal(m.predict(data), plain.predict(data)), what
        _same(m.run(frame[:1]), plain.run(frame[:1]))  # one row: codes 0
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[0].to_dict().items()}
        _same(m.run(record), plain.run(record))


def test_an_arrow_column_is_given_coded_and_never_decoded(pipelines: dict[str, Path]) -> None:
    frame = _frame(2000, 2)
    with modelpack.load(pipelines["onehot"]) as m:
        feeds = m._adapt(pa.Table.from_pandas(frame, preserve_index=False))
        plan = feeds["plan"]
        assert plan.categories.shape == (3, 1) and sorted(plan.categories[:, 0].tolist()) == PLANS
        assert plan.codes.dtype == np.int64 and len(plan.codes) == 2000
        assert (plan.categories[plan.codes, 0] == frame["plan"].to_numpy()).all()
        objects = frame.astype({"plan": object, "region": object})
        coded = m._adapt(objects)["plan"]  # object columns: factorized by pandas
        assert (coded.categories[coded.codes, 0] == frame["plan"].to_numpy()).all()
        distinct = [f"id{i}" for i in range(len(objects))]
        ids = objects.assign(plan=pd.Series(distinct, dtype=object))  # mostly distinct: given whole
        assert isinstance(m._adapt(ids)["plan"], np.ndarray)
        # Calls without a coded column run the graph as exported, which pays for no Gather.
        ran, inner = [], m.backend._inner
        run = inner.run
        inner.run = lambda feeds, outputs=None: ran.append(sorted(feeds)) or run(feeds, outputs)
        m.predict(ids.assign(region=pd.Series(distinct, dtype=object)))
        m.predict(objects[:1])
        assert ran == []
        m.predict(pa.Table.from_pandas(frame, preserve_index=False))
        assert ran == [["age", "plan", "plan.codes", "region", "region.codes"]]
        assert [i.name for i in m.backend.session.get_inputs()] == ["age", "plan", "region"]  # as exported


def test_a_missing_value_without_a_fill_is_refused_as_before(pipelines: dict[str, Path]) -> None:
    frame = _frame(1000, 3, missing=0.05)
    with modelpack.load(pipelines["onehot"]) as m:
        for data in (frame, frame.astype({"plan": object}), pa.Table.from_pandas(frame, preserve_index=False)):
            with pytest.raises(modelpack.DTypeError, match="missing value"):
                m.predict(data)


@pytest.mark.parametrize("odd", [pd.NaT, 3, ["a"]])
def test_an_object_column_with_odd_values_is_judged_as_before(pipelines: dict[str, Path], odd: Any) -> None:
    frame = _frame(1000, 3).astype({"plan": object})
    frame.loc[500, "plan"] = odd
    with modelpack.load(pipelines["imputed"]) as m, modelpack.load(pipelines["imputed"], engine="onnxruntime") as plain:
        with pytest.raises(modelpack.DTypeError) as ours:
            m.predict(frame)
        with pytest.raises(modelpack.DTypeError) as theirs:
            plain.predict(frame)
    assert str(ours.value) == str(theirs.value)  # NaT is no missing value to the policy: refused, not filled


def test_a_tree_model_keeps_its_engine_and_its_answers(pipelines: dict[str, Path]) -> None:
    frame = _frame(5000, 4)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with modelpack.load(pipelines["trees"]) as m, modelpack.load(pipelines["trees"], engine="onnxruntime") as plain:
        assert m.engine == "modelpack-trees", m.engine_reason
        assert m.backend.coded_inputs == {"plan", "region"}
        engine, batches = m.backend._inner._engine, []
        run = engine.run
        engine.run = lambda x: batches.append(len(x)) or run(x)
        assert m.backend._exported is None  # the tree backend's own whole-graph session serves small batches
        assert np.array_equal(m.predict(table), plain.predict(frame))
        arrays = {"plan": frame[["plan"]].to_numpy(object), "region": frame[["region"]].to_numpy(object),
                  "age": frame[["age"]].to_numpy(np.float32)}
        assert np.array_equal(m.predict(arrays), plain.predict(frame))  # arrays come whole: codes 0..N-1
        np.testing.assert_allclose(m.predict_proba(table), plain.predict_proba(frame), rtol=1e-5, atol=1e-6)
        assert batches == [5000, 5000, 5000]  # the engine ran every batch, the columns coded or not


def test_a_coded_model_pickles_and_binds_as_before(pipelines: dict[str, Path]) -> None:
    frame = _frame(100, 5)
    with modelpack.load(pipelines["onehot"]) as m:
        again = pickle.loads(pickle.dumps(m))
        assert np.array_equal(again.predict(frame), m.predict(frame))
        feeds = {"age": frame[["age"]].to_numpy(np.float32), "plan": frame[["plan"]].to_numpy(object),
                 "region": frame[["region"]].to_numpy(object)}
        # ONNX Runtime binds no string array; the codes input stays out of the caller's sight.
        with pytest.raises(modelpack.RuntimeBackendError, match="non-string numpy arrays"):
            m.run_on_device(feeds)
        with pytest.raises(TypeError):
            pickle.dumps(m.backend)


def test_verify_runs_the_rewritten_graph(pipelines: dict[str, Path]) -> None:
    """Samples come as arrays, which run the graph as exported; ``every_batch`` (verify's way
    in) sends them through the rewritten graph, with codes 0..N-1."""
    frame = _frame(40, 6)
    with modelpack.load(pipelines["onehot"]) as m, modelpack.load(pipelines["onehot"], engine="onnxruntime") as plain:
        ran: list[int] = []
        run = m.backend._inner.run
        m.backend._inner.run = lambda feeds, outputs=None: ran.append(len(feeds)) or run(feeds, outputs)
        with m.backend.every_batch():
            assert np.array_equal(m.predict(frame.to_dict("list")), plain.predict(frame))
        assert ran == [5]  # three columns and two codes inputs
    assert modelpack.verify(pipelines["onehot"]).ok


# -- hostile dictionaries ---------------------------------------------------------------------------
@pytest.mark.parametrize("index", [3, -1, 1 << 20])
def test_a_dictionary_pointing_outside_itself_is_refused(pipelines: dict[str, Path], index: int) -> None:
    frame = _frame(400, 6)
    indices = pa.array(np.where(np.arange(400) == 7, index, 0).astype(np.int32))
    bad = pa.DictionaryArray.from_arrays(indices, pa.array(PLANS), safe=False)
    table = pa.Table.from_pandas(frame, preserve_index=False).set_column(1, "plan", bad)
    for engine in ("auto", "onnxruntime"):  # coded, and decoded as before
        with modelpack.load(pipelines["onehot"], engine=engine) as m, \
                pytest.raises(modelpack.InputError, match="indices point outside its 3 value"):
            m.predict(table)


# -- the rewrite, on graphs made by hand --------------------------------------------------------------
def _string_in(name: str = "s", width: int = 1) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.STRING, ["N", width])


def _encoder(inp: str, out: str, values: list[str]) -> Any:
    return helper.make_node("LabelEncoder", [inp], [out], domain="ai.onnx.ml", keys_strings=values,
                            values_int64s=list(range(len(values))), default_int64=-1)


def _graph(tmp_path: Path, nodes: list, inputs: list, outputs: list, initializers: list | None = None) -> bytes:
    path = save_model(tmp_path / "g.onnx", nodes, inputs, outputs, initializers=initializers, ml_opset=3)
    return path.read_bytes()


def _check(data: bytes, feeds: dict[str, np.ndarray], coded: set[str]) -> onnx.ModelProto | None:
    """Rewrite ``data``; the rewritten graph must answer as the original, fed codes and fed whole."""
    found = rewrite(data, [k for k, v in feeds.items() if v.dtype == object])
    assert set(found[1] if found else ()) == coded
    if found is None:
        return None
    reference = ort.InferenceSession(data).run(None, feeds)
    session = ort.InferenceSession(found[0])
    whole, distinct = dict(feeds), dict(feeds)
    for name, codes_name in found[1].items():
        assert codes_name == name + CODES
        whole[codes_name] = np.arange(len(feeds[name]), dtype=np.int64)
        categories, codes = np.unique(feeds[name].astype(str), axis=0, return_inverse=True)
        distinct[name], distinct[codes_name] = categories.astype(object), codes.reshape(-1).astype(np.int64)
    for given in (whole, distinct):
        for ours, theirs in zip(session.run(None, given), reference, strict=True):
            assert np.array_equal(ours, theirs)
    return onnx.load_model_from_string(found[0])


def _gathered(model: onnx.ModelProto) -> list[str]:
    return [n.output[0] for n in model.graph.node if n.op_type == "Gather" and n.input[1].endswith(CODES)]


WORDS = np.array([["a"], ["b"], ["c"], ["a"], ["zz"], ["b"]], dtype=object)


def test_the_cone_ends_at_a_reshape_that_would_mix_rows(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat")
    nodes = [_encoder("s", "e", ["a", "b", "c"]), helper.make_node("Reshape", ["e", "flat"], ["y"])]
    data = _graph(tmp_path, nodes, [_string_in()], [helper.make_tensor_value_info("y", TensorProto.INT64, ["M"])],
                  [shape])
    model = _check(data, {"s": WORDS}, {"s"})
    assert _gathered(model) == ["y"]  # [N, 1] -> [N] keeps one value per row
    words = np.array([["a", "b"], ["c", "a"], ["b", "b"]], dtype=object)
    two = _graph(tmp_path, nodes, [_string_in(width=2)], [helper.make_tensor_value_info("y", TensorProto.INT64, ["M"])],
                 [shape])
    assert _gathered(_check(two, {"s": words}, {"s"})) == ["e"]  # [N, 2] -> [2N]: not a row each


def test_concatenating_rows_or_squeezing_every_axis_ends_the_cone(tmp_path: Path) -> None:
    nodes = [_encoder("s", "e", ["a", "b"]), helper.make_node("Concat", ["e", "e"], ["rows"], axis=0),
             helper.make_node("Concat", ["e", "e"], ["cols"], axis=-1), helper.make_node("Squeeze", ["e"], ["sq"])]
    outs = [helper.make_tensor_value_info(n, TensorProto.INT64, shape)
            for n, shape in (("rows", ["M", 1]), ("cols", ["N", 2]), ("sq", ["N"]))]
    model = _check(_graph(tmp_path, nodes, [_string_in()], outs), {"s": WORDS}, {"s"})
    assert sorted(_gathered(model)) == ["cols", "e"]


def test_strings_leave_a_cone_only_as_the_column(tmp_path: Path) -> None:
    upper = helper.make_node("LabelEncoder", ["s"], ["u"], domain="ai.onnx.ml", keys_strings=["a", "b"],
                             values_strings=["A", "B"], default_string="?")
    data = _graph(tmp_path, [upper], [_string_in()], [helper.make_tensor_value_info("u", TensorProto.STRING, ["N", 1])])
    assert _check(data, {"s": WORDS}, set()) is None


def test_a_column_read_elsewhere_whole_is_left_as_it_is(tmp_path: Path) -> None:
    nodes = [_encoder("s", "e", ["a", "b"]), helper.make_node("Identity", ["s"], ["copy"]),
             helper.make_node("Size", ["copy"], ["n"])]
    outs = [helper.make_tensor_value_info("e", TensorProto.INT64, ["N", 1]),
            helper.make_tensor_value_info("n", TensorProto.INT64, [])]
    assert _check(_graph(tmp_path, nodes, [_string_in()], outs), {"s": WORDS}, set()) is None


def test_a_constant_that_reaches_the_rows_ends_the_cone(tmp_path: Path) -> None:
    per_row = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(6, 1), "per_row")
    one = numpy_helper.from_array(np.array([1], dtype=np.int64), "one")
    nodes = [_encoder("s", "e", ["a", "b", "c"]), helper.make_node("Equal", ["e", "one"], ["is_b"]),
             helper.make_node("Equal", ["e", "per_row"], ["same"])]
    outs = [helper.make_tensor_value_info(n, TensorProto.BOOL, ["N", 1]) for n in ("is_b", "same")]
    model = _check(_graph(tmp_path, nodes, [_string_in()], outs, [per_row, one]), {"s": WORDS}, {"s"})
    assert sorted(_gathered(model)) == ["e", "is_b"]


def test_a_graph_with_subgraphs_is_not_rewritten(tmp_path: Path) -> None:
    branch = helper.make_graph([helper.make_node("Identity", ["e"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.INT64, ["N", 1])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [_encoder("s", "e", ["a", "b"]), helper.make_node("If", ["cond"], ["y"], then_branch=branch,
                                                               else_branch=branch)]
    data = _graph(tmp_path, nodes, [_string_in()], [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 1])],
                  [cond])
    assert _check(data, {"s": WORDS}, set()) is None


def test_a_package_naming_an_input_like_the_codes_gets_another_name(tmp_path: Path) -> None:
    nodes = [_encoder("s", "e", ["a", "b"]), helper.make_node("Identity", ["s.codes"], ["c"])]
    outs = [helper.make_tensor_value_info("e", TensorProto.INT64, ["N", 1]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N"])]
    data = _graph(tmp_path, nodes, [_string_in(), helper.make_tensor_value_info("s.codes", TensorProto.FLOAT, ["N"])],
                  outs)
    found = rewrite(data, ["s"])
    assert found is not None and found[1] == {"s": "s.codes.2"}
    path = tmp_path / "g.mpk"
    modelpack.pack(tmp_path / "g.onnx", path)
    with modelpack.load(path) as m:
        assert isinstance(m.backend, CodedBackend) and m.backend.input_names == ["s", "s.codes"]
        out = m.run({"s": WORDS, "s.codes": np.zeros(6, dtype=np.float32)})
    assert out["e"].tolist() == [[0], [1], [-1], [0], [-1], [1]]


def test_a_graph_of_ml_operators_alone_gets_the_default_domain_for_its_gathers(tmp_path: Path) -> None:
    graph = helper.make_graph([_encoder("s", "e", ["a", "b", "c"])], "ml", [_string_in()],
                              [helper.make_tensor_value_info("e", TensorProto.INT64, ["N", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    rewritten = _check(model.SerializeToString(), {"s": WORDS}, {"s"})
    assert {o.domain for o in rewritten.opset_import} == {"ai.onnx.ml", ""}


def test_an_input_with_a_default_value_is_left_as_it_is(tmp_path: Path) -> None:
    default = numpy_helper.from_array(np.array([["a"]], dtype=object), "s")
    data = _graph(tmp_path, [_encoder("s", "e", ["a", "b"])], [_string_in()],
                  [helper.make_tensor_value_info("e", TensorProto.INT64, ["N", 1])], [default])
    assert _check(data, {"s": WORDS}, set()) is None


def test_an_input_with_a_default_is_no_constant(tmp_path: Path) -> None:
    one = numpy_helper.from_array(np.array([[1]], dtype=np.int64), "k")
    nodes = [_encoder("s", "e", ["a", "b", "c"]), helper.make_node("Equal", ["e", "k"], ["same"])]
    inputs = [_string_in(), helper.make_tensor_value_info("k", TensorProto.INT64, ["M", 1])]
    data = _graph(tmp_path, nodes, inputs, [helper.make_tensor_value_info("same", TensorProto.BOOL, ["N", 1])], [one])
    model = _check(data, {"s": WORDS, "k": np.arange(6, dtype=np.int64).reshape(6, 1)}, {"s"})
    assert _gathered(model) == ["e"]  # k may be fed per row: the Equal stays outside the cone
