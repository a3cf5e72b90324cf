"""Builders for the container, signing, crash and concurrency tests.

Valid packages are written with ``write_package`` around a tiny ONNX model
(Y = X + 1) made with ``onnx.helper``; hostile archives are built here with
``zipfile`` and raw byte edits, as an attacker would.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

from modelpack._package import MANIFEST_NAME, write_package
from modelpack.manifest import FileEntry, Manifest, ModelInfo, TensorSpec

Entry = tuple[str | zipfile.ZipInfo, bytes]


def add_one_model(opset: int = 17) -> bytes:
    """The bytes of an ONNX model computing Y = X + 1 over float32 [N, 4]."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "add_one",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
                              initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    return model.SerializeToString()


def base_manifest(**changes: Any) -> Manifest:
    manifest = Manifest(name="add-one", task="regression",
                        model=ModelInfo(format="onnx", file="model.onnx"),
                        inputs=(TensorSpec("X", "float32", ("N", 4)),),
                        outputs=(TensorSpec("Y", "float32", ("N", 4), role="value"),),
                        created="2026-01-01T00:00:00Z")
    return manifest.replace(**changes) if changes else manifest


class Kit:
    """Makes packages and hostile archives under one temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = add_one_model()
        self.extra = {"extra/labels.json": b'{"0": "zero"}\n', "samples/notes.txt": b"made by tests\n"}

    # -- valid packages ---------------------------------------------------------------
    def files(self, **more: bytes) -> dict[str, bytes]:
        return {"model.onnx": self.model, **self.extra, **more}

    def package(self, name: str = "pkg.mpk", files: dict[str, Any] | None = None,
                manifest: Manifest | None = None) -> Path:
        dest = self.root / name
        write_package(dest, manifest or base_manifest(), self.files() if files is None else files)
        return dest

    # -- hostile archives -------------------------------------------------------------
    def manifest_json(self, files: dict[str, bytes], declared: dict[str, tuple[str, int]] | None = None,
                      **changes: Any) -> bytes:
        """A manifest listing ``files`` with their true checksums (and ``declared`` as given)."""
        listing = {n: (hashlib.sha256(d).hexdigest(), len(d)) for n, d in files.items()}
        listing.update(declared or {})
        entries = tuple(FileEntry(n, *listing[n]) for n in sorted(listing))
        return base_manifest(files=entries, **changes).to_json()

    def entries(self, **more: bytes) -> list[Entry]:
        """The entries of a consistent archive: manifest + model + extras (+ more)."""
        files = self.files(**more)
        return [(MANIFEST_NAME, self.manifest_json(files)), *files.items()]

    def zip(self, entries: Sequence[Entry], name: str = "hostile.mpk",
            compression: int = zipfile.ZIP_STORED) -> Path:
        path = self.root / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
            with zipfile.ZipFile(path, "w", compression) as zf:
                for item, data in entries:
                    zf.writestr(item, data)
        return path


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Point the temporary folder of this process at an empty folder, to see what is left in it."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


# -- raw edits of zip archives -------------------------------------------------------------
def central_records(data: bytes) -> Iterator[tuple[int, str]]:
    """(offset, name) of each central-directory record of an archive."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        yield at, data[at + 46:at + 46 + name_len].decode("utf-8", "replace")
        at = data.find(b"PK\x01\x02", at + 46 + name_len)


def data_span(path: Path, name: str) -> tuple[int, int]:
    """(start, length) of an entry's stored bytes in the archive."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bytes_io_zip(entries: Sequence[Entry]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(buffer, "w") as zf:
            for item, data in entries:
                zf.writestr(item, data)
    return buffer.getvalue()


@pytest.fixture
def zip_tools() -> Any:
    """The raw archive helpers above, for test modules (they cannot import this file)."""
    class Tools:
        central_records = staticmethod(central_records)
        data_span = staticmethod(data_span)
        json_bytes = staticmethod(json_bytes)
        bytes_io_zip = staticmethod(bytes_io_zip)
        add_one_model = staticmethod(add_one_model)
        base_manifest = staticmethod(base_manifest)
    return Tools

