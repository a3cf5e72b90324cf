"""Mutated packages: whatever the bytes, only a ModelpackError may come out.

Four families of mutations of one valid package: raw bytes of the archive,
its zip structure (entries dropped, doubled, renamed, re-flagged), the
manifest's JSON (values replaced or removed anywhere, with the checksums kept
consistent half of the time so the runtime is reached too), and hostile
contents with every checksum right (external data pointing at a secret file,
graphs that disagree with the manifest, hostile samples, hostile settings), as
a hostile author would write them. The first three go through ``open_package``
and, when that accepts it, ``modelpack.load`` and a prediction; the fourth
through ``inspect``, ``verify``, ``load``, ``run``, ``predict`` and
``predict_proba``, and no output may hold the secret's values. The default run
tries 600 cases; the slow run 13,600 (see docs/security.md for the command).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import shutil
import stat
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelpack
from modelpack._package import MANIFEST_NAME, open_package, write_package
from modelpack.errors import ModelpackError
from modelpack.manifest import Manifest, ModelInfo, Samples, TensorSpec

from onnx import TensorProto, helper  # isort: skip

CASES = {"default": 150, "slow": 3_400}  # per family: 600 cases by default, 13,600 in the slow run


def _model() -> bytes:
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
                              initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


MODEL = _model()
FILES = {"model.onnx": MODEL, "extra/labels.json": b'{"0": "zero"}', "samples/notes.txt": b"notes"}
MANIFEST = Manifest(name="fuzz", task="regression", model=ModelInfo(format="onnx", file="model.onnx"),
                    inputs=(TensorSpec("X", "float32", ("N", 4)),),
                    outputs=(TensorSpec("Y", "float32", ("N", 4), role="value"),))
HOSTILE_NAMES = ["../x", "/x", "C:x", "a\\b", "", ".", "a/", "MODEL.onnx", "model.onnx", MANIFEST_NAME,
                 "modelpack.sig", "extra", "extra/labels.json/x", "caf\u00e9", "x" * 300]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuzz")
    written = write_package(root / "base.mpk", MANIFEST, FILES)
    return {"root": root, "archive": (root / "base.mpk").read_bytes(), "manifest": written.to_json()}


_counter = itertools.count()


def _path(root: Path, suffix: str) -> Path:
    return root / f"case-{next(_counter)}{suffix}"


def check(path: Path) -> None:
    """Open, load and predict; anything but a ModelpackError escaping is a failure."""
    try:
        with open_package(path) as pkg:
            for entry in pkg.manifest.files:
                pkg.read_bytes(entry.path)
    except ModelpackError:
        return
    try:
        with modelpack.load(path) as model:
            model.predict(np.zeros((2, 4), np.float32))
    except ModelpackError:
        return


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buffer, "w") as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return buffer.getvalue()


# -- family 1: raw bytes -------------------------------------------------------------------------
@st.composite
def byte_edits(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    count = draw(st.integers(1, 8))
    return [(draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"])),
             draw(st.integers(0, 2**31)), draw(st.integers(0, 255))) for _ in range(count)]


def apply_byte_edits(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, where, value in edits:
        if not out:
            break
        at = where % len(out)
        if op == "flip":
            out[at] ^= 1 << (value % 8)
        elif op == "set":
            out[at] = value
        elif op == "insert":
            out[at:at] = bytes([value])
        elif op == "delete":
            del out[at]
        else:
            del out[at:]
    return bytes(out)


def _fuzz_bytes(base: dict[str, Any], edits: list[tuple[str, int, int]]) -> None:
    path = _path(base["root"], ".mpk")
    path.write_bytes(apply_byte_edits(base["archive"], edits))
    try:
        check(path)
    finally:
        path.unlink()


# -- family 2: zip structure -----------------------------------------------------------------------
@st.composite
def structure_edits(draw: st.DrawFn) -> list[tuple[zipfile.ZipInfo, bytes]]:
    entries = [(MANIFEST_NAME, MANIFEST.replace(files=_entries(FILES)).to_json()), *FILES.items()]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "double", "rename", "add", "attrs", "method", "flags"]))
        at = draw(st.integers(0, len(entries) - 1)) if entries else 0
        if not entries and op != "add":
            continue
        if op == "drop":
            entries.pop(at)
        elif op == "double":
            entries.append((entries[at][0], draw(st.binary(max_size=64))))
        elif op == "rename":
            entries[at] = (draw(st.sampled_from(HOSTILE_NAMES) | st.text(min_size=1, max_size=20)), entries[at][1])
        elif op == "add":
            entries.append((draw(st.sampled_from(HOSTILE_NAMES)), draw(st.binary(max_size=64))))
        else:
            entries[at] = (_info(draw, op, entries[at][0]), entries[at][1])
    return [(e if isinstance(e, zipfile.ZipInfo) else _plain(e), d) for e, d in entries]


def _plain(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name.replace("\x00", "_") or "_")


def _info(draw: st.DrawFn, op: str, name: Any) -> zipfile.ZipInfo:
    info = name if isinstance(name, zipfile.ZipInfo) else _plain(name)
    if op == "attrs":
        info.external_attr = draw(st.sampled_from([stat.S_IFLNK, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFREG])) << 16
    elif op == "method":
        info.compress_type = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                                   zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    else:
        info.flag_bits = draw(st.sampled_from([0x1, 0x8, 0x800, 0x1 | 0x800]))
    return info


def _entries(files: dict[str, bytes]):
    from modelpack.manifest import FileEntry

    return tuple(FileEntry(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in sorted(files.items()))


def _fuzz_structure(base: dict[str, Any], entries: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
    try:
        data = _zip(entries)
    except (ValueError, OSError, RuntimeError, NotImplementedError):
        return  # zipfile itself would not write this archive
    path = _path(base["root"], ".mpk")
    path.write_bytes(data)
    try:
        check(path)
    finally:
        path.unlink()


# -- family 3: manifest fields ------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                    | st.text(max_size=12) | st.sampled_from(HOSTILE_NAMES),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@st.composite
def manifest_edits(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes], bool]:
    files = dict(FILES)
    if draw(st.booleans()):  # a different model file, with checksums to match: reaches the runtime
        files["model.onnx"] = draw(st.sampled_from([b"", b"\x08\x01", MODEL[:40], MODEL + b"\x00", MODEL[::-1]]))
    document = json.loads(MANIFEST.replace(files=_entries(files)).to_json())
    for _ in range(draw(st.integers(1, 3))):
        _edit(draw, document)
    return json.dumps(document).encode(), files, draw(st.booleans())


def _edit(draw: st.DrawFn, node: Any) -> None:
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            node[key] = draw(JSON)
        elif op == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=10))] = draw(JSON)
        else:
            node.append(draw(JSON))
        return


def _written(base: dict[str, Any], raw: bytes, files: dict[str, bytes], as_folder: bool) -> Path:
    """The case as a folder or an archive: this manifest's bytes beside these files."""
    if as_folder:
        path = _path(base["root"], "")
        for name, data in {MANIFEST_NAME: raw, **files}.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    else:
        path = _path(base["root"], ".mpk")
        path.write_bytes(_zip([(MANIFEST_NAME, raw), *files.items()]))
    return path


