"""The PMML compiler against the PMML evaluator (pmml4s on a real JVM).

Every document of the DMG corpus and pypmml's KNIME tree either compiles, and then
agrees with the evaluator at 1e-6 on its expected values and on probe rows with
missing values and unseen categories, or stops at a named element, as the table
in docs/pmml.md says. Hand-written documents pin the semantics one by one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import modelpack
from modelpack._formats.pmml import describe
from modelpack._formats.pmml_compile import MISSING, NotCompiled, compile_pmml
from modelpack._formats.pmml_compile.probe import probe_rows
from modelpack._package import Package
from modelpack.manifest import Manifest

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora" / "pmml"
DMG = CORPORA / "pmml4s-dmg-examples"
TOLERANCE = 1e-6

#: Documents the compiler leaves to the evaluator, and the element it names.
FALLS_BACK = {
    "anomaly/dmg_anomaly_cluster.xml": "AnomalyDetectionModel",
    "anomaly/dmg_anomaly_iforest.xml": "AnomalyDetectionModel",
    "anomaly/dmg_anomaly_ocsvm.xml": "AnomalyDetectionModel",
    "association/dmg_association_exclusive_recommendation.xml": "AssociationModel",
    "association/dmg_association_recommendation.xml": "AssociationModel",
    "association/dmg_association_rule_association.xml": "AssociationModel",
    "knn/dmg_knn_continuous_predictors_two_targets.xml": "NearestNeighborModel",
    "mining/dmg_mining_efficient_model_chain.xml": "Segment",
    "mining/dmg_model_selection_mining.xml": "MiningModel",
    "mining/dmg_model_sequencing_mining.xml": "MiningModel",
    "mining/dmg_weighted_majority_vote_mining.xml": "Segmentation",
    "mining/dmg_weighted_majority_vote_mining_revised.xml": "Segmentation",
    "tree/dmg_tree_missing_aggregateNodes.xml": "TreeModel",
    "tree/dmg_tree_missing_defaultChild.xml": "TreeModel",
    "tree/dmg_tree_missing_value_strategies.xml": "TreeModel",
    "tree/sas_3.1_iris_tree.xml": "OutputField",
}
FALLS_BACK.update({f"general/dmg_general_{n}.xml": "GeneralRegressionModel" for n in ("cox", "cox_strata")})
FALLS_BACK["general/dmg_general_multinomial_contrast_matrix.xml"] = "Predictor"




def _knn_instances_in_schema_order(text: str) -> str:
    """The DMG k-NN example as pmml4s reads it right: pmml4s reads the raw fields of the training
    instances it transforms by their place in the MiningSchema, not by name, and looks up the
    target's and the id's columns by the field's name; the example's instances are in
    neither order (every distance comes out NaN and every row gets instances 1, 2 and 11)."""
    fields = ('<InstanceFields><InstanceField field="marital status" column="ms"/>'
              '<InstanceField field="age" column="age"/><InstanceField field="dependents" column="deps"/>'
              '<InstanceField field="income" column="income"/><InstanceField field="ID" column="ID"/>'
              '</InstanceFields>')
    text = re.sub(r"<InstanceFields>.*?</InstanceFields>", fields, text, flags=re.S)
    return text.replace("<inc>", "<income>").replace("</inc>", "</income>")


#: Documents the evaluator misreads, and the same model written so that it reads it right: the
#: compiled original is checked against the evaluator running the rewritten one.
REWRITTEN = {"knn/dmg_knn_categorical_predictor_categorical_target.xml": _knn_instances_in_schema_order}


def documents() -> list[str]:
    if not DMG.is_dir():
        return []
    return sorted(str(p.relative_to(DMG / "models")) for p in (DMG / "models").rglob("*.xml"))


def evaluator(data: bytes) -> Any:
    from modelpack._runtime.pmml import open_evaluator

    d = describe(data, name="model.pmml")
    manifest = Manifest(name="t", task=d.task or "other", model=d.model, inputs=d.inputs, outputs=d.outputs,
                        classes=d.classes)
    return open_evaluator(Package(path=Path("model.pmml"), manifest=manifest, manifest_bytes=b"",
                                  _data={"model.pmml": data}))


def run_compiled(model: bytes, data: bytes, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    d = describe(data, name="model.pmml")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    inputs = {}
    for spec in d.inputs:
        column = feeds.get(spec.name)
        if spec.dtype == "string":
            values = [None] * n if column is None else list(column)
            inputs[spec.name] = np.array([MISSING if v is None else str(v) for v in values], dtype=object)
        else:
            inputs[spec.name] = np.full(n, np.nan) if column is None else np.asarray(column, dtype=np.float64)
    results = session.run(None, inputs)
    out = {}
    for spec, value in zip(d.outputs, results, strict=True):
        if value.dtype == object:
            value = np.array([None if v == MISSING else v for v in value], dtype=object)
        out[spec.name] = value
    return out


def assert_agree(got: dict[str, np.ndarray], want: dict[str, np.ndarray], feeds: dict[str, Any]) -> None:
    for name, expected in want.items():
        value = got[name]
        if expected.dtype == object or value.dtype == object:
            bad = [i for i, (a, b) in enumerate(zip(value, expected, strict=True)) if a != b and str(a) != str(b)]
        else:
            # the evaluator hands a missing integer target back as Long.MIN_VALUE
            expected = np.where(expected == -(2.0 ** 63), np.nan, expected)
            close = np.abs(value - expected) <= TOLERANCE + TOLERANCE * np.abs(np.nan_to_num(expected))
            bad = list(np.flatnonzero(~(close | (np.isnan(value) & np.isnan(expected)))))
        if bad:
            row = bad[0]
            raise AssertionError(f"{name}: {len(bad)} rows differ; row {row}: compiled {value[row]!r}, evaluator "
                                 f"{expected[row]!r}, inputs { {k: v[row] for k, v in feeds.items()} }")


def compare(data: bytes, rows: int = 400, evaluator_compatible: bool = False, reference: bytes | None = None) -> None:
    """Compile ``data`` and compare it with the evaluator on probe rows (the evaluator running
    ``reference``, a document of the same inputs and outputs, where given)."""
    model = compile_pmml(data, name="model.pmml", evaluator_compatible=evaluator_compatible)
    onnx.checker.check_model(onnx.load_from_string(model))
    d = describe(data, name="model.pmml")
    feeds = probe_rows(data, d.inputs, rows=rows)
    backend = evaluator(reference or data)
    want = dict(zip([o.name for o in d.outputs], backend.run(feeds), strict=True))
    assert_agree(run_compiled(model, data, feeds), want, feeds)


@pytest.mark.parametrize("document", documents())
def test_each_document_compiles_and_agrees_or_names_what_stops_it(pmml_java: None, document: str) -> None:
    data = (DMG / "models" / document).read_bytes()
    if document in FALLS_BACK:
        with pytest.raises(NotCompiled) as caught:
            compile_pmml(data, name="model.pmml")
        assert caught.value.element == FALLS_BACK[document]
        assert caught.value.reason
        return
    if document in REWRITTEN:
        reference = REWRITTEN[document](data.decode()).encode()
        assert reference != data
        compare(data, evaluator_compatible=True, reference=reference)
        return
    compare(data, evaluator_compatible=True)


def test_pypmml_knime_tree_agrees_with_the_evaluator_and_its_expected_values(pmml_java: None) -> None:
    folder = CORPORA / "pypmml-tests"
    if not folder.is_dir():
        pytest.skip(f"PMML corpus not found at {folder}")
    data = (folder / "single_iris_dectree.xml").read_bytes()
    compare(data)
    model = compile_pmml(data, name="model.pmml")
    for case in json.loads((folder / "expected.json").read_text())["cases"]:
        feeds = {k: np.array([v], dtype=np.float64) for k, v in case["input"].items()}
        got = run_compiled(model, data, feeds)
        for name, want in case["expected"].items():
            assert got[name][0] == want or abs(got[name][0] - want) <= TOLERANCE, (name, got[name][0], want)


def dmg_cases() -> list[dict[str, Any]]:
    cases = DMG / "cases.json"
    return json.loads(cases.read_text())["cases"] if cases.is_file() else []  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", [c for c in dmg_cases() if c["model"] not in FALLS_BACK],
                         ids=lambda c: f"{c['model']}:{c['test'][:30]}")
def test_compiled_documents_give_the_dmg_expected_values(case: dict[str, Any]) -> None:
    data = (DMG / "models" / case["model"]).read_bytes()
    feeds = {k: np.array([v], dtype=object if isinstance(v, str) else np.float64) for k, v in case["input"].items()}
    got = run_compiled(compile_pmml(data, name="model.pmml"), data, feeds)
    for name, want in case["expected"].items():
        value = got[name][0]
        if want is None:
            assert value is None or value != value, name
        elif isinstance(want, str):
            assert value == want, name
        else:
            assert abs(value - want) <= TOLERANCE + TOLERANCE * abs(want), (name, value, want)


# -- semantics, one document each ---------------------------------------------------------------------
HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="z" optype="continuous" dataType="double"/>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/><Value value="c"/></DataField>
<DataField name="y" optype="%s" dataType="%s">%s</DataField></DataDictionary>"""
CLASSES = '<Value value="p"/><Value value="q"/><Value value="r"/>'


