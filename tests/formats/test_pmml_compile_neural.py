"""NeuralNetwork compiled to ONNX, against the PMML evaluator (pmml4s on a real JVM).

Each document is compared on probe rows with missing values and unseen categories
at 1e-6 relative; the DMG corpus' network is compared in test_pmml_compile.py.
"""

from __future__ import annotations

import pytest
from pmml_compile_checks import compare, document

from modelpack._formats.pmml_compile import NotCompiled, compile_pmml

INPUTS = """<NeuralInputs><NeuralInput id="i0"><DerivedField optype="continuous" dataType="double">
<NormContinuous field="x"><LinearNorm orig="-2" norm="-1"/><LinearNorm orig="2" norm="1"/></NormContinuous>
</DerivedField></NeuralInput><NeuralInput id="i1"><DerivedField optype="continuous" dataType="double">
<FieldRef field="z"/></DerivedField></NeuralInput><NeuralInput id="i2"><DerivedField optype="continuous"
 dataType="double"><NormDiscrete field="c" value="a"/></DerivedField></NeuralInput></NeuralInputs>"""


def _layer(ids: list[str], sources: list[str], attributes: str = "", seed: int = 0) -> str:
    neurons = []
    for j, n in enumerate(ids):
        cons = "".join(f'<Con from="{s}" weight="{((seed + 3 * j + 5 * k) % 7 - 3) * 0.37:.2f}"/>'
                       for k, s in enumerate(sources))
        neurons.append(f'<Neuron id="{n}" bias="{0.1 * (j - 1):.1f}">{cons}</Neuron>')
    return f"<NeuralLayer {attributes}>{''.join(neurons)}</NeuralLayer>"


def network(activation: str, *, classification: bool, output_layer: str = "") -> bytes:
    hidden = _layer(["h0", "h1", "h2"], ["i0", "i1", "i2"], f'activationFunction="{activation}"')
    schema = ('<MiningSchema><MiningField name="x"/><MiningField name="z"/><MiningField name="c"/>'
              '<MiningField name="y" usageType="target"/></MiningSchema>')
    if classification:
        last = _layer(["o0", "o1", "o2"], ["h0", "h1", "h2"], output_layer, seed=2)
        outs = "".join(f'<NeuralOutput outputNeuron="o{k}"><DerivedField optype="categorical" dataType="string">'
                       f'<NormDiscrete field="y" value="{v}"/></DerivedField></NeuralOutput>' for k, v in enumerate("pqr"))
    else:
        last = _layer(["o0"], ["h0", "h1", "h2"], output_layer, seed=2)
        outs = ('<NeuralOutput outputNeuron="o0"><DerivedField optype="continuous" dataType="double">'
                '<NormContinuous field="y"><LinearNorm orig="0" norm="0.1"/><LinearNorm orig="10" norm="0.5"/>'
                '<LinearNorm orig="50" norm="0.9"/></NormContinuous></DerivedField></NeuralOutput>')
    function = "classification" if classification else "regression"
    return document(f'<NeuralNetwork functionName="{function}" activationFunction="identity">{schema}{INPUTS}'
                    f'{hidden}{last}<NeuralOutputs>{outs}</NeuralOutputs></NeuralNetwork>',
                    classification=classification)


ACTIVATIONS = ["identity", "logistic", "tanh", "exponential", "reciprocal", "square", "Gauss", "sine",
               "cosine", "Elliott", "rectifier", "threshold", "arctan"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_of_a_regression_network_agrees(pmml_java: None, activation: str) -> None:
    compare(network(activation, classification=False), rows=200, evaluator_compatible=True)


@pytest.mark.parametrize("method", ["softmax", "simplemax"])
def test_classifier_networks_normalize_as_the_evaluator_does(pmml_java: None, method: str) -> None:
    attributes = f'activationFunction="{"identity" if method == "softmax" else "logistic"}" normalizationMethod="{method}"'
    compare(network("tanh", classification=True, output_layer=attributes), rows=200, evaluator_compatible=True)


def test_radial_basis_layers_fall_back_naming_the_layer() -> None:
    with pytest.raises(NotCompiled, match="radialBasis") as caught:
        compile_pmml(network("radialBasis", classification=False), name="model.pmml")
    assert caught.value.element == "NeuralLayer"
