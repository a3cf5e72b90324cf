"""Compiled NearestNeighborModels against the PMML evaluator (pmml4s on a real JVM), and the
specification where the two part.

pmml4s looks the target's and the instance id's columns up by the field's name, and reads
the raw fields of instances it transforms by their place in the MiningSchema: the documents
here name those columns as their fields and list the instance fields in the schema's order,
so that it reads them right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelpack._formats.pmml import describe
from modelpack._formats.pmml_compile import NotCompiled, compile_pmml
from modelpack._formats.pmml_compile.neighbors import MAX_INSTANCES

from .test_pmml_compile import assert_agree, compare, evaluator, run_compiled

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="a" optype="continuous" dataType="double"/>
<DataField name="b" optype="continuous" dataType="double"/>
<DataField name="s" optype="categorical" dataType="string"><Value value="u"/><Value value="v"/><Value value="w"/></DataField>
<DataField name="y" optype="categorical" dataType="string"><Value value="p"/><Value value="q"/><Value value="r"/></DataField>
<DataField name="t" optype="continuous" dataType="double"/></DataDictionary>"""

#: (a, b, s, y, t, ID). i4 and i5 sit at one point: every row is as far from both, and i4 comes
#: first. Two classes and three neighbours: no vote is tied, where pmml4s departs from the
#: specification (the tests of ties are against the specification).
ROWS = [("0", "0", "u", "p", "1.5", "i1"), ("1", "0", "v", "q", "2.5", "i2"), ("0", "1", "w", "q", "-4", "i3"),
        ("2", "2", "u", "p", "8", "i4"), ("2", "2", "v", "p", "3", "i5"), ("-1", "3", "w", "q", "0.25", "i6"),
        ("4", "-2", "u", "q", "7", "i7"), ("-3", "-1", "v", "p", "-2", "i8")]
COLUMNS = ("a", "b", "s", "y", "t", "ID")

NEIGHBOURS = ('<OutputField name="n1" feature="entityId" rank="1" dataType="string"/>'
              '<OutputField name="n2" feature="entityId" rank="2" dataType="string"/>'
              '<OutputField name="n3" feature="entityId" dataType="string" rank="3"/>'
              '<OutputField name="n9" feature="entityId" rank="9" dataType="string"/>'
              '<OutputField name="d1" feature="affinity" dataType="double"/>'
              '<OutputField name="d3" feature="affinity" rank="3" dataType="double"/>')


def knn(inputs: str = '<KNNInput field="a"/><KNNInput field="b" fieldWeight="2.5"/>', *,
        measure: str = "<euclidean/>", target: str = "y", k: int = 3, attributes: str = "",
        fields: tuple[str, ...] = ("a", "b"), instance_fields: tuple[str, ...] | None = None,
        rows: list[tuple[str, ...]] | None = None, transformed: str = "true", local: str = "",
        dictionary: str = "", output: str | None = NEIGHBOURS, kind: str = "distance",
        function: str | None = None, table: str | None = None) -> bytes:
    """A NearestNeighborModel over ``ROWS`` (or ``rows``) predicting ``target`` from ``fields``."""
    rows = rows if rows is not None else ROWS
    listed = instance_fields or (*fields, target, "ID")
    cells = "".join("<row>" + "".join(f"<{c}>{v}</{c}>" for c, v in zip(COLUMNS, row, strict=True)
                                      if c in listed) + "</row>" for row in rows)
    if table is None:
        table = f"<InlineTable>{cells}</InlineTable>"
    instances = "".join(f'<InstanceField field="{f}" column="{f}"/>' for f in listed)
    function = function or ("classification" if target == "y" else "regression")
    schema = "".join(f'<MiningField name="{f}"/>' for f in fields) + f'<MiningField name="{target}" usageType="target"/>'
    predicted = f'<OutputField name="p" feature="predictedValue" dataType="{"string" if target == "y" else "double"}"/>'
    out = f"<Output>{predicted}{output}</Output>" if output is not None else ""
    body = f"""<NearestNeighborModel functionName="{function}" numberOfNeighbors="{k}" instanceIdVariable="ID"
{attributes}><MiningSchema>{schema}</MiningSchema>{out}{local}
<TrainingInstances isTransformed="{transformed}"><InstanceFields>{instances}</InstanceFields>{table}</TrainingInstances>
<ComparisonMeasure kind="{kind}">{measure}</ComparisonMeasure><KNNInputs>{inputs}</KNNInputs>
</NearestNeighborModel></PMML>"""
    return (HEAD + dictionary + body).encode()


def scored(data: bytes, feeds: dict[str, Any], *, evaluator_compatible: bool = False) -> dict[str, np.ndarray]:
    model = compile_pmml(data, name="model.pmml", evaluator_compatible=evaluator_compatible)
    return run_compiled(model, data, {k: np.asarray(v, dtype=object if k == "s" else np.float64)
                                      for k, v in feeds.items()})


