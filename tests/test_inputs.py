"""Input adaptation through a real loaded model: every accepted form, every refusal."""

import numpy as np
import pytest
from onnx import TensorProto

import modelpack


@pytest.fixture
def add(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "add.mpk")
    with modelpack.load(tmp_path / "add.mpk") as m:
        yield m


@pytest.fixture
def multi(multi_io, tmp_path):
    modelpack.pack(multi_io, tmp_path / "multi")
    with modelpack.load(tmp_path / "multi") as m:
        yield m


def test_numpy_float64_is_cast_to_float32(add):
    X = np.arange(8, dtype=np.float64).reshape(2, 4)
    np.testing.assert_array_equal(add.run(X)["Y"], (X + 1).astype(np.float32))


def test_lists_and_integers_within_exact_range_are_accepted(add):
    np.testing.assert_array_equal(add.run([[1, 2, 3, 4]])["Y"], [[2, 3, 4, 5]])


def test_integers_beyond_float32_precision_are_refused(add):
    X = np.full((1, 4), 2**24 + 1, dtype=np.int64)
    with pytest.raises(modelpack.DTypeError, match="integers beyond 16777216 are not exact in float32"):
        add.run(X)


def test_strings_for_a_numeric_input_are_refused_naming_input_and_fix(add, tmp_path):
    with pytest.raises(modelpack.DTypeError) as err:
        add.run(np.array([["1", "2", "3", "4"]]))
    assert str(err.value) == (
        f"{tmp_path / 'add.mpk'}: input 'X': cannot be cast safely: strings given for a numeric input; "
        "expected float32, got <U1 array of shape (1, 4). "
        "Convert it yourself if you accept the loss, e.g. X.astype('float32').")
    assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


def test_wrong_feature_count_is_a_shape_error(add):
    with pytest.raises(modelpack.ShapeError, match=r"axis 1 has 3 values where the model takes 4"):
        add.run(np.zeros((2, 3), np.float32))


def test_one_dimensional_row_gets_the_reshape_hint(add):
    with pytest.raises(modelpack.ShapeError, match=r"For one row use X.reshape\(1, -1\)"):
        add.run(np.zeros(4, np.float32))


def test_dataframe_columns_map_by_name_to_per_column_inputs(multi):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"num": [1.0, 2.0], "word": ["a", "bé"], "count": [0, 3]})
    # 'num' is [N, 2] in this model; a DataFrame column cannot fill it: it is refused clearly.
    with pytest.raises(modelpack.ShapeError, match="input 'num'"):
        multi.run(df)


def test_dict_of_inputs_with_strings_and_ints(multi):
    out = multi.run({"num": [[1.0, 2.0], [3.0, 4.5]], "word": ["x", "yz"], "count": [0, 5]})
    np.testing.assert_allclose(out["total"], [[3.0], [7.5]])
    assert out["echo"].reshape(-1).tolist() == ["x", "yz"]
    assert out["positive"].reshape(-1).tolist() == [False, True]


def test_missing_input_is_named_with_a_suggestion(multi):
    with pytest.raises(modelpack.MissingColumnError) as err:
        multi.run({"num": [[1.0, 2.0]], "wrd": ["x"], "count": [1]})
    assert "missing key(s) ['word']" in str(err.value)
    assert "did you mean 'wrd' for 'word'?" in str(err.value)


def test_none_in_a_string_input_is_refused(multi):
    with pytest.raises(modelpack.DTypeError, match="holds a missing value .None. and the package records no value to fill it with"):
        multi.run({"num": [[1.0, 2.0]], "word": [None], "count": [1]})


def test_floats_are_not_cast_to_integers(multi):
    with pytest.raises(modelpack.DTypeError, match="floats are not cast to integers"):
        multi.run({"num": [[1.0, 2.0]], "word": ["a"], "count": [1.5]})


