"""Hostile PMML documents: the compiler stops within its limits and the evaluator is left the model.

A bare ``.pmml`` file is compiled when it is loaded, so the work a document can ask of
the compiler is bounded: a graph past ``MAX_GRAPH_NODES`` operators, or a tree's table
of leaves by classes past its size, is not compiled; a vocabulary is looked up, not scanned.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import modelpack
from modelpack._formats.pmml_compile import NotCompiled, compile_pmml, graph
from modelpack._formats.pmml_compile.graph import Value
from modelpack.errors import ModelpackError

HEAD = ('<PMML version="4.4"><DataDictionary>'
        '<DataField name="x" optype="continuous" dataType="double"/>'
        '<DataField name="c" optype="categorical" dataType="string"/>'
        '<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>')
SCHEMA = ('<MiningSchema><MiningField name="x"/><MiningField name="c"/>'
          '<MiningField name="y" usageType="target"/></MiningSchema>')


def _map_values(rows: int) -> bytes:
    table = "".join(f"<row><k>v{i}</k><o>{i}</o></row>" for i in range(rows))
    derived = (f'<TransformationDictionary><DerivedField name="d" optype="continuous" dataType="double">'
               f'<MapValues outputColumn="o" dataType="double"><FieldColumnPair field="c" column="k"/>'
               f'<InlineTable>{table}</InlineTable></MapValues></DerivedField></TransformationDictionary>')
    model = (f'<RegressionModel functionName="regression">{SCHEMA}<RegressionTable intercept="1">'
             '<NumericPredictor name="d" coefficient="2"/></RegressionTable></RegressionModel>')
    return (HEAD + derived + model + "</PMML>").encode()


def test_a_graph_past_the_limit_is_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    compile_pmml(_map_values(50), name="m.pmml")  # under the limit: compiled
    monkeypatch.setattr(graph, "MAX_GRAPH_NODES", 100)
    with pytest.raises(NotCompiled, match="more than 100 operators"):
        compile_pmml(_map_values(500), name="m.pmml")


def test_loading_a_bare_document_past_the_limit_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "big.pmml"
    path.write_bytes(_map_values(500))
    monkeypatch.setattr(graph, "MAX_GRAPH_NODES", 100)
    with pytest.raises(ModelpackError, match="more than 100 operators"):
        modelpack.load(path, compile="onnx")


def test_a_tree_table_of_leaves_by_classes_past_its_size_is_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    classes = "".join(f'<Value value="k{i}"/>' for i in range(300))
    head = HEAD.replace('<DataField name="y" optype="continuous" dataType="double"/>',
                        f'<DataField name="y" optype="categorical" dataType="string">{classes}</DataField>')
    leaves = "".join(f'<Node score="k{i}"><SimplePredicate field="x" operator="lessThan" value="{i}"/></Node>'
                     for i in range(50))
    doc = (head + f'<TreeModel functionName="classification">{SCHEMA}<Node score="k0"><True/>{leaves}</Node>'
           "</TreeModel></PMML>").encode()
    compile_pmml(doc, name="t.pmml")
    monkeypatch.setattr("modelpack._formats.pmml_compile.tree.MAX_GRAPH_NODES", 100)  # 10 000 cells, of 51 x 300
    with pytest.raises(NotCompiled, match="too large a table"):
        compile_pmml(doc, name="t.pmml")


def test_a_vocabulary_code_is_its_first_place() -> None:
    value = Value("x", ("a", "b", "a", "c"))
    assert value.codes == {"a": 0, "b": 1, "c": 3}


def test_a_large_set_predicate_is_looked_up_not_scanned() -> None:
    # 60 000 words: a scan of the vocabulary per word took minutes; a look-up takes well under a second.
    words = " ".join(f"v{i}" for i in range(60_000))
    doc = (HEAD + f'<TreeModel functionName="regression">{SCHEMA}<Node score="0"><True/><Node score="1">'
           f'<SimpleSetPredicate field="c" booleanOperator="isIn"><Array type="string">{words}</Array>'
           '</SimpleSetPredicate></Node><Node score="2"><True/></Node></Node></TreeModel></PMML>').encode()
    start = time.perf_counter()
    compile_pmml(doc, name="s.pmml")
    assert time.perf_counter() - start < 20


def test_a_regression_matrix_of_predictors_by_tables_past_its_size_is_not_compiled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fields = [f"f{i}" for i in range(12)]
    classes = [f"k{j}" for j in range(12)]
    head = ('<PMML version="4.4"><DataDictionary>'
            + "".join(f'<DataField name="{f}" optype="continuous" dataType="double"/>' for f in fields)
            + '<DataField name="y" optype="categorical" dataType="string">'
            + "".join(f'<Value value="{c}"/>' for c in classes) + "</DataField></DataDictionary>")
    schema = ("<MiningSchema>" + "".join(f'<MiningField name="{f}"/>' for f in fields)
              + '<MiningField name="y" usageType="target"/></MiningSchema>')
    tables = "".join(f'<RegressionTable intercept="{j}" targetCategory="{c}">'
                     + "".join(f'<NumericPredictor name="{f}" coefficient="{i + j}"/>' for i, f in enumerate(fields))
                     + "</RegressionTable>" for j, c in enumerate(classes))
    doc = (head + f'<RegressionModel functionName="classification" normalizationMethod="softmax">{schema}'
           f"{tables}</RegressionModel></PMML>").encode()
    compile_pmml(doc, name="r.pmml")
    monkeypatch.setattr("modelpack._formats.pmml_compile.regression.MAX_GRAPH_NODES", 1)  # 100 cells, of 144
    with pytest.raises(NotCompiled, match="too large a matrix"):
        compile_pmml(doc, name="r.pmml")