MEASURES = ["<euclidean/>", "<squaredEuclidean/>", "<cityBlock/>", "<chebychev/>", '<minkowski p-parameter="3"/>']


@pytest.mark.parametrize("measure", MEASURES)
def test_each_measure_agrees_with_the_evaluator(pmml_java: None, measure: str) -> None:
    compare(knn(measure=measure), rows=300, evaluator_compatible=True)


@pytest.mark.parametrize(("method", "k"), [("average", 3), ("median", 3), ("median", 4), ("weightedAverage", 3)])
def test_each_continuous_scoring_method_agrees_with_the_evaluator(pmml_java: None, method: str, k: int) -> None:
    data = knn(target="t", k=k, attributes=f'continuousScoringMethod="{method}" threshold="0.25"')
    compare(data, rows=300, evaluator_compatible=True)


@pytest.mark.parametrize("method", ["majorityVote", "weightedMajorityVote"])
def test_each_categorical_scoring_method_agrees_with_the_evaluator(pmml_java: None, method: str) -> None:
    data = knn(measure="<cityBlock/>", attributes=f'categoricalScoringMethod="{method}" threshold="0.5"')
    compare(data, rows=300, evaluator_compatible=True)


def test_a_weighted_average_is_the_specifications_where_pmml4s_divides_it_by_k_again() -> None:
    data = knn(target="t", k=3, attributes='continuousScoringMethod="weightedAverage"')
    feeds = {"a": [0.2, 1.7, -2.5], "b": [0.1, 2.2, 0.0]}
    ours = scored(data, feeds)["p"]
    pmml4s = scored(data, feeds, evaluator_compatible=True)["p"]
    np.testing.assert_allclose(ours, pmml4s * 3, rtol=1e-12)
    # the first row by hand: i1, i2, i3 at distances sqrt(.04 + 2.5 * .01), sqrt(.64 + .025), sqrt(.04 + 2.025)
    d = np.sqrt([0.04 + 0.025, 0.64 + 0.025, 0.04 + 2.5 * 0.81])
    w = 1 / (d + 0.001)
    assert ours[0] == pytest.approx(float(w @ [1.5, 2.5, -4] / w.sum()), rel=1e-12)


def test_a_missing_input_is_left_out_and_the_distance_scaled_as_the_specification_says() -> None:
    data = knn()
    feeds = {"a": [0.1, np.nan, 2.0], "b": [np.nan, np.nan, 2.0]}
    ours = scored(data, feeds)
    # b missing: |a - a_i|^2 over the one field present, times adjustM = 2; i1 and i3 tie, i1 first
    assert list(ours["n1"]) == ["i1", None, "i4"]
    assert list(ours["n2"]) == ["i3", None, "i5"]
    assert ours["d1"][0] == pytest.approx(np.sqrt(0.01 * 2), rel=1e-12)
    assert np.isnan(ours["d1"][1]) and ours["p"][1] is None  # no input at all: no neighbours
    # pmml4s gives a row with any input missing no prediction
    pmml4s = scored(data, feeds, evaluator_compatible=True)
    assert list(pmml4s["n1"]) == [None, None, "i4"]


def test_equally_near_instances_go_in_table_order() -> None:
    got = scored(knn(), {"a": [2.0, 1.9], "b": [2.0, 2.1]})
    assert list(got["n1"]) == ["i4", "i4"] and list(got["n2"]) == ["i5", "i5"]
    assert got["d1"][0] == 0.0


@pytest.mark.parametrize("method", ["majorityVote", "weightedMajorityVote"])
def test_a_tied_vote_goes_to_the_class_of_more_instances_then_the_smallest(method: str) -> None:
    rows = [("0", "0", "u", "r", "0", "j1"), ("1", "0", "u", "p", "0", "j2"), ("9", "9", "u", "q", "0", "j3")]
    data = knn('<KNNInput field="a"/>', fields=("a",), rows=rows, k=2, output="",
               attributes=f'categoricalScoringMethod="{method}"')
    # j1 (r) and j2 (p) at 0.5 each: one instance of each, so the smaller value, p
    assert list(scored(data, {"a": [0.5]})["p"]) == ["p"]
    more_r = knn('<KNNInput field="a"/>', fields=("a",), rows=[*rows, ("20", "0", "u", "r", "0", "j4")], k=2,
                 output="", attributes=f'categoricalScoringMethod="{method}"')
    assert list(scored(more_r, {"a": [0.5]})["p"]) == ["r"]


def test_entity_ids_without_an_id_variable_are_row_numbers(pmml_java: None) -> None:
    data = knn().replace(b' instanceIdVariable="ID"', b"")
    compare(data, rows=200, evaluator_compatible=True)
    assert list(scored(data, {"a": [4.0], "b": [-2.0]})["n1"]) == ["7"]


