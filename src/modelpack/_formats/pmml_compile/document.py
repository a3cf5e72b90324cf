"""The document as the compiler reads it: data fields and the words each field is compared with."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..pmml import NUMERIC_TYPES

__all__ = ["Document", "array_values", "is_numeric"]


def is_numeric(data_type: str | None) -> bool:
    return data_type in NUMERIC_TYPES


class Document:
    """A parsed PMML document: DataFields and every literal compared with each field."""

    def __init__(self, root: ET.Element, *, evaluator_compatible: bool = False, exact: bool = False) -> None:
        self.root = root
        #: Sum tree scores in double after the tree node (``exact``), not as the node's leaf weights.
        self.exact = exact
        #: Follow pmml4s where it departs from the PMML specification (docs/pmml.md), to check
        #: the rest of the translation against it.
        self.evaluator_compatible = evaluator_compatible
        self.fields = {f.get("name", ""): f for f in root.findall("DataDictionary/DataField")}
        self.literals: dict[str, dict[str, None]] = {}
        for element in root.iter():
            field = element.get("field")
            if field is None:
                continue
            found = self.literals.setdefault(field, {})
            if element.get("value") is not None:
                found[element.get("value", "")] = None
            for array in element.findall("Array"):
                found.update(dict.fromkeys(array_values(array)))
        for apply in root.iter("Apply"):  # equal(x, "a"), isIn(x, "a", "b"): "a" and "b" are x's words
            constants = [(c.text or "").strip() for c in apply.findall("Constant")]
            for ref in apply.findall("FieldRef"):
                self.literals.setdefault(ref.get("field", ""), {}).update(dict.fromkeys(constants))
        for instances in root.iter("TrainingInstances"):  # a nearest-neighbour model's training values
            columns = {i.get("column", ""): i.get("field", "")
                       for i in instances.findall("InstanceFields/InstanceField")}
            for instance in instances.findall("InlineTable/row"):
                for entry in instance:  # by tag: a column name is not an ElementPath
                    if entry.tag in columns and entry.text is not None:
                        self.literals.setdefault(columns[entry.tag], {})[entry.text.strip()] = None
        for mapping in root.iter("MapValues"):
            for pair in mapping.findall("FieldColumnPair"):
                holder = self.literals.setdefault(pair.get("field", ""), {})
                for row in mapping.findall("InlineTable/row"):
                    cell = row.find(pair.get("column", ""))
                    if cell is not None and cell.text is not None:
                        holder[cell.text] = None

    def data_type(self, name: str) -> str | None:
        field = self.fields.get(name)
        return field.get("dataType") if field is not None else None

    def values(self, name: str, prop: str) -> list[str]:
        field = self.fields.get(name)
        return [v.get("value", "") for v in field.findall("Value")
                if v.get("property", "valid") == prop] if field is not None else []

    def vocab(self, name: str) -> tuple[str, ...]:
        """Valid values first (their codes are ``0..k-1``), then every other string the document names."""
        words = dict.fromkeys(self.values(name, "valid"))
        words.update(dict.fromkeys(self.values(name, "invalid")))
        words.update(dict.fromkeys(self.values(name, "missing")))
        words.update(self.literals.get(name, {}))
        return tuple(words)


def array_values(array: ET.Element) -> list[str]:
    """The entries of a PMML Array (space-separated, double quotes around entries with spaces)."""
    text = (array.text or "").strip()
    out, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            j, word = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                word.append(text[j])
                j += 1
            out.append("".join(word))
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace():
                j += 1
            out.append(text[i:j])
            i = j
    return out
