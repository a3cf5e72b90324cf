"""Compiled SupportVectorMachineModels against the PMML evaluator (pmml4s on a real JVM)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelpack._formats.pmml import describe
from modelpack._formats.pmml_compile import NotCompiled, compile_pmml
from modelpack._formats.pmml_compile.probe import probe_rows

from .test_pmml_compile import assert_agree, compare, evaluator, run_compiled

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="z" optype="continuous" dataType="double"/>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/></DataField>
<DataField name="y" optype="{optype}" dataType="{dtype}">{values}</DataField></DataDictionary>"""
CLASSES = '<Value value="p"/><Value value="q"/><Value value="r"/>'
VECTORS = """<VectorDictionary><VectorFields><FieldRef field="x"/><FieldRef field="z"/>
<CategoricalPredictor name="c" value="a" coefficient="1.5"/></VectorFields>
<VectorInstance id="v1"><Array n="3" type="real">0.5 -1 1.5</Array></VectorInstance>
<VectorInstance id="v2"><REAL-SparseArray n="3"><Indices>2</Indices><REAL-Entries>2.5</REAL-Entries>
</REAL-SparseArray></VectorInstance>
<VectorInstance id="v3"><Array n="3" type="real">-3 0.25 0</Array></VectorInstance></VectorDictionary>"""
KERNELS = ['<LinearKernelType/>', '<PolynomialKernelType gamma="0.5" coef0="1.5" degree="2"/>',
           '<RadialBasisKernelType gamma="0.3"/>', '<SigmoidKernelType gamma="0.2" coef0="-0.5"/>']


def machine(target: str | None, alternate: str | None, coefficients: list[float], b: float,
            vectors: tuple[str, ...] = ("v1", "v2", "v3"), threshold: str = "") -> str:
    attrs = (f' targetCategory="{target}"' if target else "") + \
        (f' alternateTargetCategory="{alternate}"' if alternate else "") + threshold
    refs = "".join(f'<SupportVector vectorId="{v}"/>' for v in vectors)
    cs = "".join(f'<Coefficient value="{c}"/>' for c in coefficients)
    return (f'<SupportVectorMachine{attrs}><SupportVectors>{refs}</SupportVectors>'
            f'<Coefficients absoluteValue="{b}">{cs}</Coefficients></SupportVectorMachine>')


def svm(kernel: str, machines: str, *, attributes: str = "", classification: bool = True,
        values: str = CLASSES, vectors: str = VECTORS) -> bytes:
    head = HEAD.format(optype="categorical" if classification else "continuous",
                       dtype="string" if classification else "double", values=values if classification else "")
    function = "classification" if classification else "regression"
    body = f"""<SupportVectorMachineModel functionName="{function}"{attributes}><MiningSchema>
<MiningField name="x"/><MiningField name="z"/><MiningField name="c"/><MiningField name="y" usageType="target"/>
</MiningSchema>{kernel}{vectors}{machines}</SupportVectorMachineModel></PMML>"""
    return (head + body).encode()


ONE_AGAINST_ONE = (machine("p", "q", [0.7, -1.2, 0.4], 0.1) + machine("p", "r", [-0.3, 0.8, 1.1], -0.2)
                   + machine("q", "r", [1.3, 0.2, -0.9], 0.05, threshold=' threshold="0.3"'))
ONE_AGAINST_ALL = (machine("p", None, [0.7, -1.2, 0.4], 0.1) + machine("q", None, [-0.3, 0.8, 1.1], -0.2)
                   + machine("r", None, [1.3, 0.2, -0.9], 0.05))


def compare_untied(data: bytes, rows: int = 300) -> None:
    """As ``compare``, on the rows where no two classes share the most votes: pmml4s breaks those
    ties by the hash order of its vote map, the compiled model by the target's order."""
    model = compile_pmml(data, name="model.pmml")
    d = describe(data, name="model.pmml")
    feeds = probe_rows(data, d.inputs, rows=rows)
    want = dict(zip([o.name for o in d.outputs], evaluator(data).run(feeds), strict=True))
    got = run_compiled(model, data, feeds)
    shares = np.stack([got[o.name] for o in d.outputs if o.name.startswith("probability_")], axis=1)
    tied = (np.isclose(shares, np.nanmax(shares, axis=1, initial=-1.0)[:, None]).sum(axis=1) > 1)
    keep = ~tied
    assert keep.sum() > rows // 3, "too few rows without a tie to compare"

    def rows_of(columns: dict[str, Any]) -> dict[str, Any]:
        return {k: np.asarray(v)[keep] for k, v in columns.items()}
    assert_agree(rows_of(got), rows_of(want), rows_of(feeds))


@pytest.mark.parametrize("kernel", KERNELS)
def test_each_kernel_one_against_one_agrees_with_the_evaluator(pmml_java: None, kernel: str) -> None:
    compare_untied(svm(kernel, ONE_AGAINST_ONE, attributes=' classificationMethod="OneAgainstOne"'))


@pytest.mark.parametrize("max_wins", ["false", "true"])
def test_one_against_all_and_max_wins_agree_with_the_evaluator(pmml_java: None, max_wins: str) -> None:
    compare(svm(KERNELS[2], ONE_AGAINST_ALL, attributes=f' maxWins="{max_wins}"'), rows=300)
    compare_untied(svm(KERNELS[1], ONE_AGAINST_ONE, attributes=f' classificationMethod="OneAgainstOne" '
                       f'maxWins="{max_wins}" threshold="-0.2"'))


def test_binary_regression_and_hyperplane_agree_with_the_evaluator(pmml_java: None) -> None:
    binary = svm(KERNELS[3], machine("q", None, [0.7, -1.2, 0.4], 0.1), values='<Value value="p"/><Value value="q"/>')
    compare(binary, rows=300)
    compare(svm(KERNELS[1], machine(None, None, [0.7, -1.2, 0.4], 0.1), classification=False), rows=300)
    hyperplane = '<Coefficients absoluteValue="0.25"><Coefficient value="0.5"/><Coefficient value="-2"/>' \
        '<Coefficient value="1.5"/></Coefficients>'
    compare(svm(KERNELS[0], f"<SupportVectorMachine>{hyperplane}</SupportVectorMachine>",
                attributes=' svmRepresentation="Coefficients"', classification=False), rows=300)


def test_what_is_not_compiled_names_its_element() -> None:
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(svm(KERNELS[0], machine("p", "q", [1.0, 2.0, 3.0], 0, vectors=("v1", "v2", "v9"))),
                     name="model.pmml")
    assert caught.value.element == "SupportVectors"