def document(body: str, *, classification: bool = True, transformations: str = "") -> bytes:
    head = HEAD % (("categorical", "string", CLASSES) if classification else ("continuous", "double", ""))
    return (head + transformations + body + "</PMML>").encode()


def tree(nodes: str, *, attributes: str = "", schema: str = "", classification: bool = True) -> bytes:
    fields = schema or '<MiningField name="x"/><MiningField name="z"/><MiningField name="c"/>'
    function = "classification" if classification else "regression"
    return document(f'<TreeModel functionName="{function}" {attributes}><MiningSchema>{fields}'
                    f'<MiningField name="y" usageType="target"/></MiningSchema>{nodes}</TreeModel>',
                    classification=classification)


def leaf(node_id: str, score: str, predicate: str, counts: tuple[int, int, int] = (1, 2, 3), inner: str = "") -> str:
    dist = "".join(f'<ScoreDistribution value="{v}" recordCount="{n}"/>' for v, n in zip("pqr", counts, strict=True))
    return f'<Node id="{node_id}" score="{score}">{predicate}{dist}{inner}</Node>'


LT = '<SimplePredicate field="x" operator="lessThan" value="1.5"/>'
GE = '<SimplePredicate field="x" operator="greaterOrEqual" value="1.5"/>'
IN_AB = '<SimpleSetPredicate field="c" booleanOperator="isIn"><Array type="string" n="2">a "b"</Array></SimpleSetPredicate>'
NOT_IN_AB = IN_AB.replace("isIn", "isNotIn")
SURROGATE = ('<CompoundPredicate booleanOperator="surrogate"><SimplePredicate field="z" operator="lessOrEqual" '
             'value="0"/><SimplePredicate field="x" operator="lessThan" value="1.5"/><False/></CompoundPredicate>')
