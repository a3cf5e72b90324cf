"""describe() of PMML documents: fields, outputs and roles, classes, and refusal of hostile XML.

These tests need no Java: describe() only parses. That it agrees with the
evaluator is checked in tests/runtime/test_pmml.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpack._formats import describe as describe_any
from modelpack._formats.pmml import check_safe, describe, typed_value
from modelpack.errors import PackageError, UnsafePackageError

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora" / "pmml"
DMG = CORPORA / "pmml4s-dmg-examples" / "models"


def corpus_file(relative: str) -> bytes:
    path = DMG / relative
    if not path.is_file():
        pytest.skip(f"PMML corpus not found at {path.resolve()}")
    return path.read_bytes()


def all_corpus_files() -> list[Path]:
    return sorted(CORPORA.glob("**/*.xml")) if CORPORA.is_dir() else []


MINIMAL = b"""<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
<Header><Application name="tests" version="1.2"/></Header>
<DataDictionary>
  <DataField name="x" optype="continuous" dataType="double"/>
  <DataField name="colour" optype="categorical" dataType="string"><Value value="red"/><Value value="blue"/>
    <Value value="?" property="missing"/></DataField>
  <DataField name="y" optype="categorical" dataType="integer"><Value value="0"/><Value value="1"/></DataField>
</DataDictionary>
<RegressionModel functionName="classification" normalizationMethod="softmax">
  <MiningSchema><MiningField name="x" missingValueReplacement="0.5" missingValueTreatment="asMean"/>
    <MiningField name="colour" invalidValueTreatment="asMissing"/><MiningField name="y" usageType="target"/>
  </MiningSchema>
  <RegressionTable intercept="1" targetCategory="1"><NumericPredictor name="x" coefficient="2"/></RegressionTable>
  <RegressionTable intercept="0" targetCategory="0"/>
