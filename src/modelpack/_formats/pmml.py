"""What a PMML document declares: fields, target, classes and output fields.

The document is read with the standard library's expat parser, and refused with
:class:`~modelpack.UnsafePackageError` if it holds a DOCTYPE, an entity
declaration or an external entity reference: PMML needs none of them, and they
are how XML external entity (XXE) and "billion laughs" attacks work. The check
(:func:`check_safe`) runs before any tree is built and again before the Java
evaluator sees the file (see :mod:`modelpack._runtime.pmml`).

Outputs are the fields the evaluator (pmml4s, inside pypmml) returns: the
model's ``Output`` element when it has one (fields with ``isFinalResult="false"``
left out), otherwise the fields pmml4s produces by default for that model type
(:func:`default_outputs`, checked against pmml4s 1.5.8). Roles come from each field's
``feature`` attribute, never from its name: ``predictedValue`` is the ``label``
of a classifier, the ``value`` of a regressor or the ``cluster`` of a clustering
model, and ``probability`` with a ``value`` is the probability of that class.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from ..errors import PackageError, UnsafePackageError
from ..manifest import ColumnSpec, ModelInfo, TensorSpec
from .description import Description

__all__ = ["MODEL_ELEMENTS", "NUMERIC_TYPES", "OutputField", "PmmlDoc", "check_safe", "declared_outputs",
           "default_outputs", "describe", "first_model", "parse_document", "raw_classes", "target_field",
           "typed_value"]

MODEL_ELEMENTS = frozenset({
    "AnomalyDetectionModel", "AssociationModel", "BayesianNetworkModel", "ClusteringModel",
    "GaussianProcessModel", "GeneralRegressionModel", "MiningModel", "NaiveBayesModel",
    "NearestNeighborModel", "NeuralNetwork", "RegressionModel", "RuleSetModel", "Scorecard",
    "SequenceModel", "SupportVectorMachineModel", "TextModel", "TimeSeriesModel", "TreeModel"})
# PMML functionName -> manifest task; every other function is "other".
_TASK_OF_FUNCTION = {"classification": "classification", "regression": "regression", "clustering": "clustering"}
NUMERIC_TYPES = frozenset({"double", "float", "integer", "real"})
_FIX_FILE = "Check that the file is a PMML document (PMML 3.0 to 4.4), e.g. against the DMG schema."


# -- safe parsing -------------------------------------------------------------------------
def _refuser(what: str, name: str) -> Any:
    def refuse(*args: Any) -> None:
        raise UnsafePackageError(f"the PMML document holds {what}, which PMML never needs and XML "
                                 "attacks (external entities, entity expansion) rely on",
                                 package=name, fix="Remove the DOCTYPE and entity declarations from "
                                                   "the file, or ask its producer for plain PMML.")
    return refuse


def check_safe(data: bytes, name: str) -> None:
    """Refuse a DOCTYPE, entity declarations and external references; check well-formedness.

    Example
    -------
    >>> check_safe(b'<PMML version="4.4"/>', "model.pmml")
    >>> check_safe(b'<!DOCTYPE x [<!ENTITY a "b">]><PMML/>', "model.pmml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelpack.UnsafePackageError: model.pmml: the PMML document holds a DOCTYPE, ...
    """
    _check_encoding(data, name)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuser("a DOCTYPE", name)
    parser.EntityDeclHandler = _refuser("an entity declaration", name)
    parser.UnparsedEntityDeclHandler = _refuser("an unparsed entity declaration", name)
    parser.ExternalEntityRefHandler = _refuser("an external entity reference", name)
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, LookupError, ValueError) as exc:  # the last two: encodings Python lacks
        raise PackageError(f"{name} is not well-formed XML ({exc})", package=name, fix=_FIX_FILE) from exc


# The encodings expat reads itself. Any other is decoded by a Python codec here and by
# the evaluator's own XML parser in the JVM: two decoders of one file may not agree on
# what it says, so the file checked would not be the file run.
_ENCODINGS = frozenset({"utf-8", "utf8", "utf-16", "utf16", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1"})
_DECLARATION = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([^"'>]{0,200})["']""")