XOR = (f'<CompoundPredicate booleanOperator="xor">{LT}<SimplePredicate field="c" operator="equal" value="a"/>'
       '</CompoundPredicate>')
MISSING_Z = '<SimplePredicate field="z" operator="isMissing"/>'
ROOT = '<Node id="0" score="r"%s><True/><ScoreDistribution value="p" recordCount="1"/>' \
       '<ScoreDistribution value="q" recordCount="1"/><ScoreDistribution value="r" recordCount="2"/>%s</Node>'

TREES = {
    "none with set membership": tree(ROOT % ("", leaf("1", "p", IN_AB) + leaf("2", "q", NOT_IN_AB))),
    "surrogate and xor": tree(ROOT % ("", leaf("1", "p", SURROGATE) + leaf("2", "q", XOR))),
    "isMissing": tree(ROOT % ("", leaf("1", "p", MISSING_Z) + leaf("2", "q", GE))),
    "lastPrediction": tree(ROOT % ("", leaf("1", "p", LT, inner=leaf("3", "q", IN_AB) + leaf("4", "r", NOT_IN_AB))
                                   + leaf("2", "q", GE)), attributes='missingValueStrategy="lastPrediction"'),
    "returnLastPrediction": tree(ROOT % ("", leaf("1", "p", LT) + leaf("2", "q", IN_AB)),
                                 attributes='noTrueChildStrategy="returnLastPrediction"'),
    "defaultChild": tree(ROOT % (' defaultChild="2"', leaf("1", "p", LT) + leaf("2", "q", GE)),
                         attributes='missingValueStrategy="defaultChild"'),
    "regression scores": tree('<Node score="1.25"><True/><Node score="-3.5">' + LT + '</Node><Node score="7">'
                              + GE + '</Node></Node>', classification=False,
                              attributes='noTrueChildStrategy="returnLastPrediction"'),
    "MiningField treatments": tree(
        ROOT % ("", leaf("1", "p", LT) + leaf("2", "q", IN_AB)),
        schema='<MiningField name="x" missingValueReplacement="0.5" outliers="asExtremeValues" lowValue="-1" '
               'highValue="3"/><MiningField name="z"/><MiningField name="c" invalidValueTreatment="asValue" '
               'invalidValueReplacement="b"/>'),
    "invalid as missing": tree(ROOT % ("", leaf("1", "p", IN_AB) + leaf("2", "q", LT)),
                               schema='<MiningField name="x"/><MiningField name="c" invalidValueTreatment="asMissing"/>'),
}