</RegressionModel></PMML>"""


# -- reading ------------------------------------------------------------------------------
def test_minimal_document_is_described_fully() -> None:
    d = describe(MINIMAL, name="model.pmml")
    assert (d.task, d.classes) == ("classification", (0, 1))
    assert (d.model.format, d.model.file, d.model.pmml_version) == ("pmml", "model.pmml", "4.4")
    assert (d.model.producer, d.model.producer_version) == ("tests", "1.2")
    x, colour = d.inputs
    assert (x.name, x.dtype, x.shape) == ("x", "float64", ("N",))
    assert x.columns[0].missing_value_replacement == 0.5 and x.columns[0].missing_value_treatment == "asMean"
    assert colour.dtype == "string" and colour.columns[0].categories == ("red", "blue")  # "?" is not valid
    assert colour.columns[0].invalid_value_treatment == "asMissing"
    # No Output element: what pmml4s returns by default for a regression classifier.
    assert [(o.name, o.role, o.for_class) for o in d.outputs] == [
        ("predicted_y", "label", None), ("probability", None, None),
        ("probability_0", "probabilities", 0), ("probability_1", "probabilities", 1)]
    assert d.outputs[0].dtype == "float64"  # an integer target comes back as a number


def test_roles_come_from_feature_and_value_not_names() -> None:
    d = describe(corpus_file("tree/sas_3.1_iris_tree.xml"), name="model.pmml")
    probabilities = {o.name: o.for_class for o in d.outputs if o.role == "probabilities"}
    assert probabilities == {"P_speciesIRIS_VIRGINICA ": "IRIS-VIRGINICA",
                             "P_speciesIRIS_VERSICOLOR": "IRIS-VERSICOLOR",
                             "P_speciesIRIS_SETOSA    ": "IRIS-SETOSA"}
    labels = [o.name for o in d.outputs if o.role == "label"]
    assert labels == ["F_species"]  # three predictedValue fields: the first is the label
    assert all(o.role is None for o in d.outputs if o.name.startswith("R_"))  # residuals
    assert d.model.producer == "SAS(r)" and d.model.pmml_version == "3.1"


def test_integer_classes_and_final_results_only() -> None:
    d = describe(corpus_file("mining/dmg_weighted_majority_vote_mining.xml"), name="model.pmml")
    assert d.classes == (1, 2, 3)
    assert [(o.name, o.role, o.for_class) for o in d.outputs] == [
        ("PROB_1", "probabilities", 1), ("PROB_2", "probabilities", 2), ("PROB_3", "probabilities", 3),
        ("PREDICTION", "label", None)]  # the segments' own outputs are not the model's
    assert d.inputs[0].columns[0].missing_value_replacement == 5.8


def test_classes_inferred_when_the_target_lists_none() -> None:
    d = describe(corpus_file("mining/dmg_weighted_majority_vote_mining_revised.xml"), name="model.pmml")
    assert d.classes == (1, 2, 3)  # two probability outputs, the third class from the trees


def test_typed_categories_keep_the_field_type() -> None:
    d = describe(corpus_file("regression/dmg_regression_multi_classes.xml"), name="model.pmml")
    columns = {i.name: i.columns[0] for i in d.inputs}
    assert columns["sex"].categories == ("0", "1") and columns["minority"].categories == (0, 1)
    assert columns["minority"].dtype == "int64" and d.inputs[-1].dtype == "float64"


@pytest.mark.parametrize(("relative", "task", "roles"), [
    ("cluster/dmg_clustering_center_based.xml", "clustering", {"cluster": "cluster"}),
    ("regression/dmg_regression_linear.xml", "regression", {"predicted_number_of_claims": "value"}),
    ("anomaly/dmg_anomaly_iforest.xml", "regression", {"anomalyScore": "value"}),
    ("rule/dmg_rule_simple.xml", "classification", {"predicted_$C-Drug": "label"}),
    ("association/dmg_association_rule_association.xml", "other", {}),
])
def test_task_and_roles_per_model_type(relative: str, task: str, roles: dict[str, str]) -> None:
    d = describe(corpus_file(relative), name="model.pmml")
    assert d.task == task
    assert {o.name: o.role for o in d.outputs if o.role} == roles


def test_default_outputs_follow_the_tree() -> None:
    plain = describe(corpus_file("tree/dmg_tree_normal.xml"), name="m.pmml")
    assert [o.name for o in plain.outputs] == ["predicted_whatIdo"]  # no score distributions, no ids
    rich = describe(corpus_file("tree/dmg_tree_missing_aggregateNodes.xml"), name="m.pmml")
    assert [o.name for o in rich.outputs] == [
        "predicted_whatIdo", "confidence", "probability", "probability_will play", "probability_may play",
        "probability_no play", "node_id"]
    assert [o.dtype for o in rich.outputs][-2:] == ["float64", "string"]


def test_association_group_field_is_an_input() -> None:
    d = describe(corpus_file("association/dmg_association_rule_association.xml"), name="m.pmml")
    assert [i.name for i in d.inputs] == ["transaction", "item"]


@pytest.mark.parametrize("path", all_corpus_files(), ids=lambda p: p.name)
def test_every_corpus_document_is_described(path: Path) -> None:
    d = describe_any("pmml", path.read_bytes(), name="model.pmml")
    names = [o.name for o in d.outputs]
    assert d.inputs and len(set(names)) == len(names)
    assert all(s.shape == ("N",) for s in (*d.inputs, *d.outputs))
    if d.task == "classification":
        assert d.classes, "a classifier must know its classes"
        assert {o.for_class for o in d.outputs if o.role == "probabilities"} <= set(d.classes)
    assert sum(o.role in ("label", "value", "cluster") for o in d.outputs) <= 1


def test_prefixed_namespace_is_read() -> None:
    prefixed = MINIMAL.replace(b"<PMML xmlns=", b"<p:PMML xmlns:p=").replace(b"<", b"<p:").replace(
        b"<p:/", b"</p:").replace(b"<p:p:", b"<p:").replace(b"</p:p:", b"</p:")
    assert [i.name for i in describe(prefixed, name="m.pmml").inputs] == ["x", "colour"]


def test_typed_value() -> None:
    assert typed_value("3", "integer") == 3 and typed_value("2.5", "integer") == 2.5
    assert typed_value("1", "double") == 1.0 and typed_value("TRUE", "boolean") is True
    assert typed_value("abc", "double") == "abc" and typed_value(None, "string") is None


# -- refusing ---------------------------------------------------------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<PMML version="4.4"><Header copyright="&lol3;"/></PMML>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<PMML version="4.4"><Header copyright="&secret;"/></PMML>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY % remote SYSTEM "http://example.invalid/x.dtd">
%remote;]><PMML version="4.4"/>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE PMML SYSTEM "http://example.invalid/pmml.dtd"><PMML/>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE, PARAMETER_ENTITY, EXTERNAL_DTD],
                         ids=["billion-laughs", "xxe", "parameter-entity", "external-dtd"])
def test_hostile_xml_is_refused(document: bytes) -> None:
    with pytest.raises(UnsafePackageError, match="DOCTYPE") as caught:
        describe(document, name="evil.pmml")
    assert "evil.pmml" in str(caught.value) and caught.value.fix


def test_check_safe_accepts_plain_pmml_and_names_the_problem() -> None:
    check_safe(MINIMAL, "ok.pmml")
    with pytest.raises(UnsafePackageError, match="entity|DOCTYPE"):
        check_safe(b'<!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>', "x.pmml")


@pytest.mark.parametrize(("document", "message"), [
    (b"<PMML version='4.4'><Header>", "not well-formed"),
    (b"<html><body/></html>", "not PMML"),
    (b"<PMML version='4.4'><Header/><DataDictionary/></PMML>", "no model element"),
    (b"\x89PNG\r\n", "not well-formed"),
])
def test_not_pmml_is_a_package_error(document: bytes, message: str) -> None:
    with pytest.raises(PackageError, match=message) as caught:
        describe(document, name="bad.pmml")
    assert not isinstance(caught.value, UnsafePackageError) and caught.value.fix


@pytest.mark.parametrize("encoding", ["x-unknown", "utf-7", "UTF-32", "cp037", "koi8-r", "EBCDIC", "x" * 100])
def test_encodings_expat_does_not_read_itself_are_refused(encoding: str) -> None:
    """Python's codecs (or none) would decode them here, the JVM's parser there: two readings."""
    document = MINIMAL.replace(b'<?xml version="1.0" encoding="UTF-8"?>', b"").lstrip()
    document = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + document
    with pytest.raises(PackageError, match="encoding") as caught:
        describe(document, name="odd.pmml")
    assert "odd.pmml" in str(caught.value) and "UTF-8" in caught.value.fix


@pytest.mark.parametrize("encoding", ["UTF-8", "utf-8", "US-ASCII", "ISO-8859-1"])
def test_the_encodings_expat_reads_itself_are_accepted(encoding: str) -> None:
    document = MINIMAL.replace(b'<?xml version="1.0" encoding="UTF-8"?>', b"").lstrip()
    document = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + document
    assert [i.name for i in describe(document, name="m.pmml").inputs] == ["x", "colour"]