def _check_encoding(data: bytes, name: str) -> None:
    found = _DECLARATION.match(data[:512])
    if found and found.group(1).decode("latin-1").lower() not in _ENCODINGS:
        declared = found.group(1).decode("latin-1")[:40]
        raise PackageError(f"{name} declares the encoding {declared!r}; PMML is read in UTF-8, UTF-16, "
                           "US-ASCII or ISO-8859-1", package=name,
                           fix="Save the PMML file as UTF-8 (and its XML declaration with encoding=\"UTF-8\").")


def parse_document(data: bytes, name: str) -> ET.Element:
    check_safe(data, name)
    root = ET.fromstring(data)  # safe now: no DOCTYPE, so no entity can be declared
    for element in root.iter():
        if isinstance(element.tag, str):  # namespaces and prefixes differ between producers
            element.tag = element.tag.rpartition("}")[2].rpartition(":")[2]
    if root.tag != "PMML":
        raise PackageError(f"{name} is XML but not PMML (its root element is <{root.tag}>)", package=name,
                           fix=_FIX_FILE)
    return root


# -- values and types -----------------------------------------------------------------------
def typed_value(text: str | None, pmml_type: str | None) -> Any:
    """A PMML attribute value as a Python scalar of the field's ``dataType``."""
    if text is None:
        return None
    try:
        if pmml_type == "integer":
            number = float(text)
            return int(number) if number.is_integer() else number
        if pmml_type in NUMERIC_TYPES:
            return float(text)
    except ValueError:
        return text
    if pmml_type == "boolean":
        return text.strip().lower() in ("true", "1")
    return text


def _column_dtype(pmml_type: str | None) -> str:
    if pmml_type == "integer":
        return "int64"
    return _io_dtype(pmml_type)


def _io_dtype(pmml_type: str | None) -> str:
    # What the evaluator takes and returns: every number as a double (missing = NaN).
    if pmml_type in NUMERIC_TYPES:
        return "float64"
    return "bool" if pmml_type == "boolean" else "string"


@dataclass(frozen=True)
class PmmlDoc:
    """The parts of a PMML document that describe() reads."""

    root: ET.Element
    model: ET.Element | None
    fields: dict[str, ET.Element]
    target: str | None

    def field_type(self, name: str | None) -> str | None:
        field = self.fields.get(name or "")
        return field.get("dataType") if field is not None else None

    @property
    def target_type(self) -> str | None:
        return self.field_type(self.target)


def first_model(root: ET.Element) -> ET.Element | None:
    return next((child for child in root if child.tag in MODEL_ELEMENTS), None)


def target_field(model: ET.Element | None) -> str | None:
    if model is None:
        return None
    targets = model.find("Targets")
    if targets is not None and targets.find("Target") is not None:
        field = targets.find("Target").get("field")  # type: ignore[union-attr]
        if field:
            return field
    schema = model.find("MiningSchema")
    for mf in schema.findall("MiningField") if schema is not None else ():
        if mf.get("usageType") in ("predicted", "target"):
            return mf.get("name")
    return None


# -- inputs ------------------------------------------------------------------------------------
def _inputs(doc: PmmlDoc) -> tuple[TensorSpec, ...]:
    if doc.model is None:  # transformations only: every data field is an input
        return tuple(_input(doc, name, None) for name in doc.fields)
    schema = doc.model.find("MiningSchema")
    mining = schema.findall("MiningField") if schema is not None else []
    # pmml4s feeds "group" fields (association baskets) as inputs too.
    return tuple(_input(doc, mf.get("name", ""), mf) for mf in mining
                 if mf.get("usageType", "active") in ("active", "group"))


