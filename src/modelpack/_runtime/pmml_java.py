"""The Java side of the PMML backend: batch scoring composed from method handles.

pmml4s scores one record per call. Calling it once per row from Python would
cost a boundary crossing per row, and its JSON batch entry point costs a
serialisation each way. Instead, the loop runs in the JVM: a ``java.util.function``
object built with ``MethodHandleProxies`` from handles onto JDK and pmml4s methods
turns row ``i`` of the batch into pmml4s values and scores it, and
``IntStream.range(0, n).mapToObj`` drives it. Results are read back the same way:
every numeric output into one ``double[]``, every text output into one string.
Nothing here is Java source; it needs Java 8 or newer.

Layout of a batch, held in a two-slot ``Object[]`` (the *holder*):
``holder[0]`` is a ``double[]`` of the numeric fields, row-major; ``holder[1]`` an
``Object[]`` of the other fields (strings, booleans, null), row-major.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Java"]

# Text outputs come back as one string; cells are split on SEPARATOR and NULL marks a
# missing value. Neither can occur in a PMML document (XML forbids both characters);
# if an echoed input holds SEPARATOR the count of cells is off and the slow path runs.
SEPARATOR, NULL = "\x01", "\x00"


class Java:
    """Handles onto the JDK and pmml4s, built once per process."""

    def __init__(self, jpype: Any) -> None:
        J = jpype.JClass
        self.JException = jpype.JException
        self._jpype = jpype
        self.ObjectArray, self.DoubleArray = jpype.JArray(jpype.JObject), jpype.JArray(jpype.JDouble)
        self.IntArray, self.JInt, self.JDouble = jpype.JArray(jpype.JInt), jpype.JInt, jpype.JDouble
        self.MH, MT = J("java.lang.invoke.MethodHandles"), J("java.lang.invoke.MethodType")
        self.proxies = J("java.lang.invoke.MethodHandleProxies")
        self.mt = MT.methodType
        self.joining = J("java.util.stream.Collectors").joining(SEPARATOR)
        self.Model = J("org.pmml4s.model.Model")
        self.NumericType = J("org.pmml4s.common.NumericType")
        self._classes(J)
        self._handles(J)

    def _classes(self, J: Any) -> None:
        self.Object, self.String = J("java.lang.Object").class_, J("java.lang.String").class_
        self.Objects_ = self.ObjectArray.class_
        self.Doubles_ = self.DoubleArray.class_
        self.double, self.boolean = J("java.lang.Double").TYPE, J("java.lang.Boolean").TYPE
        self.int = J("java.lang.Integer").TYPE
        self.IntFunction = J("java.util.function.IntFunction").class_
        self.Function = J("java.util.function.Function").class_

    def _handles(self, J: Any) -> None:
        lookup, mt, MH, jpype = self.MH.publicLookup(), self.mt, self.MH, self._jpype
        DataVal, DataType = J("org.pmml4s.data.DataVal"), J("org.pmml4s.common.DataType").class_
        utils = J("org.pmml4s.util.Utils$")
        self.missing = DataVal.NULL()
        self.to_dataval = lookup.findVirtual(utils.class_, "toDataVal", mt(DataVal.class_, self.Object, DataType)) \
            .bindTo(getattr(utils, "MODULE$"))
        objects, math_ = J("java.util.Objects").class_, J("java.lang.Math").class_
        self.is_nan = lookup.findStatic(J("java.lang.Double").class_, "isNaN", mt(self.boolean, self.double))
        self.is_null = lookup.findStatic(objects, "isNull", mt(self.boolean, self.Object))
        self.multiply = lookup.findStatic(math_, "multiplyExact", mt(self.int, self.int, self.int))
        self.add = lookup.findStatic(math_, "addExact", mt(self.int, self.int, self.int))
        self.object_at, self.double_at = MH.arrayElementGetter(self.Objects_), MH.arrayElementGetter(self.Doubles_)
        series, schema = J("org.pmml4s.data.Series").class_, J("org.pmml4s.common.StructType").class_
        self.DataVal, self.DataVals_ = DataVal.class_, jpype.JArray(DataVal).class_
        # A record with its schema, as pmml4s builds one from a map: models look fields up by name.
        self.new_series = lookup.findConstructor(J("org.pmml4s.data.GenericSeriesWithSchema").class_,
                                                 mt(J("java.lang.Void").TYPE, self.DataVals_, schema))
        self.score = lookup.findVirtual(self.Model.class_, "predict", mt(series, series))
        self.as_array = lookup.findVirtual(series, "asArray", mt(self.Objects_))
        number = J("java.lang.Number").class_
        self.as_double = MH.guardWithTest(
            self.is_null, MH.dropArguments(MH.constant(self.double, self.JDouble(math.nan)), 0, self.Object),
            lookup.findVirtual(number, "doubleValue", mt(self.double)).asType(mt(self.double, self.Object)))
        to_string = lookup.findStatic(objects, "toString", mt(self.String, self.Object, self.String))
        self.as_text = MH.insertArguments(to_string, 1, NULL).asType(mt(self.Object, self.Object))
        self.double_stream = lookup.findStatic(J("java.util.stream.DoubleStream").class_, "of",
                                               mt(J("java.util.stream.DoubleStream").class_, self.Doubles_))
        stream, ints, doubles = (J(f"java.util.stream.{c}").class_ for c in ("Stream", "IntStream", "DoubleStream"))
        self.object_stream = lookup.findStatic(J("java.util.Arrays").class_, "stream", mt(stream, self.Objects_))
        self.range = lookup.findStatic(ints, "range", mt(ints, self.int, self.int))
        self.map_to_obj = lookup.findVirtual(ints, "mapToObj", mt(stream, self.IntFunction))
        self.to_array = lookup.findVirtual(stream, "toArray", mt(self.Objects_))
        self.flat_map_to_double = lookup.findVirtual(stream, "flatMapToDouble", mt(doubles, self.Function))
        self.doubles_to_array = lookup.findVirtual(doubles, "toArray", mt(self.Doubles_))
        self.flat_map = lookup.findVirtual(stream, "flatMap", mt(stream, self.Function))
        self.collect = lookup.findVirtual(stream, "collect",
                                          mt(self.Object, J("java.util.stream.Collector").class_))
        self.no_texts = self.ObjectArray(0)

    # -- models --------------------------------------------------------------------------------
    def load(self, text: str) -> Any:
        return self.Model.fromString(text)

    def used_fields(self, model: Any) -> list[tuple[str, bool]]:
        """(name, numeric) of the fields a record holds, in pmml4s's order."""
        return [(str(f.name()), bool(self.NumericType.class_.isInstance(f.dataType())))
                for f in model.usedSchema().fields()]

    def output_fields(self, model: Any) -> list[tuple[str, str]]:
        """(name, kind) of the evaluator's outputs; kind is "number", "bool" or "string"."""
        kinds = []
        for f in model.outputSchema().fields():
            dtype = f.dataType()
            kind = "number" if self.NumericType.class_.isInstance(dtype) else \
                "bool" if str(dtype.toString()).lower() == "boolean" else "string"
            kinds.append((str(f.name()), kind))
        return kinds

    # -- scoring --------------------------------------------------------------------------------
    def pipeline(self, model: Any, numeric: Sequence[bool]) -> Any:
        """A handle (Object[] holder, int row) -> Object[] outputs of ``model`` for that row."""
        MH, mt = self.MH, self.mt
        fields = list(model.usedSchema().fields())
        widths, seen = (len(numeric) - sum(numeric), sum(numeric)), [0, 0]
        cells = []
        for field, is_number in zip(fields, numeric, strict=True):
            cells.append(self._cell(int(is_number), widths[is_number], seen[is_number], field.dataType()))
            seen[is_number] += 1
        row = MH.identity(self.DataVals_).asCollector(self.DataVals_, len(cells))
        for position in reversed(range(len(cells))):
            row = MH.collectArguments(row, position, cells[position])
        row = MH.permuteArguments(row, mt(self.DataVals_, self.Objects_, self.int),
                                  self.IntArray([0, 1] * len(cells)))
        record = MH.insertArguments(self.new_series, 1, model.usedSchema()).asType(
            mt(self.score.type().returnType(), self.DataVals_))
        scored = MH.filterReturnValue(record, self.score.bindTo(model))
        return MH.filterReturnValue(row, MH.filterReturnValue(scored, self.as_array))

    def _cell(self, numeric: int, width: int, column: int, dtype: Any) -> Any:
        """(Object[] holder, int row) -> the pmml4s value of one field, missing when NaN or null."""
        MH, mt = self.MH, self.mt
        array, kind, missing = (self.Doubles_, self.double, self.is_nan) if numeric else \
            (self.Objects_, self.Object, self.is_null)
        slot = MH.insertArguments(self.object_at, 1, self.JInt(1 - numeric)).asType(mt(array, self.Objects_))
        index = MH.filterArguments(MH.insertArguments(self.add, 1, self.JInt(column)), 0,
                                   MH.insertArguments(self.multiply, 1, self.JInt(width)))
        getter = self.double_at if numeric else self.object_at
        value = MH.filterArguments(MH.filterArguments(getter, 0, slot), 1, index)
        convert = MH.guardWithTest(missing, MH.dropArguments(MH.constant(self.DataVal, self.missing), 0, kind),
                                   MH.insertArguments(self.to_dataval, 1, dtype).asType(mt(self.DataVal, kind)))
        return MH.filterReturnValue(value, convert)

    def bind(self, pipeline: Any) -> tuple[Any, Any]:
        """A fresh holder, and a handle (int n) -> Object[] scoring the n rows it holds."""
        MH = self.MH
        holder = self.ObjectArray(2)
        row = self.proxies.asInterfaceInstance(self.IntFunction, pipeline.bindTo(holder))
        rows = MH.filterReturnValue(MH.insertArguments(self.range, 0, self.JInt(0)),
                                    MH.insertArguments(self.map_to_obj, 1, row))
        return holder, MH.filterReturnValue(rows, self.to_array)

    def function(self, handle: Any) -> Any:
        """``handle`` (int)T as an IntFunction: calling it crosses into Java once."""
        return self.proxies.asInterfaceInstance(self.IntFunction, handle)

    def fill(self, holder: Any, numbers: np.ndarray, texts: np.ndarray) -> None:
        holder[0] = self.DoubleArray(numbers.reshape(-1))
        holder[1] = self.ObjectArray(texts.reshape(-1).tolist()) if texts.size else self.no_texts

    # -- reading results back -------------------------------------------------------------------
    def extractor(self, numbers: Sequence[int], texts: Sequence[int]) -> Any:
        """(Object[] results) -> {double[] of the numeric outputs, String of the text outputs}."""
        MH, mt = self.MH, self.mt
        nothing = MH.dropArguments(MH.constant(self.Object, None), 0, self.Objects_)
        parts = [nothing, nothing]
        if numbers:
            each = self._gather([self._output(i, self.as_double) for i in numbers], self.Doubles_,
                                self.double_stream)
            parts[0] = self._chain(self.object_stream, MH.insertArguments(self.flat_map_to_double, 1, each),
                                   self.doubles_to_array)
        if texts:
            each = self._gather([self._output(i, self.as_text) for i in texts], self.Objects_, self.object_stream)
            parts[1] = self._chain(self.object_stream, MH.insertArguments(self.flat_map, 1, each),
                                   MH.insertArguments(self.collect, 1, self.joining))
        pair = MH.identity(self.Objects_).asCollector(self.Objects_, 2)
        pair = MH.filterArguments(pair, 0, *(p.asType(mt(self.Object, self.Objects_)) for p in parts))
        return MH.permuteArguments(pair, mt(self.Objects_, self.Objects_), self.IntArray([0, 0]))

    def _chain(self, first: Any, *then: Any) -> Any:
        for handle in then:
            first = self.MH.filterReturnValue(first, handle)
        return first

    def _gather(self, filters: list[Any], array: Any, stream: Any) -> Any:
        """A Function (Object[] outputs) -> stream of filters(outputs), in order."""
        MH, mt = self.MH, self.mt
        handle = MH.identity(array).asCollector(array, len(filters))
        for position in reversed(range(len(filters))):
            handle = MH.filterArguments(handle, position, filters[position])
        handle = MH.permuteArguments(handle, mt(array, self.Objects_), self.IntArray([0] * len(filters)))
        return self.proxies.asInterfaceInstance(self.Function, MH.filterReturnValue(handle, stream))

    def _output(self, index: int, convert: Any) -> Any:
        return self.MH.filterReturnValue(self.MH.insertArguments(self.object_at, 1, self.JInt(index)), convert)