def test_object_ints_are_accepted_but_object_floats_refused_for_int_inputs(multi):
    out = multi.run({"num": [[1.0, 2.0]], "word": ["a"], "count": np.array([4], dtype=object)})
    assert out["positive"].item() is True or out["positive"].item() == np.True_
    with pytest.raises(modelpack.DTypeError, match="not integers"):
        multi.run({"num": [[1.0, 2.0]], "word": ["a"], "count": np.array([4.5], dtype=object)})


@pytest.mark.parametrize(("elem_type", "values"), [
    (TensorProto.FLOAT16, np.ones((2, 3), np.float16)),
    (TensorProto.INT8, np.ones((2, 3), np.int8)),
    (TensorProto.UINT8, np.ones((2, 3), np.uint8)),
    (TensorProto.BOOL, np.ones((2, 3), bool)),
    (TensorProto.DOUBLE, np.ones((2, 3), np.float64)),
    (TensorProto.INT32, np.ones((2, 3), np.int32)),
    (TensorProto.STRING, np.array([["a", "b", "c"]] * 2)),
])
def test_every_common_dtype_passes_through(typed_identity, tmp_path, elem_type, values):
    modelpack.pack(typed_identity(elem_type), tmp_path / "id.mpk")
    with modelpack.load(tmp_path / "id.mpk") as m:
        out = m.predict(values)
    assert out.tolist() == values.tolist()


def test_int64_out_of_int8_range_is_refused(typed_identity, tmp_path):
    modelpack.pack(typed_identity(TensorProto.INT8), tmp_path / "id.mpk")
    with modelpack.load(tmp_path / "id.mpk") as m:
        with pytest.raises(modelpack.DTypeError, match="beyond the range of int8"):
            m.predict(np.full((1, 3), 300))
        np.testing.assert_array_equal(m.predict(np.full((1, 3), 7)), np.full((1, 3), 7, np.int8))


def test_records_and_single_record(iris_onnx, tmp_path):
    pd = pytest.importorskip("pandas")
    path, clf = iris_onnx(False)
    modelpack.pack(path, tmp_path / "iris.mpk")
    with modelpack.load(tmp_path / "iris.mpk") as m:
        X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
        # no column names recorded for a bare ONNX file: columns are taken in order
        df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        np.testing.assert_array_equal(m.predict(df), clf.predict(X))
        np.testing.assert_array_equal(m.predict({"X": X}), clf.predict(X))


def test_dataframe_fast_path_keeps_column_order(iris_onnx, tmp_path):
    """Frames of one block, of several blocks, and with reordered columns give the same rows."""
    pd = pytest.importorskip("pandas")
    from modelpack._inputs.frames import frame_values as _frame_values

    X = np.random.default_rng(1).normal(size=(6, 4))
    base = pd.DataFrame(X, columns=list("abcd"))
    variants = [base, base.iloc[2:4], base[list("dcba")][list("abcd")], base.astype({"b": np.float32}),
                base.T.T, pd.concat([base[["a", "b"]], base[["c", "d"]]], axis=1)]
    for df in variants:
        np.testing.assert_array_equal(_frame_values(df), df.to_numpy())
    path, clf = iris_onnx(False)
    modelpack.pack(path, tmp_path / "iris.mpk")
    with modelpack.load(tmp_path / "iris.mpk") as m:
        for df in variants:
            np.testing.assert_array_equal(m.predict(df), clf.predict(df.to_numpy()))


def test_a_tuple_feeds_a_multi_input_model_positionally(multi):
    out = multi.run(([[1.0, 2.0]], ["w"], [3]))
    assert out["total"].tolist() == [[3.0]] and out["echo"].reshape(-1).tolist() == ["w"]
    with pytest.raises(modelpack.InputError, match="the model has 3 inputs"):
        multi.run(([[1.0, 2.0]], ["w"]))


