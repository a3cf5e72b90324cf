"""Compiled NaiveBayesModels against the PMML evaluator (pmml4s on a real JVM)."""

from __future__ import annotations

import pytest

from modelpack._formats.pmml_compile import NotCompiled, compile_pmml

from .test_pmml_compile import compare

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="z" optype="continuous" dataType="double"/>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/><Value value="c"/>
</DataField>
<DataField name="y" optype="categorical" dataType="string"><Value value="p"/><Value value="q"/><Value value="r"/>
</DataField></DataDictionary>"""


def counts(p: int, q: int, r: int) -> str:
    return (f'<TargetValueCounts><TargetValueCount value="p" count="{p}"/><TargetValueCount value="q" count="{q}"/>'
            f'<TargetValueCount value="r" count="{r}"/></TargetValueCounts>')


def gaussian(field: str, stats: list[tuple[float, float]], distribution: str = "GaussianDistribution") -> str:
    inner = "".join(f'<TargetValueStat value="{k}"><{distribution} mean="{m}" variance="{v}"/></TargetValueStat>'
                    for k, (m, v) in zip("pqr", stats, strict=True))
    return f'<BayesInput fieldName="{field}"><TargetValueStats>{inner}</TargetValueStats></BayesInput>'


def naive_bayes(*, distribution: str = "GaussianDistribution", treatment: str = "asIs") -> bytes:
    discretized = """<BayesInput fieldName="z"><DerivedField optype="categorical" dataType="string">
<Discretize field="z"><DiscretizeBin binValue="low"><Interval closure="openClosed" rightMargin="0"/></DiscretizeBin>
<DiscretizeBin binValue="high"><Interval closure="openOpen" leftMargin="0" rightMargin="4"/></DiscretizeBin>
</Discretize></DerivedField>
<PairCounts value="low">""" + counts(10, 0, 5) + '</PairCounts><PairCounts value="high">' + counts(3, 9, 4) + \
        "</PairCounts></BayesInput>"
    body = f"""<NaiveBayesModel functionName="classification" threshold="0.002"><MiningSchema>
<MiningField name="x"/><MiningField name="z"/><MiningField name="c" invalidValueTreatment="{treatment}"/>
<MiningField name="y" usageType="target"/></MiningSchema><BayesInputs>
{gaussian("x", [(0.5, 4.0), (3.0, 0.25), (-2.0, 9.0)], distribution)}
<BayesInput fieldName="c"><PairCounts value="a">{counts(4, 0, 7)}</PairCounts>
<PairCounts value="b">{counts(6, 2, 1)}</PairCounts></BayesInput>{discretized}</BayesInputs>
<BayesOutput fieldName="y">{counts(30, 20, 25)}</BayesOutput></NaiveBayesModel></PMML>"""
    return (HEAD + body).encode()


@pytest.mark.parametrize("treatment", ["asIs", "asMissing", "returnInvalid"])
def test_gaussian_counted_and_discretized_inputs_agree_with_the_evaluator(pmml_java: None, treatment: str) -> None:
    compare(naive_bayes(treatment=treatment), rows=300, evaluator_compatible=True)


def test_other_distributions_are_left_to_the_evaluator() -> None:
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(naive_bayes(distribution="PoissonDistribution"), name="model.pmml")
    assert caught.value.element == "PoissonDistribution"
