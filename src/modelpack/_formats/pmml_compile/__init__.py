"""PMML compiled to ONNX: the document's computation as standard ONNX operators.

:func:`compile_pmml` reads a PMML document (parsed by :mod:`modelpack._formats.pmml`,
which refuses DOCTYPEs and entities) and builds an ONNX graph with the same inputs
and outputs the PMML evaluator has: one 1-D input per field (double, or string),
one output per output field. Whatever it does not translate raises
:class:`NotCompiled` naming the PMML element, and the evaluator runs the model.

* :mod:`.graph`: the graph under construction and how values are held in it;
* :mod:`.document`, :mod:`.inputs`, :mod:`.scope`: fields, their treatments, transformations' names;
* :mod:`.transform`: DerivedField expressions; :mod:`.predicates`: three-valued logic;
* :mod:`.forest`, :mod:`.tree`: TreeModel; :mod:`.mining`: segmentations;
  :mod:`.regression`: RegressionModel; :mod:`.general`: GeneralRegressionModel;
  :mod:`.neural`: NeuralNetwork; :mod:`.scorecard`: Scorecard; :mod:`.outputs`: Output fields and Targets;
* :mod:`.clustering`, :mod:`.neighbors`, :mod:`.rules`, :mod:`.naive_bayes`, :mod:`.svm`: ClusteringModel,
  NearestNeighborModel, RuleSetModel, NaiveBayesModel, SupportVectorMachineModel; :mod:`.distance`:
  the comparison measures the first two share.
"""

from __future__ import annotations

from ..description import Description
from ..pmml import describe, first_model, parse_document
from .document import Document
from .graph import MISSING, ROWS_PER_CALL, Graph, NotCompiled
from .inputs import bind_inputs
from .models import compile_model
from .outputs import write_outputs
from .scope import Compilers, Scope
from .transform import derived_field

__all__ = ["MISSING", "ROWS_PER_CALL", "NotCompiled", "compile_pmml"]


def compile_pmml(data: bytes, *, name: str, evaluator_compatible: bool = False, exact: bool = False) -> bytes:
    """The ONNX model (serialized) computing what the PMML document ``data`` computes.

    Raises :class:`NotCompiled` naming the element that stops it. With
    ``evaluator_compatible``, the graph follows pmml4s where pmml4s departs from the
    specification (docs/pmml.md lists where): a check of everything else against it.
    Trees whose scores a segmentation sums or averages carry the scores as the tree node's
    leaf weights (one float32 sum, about 1e-7 relative) unless ``exact``: then each tree's
    score is read in double and the scores are summed in double.

    Example
    -------
    >>> pmml = b'''<PMML version="4.4"><DataDictionary>
    ... <DataField name="x" optype="continuous" dataType="double"/>
    ... <DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
    ... <RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/>
    ... <MiningField name="y" usageType="target"/></MiningSchema>
    ... <RegressionTable intercept="1"><NumericPredictor name="x" coefficient="2"/></RegressionTable>
    ... </RegressionModel></PMML>'''
    >>> onnx_bytes = compile_pmml(pmml, name="model.pmml")
    >>> onnx_bytes[:2]
    b'\\x08\\x08'
    """
    desc = describe(data, name=name)  # refuses what is not safe or not PMML, as for the evaluator
    try:
        return _compile(data, desc, name=name, evaluator_compatible=evaluator_compatible, exact=exact)
    except NotCompiled:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError, RecursionError) as exc:
        # A document the compiler reads wrongly (a number that is not one, a table with no rows...)
        # stays with the evaluator, which has its own word on it.
        raise NotCompiled("PMML", f"the compiler could not read the document ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})") from exc


def _compile(data: bytes, desc: Description, *, name: str, evaluator_compatible: bool, exact: bool) -> bytes:
    root = parse_document(data, name)
    doc = Document(root, evaluator_compatible=evaluator_compatible, exact=exact)
    graph = Graph()
    derived = {d.get("name", ""): d for d in root.findall("TransformationDictionary/DerivedField")}
    scope = Scope(graph, doc, derived=derived, compilers=Compilers(derived_field, compile_model))
    bind_inputs(desc.inputs, scope)
    graph.batch = desc.inputs[0].name if desc.inputs else None
    model = first_model(root)
    if model is None:
        raise NotCompiled("TransformationDictionary", "a document without a model is not compiled")
    prediction, inner = compile_model(model, scope)
    write_outputs(model, prediction, inner, desc.outputs)
    return graph.model()
