"""ai.onnx.ml's Scaler as standard operators (modelpack._runtime.elementwise): same answers, to the bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import modelpack
from modelpack._runtime.elementwise import EXPAND_UP_TO, LARGE, ByRows, rewrite

ort = pytest.importorskip("onnxruntime")

ML = "ai.onnx.ml"
ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.int64: TensorProto.INT64}
# Values an exact rewrite must carry through unchanged: signed zeros, subnormals, the
# largest finite floats (whose products overflow), infinities and NaN.
SPECIAL = [0.0, -0.0, 1e-45, -1e-40, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan, 1.0, -2.5, 1e-3]


def _scaler(dims: list[Any], offset: list[float], scale: list[float], dtype: Any = np.float32, *,
            default_domain: bool = True, extra: list[Any] | None = None, columns: int = 0) -> bytes:
    """x -> Scaler -> y, x of ``dims``; ``extra`` nodes follow (their outputs are outputs too).

    ``columns``: x is instead the Concat of that many ``[N, 1]`` inputs c0, c1... (what a
    ColumnTransformer over a table's columns exports).
    """
    nodes = [helper.make_node("Scaler", ["x"], ["y"], domain=ML, offset=offset, scale=scale, name="scale")]
    inputs = [helper.make_tensor_value_info("x", ELEM[dtype], dims)]
    if columns:
        inputs = [helper.make_tensor_value_info(f"c{j}", ELEM[dtype], ["N", 1]) for j in range(columns)]
        nodes.insert(0, helper.make_node("Concat", [f"c{j}" for j in range(columns)], ["x"], axis=1))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    for node in extra or []:
        nodes.append(node)
        outputs.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    opsets = [helper.make_opsetid(ML, 1)] + ([helper.make_opsetid("", 17)] if default_domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _feeds(x: np.ndarray, columns: int) -> dict[str, np.ndarray]:
    return {f"c{j}": x[:, j:j + 1].copy() for j in range(columns)} if columns else {"x": x}


def _ops(data: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_model_from_string(data).graph.node]


def _bits(value: np.ndarray) -> np.ndarray:
    """The bits of each value, every NaN as one: which NaN an operation on NaNs gives (its sign
    and payload) depends on the order of its operands, which neither ONNX nor IEEE 754 fixes."""
    return np.where(np.isnan(value), np.nan, value).view(np.uint32 if value.dtype == np.float32 else np.uint64)


def _same_answers(data: bytes, rewritten: bytes, x: np.ndarray, columns: int = 0) -> None:
    feeds = _feeds(x, columns)
    theirs = ort.InferenceSession(data).run(None, feeds)
    ours = ort.InferenceSession(rewritten).run(None, feeds)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(_bits(a), _bits(b))


def _values(rows: int, features: int, dtype: Any, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 100, (rows, features))
    x.flat[: len(SPECIAL)] = SPECIAL[: x.size]
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("features", "one_value"), [(1, True), (4, True), (2, False), (4, False),
                                                     (EXPAND_UP_TO, False), (EXPAND_UP_TO + 1, False),
                                                     (40, False)])
def test_every_form_gives_the_scalers_answers_to_the_bit(dtype: Any, features: int, one_value: bool) -> None:
    rng = np.random.default_rng(features)
    count = 1 if one_value else features
    offset = [-0.0, *rng.normal(0, 50, count).tolist()][-count:] if count > 1 else [-1.5]
    scale = [*rng.normal(0, 3, count - 1).tolist(), -0.0]
    data = _scaler(["N", features], offset, scale, dtype)
    rewritten = rewrite(data)
    assert rewritten is not None and "Scaler" not in _ops(rewritten)
    expanded = "Expand" in _ops(rewritten)
    assert expanded == (not one_value and features <= EXPAND_UP_TO)
    for rows in (0, 1, 257):
        _same_answers(data, rewritten, _values(rows, features, dtype, seed=rows))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("one_value", [True, False])
def test_columns_concatenated_from_a_table_are_scaled_one_by_one(dtype: Any, one_value: bool) -> None:
    """What a ColumnTransformer over DataFrame columns exports: [N, 1] inputs, Concat, Scaler."""
    offset, scale = ([40.0], [0.1]) if one_value else ([40.0, 5.0, 0.0], [0.1, -0.0, 1.0])
    data = _scaler(["N", 3], offset, scale, dtype, columns=3)
    rewritten = rewrite(data)
    assert rewritten is not None
    ops = _ops(rewritten)
    assert "Scaler" not in ops and "Expand" not in ops and ops.count("Sub") == 3 and ops.count("Concat") == 1
    for rows in (0, 1, 300):
        _same_answers(data, rewritten, _values(rows, 3, dtype, seed=rows), columns=3)


@pytest.mark.parametrize("case", ["concatenation read elsewhere", "a negative zero offset"])
def test_columns_that_cannot_be_scaled_one_by_one_are_scaled_together(case: str) -> None:
    extra = [helper.make_node("Neg", ["x"], ["minus"])] if case == "concatenation read elsewhere" else []
    offset = [1.0, -0.0, 2.0] if case == "a negative zero offset" else [1.0, 3.0, 2.0]
    data = _scaler(["N", 3], offset, [2.0, 0.5, 1.0], columns=3, extra=extra)
    rewritten = rewrite(data)
    assert rewritten is not None and "Expand" in _ops(rewritten)
    _same_answers(data, rewritten, _values(100, 3, np.float32), columns=3)


def test_a_graph_of_ml_operators_alone_gets_the_default_domain() -> None:
    data = _scaler(["N", 3], [1.0, 2.0, 3.0], [0.5, 0.25, 2.0], default_domain=False)
    rewritten = rewrite(data)
    assert rewritten is not None
    assert {o.domain for o in onnx.load_model_from_string(rewritten).opset_import} == {ML, ""}
    _same_answers(data, rewritten, _values(50, 3, np.float32))


@pytest.mark.parametrize("case", ["unknown features", "three axes", "values for other features",
                                  "offsets and scales differ", "integers"])
def test_a_scaler_the_graph_does_not_pin_down_is_left_as_it_is(case: str) -> None:
    dims, offset, scale, dtype = {
        "unknown features": (["N", "F"], [1.0, 2.0], [3.0, 4.0], np.float32),
        "three axes": (["N", 2, 2], [1.0, 2.0], [3.0, 4.0], np.float32),
        "values for other features": (["N", 4], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], np.float32),
        "offsets and scales differ": (["N", 2], [1.0], [3.0, 4.0], np.float32),
        "integers": (["N", 2], [1.0, 2.0], [3.0, 4.0], np.int64)}[case]
    assert rewrite(_scaler(dims, offset, scale, dtype)) is None


def test_offsets_of_zeros_with_a_negative_zero_are_left_to_the_scaler() -> None:
    """ONNX Runtime's optimizer drops a Sub of zeros: exact for +0.0, but x - (-0.0) makes -0.0 +0.0."""
    data = _scaler(["N", 2], [0.0, -0.0], [1.0, 2.0])
    assert rewrite(data) is None
    positive = _scaler(["N", 2], [0.0, 0.0], [1.0, 2.0])
    rewritten = rewrite(positive)
    assert rewritten is not None
    _same_answers(positive, rewritten, _values(30, 2, np.float32))


def test_a_declared_shape_that_lies_is_not_believed() -> None:
    """value_info says [N, 4]; the input is [N, 1], which ONNX Runtime's Scaler refuses for 4 offsets.

    Believing it would expand the 4 offsets over the one column and answer for four.
    """
    model = onnx.load_model_from_string(_scaler(["N", 1], [1.0, 2.0, 3.0, 4.0], [1.0] * 4))
    model.graph.value_info.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]))
    assert rewrite(model.SerializeToString()) is None