@pytest.fixture
def per_field(tmp_path):
    """One input per field, as PMML and skl2onnx's ColumnTransformer models take them."""
    from onnx import helper

    from .conftest import save_model

    path = save_model(
        tmp_path / "fields.onnx",
        [helper.make_node("Identity", [n], [n.upper()]) for n in ("a", "b", "w")],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["N"]),
         helper.make_tensor_value_info("w", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("B", TensorProto.DOUBLE, ["N"]),
         helper.make_tensor_value_info("W", TensorProto.STRING, ["N", 1])])
    modelpack.pack(path, tmp_path / "fields.mpk")
    with modelpack.load(tmp_path / "fields.mpk") as m:
        yield m


@pytest.mark.parametrize("record", [
    {"a": 1.5, "b": 2.25, "w": "x"},          # plain floats and strings: the one-record fast path
    {"w": "x", "b": 2.25, "a": 1.5},          # any key order
    {"a": 1.5, "b": np.float64(2.25), "w": "x"},  # numpy scalars take the general path
    {"a": 3 / 2, "b": 9 / 4, "w": np.str_("x")},
])
def test_one_record_equals_the_same_row_as_columns(per_field, record):
    pd = pytest.importorskip("pandas")
    got = per_field.run(record)
    frame = per_field.run(pd.DataFrame([record]))
    for name, shape, dtype in (("A", (1, 1), np.float32), ("B", (1,), np.float64), ("W", (1, 1), object)):
        assert got[name].shape == shape and got[name].dtype == dtype
        np.testing.assert_array_equal(got[name], frame[name])
    assert got["W"][0, 0] == "x" and got["A"][0, 0] == np.float32(1.5)


def test_one_record_with_an_int_follows_the_cast_policy(per_field):
    assert per_field.run({"a": 2, "b": 3, "w": "x"})["A"][0, 0] == 2.0
    with pytest.raises(modelpack.DTypeError, match="16777216"):
        per_field.run({"a": 2**24 + 1, "b": 3.0, "w": "x"})


@pytest.mark.parametrize("record, error, match", [
    ({"a": 1.5, "b": 2.0}, modelpack.MissingColumnError, r"missing field\(s\) \['w'\]"),
    ({"a": 1.5, "bb": 2.0, "w": "x"}, modelpack.MissingColumnError, "did you mean 'bb' for 'b'"),
    ({"a": 1.5, "b": 2.0, "w": 7.0}, modelpack.DTypeError, "non-string values such as 7.0"),
    ({"a": "1.5", "b": 2.0, "w": "x"}, modelpack.DTypeError, "'a'"),
])
def test_one_record_errors_name_the_field(per_field, record, error, match):
    with pytest.raises(error, match=match):
        per_field.run(record)


def test_frame_columns_read_from_blocks_equal_the_public_columns():
    """Whatever pandas holds (numpy blocks, Arrow strings, nullable ints, categoricals), same data."""
    pd = pytest.importorskip("pandas")
    from modelpack._inputs.frames import frame_columns as _frame_columns

    base = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "c": ["x", "y", "z"],
                         "d": pd.array([1, None, 3], dtype="Int64"),
                         "e": pd.Categorical(["p", "q", "p"]), "f": np.float32([7, 8, 9])})
    variants = [base, base.iloc[1:], base[["f", "c", "a", "e", "d", "b"]], base.T.T.infer_objects(),
                pd.concat([base[["a"]], base[["c", "b"]]], axis=1), base.astype({"c": object}),
                pd.DataFrame(np.arange(6.0).reshape(3, 2), columns=[10, 20])]
    for df in variants:
        got = _frame_columns(df)
        assert list(got) == [str(c) for c in df.columns]
        for c in df.columns:
            ours = pd.Series(np.asarray(got[str(c)], dtype=object))
            assert ours.equals(pd.Series(df[c].to_numpy(dtype=object))), (c, ours)
    duplicated = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    assert list(_frame_columns(duplicated)) == ["a"]  # the public path, as before