def test_a_ranked_entity_past_k_is_missing() -> None:
    got = scored(knn(), {"a": [0.0], "b": [0.0]})
    assert got["n9"][0] is None and list(got["n1"]) + list(got["n2"]) + list(got["n3"]) == ["i1", "i2", "i3"]


def test_probabilities_are_missing_as_the_evaluator_gives_them(pmml_java: None) -> None:
    data = knn(output=None)
    assert [o.name for o in describe(data, name="model.pmml").outputs][:2] == ["predicted_y", "probability"]
    compare(data, rows=200, evaluator_compatible=True)


# -- string inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["delta", "equal"])
def test_a_string_input_is_compared_by_its_value(pmml_java: None, function: str) -> None:
    """pmml4s reads every string as NaN here (delta always 1, equal always 0), so the evaluator
    scores the same model with the words written as numbers, which it compares right."""
    inputs = f'<KNNInput field="a"/><KNNInput field="s" compareFunction="{function}" fieldWeight="3"/>'
    data = knn(inputs, fields=("a", "s"), measure="<cityBlock/>")
    coded = data.replace(b'<DataField name="t"', b'<DataField name="sc" optype="continuous" dataType="double"/>'
                                                   b'<DataField name="t"')
    for word, code in (("u", "0"), ("v", "1"), ("w", "2")):
        coded = coded.replace(f"<s>{word}</s>".encode(), f"<s>{code}</s>".encode())
    coded = coded.replace(b'field="s"', b'field="sc"').replace(b'name="s"/>', b'name="sc"/>')
    rng = np.random.default_rng(1)
    words = rng.choice(np.array(["u", "v", "w", None], dtype=object), 300)
    feeds = {"a": rng.choice([-3.0, 0.0, 1.0, 2.0, 4.0, np.nan], 300), "s": words}
    model = compile_pmml(data, name="model.pmml", evaluator_compatible=True)
    got = run_compiled(model, data, feeds)
    codes = np.array([np.nan if w is None else "uvw".index(w) for w in words], dtype=np.float64)
    want_feeds = {"a": feeds["a"], "sc": codes}
    want = dict(zip([o.name for o in describe(coded, name="model.pmml").outputs],
                    evaluator(coded).run(want_feeds), strict=True))
    assert_agree(got, want, feeds)


def test_a_string_input_matches_an_instance_of_the_same_word() -> None:
    data = knn('<KNNInput field="s" compareFunction="delta"/>', fields=("s",), k=1)
    assert list(scored(data, {"s": np.array(["w", "v"], dtype=object)})["n1"]) == ["i3", "i2"]


# -- transformations -----------------------------------------------------------------------------------
LOCAL = """<LocalTransformations>
<DerivedField name="da" optype="continuous" dataType="double"><Apply function="*"><FieldRef field="a"/><Constant>2</Constant></Apply></DerivedField>
<DerivedField name="nb" optype="continuous" dataType="double"><NormContinuous field="b" mapMissingTo="0">
<LinearNorm orig="-2" norm="0"/><LinearNorm orig="0" norm="0.25"/><LinearNorm orig="3" norm="1"/></NormContinuous></DerivedField>
<DerivedField name="isu" optype="continuous" dataType="double"><NormDiscrete field="s" value="u"/></DerivedField>
</LocalTransformations>"""
DERIVED = '<KNNInput field="da"/><KNNInput field="nb" fieldWeight="4"/><KNNInput field="isu"/>'


def test_untransformed_instances_go_through_the_models_transformations(pmml_java: None) -> None:
    data = knn(DERIVED, fields=("a", "b", "s"), transformed="false", local=LOCAL)
    compare(data, rows=300, evaluator_compatible=True)


def test_untransformed_instances_go_through_the_transformation_dictionary(pmml_java: None) -> None:
    dictionary = LOCAL.replace("LocalTransformations", "TransformationDictionary")
    data = knn(DERIVED, fields=("a", "b", "s"), transformed="false", dictionary=dictionary, target="t",
               attributes='continuousScoringMethod="median"')
    compare(data, rows=300, evaluator_compatible=True)