@pytest.mark.parametrize("name", list(TREES))
def test_tree_semantics_agree_with_the_evaluator(pmml_java: None, name: str) -> None:
    compare(TREES[name], evaluator_compatible=True)


TRANSFORMS = """<TransformationDictionary>
<DerivedField name="n" optype="continuous" dataType="double"><NormContinuous field="x" outliers="asExtremeValues"
 mapMissingTo="0.25"><LinearNorm orig="-1" norm="0"/><LinearNorm orig="1" norm="0.5"/><LinearNorm orig="3" norm="1"/>
</NormContinuous></DerivedField>
<DerivedField name="bin" optype="categorical" dataType="string"><Discretize field="z" defaultValue="low">
<DiscretizeBin binValue="low"><Interval closure="openOpen" rightMargin="0"/></DiscretizeBin>
<DiscretizeBin binValue="high"><Interval closure="closedOpen" leftMargin="2"/></DiscretizeBin></Discretize></DerivedField>
<DerivedField name="m" optype="continuous" dataType="double"><MapValues outputColumn="out" defaultValue="-1"
 mapMissingTo="9"><FieldColumnPair field="c" column="in"/><InlineTable><row><in>a</in><out>1.5</out></row>
<row><in>b</in><out>2.5</out></row></InlineTable></MapValues></DerivedField>
<DerivedField name="d" optype="continuous" dataType="double"><NormDiscrete field="bin" value="high"/></DerivedField>
<DerivedField name="f" optype="continuous" dataType="double"><Apply function="if"><Apply function="isMissing">
<FieldRef field="z"/></Apply><Constant>-2</Constant><Apply function="+"><Apply function="log10"><Apply function="abs">
<FieldRef field="z"/></Apply></Apply><Apply function="max"><FieldRef field="x"/><Constant>0.5</Constant></Apply></Apply>
</Apply></DerivedField>
<DerivedField name="g" optype="continuous" dataType="double"><Apply function="round"><Apply function="*">
<FieldRef field="x"/><Constant>3.3</Constant></Apply></Apply></DerivedField>
</TransformationDictionary>"""