def _fuzz_manifest(base: dict[str, Any], case: tuple[bytes, dict[str, bytes], bool]) -> None:
    path = _written(base, *case)
    try:
        check(path)
    finally:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


# -- family 4: hostile contents, consistent checksums ---------------------------------------------------
# What a hostile author writes: every checksum right, the contents chosen to hurt. A classifier
# whose "scores" output is X + W, so with X = 0 the outputs would show any bytes the runtime was
# made to read into W from outside the package.
W = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
SECRET = np.array([1111.0, 2222.0, 3333.0, 4444.0], np.float32)


def _classifier(location: str | None = None, *, where: str = "initializer", names: tuple[str, ...] = (),
                elem_type: int = TensorProto.FLOAT, opset: int = 17, ir_version: int = 8) -> bytes:
    import onnx

    weights = helper.make_tensor("W", TensorProto.FLOAT, [4], W.tobytes(), raw=True)
    if location is not None:
        onnx.external_data_helper.set_external_data(weights, location=location, offset=0, length=16)
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
    x, scores, label, proba = (*names, *("X", "scores", "label", "probabilities")[len(names):])
    nodes = [helper.make_node("Add", [x, "W"], [scores]), helper.make_node("Softmax", [scores], [proba], axis=1),
             helper.make_node("ArgMax", [scores], [label], axis=1, keepdims=0)]
    initializers, sparse = [weights], []
    if where == "constant":  # the same tensor as a Constant node's attribute
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weights))
        initializers = []
    elif where == "sparse":  # the values of a sparse initializer
        indices = helper.make_tensor("W_indices", TensorProto.INT64, [4], [0, 1, 2, 3])
        weights.name = "W_values"
        sparse, initializers = [helper.make_sparse_tensor(weights, indices, [4])], []
        sparse[0].values.name = "W"
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info(x, elem_type, ["N", 4])],
                              [helper.make_tensor_value_info(label, TensorProto.INT64, ["N"]),
                               helper.make_tensor_value_info(proba, TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", 4])],
                              initializer=initializers, sparse_initializer=sparse)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _honest_contents() -> tuple[dict[str, Any], dict[str, bytes]]:
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    scores = X + W
    proba = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    files = {"model.onnx": _classifier(), "samples/inputs.npz": _npz(X=X),
             "samples/outputs.npz": _npz(label=scores.argmax(axis=1), probabilities=proba, scores=scores)}
    manifest = Manifest(name="hostile", task="classification", classes=(0, 1, 2, 3),
                        model=ModelInfo(format="onnx", file="model.onnx"),
                        inputs=(TensorSpec("X", "float32", ("N", 4)),),
                        outputs=(TensorSpec("label", "int64", ("N",), role="label"),
                                 TensorSpec("probabilities", "float32", ("N", 4), role="probabilities"),
                                 TensorSpec("scores", "float32", ("N", 4), role="scores")),
                        samples=Samples(rows=5))
    return json.loads(manifest.replace(files=_entries(files)).to_json()), files


# Where a hostile location points: beside the package, the working directory, anywhere.
LOCATIONS = ["../secret.bin", "../../secret.bin", "secret.bin", "SECRET_ABSOLUTE", "weights.bin", "/dev/zero",
             "sub/../../secret.bin", "..\\secret.bin", "", "model.onnx", "samples/inputs.npz"]
HOSTILE_SAMPLES = [b"", b"not a zip", _npz(X=np.zeros((5, 4), np.int64)), _npz(Z=np.zeros((5, 4), np.float32)),
                   _npz(X=np.zeros((7, 3), np.float32)), _npz(X=np.array([None, 1], dtype=object)),
                   _zip([("X.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, "
                                    b"'shape': (1000000000000, 4), }" + b" " * 50 + b"\n")]),
                   _npz(label=np.zeros(5, np.int64)), _npz(label=np.zeros(5, np.float32), ghost=np.zeros(5))]
# Manifest fields a hostile author sets to hurt, as paths into the JSON document.
FIELDS = [("runtime", "session", "graph_optimization_level"), ("runtime", "session", "intra_op_num_threads"),
          ("runtime", "session", "config"), ("runtime", "session", "execution_mode"), ("runtime", "session"),
          ("outputs", 0, "role"), ("outputs", 1, "role"), ("outputs", 0, "name"), ("outputs", 1, "dtype"),
          ("outputs", 2, "kind"), ("outputs", 1, "shape"), ("inputs", 0, "dtype"), ("inputs", 0, "shape"),
          ("inputs", 0, "name"), ("classes",), ("task",), ("samples", "rows"), ("samples", "inputs"),
          ("samples", "outputs"), ("model", "external_data"), ("outputs", 1, "for_class")]


@st.composite
def content_edits(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes], bool]:
    document, files = _honest_contents()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["external", "graph", "samples", "field", "reorder"]))
        if op == "external":
            location = draw(st.sampled_from(LOCATIONS))
            files["model.onnx"] = _classifier(location, where=draw(st.sampled_from(["initializer", "constant", "sparse"])))
            if draw(st.booleans()):  # the manifest may list it, truthfully or not
                document["model"]["external_data"] = [draw(st.sampled_from(["weights.bin", location]))]
            if draw(st.booleans()):
                files["weights.bin"] = draw(st.sampled_from([W.tobytes(), b"", SECRET.tobytes()[:8]]))
        elif op == "graph":
            files["model.onnx"] = _classifier(
                names=tuple(draw(st.lists(st.sampled_from(["X", "scores", "label", "probabilities", "Z"]),
                                          max_size=4))),
                elem_type=draw(st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.STRING])),
                opset=draw(st.sampled_from([17, 1, 10**6])), ir_version=draw(st.sampled_from([8, 0, 10**6])))
        elif op == "samples":
            files[draw(st.sampled_from(["samples/inputs.npz", "samples/outputs.npz"]))] = draw(
                st.sampled_from(HOSTILE_SAMPLES))
        elif op == "reorder":
            document["outputs"] = draw(st.permutations(document["outputs"]))
        else:
            _set(document, draw(st.sampled_from(FIELDS)), draw(JSON))
    document["files"] = json.loads(MANIFEST.replace(files=_entries(files)).to_json())["files"]
    return json.dumps(document).encode(), files, draw(st.booleans())


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    key = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(key, int) and key < len(node)):
        node[key] = value


