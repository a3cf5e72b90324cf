"""Compiled center-based ClusteringModels against the PMML evaluator (pmml4s on a real JVM)."""

from __future__ import annotations

import pytest

from modelpack._formats.pmml_compile import NotCompiled, compile_pmml

from .test_pmml_compile import compare

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="a" optype="continuous" dataType="double"/>
<DataField name="b" optype="continuous" dataType="double"/>
<DataField name="c" optype="continuous" dataType="double"/></DataDictionary>"""


def clustering(measure: str, *, fields: str = "", weights: str = "", kind: str = "distance",
               model_class: str = "centerBased") -> bytes:
    fields = fields or ('<ClusteringField field="a"/><ClusteringField field="b" fieldWeight="2.5"/>'
                        '<ClusteringField field="c" fieldWeight="0.5"/>')
    body = f"""<ClusteringModel functionName="clustering" modelClass="{model_class}" numberOfClusters="3">
<MiningSchema><MiningField name="a"/><MiningField name="b"/><MiningField name="c"/></MiningSchema>
<ComparisonMeasure kind="{kind}">{measure}</ComparisonMeasure>{fields}{weights}
<Cluster id="near" name="N"><Array n="3" type="real">0 1 -2</Array></Cluster>
<Cluster name="far"><Array n="3" type="real">5 -3 4</Array></Cluster>
<Cluster><Array n="3" type="real">-6 8 0.5</Array></Cluster>
</ClusteringModel></PMML>"""
    return (HEAD + body).encode()


MEASURES = ["<euclidean/>", "<squaredEuclidean/>", "<cityBlock/>", "<chebychev/>",
            '<minkowski p-parameter="3"/>']


@pytest.mark.parametrize("measure", MEASURES)
def test_each_distance_agrees_with_the_evaluator_with_missing_values(pmml_java: None, measure: str) -> None:
    weights = '<MissingValueWeights><Array n="3" type="real">1 3 0.5</Array></MissingValueWeights>'
    compare(clustering(measure, weights=weights), rows=300, evaluator_compatible=True)


def test_compare_functions_agree_with_the_evaluator(pmml_java: None) -> None:
    fields = ('<ClusteringField field="a" compareFunction="gaussSim" similarityScale="2"/>'
              '<ClusteringField field="b" compareFunction="delta"/>'
              '<ClusteringField field="c" compareFunction="equal" fieldWeight="3"/>')
    compare(clustering("<cityBlock/>", fields=fields), rows=300, evaluator_compatible=True)


@pytest.mark.parametrize(("document", "element"), [
    (clustering("<euclidean/>", model_class="distributionBased"), "ClusteringModel"),
    (clustering("<simpleMatching/>"), "ComparisonMeasure"),
    (clustering("<euclidean/>", kind="similarity"), "ComparisonMeasure"),
    (clustering("<euclidean/>", fields='<ClusteringField field="a" compareFunction="table"/>'
                '<ClusteringField field="b"/><ClusteringField field="c"/>'), "ClusteringField"),
])
def test_what_is_not_compiled_names_its_element(document: bytes, element: str) -> None:
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(document, name="model.pmml")
    assert caught.value.element == element