def regression(normalization: str, *, classification: bool, targets: str = "", two_classes: bool = False) -> bytes:
    terms = ('<NumericPredictor name="n" coefficient="1.5"/><NumericPredictor name="m" coefficient="-0.5"/>'
             '<NumericPredictor name="d" coefficient="2"/><NumericPredictor name="f" coefficient="0.3"/>'
             '<NumericPredictor name="x" exponent="2" coefficient="0.1"/><NumericPredictor name="g" coefficient="0.01"/>'
             '<CategoricalPredictor name="c" value="a" coefficient="0.7"/><PredictorTerm coefficient="0.2">'
             '<FieldRef field="x"/><FieldRef field="n"/></PredictorTerm>')
    if two_classes:  # the last table 0, the one whose probability is what the first leaves
        tables = (f'<RegressionTable targetCategory="q" intercept="0.1">{terms}</RegressionTable>'
                  '<RegressionTable targetCategory="p" intercept="0"/>')
    elif classification:
        tables = (f'<RegressionTable targetCategory="q" intercept="0.1">{terms}</RegressionTable>'
                  f'<RegressionTable targetCategory="r" intercept="-0.4">{terms.replace("1.5", "-1")}</RegressionTable>'
                  '<RegressionTable targetCategory="p" intercept="0"/>')
    else:
        tables = f'<RegressionTable intercept="0.1">{terms}</RegressionTable>'
    function = "classification" if classification else "regression"
    body = (f'<RegressionModel functionName="{function}" normalizationMethod="{normalization}"><MiningSchema>'
            '<MiningField name="x"/><MiningField name="z"/><MiningField name="c"/>'
            f'<MiningField name="y" usageType="target"/></MiningSchema>{targets}{tables}</RegressionModel>')
    data = document(body, classification=classification, transformations=TRANSFORMS)
    return data.replace(b'<Value value="r"/>', b"") if two_classes else data


@pytest.mark.parametrize("method", ["softmax", "simplemax", "none"])
def test_transformations_and_classification_normalizations_agree(pmml_java: None, method: str) -> None:
    compare(regression(method, classification=True), evaluator_compatible=True)


@pytest.mark.parametrize("method", ["none", "exp", "logit", "cloglog", "probit", "cauchit"])
def test_regression_normalizations_agree(pmml_java: None, method: str) -> None:
    compare(regression(method, classification=False), evaluator_compatible=True)


@pytest.mark.parametrize("method", ["logit", "cloglog", "loglog", "probit", "cauchit"])
def test_two_class_links_agree(pmml_java: None, method: str) -> None:
    # the first class F(y), the second 1 - F(y); pmml4s agrees where the last table is 0, as here
    compare(regression(method, classification=True, two_classes=True), evaluator_compatible=True)


