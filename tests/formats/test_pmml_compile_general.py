"""GeneralRegressionModel compiled to ONNX, against the PMML evaluator (pmml4s on a real JVM).

Each document is compared on probe rows with missing values and unseen categories at
1e-6 relative; the DMG corpus' documents are compared in test_pmml_compile.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from pmml_compile_checks import compare, document, run_compiled

from modelpack._formats.pmml_compile import NotCompiled, compile_pmml

LISTS = """<ParameterList><Parameter name="p0"/><Parameter name="p1"/><Parameter name="p2"/><Parameter name="p3"/>
<Parameter name="p4"/></ParameterList><FactorList><Predictor name="c"/></FactorList><CovariateList>
<Predictor name="x"/><Predictor name="z"/></CovariateList><PPMatrix><PPCell value="a" predictorName="c"
 parameterName="p1"/><PPCell value="b" predictorName="c" parameterName="p2"/><PPCell value="1" predictorName="x"
 parameterName="p3"/><PPCell value="2" predictorName="z" parameterName="p4"/><PPCell value="1" predictorName="x"
 parameterName="p4"/></PPMatrix>"""
SCHEMA = ('<MiningSchema><MiningField name="x"/><MiningField name="z"/><MiningField name="c"/>'
          '<MiningField name="y" usageType="target"/></MiningSchema>')


def _cells(category: str | None, scale: float) -> str:
    target = f' targetCategory="{category}"' if category is not None else ""
    betas = [0.3, -0.6, 0.45, 0.12, -0.05]
    return "".join(f'<PCell{target} parameterName="p{k}" beta="{b * scale:.4f}"/>' for k, b in enumerate(betas))


def model(kind: str, attributes: str, cells: str, *, classification: bool) -> bytes:
    function = "classification" if classification else "regression"
    return document(f'<GeneralRegressionModel modelType="{kind}" functionName="{function}" {attributes}>{SCHEMA}'
                    f'{LISTS}<ParamMatrix>{cells}</ParamMatrix></GeneralRegressionModel>',
                    classification=classification)


@pytest.mark.parametrize("link", ["identity", "log", "logit", "cloglog", "loglog", "logc", "power", "probit"])
def test_generalized_linear_links_agree(pmml_java: None, link: str) -> None:
    attributes = f'linkFunction="{link}" linkParameter="-2" offsetValue="0.25"'
    compare(model("generalizedLinear", attributes, _cells(None, 0.2 if link == "logc" else 1.0),
                  classification=False), rows=200, evaluator_compatible=True)


def test_multinomial_logistic_agrees(pmml_java: None) -> None:
    cells = _cells("p", 1.0) + _cells("q", -0.7)  # r, without cells, is the reference
    compare(model("multinomialLogistic", "", cells, classification=True), rows=200, evaluator_compatible=True)


ORDINAL = ('<PCell targetCategory="p" parameterName="p0" beta="-0.5"/>'
           '<PCell targetCategory="q" parameterName="p0" beta="0.8"/>'
           + "".join(f'<PCell parameterName="p{k}" beta="{b}"/>' for k, b in ((1, 0.4), (3, -0.3), (4, 0.02))))


@pytest.mark.parametrize("link", ["logit", "cloglog", "probit", "cauchit"])
def test_ordinal_cumulative_links_agree(pmml_java: None, link: str) -> None:
    compare(model("ordinalMultinomial", f'cumulativeLink="{link}"', ORDINAL, classification=True), rows=200,
            evaluator_compatible=True)


def test_ordinal_loglog_follows_the_specification_where_pmml4s_does_not() -> None:
    # F(eta) = exp(-exp(-eta)); pmml4s computes exp(-exp(eta)), a decreasing F with negative probabilities
    data = model("ordinalMultinomial", 'cumulativeLink="loglog"', ORDINAL, classification=True)
    x, z = np.array([0.0, 1.0, -2.0]), np.array([0.0, 0.5, 3.0])
    feeds = {"x": x, "z": z, "c": np.array(["c", "a", "b"], dtype=object)}
    got = run_compiled(compile_pmml(data, name="model.pmml"), data, feeds)
    common = 0.4 * (feeds["c"] == "a") - 0.3 * x + 0.02 * z * z * x
    cumulative = [np.exp(-np.exp(-(t + common))) for t in (-0.5, 0.8)]
    want = {"p": cumulative[0], "q": cumulative[1] - cumulative[0], "r": 1 - cumulative[1]}
    for c in "pqr":
        np.testing.assert_allclose(got[f"probability_{c}"], want[c], rtol=1e-12)


def test_cauchit_is_a_cumulative_link_only() -> None:
    # PMML's linkFunction has no cauchit (cumulativeLink has); the evaluator refuses the document
    data = model("generalizedLinear", 'linkFunction="cauchit"', _cells(None, 1.0), classification=False)
    with pytest.raises(NotCompiled, match="cauchit") as caught:
        compile_pmml(data, name="model.pmml")
    assert caught.value.element == "GeneralRegressionModel"
