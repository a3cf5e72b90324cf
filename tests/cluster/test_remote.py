"""remote.fetch: packages from S3 (a moto server on loopback), HTTP (http.server) and file:// URLs."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack._package import fetch, is_url, open_package, remote, resolve
from modelpack.errors import ModelpackError, PackageIntegrityError, PackageNotFoundError, UnsafePackageError

fsspec = pytest.importorskip("fsspec", reason="modelpack[remote] is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predictions_match(local: Path, model, features) -> None:
    with modelpack.load(local) as m:
        np.testing.assert_array_equal(m.predict(features), model.labels(features))


def test_is_url():
    assert is_url("s3://b/k.mpk") and is_url("https://h/p.mpk") and is_url("file:///tmp/p")
    assert not is_url("p.mpk") and not is_url("C:\\models\\p.mpk") and not is_url(Path("s3:/x"))
    assert resolve("local.mpk") == "local.mpk"


# -- file:// ---------------------------------------------------------------------------------
def test_file_urls_give_a_private_copy(classifier, features, tmp_path):
    local = fetch(classifier.path.resolve().as_uri())
    assert local.name == "iris.mpk" and local != classifier.path
    assert local.read_bytes() == classifier.path.read_bytes()
    assert local.parent.parent.stat().st_mode & 0o077 == 0  # the process's folder is private
    predictions_match(local, classifier, features)
    assert fetch(classifier.path.resolve().as_uri()) == local  # unchanged: the copy is reused
    folder = tmp_path / "folder"
    modelpack.pack(classifier.path.with_suffix(".onnx"), folder, name="iris")
    copied = fetch(folder.as_uri(), cache_dir=tmp_path / "cache")
    assert copied.is_dir() and copied.parent.parent == tmp_path / "cache"
    predictions_match(copied, classifier, features)


def test_protocols_without_an_implementation_name_the_package(tmp_path):
    with pytest.raises(ModelpackError, match="not a protocol fsspec knows"):
        fetch("nosuchproto://bucket/p.mpk")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ModelpackError, match=r"needs gcsfs.*pip install gcsfs"):
            fetch("gs://bucket/p.mpk")


# -- S3 ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback and an s3fs filesystem pointed at it."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("models")
    yield fs, options
    server.stop()


def test_s3_archive_and_folder(s3, classifier, features, tmp_path):
    fs, options = s3
    fs.put_file(str(classifier.path), "models/iris.mpk")
    local = fetch("s3://models/iris.mpk", storage_options=options)
    predictions_match(local, classifier, features)
    folder = tmp_path / "folder"
    modelpack.pack(classifier.path.with_suffix(".onnx"), folder, name="iris")
    fs.put(str(folder), "models/iris-folder", recursive=True)
    copied = fetch("s3://models/iris-folder", storage_options=options)
    assert sorted(p.name for p in copied.iterdir()) == ["model.onnx", "modelpack.json"]
    predictions_match(copied, classifier, features)


def test_s3_cache_follows_the_remote_version(s3, classifier, regressor, tmp_path):
    fs, options = s3
    fs.put_file(str(classifier.path), "models/v.mpk")
    first = fetch("s3://models/v.mpk", cache_dir=tmp_path, storage_options=options)
    assert fetch("s3://models/v.mpk", cache_dir=tmp_path, storage_options=options) == first
    fs.put_file(str(regressor.path), "models/v.mpk")
    second = fetch("s3://models/v.mpk", cache_dir=tmp_path, storage_options=options)
    assert second != first and second.read_bytes() == regressor.path.read_bytes()


def test_s3_tampered_folder_is_refused_when_opened(s3, classifier, tmp_path):
    fs, options = s3
    folder = tmp_path / "folder"
    modelpack.pack(classifier.path.with_suffix(".onnx"), folder, name="iris")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    fs.put(str(folder / "modelpack.json"), "models/bad/modelpack.json")
    fs.pipe_file("models/bad/model.onnx", bytes(data))
    with pytest.raises(PackageIntegrityError, match="checksum"):
        open_package(fetch("s3://models/bad", storage_options=options))
    fs.pipe_file("models/bad/model.onnx", (folder / "model.onnx").read_bytes())
    fs.pipe_file("models/bad/extra.txt", b"not listed")
    with pytest.raises(UnsafePackageError, match="not listed"):
        open_package(fetch("s3://models/bad", storage_options=options))


def test_s3_hostile_names_and_sizes_are_refused_before_download(s3, monkeypatch, tmp_path):
    fs, options = s3
    fs.pipe_file("models/evil/modelpack.json", b"{}")
    fs.pipe_file("models/evil/sub\\..\\x", b"escape")
    with pytest.raises(UnsafePackageError, match="backslash"):
        fetch("s3://models/evil", cache_dir=tmp_path, storage_options=options)
    fs.pipe_file("models/big.mpk", b"x" * 5000)
    monkeypatch.setattr(remote, "MAX_TOTAL_BYTES", 4096)
    with pytest.raises(UnsafePackageError, match="more than the limit of 4096"):
        fetch("s3://models/big.mpk", cache_dir=tmp_path, storage_options=options)
    assert not any(tmp_path.rglob("*big*"))


def test_s3_missing_objects(s3):
    _, options = s3
    with pytest.raises(PackageNotFoundError, match="no package at s3://models/absent.mpk"):
        fetch("s3://models/absent.mpk", storage_options=options)
    with pytest.raises(PackageNotFoundError):
        fetch("s3://no-such-bucket/p.mpk", storage_options=options)


# -- HTTP ----------------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; /stream/NAME is sent with no Content-Length, as chunked servers do."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self.path.startswith("/stream/"):
            super().do_GET()
            return
        body = (Path(self.directory) / self.path.removeprefix("/stream/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_HEAD(self) -> None:  # noqa: N802
        if self.path.startswith("/stream/"):
            self.send_response(200)
            self.end_headers()
            return
        super().do_HEAD()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    pytest.importorskip("aiohttp", reason="fsspec's http needs aiohttp")
    root = tmp_path_factory.mktemp("web")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_archive(web, classifier, features):
    root, base = web
    shutil.copyfile(classifier.path, root / "iris.mpk")
    local = fetch(f"{base}/iris.mpk?token=abc")
    assert local.name == "iris.mpk"
    predictions_match(local, classifier, features)


def test_http_errors_and_unsized_bodies(web, classifier, monkeypatch, tmp_path):
    root, base = web
    with pytest.raises(PackageNotFoundError, match="no package at"):
        fetch(f"{base}/absent.mpk")
    shutil.copyfile(classifier.path, root / "s.mpk")
    size = (root / "s.mpk").stat().st_size
    assert fetch(f"{base}/stream/s.mpk", cache_dir=tmp_path).read_bytes() == (root / "s.mpk").read_bytes()
    monkeypatch.setattr(remote, "MAX_TOTAL_BYTES", size - 1)  # only counting while reading can catch it
    with pytest.raises(UnsafePackageError, match="larger than the limit"):
        fetch(f"{base}/stream/s.mpk", cache_dir=tmp_path / "other")
    assert not [p for p in (tmp_path / "other").rglob("*") if p.is_file()]
