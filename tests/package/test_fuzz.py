"""Mutated packages: whatever the bytes, only a ModelpackError may come out.

Three families of mutations of one valid package: raw bytes of the archive,
its zip structure (entries dropped, doubled, renamed, re-flagged), and the
manifest's JSON (values replaced or removed anywhere, with the checksums kept
consistent half of the time so the runtime is reached too). Each case goes
through ``open_package`` and, when that accepts it, ``modelpack.load`` and a
prediction. The default run tries a few hundred cases; the slow run 10,000
(see docs/security.md for the command).
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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelpack
from modelpack._package import MANIFEST_NAME, open_package, write_package
from modelpack.errors import ModelpackError
from modelpack.manifest import Manifest, ModelInfo, TensorSpec

from onnx import TensorProto, helper  # isort: skip

CASES = {"default": 150, "slow": 3_400}  # per family: 450 cases by default, 10,200 in the slow run


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


def _fuzz_manifest(base: dict[str, Any], case: tuple[bytes, dict[str, bytes], bool]) -> None:
    raw, files, as_folder = case
    if as_folder:
        path = _path(base["root"], "")
        for name, data in {MANIFEST_NAME: raw, **files}.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    else:
        path = _path(base["root"], ".mpk")
        path.write_bytes(_zip([(MANIFEST_NAME, raw), *files.items()]))
    try:
        check(path)
    finally:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


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