def test_a_graph_with_subgraphs_is_not_rewritten() -> None:
    branch = helper.make_graph([helper.make_node("Identity", ["y"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    flag = helper.make_node("Constant", [], ["flag"], value=helper.make_tensor("f", TensorProto.BOOL, [], [True]))
    when = helper.make_node("If", ["flag"], ["w"], then_branch=branch, else_branch=branch)
    assert rewrite(_scaler(["N", 2], [1.0, 2.0], [3.0, 4.0], extra=[flag, when])) is None


def test_new_names_do_not_meet_the_graphs_own() -> None:
    """A later node already named like the rewrite's tensors: both keep their meaning."""
    taken = helper.make_node("Neg", ["y"], ["scale.shape"], name="scale.Sub")
    data = _scaler(["N", 2], [1.0, 2.0], [3.0, 4.0], extra=[taken])
    rewritten = rewrite(data)
    assert rewritten is not None
    names = [n.name for n in onnx.load_model_from_string(rewritten).graph.node]
    assert len(names) == len(set(names))
    _same_answers(data, rewritten, _values(20, 2, np.float32))


_FLOATS = st.one_of(st.sampled_from(SPECIAL), st.floats(width=32, allow_nan=True, allow_infinity=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features=st.integers(1, 24), one_value=st.booleans(), double=st.booleans(), columns=st.booleans(),
       data=st.data())
def test_random_scalers_answer_as_onnx_runtime(features: int, one_value: bool, double: bool, columns: bool,
                                               data: Any) -> None:
    count = 1 if one_value else features
    offset = data.draw(st.lists(_FLOATS, min_size=count, max_size=count))
    scale = data.draw(st.lists(_FLOATS, min_size=count, max_size=count))
    dtype = np.float64 if double else np.float32
    model = _scaler(["N", features], offset, scale, dtype, columns=features if columns else 0)
    rewritten = rewrite(model)
    if rewritten is None:  # (left as it is only for offsets of zeros with a -0.0 among them)
        assert not any(offset) and any(np.signbit(offset))
        return
    rows = data.draw(st.integers(0, 40))
    cells = data.draw(st.lists(_FLOATS, min_size=rows * features, max_size=rows * features))
    x = np.array(cells, dtype=np.float64).reshape(rows, features).astype(dtype)
    _same_answers(model, rewritten, x, columns=features if columns else 0)


# Through load(): exported scikit-learn pipelines run the rewritten graph, with the same answers.

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
from sklearn.ensemble import GradientBoostingRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler, RobustScaler, StandardScaler  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scalers")
    rng = np.random.default_rng(0)
    x = rng.normal(10, 5, (400, 6)).astype(np.float32)
    y = x @ rng.normal(size=6)
    made = {"standard-logistic": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y > np.median(y)),
            "maxabs-ridge": make_pipeline(MaxAbsScaler(), Ridge()).fit(x, y),
            "robust-trees": make_pipeline(RobustScaler(), GradientBoostingRegressor(n_estimators=20)).fit(x, y)}
    paths = {}
    for name, pipe in made.items():
        paths[name] = folder / f"{name}.mpk"
        modelpack.export(pipe, paths[name], sample=x[:50])
    return paths


@pytest.mark.parametrize("name", ["standard-logistic", "maxabs-ridge"])
def test_an_exported_pipeline_runs_without_its_scaler_and_answers_the_same(exported: dict[str, Path],
                                                                          name: str) -> None:
    x = _finite(_values(3000, 6, np.float32, seed=3))
    with modelpack.load(exported[name]) as m, modelpack.load(exported[name], engine="onnxruntime") as plain:
        ours, theirs = m.run(x), plain.run(x)
        assert list(ours) == list(theirs)
        for key in theirs:
            assert np.array_equal(np.asarray(ours[key]), np.asarray(theirs[key])), key
        if plain.placement is None:
            pytest.skip("this onnxruntime keeps no record of the operators a session runs (before 1.24)")
        ran = {op for provider in (m.placement or {}).values() for op in provider["ops"]}
        exported_ops = {op for provider in plain.placement.values() for op in provider["ops"]}
        assert "ai.onnx.ml.Scaler" in exported_ops and "ai.onnx.ml.Scaler" not in ran


def test_a_tree_model_keeps_its_scaler_and_feeds_its_engine_the_scalers_rows(exported: dict[str, Path]) -> None:
    """The engine sums its trees in its own order (docs/trees.md), so its values are compared
    within float32 rounding; the rows the part before it hands it must be the Scaler's own."""
    from modelpack._package.container import open_package

    x = _finite(_values(3000, 6, np.float32, seed=4))
    package = open_package(exported["robust-trees"])
    graph = onnx.load_model_from_string(package.read_bytes(package.manifest.model.file))
    scaler = next(n for n in graph.graph.node if n.op_type == "Scaler")
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(scaler.output[0], TensorProto.FLOAT, None))
    scaled = ort.InferenceSession(graph.SerializeToString()).run(None, {graph.graph.input[0].name: x})[0]
    with modelpack.load(exported["robust-trees"]) as m, \
            modelpack.load(exported["robust-trees"], engine="onnxruntime") as plain:
        assert m.engine == "modelpack-trees", m.engine_reason
        assert not isinstance(m.backend, ByRows)  # (its Scaler is a small part of its time)
        engine, fed = m.backend._engine, []
        run = engine.run
        engine.run = lambda rows: fed.append(np.array(rows)) or run(rows)
        np.testing.assert_allclose(m.predict(x), plain.predict(x), rtol=1e-5, atol=1e-5)
        assert len(fed) == 1 and np.array_equal(_bits(fed[0]), _bits(scaled))


def test_small_batches_run_the_graph_as_exported(exported: dict[str, Path]) -> None:
    """Below LARGE rows the rewritten graph's extra nodes cost more than the Scaler saves."""
    x = _finite(_values(3 * LARGE, 6, np.float32, seed=5))
    with modelpack.load(exported["standard-logistic"]) as m, \
            modelpack.load(exported["standard-logistic"], engine="onnxruntime") as plain:
        assert isinstance(m.backend, ByRows)
        ran: list[str] = []
        for side in ("_inner", "_exported"):
            backend = getattr(m.backend, side)
            run = backend.run
            backend.run = lambda feeds, outputs=None, run=run, side=side: ran.append(side) or run(feeds, outputs)
        for rows in (1, LARGE - 1, LARGE, len(x)):
            assert np.array_equal(m.predict_proba(x[:rows]), plain.predict_proba(x[:rows]))
        assert ran == ["_exported", "_exported", "_inner", "_inner"]
        with m.backend.every_batch():  # (how verify checks what large calls run)
            assert np.array_equal(m.predict_proba(x[:3]), plain.predict_proba(x[:3]))
        m.predict(x[:3])
        assert ran[4:] == ["_inner", "_exported"]
        assert m.backend.session is not None and "ai.onnx.ml.Scaler" not in str(m.placement)
    report = modelpack.verify(exported["standard-logistic"])
    assert report.ok, report


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x).all(axis=1)]  # (the exporter records that these columns refuse NaN)


# Add, Sub, Mul and Div by a short constant: the constant expanded to the tensor's shape.

def _arithmetic(steps: list[tuple[str, np.ndarray, bool]], features: int, dtype: Any = np.float32, *,
                producer: str = "Cast", ml: bool = True) -> bytes:
    """x -> producer -> each (op, constant, constant first) in turn -> y, over [N, features]."""
    nodes, initializers, current = [], [], "x"
    if producer == "Cast":
        nodes.append(helper.make_node("Cast", ["x"], ["cast"], to=ELEM[dtype]))
        current = "cast"
    elif producer == "MatMul":
        initializers.append(numpy_helper.from_array(np.eye(features, dtype=dtype), "eye"))
        nodes.append(helper.make_node("MatMul", ["x", "eye"], ["product"]))
        current = "product"
    for k, (op, constant, first) in enumerate(steps):
        initializers.append(numpy_helper.from_array(constant.astype(dtype), f"c{k}"))
        inputs = [f"c{k}", current] if first else [current, f"c{k}"]
        nodes.append(helper.make_node(op, inputs, [f"t{k}"]))
        current = f"t{k}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", ELEM[dtype], ["N", features])],
                              [helper.make_tensor_value_info("y", ELEM[dtype], None)], initializers)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(ML, 1)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def test_a_chain_of_arithmetic_takes_its_constants_expanded() -> None:
    rng = np.random.default_rng(1)
    steps = [("Mul", rng.normal(size=4), False), ("Add", rng.normal(size=(1, 4)), False),
             ("Div", rng.normal(size=4), False), ("Sub", rng.normal(size=4), True)]
    for dtype in (np.float32, np.float64):
        data = _arithmetic(steps, 4, dtype)
        rewritten = rewrite(data)
        assert rewritten is not None and _ops(rewritten).count("Expand") == 4
        for rows in (0, 1, 200):
            _same_answers(data, rewritten, _values(rows, 4, dtype, seed=rows))