def test_a_float_block_going_to_one_float_dtype_is_cast_once():
    """The block's columns as casting each would give them; mixed targets leave the block alone."""
    pd = pytest.importorskip("pandas")
    from modelpack._inputs.frames import frame_columns as _frame_columns

    df = pd.DataFrame({"a": [1.1, np.nan, 3e38], "b": [4.0, 5.5, -1e-40], "c": [0.1, 0.2, 0.3]})
    to32 = {"a": np.dtype(np.float32), "b": np.dtype(np.float32), "c": np.dtype(np.float32)}
    got = _frame_columns(df, None, to32.get)
    for c in df.columns:
        assert got[c].dtype == np.float32
        np.testing.assert_array_equal(got[c], df[c].to_numpy().astype(np.float32))
    mixed = _frame_columns(df, None, {**to32, "c": np.dtype(np.float64)}.get)
    assert all(v.dtype == np.float64 for v in mixed.values())  # each column is cast where it goes
    assert all(v.dtype == np.float64 for v in _frame_columns(df, None, {"a": to32["a"]}.get).values())


def test_renamed_or_reordered_columns_are_read_by_their_new_names(per_field):
    """The column names are listed once per Index: a new Index must be listed again."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "w": ["x", "y"]})
    first = per_field.run(df)
    assert first["B"].tolist() == [3.0, 4.0] and per_field.run(df.iloc[1:])["B"].tolist() == [4.0]
    swapped = df.copy()
    swapped.columns = ["b", "a", "w"]  # same frame shape, new names
    got = per_field.run(swapped)
    assert got["A"].reshape(-1).tolist() == [3.0, 4.0] and got["B"].tolist() == [1.0, 2.0]
    reordered = per_field.run(df[["w", "b", "a"]])
    for name in ("A", "B", "W"):
        np.testing.assert_array_equal(reordered[name], first[name])


# -- caller data that cannot be one batch: refused before the runtime sees it -----------------
@pytest.mark.parametrize("data, error, match", [
    ({"a": [1.0, 2.0], "b": [3.0], "w": ["x", "y"]}, modelpack.ShapeError, "'N' is 2 in input 'a' but 1 here"),
    ([{"a": 1.0, "b": 2.0, "w": "x"}, {"a": 1.0, "b": 2.0, "w": "y", "c": 3.0}],
     modelpack.MissingColumnError, r"lack the field\(s\) \['c'\]"),
    ({"a": [1.0], "b": [2.0], "w": ["x"], "ww": ["y"]}, modelpack.MissingColumnError, r"unknown input\(s\) \['ww'\]"),
    ({"a": 1.0, "b": 2.0, "w": "x", "extra": 1.0}, modelpack.InputError, r"unknown field\(s\) \['extra'\]"),
])
def test_columns_that_cannot_be_one_batch_are_refused(per_field, data, error, match):
    with pytest.raises(error, match=match):
        per_field.run(data)


def test_a_dataframe_may_carry_columns_the_model_does_not_use(per_field):
    pd = pytest.importorskip("pandas")
    got = per_field.run(pd.DataFrame({"a": [1.0], "b": [2.0], "w": ["x"], "id": [17]}))
    assert got["B"].tolist() == [2.0]


def test_inputs_of_one_named_batch_dimension_must_agree(multi):
    with pytest.raises(modelpack.ShapeError, match="dimension 'N' is 2 in input 'num' but 1 here"):
        multi.run({"num": [[1.0, 2.0], [3.0, 4.0]], "word": ["x"], "count": [1]})


def test_an_unknown_key_beside_every_input_is_refused_with_a_hint(multi):
    with pytest.raises(modelpack.InputError, match="did you mean 'count' for 'counts'"):
        multi.run({"num": [[1.0, 2.0]], "word": ["x"], "count": [1], "counts": [2]})


def test_per_column_inputs_share_rows_even_when_the_batch_dimension_is_unnamed(tmp_path):
    from onnx import helper

    from .conftest import save_model

    path = save_model(
        tmp_path / "cols.onnx", [helper.make_node("Concat", ["a", "b"], ["Y"], axis=1)],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])])
    modelpack.pack(path, tmp_path / "cols.mpk")
    with modelpack.load(tmp_path / "cols.mpk") as m:
        assert m.run({"a": [[1.0], [2.0]], "b": [[3.0], [4.0]]})["Y"].tolist() == [[1, 3], [2, 4]]
        with pytest.raises(modelpack.ShapeError, match="different numbers of rows"):
            m.run({"a": [[1.0], [2.0]], "b": [[3.0]]})


def test_ragged_rows_are_refused(add):
    with pytest.raises(modelpack.ModelpackError, match="ragged|same length|rows"):
        add.run([[1.0, 2.0, 3.0, 4.0], [1.0]])


# -- missing values in string inputs ------------------------------------------------------------
def _string_input(fill: str | None) -> tuple:
    from modelpack.manifest import ColumnSpec, TensorSpec

    column = ColumnSpec("w", "string", missing_value_treatment="asValue" if fill else None,
                        missing_value_replacement=fill)
    return (TensorSpec("w", "string", ("N", 1), columns=(column,)),)


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, np.float64("nan")])
def test_a_recorded_fill_takes_the_place_of_a_missing_string(missing):
    from modelpack._inputs import InputAdapter

    adapt = InputAdapter(_string_input("x"), "p")
    got = adapt({"w": np.array([missing, "a", ""], dtype=object)})["w"]
    assert got.reshape(-1).tolist() == ["x", "a", ""]  # "" is a value, not a missing one


def test_pandas_na_is_missing_too():
    pd = pytest.importorskip("pandas")
    from modelpack._inputs import InputAdapter

    frame = pd.DataFrame({"w": pd.array(["a", None, "b"], dtype="string")})
    assert InputAdapter(_string_input("x"), "p")(frame)["w"].reshape(-1).tolist() == ["a", "x", "b"]


def test_without_a_fill_a_missing_string_is_refused_unless_missing_values_pass():
    from modelpack._inputs import InputAdapter

    data = {"w": np.array(["a", None], dtype=object)}
    with pytest.raises(modelpack.DTypeError, match="records no value to fill it with") as caught:
        InputAdapter(_string_input(None), "p")(data)
    assert "fillna(" in caught.value.fix
    # PMML evaluators have missing values of their own: None goes through as one.
    assert InputAdapter(_string_input(None), "p", missing_passes=True)(data)["w"].reshape(-1).tolist() == ["a", None]


def test_every_value_of_a_string_input_is_checked_not_a_prefix():
    from modelpack._inputs import InputAdapter

    values = np.array(["a"] * 50_000 + [7], dtype=object)
    with pytest.raises(modelpack.DTypeError, match="non-string values such as 7") as caught:
        InputAdapter(_string_input("x"), "p")({"w": values})
    assert "astype(str)" in caught.value.fix


# -- NaN where the source model refuses it (recorded as PMML's "returnInvalid") -------------------
def _numeric_input(refused: tuple[str, ...]) -> tuple:
    from modelpack.manifest import ColumnSpec, TensorSpec

    columns = tuple(ColumnSpec(n, "float32", missing_value_treatment="returnInvalid" if n in refused else None)
                    for n in ("a", "b", "c"))
    return (TensorSpec("X", "float32", ("N", 3), columns=columns),)


@pytest.mark.parametrize("rows", [1, 40])  # the few-rows path and the numpy one
def test_nan_is_refused_in_the_columns_the_source_model_refuses_it_in(rows):
    from modelpack._inputs import InputAdapter

    adapt = InputAdapter(_numeric_input(("b",)), "p")
    X = np.ones((rows, 3), np.float32)
    X[-1, 0] = np.nan  # 'a' takes NaN: the model handles it
    assert adapt(X)["X"] is X
    X[-1, 1] = np.nan
    with pytest.raises(modelpack.InputError, match="column 'b' holds NaN, which the source model refuses") as caught:
        adapt(X)
    assert "SimpleImputer" in caught.value.fix
    X[-1, 1] = np.inf  # infinities are values
    assert adapt(X)["X"] is X


def test_every_column_refusing_nan_is_checked_on_every_path():
    pd = pytest.importorskip("pandas")
    from modelpack._inputs import InputAdapter

    adapt = InputAdapter(_numeric_input(("a", "b", "c")), "p")
    for data in (pd.DataFrame({"a": [1.0], "b": [2.0], "c": [np.nan]}), [{"a": 1.0, "b": None, "c": 2.0}],
                 np.array([[np.nan, 1, 2]], np.float64), np.empty((0, 3), np.float32)):
        if len(data) == 0:
            assert adapt(data)["X"].shape == (0, 3)
            continue
        with pytest.raises(modelpack.InputError, match="holds NaN"):
            adapt(data)


def test_a_matrix_feeds_one_input_per_column_in_the_inputs_order(per_field):
    got = per_field.run(np.array([[1.5, 2.25, "x"], [3.0, 4.0, "y"]], dtype=object))
    assert got["A"].reshape(-1).tolist() == [1.5, 3.0] and got["B"].tolist() == [2.25, 4.0]
    assert got["W"].reshape(-1).tolist() == ["x", "y"]
    with pytest.raises(modelpack.InputError):
        per_field.run(np.ones((2, 2)))  # two columns for three inputs: not taken by position


def test_object_columns_get_the_numeric_rules_of_numeric_arrays(add, per_field):
    pd = pytest.importorskip("pandas")
    strings = pd.DataFrame({"a": np.array(["1.5", "2"], dtype=object), "b": [1.0, 2.0], "w": ["x", "y"]})
    with pytest.raises(modelpack.DTypeError, match="strings given for a numeric input, such as '1.5'"):
        per_field.run(strings)  # as a record with "1.5" is refused
    with pytest.raises(modelpack.DTypeError, match="'a'"):
        per_field.run({"a": "1.5", "b": 1.0, "w": "x"})
    big = np.array([[2**24 + 1, 1, 2, 3]], dtype=object)
    with pytest.raises(modelpack.DTypeError, match="integers beyond 16777216 are not exact in float32"):
        add.run(big)  # as the same integers in an int64 array are
    with pytest.raises(modelpack.DTypeError, match="integers beyond 16777216"):
        add.run(np.array([[np.int64(2**24 + 1), 1, 2, 3]], dtype=object))  # numpy's integers too
    np.testing.assert_array_equal(add.run(np.array([[2**23, 1, 2.5, 3]], dtype=object))["Y"],
                                  [[2**23 + 1, 2, 3.5, 4]])


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_an_object_array_given_whole_is_checked_like_a_column(missing):
    # A bare object array (or a one-column frame) matching the input's dtype exactly used to
    # skip the string check, so None reached the model as a value.
    from modelpack._inputs import InputAdapter

    adapt = InputAdapter(_string_input(None), "p")
    with pytest.raises(modelpack.DTypeError, match="records no value to fill it with"):
        adapt(np.array([["a"], [missing]], dtype=object))
    with pytest.raises(modelpack.DTypeError, match="non-string values such as 7"):
        adapt(np.array([["a"], [7]], dtype=object))
    assert adapt(np.array([["a"], ["b"]], dtype=object))["w"].reshape(-1).tolist() == ["a", "b"]
    pd = pytest.importorskip("pandas")
    with pytest.raises(modelpack.DTypeError, match="records no value to fill it with"):
        adapt(pd.DataFrame({"w": ["a", missing]}, dtype=object))
    assert InputAdapter(_string_input("x"), "p")(np.array([["a"], [missing]], dtype=object))["w"] \
        .reshape(-1).tolist() == ["a", "x"]