@pytest.fixture(scope="module")
def secret_places(base: dict[str, Any]) -> Iterator[None]:
    """The secret where hostile locations point; the working directory moved to a folder holding it."""
    import os

    root = base["root"]
    cwd = root / "cwd"
    cwd.mkdir(exist_ok=True)
    for folder in (root, root.parent, cwd):
        (folder / "secret.bin").write_bytes(SECRET.tobytes())
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def check_everything(path: Path) -> None:
    """inspect, verify, load, run, predict, predict_proba: only ModelpackErrors, and no secret out."""
    for step in (modelpack.inspect, modelpack.verify):
        try:
            step(path)
        except ModelpackError:
            pass
    try:
        model = modelpack.load(path)
    except ModelpackError:
        return
    X = np.zeros((2, 4), np.float32)
    with model:
        for call in (model.run, model.predict, model.predict_proba):
            try:
                result = call(X)
            except ModelpackError:
                continue
            values = result.values() if isinstance(result, dict) else [result]
            for value in values:
                array = np.asarray(value)
                if array.dtype.kind == "f":
                    assert not np.isin(SECRET, array).any(), f"{path}: secret bytes in the outputs: {array}"


def _fuzz_contents(base: dict[str, Any], case: tuple[bytes, dict[str, bytes], bool]) -> None:
    raw, files, as_folder = case
    raw = raw.replace(b"SECRET_ABSOLUTE", str(base["root"] / "secret.bin").encode())
    files = {k: v.replace(b"SECRET_ABSOLUTE", str(base["root"] / "secret.bin").encode()) for k, v in files.items()}
    path = _written(base, raw, files, as_folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # packages' dropped settings warn, on purpose
            check_everything(path)
    finally:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_the_honest_classifier_passes_every_step(base) -> None:
    """The family's base case is sound: a case that fails does so because of its edit."""
    document, files = _honest_contents()
    path = _path(base["root"], ".mpk")
    path.write_bytes(_zip([(MANIFEST_NAME, json.dumps(document).encode()), *files.items()]))
    assert modelpack.verify(path).ok, str(modelpack.verify(path))
    with modelpack.load(path) as model:
        np.testing.assert_allclose(model.run(np.zeros((1, 4), np.float32))["scores"], [W])
        assert model.predict_proba(np.zeros((1, 4), np.float32)).shape == (1, 4)


# -- the tests ------------------------------------------------------------------------------------------
def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@_settings(CASES["default"])
@given(edits=byte_edits())
def test_byte_mutations(base, edits) -> None:
    _fuzz_bytes(base, edits)


@_settings(CASES["default"])
@given(entries=structure_edits())
def test_structure_mutations(base, entries) -> None:
    _fuzz_structure(base, entries)


@_settings(CASES["default"])
@given(case=manifest_edits())
def test_manifest_mutations(base, case) -> None:
    _fuzz_manifest(base, case)


@_settings(CASES["default"])
@given(case=content_edits())
def test_content_mutations(base, secret_places, case) -> None:
    _fuzz_contents(base, case)


@pytest.mark.slow
@_settings(CASES["slow"])
@given(case=content_edits())
def test_content_mutations_long(base, secret_places, case) -> None:
    _fuzz_contents(base, case)


@pytest.mark.slow
@_settings(CASES["slow"])
@given(edits=byte_edits())
def test_byte_mutations_long(base, edits) -> None:
    _fuzz_bytes(base, edits)


@pytest.mark.slow
@_settings(CASES["slow"])
@given(entries=structure_edits())
def test_structure_mutations_long(base, entries) -> None:
    _fuzz_structure(base, entries)


@pytest.mark.slow
@_settings(CASES["slow"])
@given(case=manifest_edits())
def test_manifest_mutations_long(base, case) -> None:
    _fuzz_manifest(base, case)