@pytest.mark.parametrize("case", ["after a MatMul", "adding zeros", "multiplying by ones", "one feature",
                                  "many features", "no ai.onnx.ml", "a constant the caller may feed"])
def test_arithmetic_the_rewrite_must_not_touch_is_left(case: str) -> None:
    features = {"one feature": 1, "many features": EXPAND_UP_TO + 1}.get(case, 4)
    constant = {"adding zeros": np.zeros(features), "multiplying by ones": np.ones(features)}.get(
        case, np.arange(1.0, features + 1))
    op = "Mul" if case == "multiplying by ones" else "Add"
    data = _arithmetic([(op, constant, False)], features, producer="MatMul" if case == "after a MatMul" else "Cast",
                       ml=case != "no ai.onnx.ml")
    if case == "a constant the caller may feed":
        model = onnx.load_model_from_string(data)
        model.graph.input.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [features]))
        data = model.SerializeToString()
    assert rewrite(data) is None


_STEP = st.tuples(st.sampled_from(["Add", "Sub", "Mul", "Div"]), st.booleans(), st.booleans())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features=st.integers(2, EXPAND_UP_TO), double=st.booleans(), steps=st.lists(_STEP, min_size=1, max_size=4),
       data=st.data())
def test_random_arithmetic_answers_as_onnx_runtime(features: int, double: bool, steps: list[tuple[str, bool, bool]],
                                                   data: Any) -> None:
    dtype = np.float64 if double else np.float32
    drawn = []
    for op, first, row in steps:
        values = np.array(data.draw(st.lists(_FLOATS, min_size=features, max_size=features)), np.float64)
        drawn.append((op, values.reshape(1, -1) if row else values, first))
    model = _arithmetic(drawn, features, dtype)
    rewritten = rewrite(model)
    if rewritten is None:  # (only where every constant is one ONNX Runtime's optimizer drops)
        assert all(np.all(v == (0 if op in ("Add", "Sub") else 1)) for op, v, _ in drawn)
        return
    rows = data.draw(st.integers(0, 30))
    cells = data.draw(st.lists(_FLOATS, min_size=rows * features, max_size=rows * features))
    _same_answers(model, rewritten, np.array(cells, dtype=np.float64).reshape(rows, features).astype(dtype))


def test_an_exported_min_max_scaler_runs_with_its_constants_expanded(tmp_path: Path) -> None:
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(2)
    x = rng.normal(10, 5, (300, 5)).astype(np.float32)
    path = tmp_path / "minmax.mpk"
    modelpack.export(make_pipeline(MinMaxScaler(), Ridge()).fit(x, x @ rng.normal(size=5)), path, sample=x[:50])
    rows = _finite(_values(3000, 5, np.float32, seed=6))
    with modelpack.load(path) as m, modelpack.load(path, engine="onnxruntime") as plain:
        assert isinstance(m.backend, ByRows)
        assert np.array_equal(m.predict(rows), plain.predict(rows))
        if m.placement is not None:
            assert "Expand" in str(m.placement) and "Expand" not in str(plain.placement)