def _input(doc: PmmlDoc, name: str, mf: ET.Element | None) -> TensorSpec:
    field = doc.fields.get(name)
    pmml_type = field.get("dataType") if field is not None else None
    optype = (mf.get("optype") if mf is not None else None) or (field.get("optype") if field is not None else None)
    categories = None
    if field is not None and optype in ("categorical", "ordinal"):
        values = [typed_value(v.get("value"), pmml_type) for v in field.findall("Value")
                  if v.get("property", "valid") == "valid"]
        categories = tuple(values) or None
    get = mf.get if mf is not None else (lambda key: None)
    column = ColumnSpec(name=name, dtype=_column_dtype(pmml_type),
                        optype=optype if optype in ("continuous", "categorical", "ordinal") else None,
                        categories=categories,
                        missing_value_treatment=get("missingValueTreatment"),
                        missing_value_replacement=typed_value(get("missingValueReplacement"), pmml_type),
                        invalid_value_treatment=get("invalidValueTreatment"))
    description = field.get("displayName") if field is not None else None
    return TensorSpec(name=name, dtype=_io_dtype(pmml_type), shape=("N",), columns=(column,),
                      description=description)


# -- classes -------------------------------------------------------------------------------------
# Where a classifier names its classes when neither Targets nor the DataField lists them.
_CLASS_ATTRIBUTES = (("OutputField", "value"), ("ScoreDistribution", "value"),
                     ("RegressionTable", "targetCategory"), ("TargetValueCount", "value"),
                     ("SupportVectorMachine", "targetCategory"), ("SimpleRule", "score"))


def raw_classes(doc: PmmlDoc, model: ET.Element) -> list[str]:
    """Class labels as written: Targets, else the target's valid Values, else inferred."""
    target = target_field(model)
    declared = [tv.get("value", "") for t in model.findall("Targets/Target") if t.get("field") == target
                for tv in t.findall("TargetValue") if tv.get("value") is not None]
    field = doc.fields.get(target or "")
    if not declared and field is not None:
        declared = [v.get("value", "") for v in field.findall("Value") if v.get("property", "valid") == "valid"]
    return list(dict.fromkeys(declared)) or _inferred_classes(model)


def _classes(doc: PmmlDoc) -> tuple[Any, ...] | None:
    if doc.model is None or doc.target is None:
        return None
    raw = raw_classes(doc, doc.model)
    return tuple(dict.fromkeys(typed_value(v, doc.target_type) for v in raw)) or None


def _inferred_classes(model: ET.Element) -> list[str]:
    found: dict[str, None] = {}
    for element in model.iter():
        for tag, attribute in _CLASS_ATTRIBUTES:
            value = element.get(attribute) if element.tag == tag else None
            if value is not None and (tag != "OutputField" or element.get("feature") == "probability"):
                found[value] = None
    # Classification trees without score distributions name their classes in leaf scores.
    for tree in model.iter("TreeModel"):
        if tree.get("functionName") == "classification":
            found.update(dict.fromkeys(n.get("score", "") for n in tree.iter("Node") if n.get("score")))
    return list(found)


# -- outputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputField:
    """One PMML OutputField, declared or implied."""

    name: str
    feature: str = "predictedValue"
    value: str | None = None
    data_type: str | None = None
    target: str | None = None
    description: str | None = None