_LONG_MISSING = -(2.0 ** 63)


class Reader:
    """Reads requested outputs: scoring and reading back are one call into Java."""

    def __init__(self, java: Java, wanted: Sequence[tuple[int, str]]) -> None:
        self.java, self.wanted = java, list(wanted)
        self.numbers = [i for i, kind in wanted if kind == "number"]
        self.texts = [i for i, kind in wanted if kind != "number"]
        self.text_kinds = [(i, kind) for i, kind in wanted if kind != "number"]
        self.extract = java.extractor(self.numbers, self.texts)

    def compile(self, scorer: Any) -> Any:
        """The IntFunction (n) -> outputs of the n rows, for one thread's scorer."""
        return self.java.function(self.java.MH.filterReturnValue(scorer, self.extract))

    def __call__(self, function: Any, rescore: Any, n: int) -> list[np.ndarray]:
        java = self.java
        try:
            out = function.apply(n)
            flat, cells = out[0], out[1]  # indexing crosses into Java twice, unpacking five times
        except java.JException as exc:
            if "ClassCast" not in str(exc.getClass().getName()):
                raise
            return self._one_by_one(rescore.apply(n))  # an output of an unexpected type
        columns: dict[int, np.ndarray] = {}
        if self.numbers:
            block = np.array(flat, dtype=np.float64).reshape(n, len(self.numbers))
            # pmml4s hands back a missing prediction of an integer target as Long.MIN_VALUE
            block[block == _LONG_MISSING] = np.nan
            columns.update(zip(self.numbers, block.T, strict=True))
        if self.texts:
            split = str(cells).split(SEPARATOR)
            if len(split) != n * len(self.texts):  # a value held SEPARATOR
                return self._one_by_one(rescore.apply(n))
            if NULL in split:
                split = [None if c == NULL else c for c in split]  # type: ignore[misc]
            block = np.array(split, dtype=object).reshape(n, len(self.texts))
            columns.update((i, _typed(block[:, j], kind)) for j, (i, kind) in enumerate(self.text_kinds))
        return [columns[i] for i, _ in self.wanted]

    def _one_by_one(self, results: Any) -> list[np.ndarray]:
        rows = [list(row) for row in results]
        out = []
        for i, kind in self.wanted:
            values = [row[i] for row in rows]
            if kind == "number":
                column = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
                column[column == _LONG_MISSING] = np.nan
                out.append(column)
            else:
                out.append(_typed(np.array([None if v is None else str(v) for v in values], dtype=object), kind))
        return out


def _typed(column: np.ndarray, kind: str) -> np.ndarray:
    if kind != "bool":
        return column
    values = [None if v is None else v == "true" for v in column.tolist()]
    return np.array(values, dtype=object if None in values else bool)