@pytest.mark.parametrize(("method", "classification"), [("logit", False), ("softmax", True)])
def test_linear_terms_are_one_product_read_without_copies(method: str, classification: bool) -> None:
    """One MatMul over the fields stacked as rows; its rows split, not gathered; no double Sigmoid (slow)."""
    model = onnx.load_from_string(compile_pmml(regression(method, classification=classification), name="model.pmml"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMul") == 1
    assert not {"Gather", "Sigmoid"} & set(ops)
    assert ops.count("Split") == (1 if classification else 0)  # two tables' rows; one table's is the row itself


def test_normal_distribution_functions_agree_with_the_evaluator(pmml_java: None) -> None:
    def field(name: str, function: str, *args: str) -> str:
        constants = "".join(f"<Constant>{a}</Constant>" for a in args)
        return (f'<DerivedField name="{name}" optype="continuous" dataType="double"><Apply function="{function}">'
                f'<FieldRef field="{"x" if len(name) == 1 else "z"}"/>{constants}</Apply></DerivedField>')

    transforms = ("<TransformationDictionary>" + field("a", "stdNormalCDF") + field("b", "stdNormalPDF")
                  + field("cz", "normalCDF", "0.5", "2") + field("dz", "normalPDF", "-1", "0.5")
                  + "</TransformationDictionary>")
    terms = "".join(f'<NumericPredictor name="{n}" coefficient="{c}"/>' for n, c in
                    (("a", "1.5"), ("b", "-2"), ("cz", "0.75"), ("dz", "3")))
    body = ('<RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/><MiningField name="z"/>'
            f'<MiningField name="y" usageType="target"/></MiningSchema><RegressionTable intercept="0.1">{terms}'
            "</RegressionTable></RegressionModel>")
    compare(document(body, classification=False, transformations=transforms), evaluator_compatible=True)


@pytest.mark.parametrize("method", ["logit", "probit", "cauchit"])
def test_links_beyond_two_classes_are_left_to_the_evaluator(method: str) -> None:
    with pytest.raises(NotCompiled, match=method):
        compile_pmml(regression(method, classification=True), name="model.pmml")


def test_targets_rescale_clamp_and_cast(pmml_java: None) -> None:
    targets = ('<Targets><Target field="y" rescaleFactor="3" rescaleConstant="-1" min="-2" max="5" '
               'castInteger="round"/></Targets>')
    compare(regression("none", classification=False, targets=targets), evaluator_compatible=True)


def test_null_prediction_follows_the_specification_where_pmml4s_does_not(pmml_java: None) -> None:
    data = tree(ROOT % ("", leaf("1", "p", LT) + leaf("2", "q", GE)),
                attributes='missingValueStrategy="nullPrediction" noTrueChildStrategy="returnLastPrediction"')
    compare(data, evaluator_compatible=True)  # everything else agrees with pmml4s
    feeds = {"x": np.array([np.nan, 1.0]), "z": np.array([0.0, 0.0]), "c": np.array(["a", "a"], dtype=object)}
    got = run_compiled(compile_pmml(data, name="model.pmml"), data, feeds)
    assert list(got["predicted_y"]) == [None, "p"]  # a missing x: no prediction, as the specification says
    assert list(evaluator(data).run(feeds)[0]) == ["r", "p"]  # pmml4s reads the UNKNOWN as FALSE


def test_an_unknown_category_kept_as_it_is_matches_no_value() -> None:
    data = tree(ROOT % ("", leaf("1", "p", IN_AB) + leaf("2", "q", NOT_IN_AB)),
                schema='<MiningField name="c" invalidValueTreatment="asIs"/>')
    feeds = {"c": np.array(["zz", "a", None], dtype=object)}
    got = run_compiled(compile_pmml(data, name="model.pmml"), data, feeds)
    assert list(got["predicted_y"]) == ["q", "p", None]


def test_what_is_not_compiled_names_its_element() -> None:
    data = tree(ROOT % ("", leaf("1", "p", LT)), attributes='missingValueStrategy="aggregateNodes"')
    with pytest.raises(NotCompiled, match="aggregateNodes") as caught:
        compile_pmml(data, name="model.pmml")
    assert caught.value.element == "TreeModel"
    bad = regression("softmax", classification=True).replace(b'function="round"', b'function="x-unknown"')
    with pytest.raises(NotCompiled, match="x-unknown"):
        compile_pmml(bad, name="model.pmml")


def _tree_attributes(model: bytes) -> set[str]:
    node = next(n for n in onnx.load_from_string(model).graph.node if n.op_type == "TreeEnsembleRegressor")
    return {a.name for a in node.attribute}


def test_splits_compare_in_double_on_onnx_runtime_and_on_the_tree_engine(pmml_java: None, tmp_path: Path) -> None:
    close = "1.0000000000000002"  # a double step above 1: float32 cannot tell the two apart
    data = tree(ROOT % ("", leaf("1", "p", '<SimplePredicate field="x" operator="lessThan" value="1"/>')
                        + leaf("2", "q", f'<SimplePredicate field="x" operator="lessOrEqual" value="{close}"/>')))
    assert "nodes_values_as_tensor" in _tree_attributes(compile_pmml(data, name="m"))
    compare(data, evaluator_compatible=True)
    x = np.array([np.nextafter(1.0, 0), 1.0, float(close), np.nextafter(float(close), 2), np.nan])
    expected = ["p", "q", "q", None, None]
    feeds = {"x": x, "z": np.zeros(5), "c": np.array(["a"] * 5, dtype=object)}
    assert list(run_compiled(compile_pmml(data, name="m"), data, feeds)["predicted_y"]) == expected
    # A batch large enough for the tree engine, which compares in double too.
    path = tmp_path / "m.pmml"
    path.write_bytes(data)
    with modelpack.load(path, engine="modelpack-trees") as model:
        assert "tree engine" in model.engine_reason
        batch = {k: np.tile(v, 20) for k, v in feeds.items()}
        assert list(model.predict(batch)) == expected * 20


def _spec_tree(node: dict[str, Any], row: dict[str, float]) -> str | None:
    """The PMML specification's nullPrediction + returnLastPrediction walk, for the test's trees."""
    for child in node["children"]:
        value = row[child["field"]]
        if np.isnan(value):
            return None  # an UNKNOWN predicate: no prediction
        if value <= child["at"] if child["op"] == "lessOrEqual" else value > child["at"]:
            return _spec_tree(child, row)
    return node["score"]


def _xml_tree(node: dict[str, Any]) -> str:
    predicate = ("<True/>" if "field" not in node else
                 f'<SimplePredicate field="{node["field"]}" operator="{node["op"]}" value="{node["at"]}"/>')
    inner = "".join(_xml_tree(c) for c in node["children"])
    return f'<Node score="{node["score"]}">{predicate}{inner}</Node>'


def _split(field: str, at: float, score: str, low: list[dict[str, Any]], high: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"field": field, "op": "lessOrEqual", "at": at, "score": score, "children": low},
            {"field": field, "op": "greaterThan", "at": at, "score": score, "children": high}]


def test_null_prediction_trees_follow_the_specification_with_fewer_missing_value_tests() -> None:
    # Binary splits as sklearn2pmml writes them: each field tested for a missing value once per
    # path, a sibling's complement not tested again.
    root = {"score": "r", "children": _split("x", 0.5, "p", _split("z", 0.0, "q", _split("x", -0.5, "r", [], []), []),
                                             _split("x", 1.5, "q", [], _split("z", 1.0, "p", [], [])))}
    data = tree(_xml_tree(root), attributes='missingValueStrategy="nullPrediction" '
                                            'noTrueChildStrategy="returnLastPrediction"')
    model = compile_pmml(data, name="model.pmml")
    rng = np.random.default_rng(0)
    feeds = {k: np.where(rng.random(400) < 0.2, np.nan, rng.normal(0.5, 1.2, 400).round(1)) for k in "xz"}
    feeds["c"] = np.array(["a"] * 400, dtype=object)
    got = run_compiled(model, data, feeds)["predicted_y"]
    want = [_spec_tree(root, {k: feeds[k][i] for k in "xz"}) for i in range(400)]
    assert list(got) == want
    node = next(n for n in onnx.load_from_string(model).graph.node if n.op_type == "TreeEnsembleRegressor")
    # 5 comparisons, 3 missing-value tests (z on the left; x, then z on the right), 9 leaves;
    # (a missing-value test before every comparison would take 41)
    assert len(next(a for a in node.attribute if a.name == "nodes_modes").strings) == 17


SUM_CHAIN = """<MiningModel functionName="regression"><MiningSchema><MiningField name="x"/><MiningField name="z"/>
<MiningField name="y" usageType="target"/></MiningSchema><Segmentation multipleModelMethod="modelChain">
<Segment id="1"><True/><MiningModel functionName="regression"><MiningSchema><MiningField name="x"/>
<MiningField name="z"/></MiningSchema><Output><OutputField name="s" optype="continuous" dataType="double"
 feature="predictedValue"/></Output><Segmentation multipleModelMethod="%s">%s</Segmentation></MiningModel></Segment>
<Segment id="2"><True/><RegressionModel functionName="regression"><MiningSchema><MiningField name="s"/>
<MiningField name="y" usageType="target"/></MiningSchema><RegressionTable intercept="0.125">
<NumericPredictor name="s" coefficient="2"/></RegressionTable></RegressionModel></Segment></Segmentation></MiningModel>"""

SUM_TOP = """<MiningModel functionName="regression"><MiningSchema><MiningField name="x"/><MiningField name="z"/>
<MiningField name="y" usageType="target"/></MiningSchema><Segmentation multipleModelMethod="%s">%s</Segmentation>
</MiningModel>"""


def _sum_segment(i: int, field: str, at: float, low: float, high: float) -> str:
    return (f'<Segment id="t{i}" weight="{i + 1}"><True/><TreeModel functionName="regression"><MiningSchema>'
            f'<MiningField name="{field}"/></MiningSchema><Node score="0"><True/>'
            f'<Node score="{low}"><SimplePredicate field="{field}" operator="lessOrEqual" value="{at}"/></Node>'
            f'<Node score="{high}"><SimplePredicate field="{field}" operator="greaterThan" value="{at}"/></Node>'
            '</Node></TreeModel></Segment>')


@pytest.mark.parametrize("method", ["sum", "weightedAverage"])
def test_a_nested_tree_sum_is_summed_by_the_tree_node(pmml_java: None, method: str) -> None:
    trees = "".join(_sum_segment(i, "xz"[i % 2], 0.25 * i, 0.1 + i, -1.7 * i) for i in range(5))
    data = document(SUM_CHAIN % (method, trees), classification=False)
    compare(data, evaluator_compatible=True)

    def targets(model: bytes) -> int:
        node = next(n for n in onnx.load_from_string(model).graph.node if n.op_type == "TreeEnsembleRegressor")
        return next(a.i for a in node.attribute if a.name == "n_targets")

    assert targets(compile_pmml(data, name="m")) == 1  # the scores are the leaves' weights
    assert targets(compile_pmml(data, name="m", exact=True)) == 5  # one outcome per tree, summed in double
    top = document(SUM_TOP % (method, trees), classification=False)
    assert targets(compile_pmml(top, name="m")) == 5  # the document's own prediction stays exact


def test_a_float32_tree_sum_that_would_disagree_is_packed_exact(pmml_java: None, tmp_path: Path) -> None:
    import zipfile

    import modelpack

    # y = 2 (a + b) + 0.125 is -0.4 where x <= 0 and z <= 0: float32 leaves would miss it by 4e-4
    trees = _sum_segment(0, "x", 0.0, 12345.678, 1.0) + _sum_segment(1, "z", 0.0, -12345.9405, 2.0)
    source = tmp_path / "m.pmml"
    source.write_bytes(document(SUM_CHAIN % ("sum", trees), classification=False))
    dest = tmp_path / "m.mpk"
    modelpack.pack(source, dest)
    loaded = modelpack.load(dest)
    assert loaded.engine.startswith("onnx")  # the exact form passed the certificate and runs
    node = next(n for n in onnx.load_from_string(zipfile.ZipFile(dest).read("model.onnx")).graph.node
                if n.op_type == "TreeEnsembleRegressor")
    assert next(a.i for a in node.attribute if a.name == "n_targets") == 2
    got = loaded.predict({"x": np.array([-1.0, 1.0]), "z": np.array([-1.0, -1.0])})
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64).ravel(), [2 * (12345.678 - 12345.9405) + 0.125,
                                                                        2 * (1.0 - 12345.9405) + 0.125],
                               rtol=1e-12, atol=1e-9)
    loaded.close()