def default_outputs(doc: PmmlDoc, model: ET.Element) -> list[OutputField]:
    """The fields pmml4s returns for ``model`` when it has no ``Output`` element."""
    kind, target = model.tag, target_field(model)
    target_type = doc.field_type(target)
    if kind == "MiningModel":
        return _mining_defaults(doc, model)
    if kind == "ClusteringModel":
        first = model.find("Cluster")
        named = first is not None and first.get("name")
        return [OutputField("cluster", data_type="string"),
                *([OutputField("cluster_name", "predictedDisplayValue", data_type="string")] if named else []),
                OutputField("similarity" if model.get("modelClass") == "distributionBased" else "distance",
                            "affinity", data_type="double")]
    if kind == "AnomalyDetectionModel":
        return [OutputField("anomalyScore", data_type="double")]
    if kind == "TreeModel":
        return _tree_defaults(doc, model)
    classification = model.get("functionName") == "classification"
    if kind == "RuleSetModel":
        return [_predicted(target, target_type), OutputField("confidence", "confidence")] if classification else []
    if kind == "Scorecard":
        codes = {e.get("reasonCode") for e in model.iter() if e.get("reasonCode")}
        reasons = len(codes) if model.get("useReasonCodes", "true") == "true" else 0
        return [_predicted(target, "double"),
                *(OutputField(f"reason_code_{i + 1}", "reasonCode", data_type="string") for i in range(reasons))]
    # pmml4s gives an SVM probabilities only for one-against-one classification.
    probabilities = kind != "SupportVectorMachineModel" or model.get("classificationMethod") == "OneAgainstOne"
    return _base_defaults(doc, model, probabilities)


def _predicted(target: str | None, target_type: str | None) -> OutputField:
    return OutputField(f"predicted_{target}" if target else "predicted", data_type=target_type, target=target)


def _per_class(doc: PmmlDoc, model: ET.Element) -> list[OutputField]:
    return [OutputField("probability", "probability"),
            *(OutputField(f"probability_{c}", "probability", value=c) for c in raw_classes(doc, model))]


def _base_defaults(doc: PmmlDoc, model: ET.Element, probabilities: bool = True) -> list[OutputField]:
    function, target = model.get("functionName"), target_field(model)
    if function not in ("classification", "regression"):
        return []
    classification = function == "classification"
    fields = [_predicted(target, doc.field_type(target) if classification else "double")]
    return fields + _per_class(doc, model) if classification and probabilities else fields


def _tree_defaults(doc: PmmlDoc, model: ET.Element) -> list[OutputField]:
    leaf = model.find("Node")  # pmml4s looks at the first leaf only
    while leaf is not None and leaf.find("Node") is not None:
        leaf = leaf.find("Node")
    classification, target = model.get("functionName") == "classification", target_field(model)
    fields = [_predicted(target, doc.field_type(target) if classification else "double")]
    distributions = leaf.findall("ScoreDistribution") if leaf is not None else []
    if classification and distributions:
        if distributions[0].get("confidence") is not None:
            fields.append(OutputField("confidence", "confidence"))
        fields += _per_class(doc, model)
    if leaf is not None and leaf.get("id") is not None:
        fields.append(OutputField("node_id", "entityId", data_type="string"))
    return fields


def _mining_defaults(doc: PmmlDoc, model: ET.Element) -> list[OutputField]:
    segmentation = model.find("Segmentation")
    segments = segmentation.findall("Segment") if segmentation is not None else []
    method = segmentation.get("multipleModelMethod") if segmentation is not None else None
    if method == "modelChain" and segments and segments[-1].find("True") is not None:
        return _candidates(doc, segments[-1])
    if method == "selectAll":
        return [field for segment in segments for field in _candidates(doc, segment)]
    return _base_defaults(doc, model)


def _candidates(doc: PmmlDoc, segment: ET.Element) -> list[OutputField]:
    """A segment model's candidate outputs: its Output fields, final or not, or its defaults."""
    model = first_model(segment)
    if model is None:
        return []
    declared = declared_outputs(model, final_only=False)
    return declared if declared is not None else default_outputs(doc, model)


def declared_outputs(model: ET.Element, final_only: bool = True) -> list[OutputField] | None:
    output = model.find("Output")
    if output is None:
        return None
    return [OutputField(name=of.get("name", ""), feature=of.get("feature", "predictedValue"),
                        value=of.get("value"), data_type=of.get("dataType"),
                        target=of.get("targetField"), description=of.get("displayName"))
            for of in output.findall("OutputField")
            if not final_only or of.get("isFinalResult", "true") != "false"]