def test_transformed_instances_are_read_as_they_are(pmml_java: None) -> None:
    rows = [(str(2 * float(a)), str(0.25 * (float(b) + 2) / 2 if float(b) < 0 else 0.25 + 0.75 * float(b) / 3), s, y,
             t, i) for a, b, s, y, t, i in ROWS]
    local = LOCAL.replace('<DerivedField name="isu"', '<DerivedField name="unused"')
    data = knn('<KNNInput field="a"/><KNNInput field="b" fieldWeight="4"/>', fields=("a", "b"), rows=rows,
               transformed="true", local=local)
    # the table holds da and nb under the raw fields' columns: as if transformed
    data = data.replace(b'<KNNInput field="a"/><KNNInput field="b" fieldWeight="4"/>',
                        b'<KNNInput field="da"/><KNNInput field="nb" fieldWeight="4"/>')
    data = data.replace(b'<InstanceField field="a" column="a"/><InstanceField field="b" column="b"/>',
                        b'<InstanceField field="da" column="a"/><InstanceField field="nb" column="b"/>')
    compare(data, rows=300, evaluator_compatible=True)
    untransformed = knn('<KNNInput field="da"/><KNNInput field="nb" fieldWeight="4"/>', transformed="false",
                        local=local)
    feeds = {"a": [0.3, -2.0, 5.0], "b": [0.0, 2.5, -1.0]}
    for name, column in scored(untransformed, feeds).items():
        got = scored(data, feeds)[name]
        if column.dtype == object:
            assert list(got) == list(column), name
        else:
            np.testing.assert_allclose(got, column, rtol=1e-12, err_msg=name)


# -- what is not compiled --------------------------------------------------------------------------------
def _too_many() -> bytes:
    rows = "".join(f"<row><a>{i}</a><b>0</b><y>p</y><ID>{i}</ID></row>" for i in range(MAX_INSTANCES + 1))
    return knn(table=f"<InlineTable>{rows}</InlineTable>")


@pytest.mark.parametrize(("document", "element"), [
    (knn(table='<TableLocator/>'), "TableLocator"),
    (knn(table=""), "TrainingInstances"),
    (_too_many(), "InlineTable"),
    (knn(rows=[("0x1", *ROWS[0][1:]), *ROWS[1:]]), "InlineTable"),
    (knn(rows=[("NaN", *ROWS[0][1:]), *ROWS[1:]]), "InlineTable"),
    (knn(rows=[(*ROWS[0][:3], "z", *ROWS[0][4:]), *ROWS[1:]]), "InlineTable"),
    (knn(rows=[("", *ROWS[0][1:]), *ROWS[1:]]), "InlineTable"),
    (knn('<KNNInput field="a" compareFunction="gaussSim"/>'), "KNNInput"),
    (knn('<KNNInput field="s"/>', fields=("s",)), "KNNInput"),
    (knn(kind="similarity"), "ComparisonMeasure"),
    (knn(measure="<jaccard/>"), "ComparisonMeasure"),
    (knn(k=9), "NearestNeighborModel"),
    (knn(k=0), "NearestNeighborModel"),
    (knn(function="mixed"), "NearestNeighborModel"),
    (knn(attributes='categoricalScoringMethod="median"'), "NearestNeighborModel"),
    (knn(instance_fields=("a", "y", "ID")), "TrainingInstances"),
    (knn(instance_fields=("a", "b", "ID")), "TrainingInstances"),
    (knn(DERIVED, fields=("a", "b", "s"), transformed="false", local=LOCAL, instance_fields=("a", "s", "y", "ID")),
     "FieldRef"),
    (knn('<KNNInput field="la"/>', transformed="false", local='<LocalTransformations><DerivedField name="la" '
         'optype="continuous" dataType="double"><Apply function="x-custom"><FieldRef field="a"/></Apply>'
         '</DerivedField></LocalTransformations>'), "Apply"),
])
def test_what_is_not_compiled_names_its_element(document: bytes, element: str) -> None:
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(document, name="model.pmml")
    assert caught.value.element == element
    assert caught.value.reason


def test_many_rows_are_scored_a_slice_at_a_time(tmp_path: Any, monkeypatch: Any) -> None:
    """Each row is held against every instance: the compiled model names how many rows one call
    may take, and the backend slices a larger batch (the same answers as in one call)."""
    import modelpack
    from modelpack._formats.pmml_compile import ROWS_PER_CALL, neighbors

    data = knn(output=NEIGHBOURS.replace(' rank="9"', ' rank="2"'))
    monkeypatch.setattr(neighbors, "DISTANCES_PER_CALL", 7 * len(ROWS))  # 7 rows per call
    sliced = compile_pmml(data, name="model.pmml")
    import onnx

    props = {p.key: p.value for p in onnx.load_from_string(sliced).metadata_props}
    assert props[ROWS_PER_CALL] == "7"
    source = tmp_path / "m.pmml"
    source.write_bytes(data)
    rng = np.random.default_rng(5)
    feeds = {"a": rng.normal(0, 2, 45), "b": rng.normal(0, 2, 45)}
    with modelpack.load(source, compile="onnx") as model:
        assert model.backend._rows_per_call == 7
        got = model.run(feeds)
    monkeypatch.undo()
    whole = scored(data, feeds)
    assert_agree({k: np.asarray(v) for k, v in got.items()}, {k: whole[k] for k in got}, feeds)