def _outputs(doc: PmmlDoc, task: str) -> tuple[TensorSpec, ...]:
    if doc.model is None:
        return tuple(TensorSpec(name=df.get("name", ""), dtype=_io_dtype(df.get("dataType")), shape=("N",))
                     for df in doc.root.findall("TransformationDictionary/DerivedField"))
    fields = declared_outputs(doc.model)
    if fields is None:
        fields = default_outputs(doc, doc.model)
    specs, taken = [], set()
    for of in fields:
        role, for_class = _role(of, doc, task)
        if role in taken and role != "probabilities":
            role = None  # one label / value / cluster output: the first one
        taken.add(role)
        pmml_type = of.data_type or _implied_type(of, doc, task)
        specs.append(TensorSpec(name=of.name, dtype=_io_dtype(pmml_type), shape=("N",), role=role,
                                for_class=for_class, description=of.description))
    return tuple(specs)


def _role(of: OutputField, doc: PmmlDoc, task: str) -> tuple[str | None, Any]:
    if of.target not in (None, doc.target):
        return None, None  # about another target of a multi-target model
    if of.feature == "probability":
        if of.value is None or task != "classification":
            return None, None
        return "probabilities", typed_value(of.value, doc.target_type)
    if of.feature == "predictedValue":
        return {"classification": "label", "regression": "value", "clustering": "cluster"}.get(task), None
    if of.feature in ("clusterId", "entityId") and task == "clustering":
        return "cluster", None
    return None, None


def _implied_type(of: OutputField, doc: PmmlDoc, task: str) -> str | None:
    if of.feature == "predictedValue":
        if task == "clustering":
            return "string"
        return doc.target_type if task == "classification" else "double"
    if of.feature in ("probability", "confidence", "affinity", "entityAffinity", "clusterAffinity",
                      "residual", "standardError", "support", "lift", "leverage"):
        return "double"
    return "string"  # ids, display values, reason codes, rules


# -- the description ---------------------------------------------------------------------------------
def describe(data: bytes, *, name: str) -> Description:
    """Describe a PMML document: inputs (one per field), outputs with roles, task, classes.

    Example
    -------
    >>> pmml = b'''<PMML version="4.4"><Header><Application name="demo" version="1"/></Header>
    ... <DataDictionary><DataField name="x" optype="continuous" dataType="double"/>
    ... <DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
    ... <RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/>
    ... <MiningField name="y" usageType="target"/></MiningSchema>
    ... <RegressionTable intercept="1"><NumericPredictor name="x" coefficient="2"/></RegressionTable>
    ... </RegressionModel></PMML>'''
    >>> d = describe(pmml, name="model.pmml")
    >>> d.task, [i.name for i in d.inputs], [(o.name, o.role) for o in d.outputs]
    ('regression', ['x'], [('predicted_y', 'value')])
    """
    root = parse_document(data, name)
    model = first_model(root)
    fields = {f.get("name", ""): f for f in root.findall("DataDictionary/DataField")}
    doc = PmmlDoc(root=root, model=model, fields=fields, target=target_field(model))
    if model is None and root.find("TransformationDictionary") is None:
        raise PackageError(f"{name} holds no model element", package=name, fix=_FIX_FILE)
    task = "transform" if model is None else _TASK_OF_FUNCTION.get(model.get("functionName", ""), "other")
    app = root.find("Header/Application")
    info = ModelInfo(format="pmml", file=name, pmml_version=root.get("version"),
                     producer=app.get("name") if app is not None else None,
                     producer_version=app.get("version") if app is not None else None)
    metadata = {"pmml_model": model.tag if model is not None else "TransformationDictionary"}
    if model is not None and model.get("modelName"):
        metadata["model_name"] = model.get("modelName")  # type: ignore[assignment]
    return Description(model=info, inputs=_inputs(doc), outputs=_outputs(doc, task), task=task,
                       classes=_classes(doc) if task == "classification" else None, metadata=metadata)
