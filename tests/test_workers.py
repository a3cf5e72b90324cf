"""The worker side of the cluster engines: packages checked once, opened once per process by SHA-256."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import modelpack
from modelpack._workers import cached_model, materialize, opener, package_digest, prepare
from modelpack.errors import PackageIntegrityError, SignatureError

GOLDEN = Path(__file__).parent / "data" / "golden-1.0"


@pytest.fixture()
def archive(tmp_path):
    modelpack.pack(GOLDEN / "model.onnx", tmp_path / "g.mpk")
    return tmp_path / "g.mpk"


def test_the_digest_names_the_archive_or_the_folders_manifest(archive):
    assert package_digest(archive) == hashlib.sha256(archive.read_bytes()).hexdigest()
    folder_digest = hashlib.sha256((GOLDEN / "modelpack.json").read_bytes()).hexdigest()
    assert package_digest(GOLDEN) == folder_digest


def test_a_package_is_opened_once_per_digest_and_options(archive):
    digest = package_digest(archive)
    calls = []

    def where():
        calls.append(1)
        return archive

    first = cached_model(digest, where, {"engine": "onnxruntime"})
    assert cached_model(digest, where, {"engine": "onnxruntime"}) is first
    assert cached_model(digest, where, {"engine": "auto"}) is not first
    assert len(calls) == 2


def test_the_worker_keeps_the_models_used_last(archive, monkeypatch):
    import modelpack._workers as workers

    monkeypatch.setattr(workers, "_MODELS", {})
    monkeypatch.setattr(workers, "MAX_MODELS", 3)
    digest = package_digest(archive)
    opened = []

    def where():
        opened.append(1)
        return archive

    def options(i):  # one cache entry per thread count
        return {"session_options": {"intra_op_num_threads": i}}

    first = cached_model(digest, where, options(1))
    for i in (2, 3):
        cached_model(digest, where, options(i))
    assert cached_model(digest, where, options(1)) is first  # used again: now the most recent
    cached_model(digest, where, options(4))  # drops 2, the least recently used
    assert len(workers._MODELS) == 3 and len(opened) == 4
    assert cached_model(digest, where, options(1)) is first
    cached_model(digest, where, options(2))
    assert len(opened) == 5  # opened again


def test_a_package_replaced_while_it_is_opened_is_refused(archive, tmp_path, monkeypatch):
    """A writer that swaps the file between the first check and the load is caught by the second."""
    import modelpack._load as loading

    digest = package_digest(archive)
    other = tmp_path / "other.mpk"
    modelpack.pack(GOLDEN / "model.onnx", other, name="other")
    real_load = loading.load

    def swapped_first(path, **options):
        shutil.copyfile(other, path)
        return real_load(path, **options)

    monkeypatch.setattr(loading, "load", swapped_first)
    with pytest.raises(PackageIntegrityError, match="not the one the driver checked"):
        cached_model(digest, lambda: archive, {"engine": "onnxruntime", "device": "cpu"})


def test_a_package_replaced_under_its_name_is_refused(archive, tmp_path):
    digest = package_digest(archive)
    other = tmp_path / "other.mpk"
    shutil.copy(archive, other)
    with open(other, "ab") as fh:  # the same name, other bytes
        fh.write(b"\0")
    with pytest.raises(PackageIntegrityError, match="not the one the driver checked"):
        cached_model(digest, lambda: other, {"device": "cpu", "engine": "auto", "fallback": True})


def test_shipped_bytes_become_a_private_file_once(archive):
    data, digest = archive.read_bytes(), package_digest(archive)
    path = materialize(data, digest)
    assert path.read_bytes() == data and path.name == f"{digest}.mpk"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert materialize(data, digest) == path
    assert opener(data, digest)() == path
    assert opener(str(archive), digest)() == archive


def test_prepare_checks_the_signature_on_the_driver(archive, tmp_path):
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
    from modelpack._package import generate_key, sign

    public = generate_key(tmp_path / "alice")
    with pytest.raises(SignatureError, match="not signed"):
        prepare(archive, [public])
    sign(archive, tmp_path / "alice")
    prepared = prepare(archive, [public])
    assert prepared.keys is not None and prepared.digest == package_digest(archive)
    assert prepared.shipment(True) == archive.read_bytes() and prepared.shipment(False) == str(archive)


def test_only_archives_travel_as_bytes(archive):
    assert prepare(archive).shipment(True) == archive.read_bytes()
    assert prepare(GOLDEN).shipment(True) == str(GOLDEN.resolve())  # a folder: workers read its path


def test_the_cache_key_is_the_trusted_keys_bytes_not_the_key_file_path(archive, tmp_path):
    pytest.importorskip("cryptography")
    from modelpack._package import generate_key, sign

    signer = generate_key(tmp_path / "alice")
    sign(archive, tmp_path / "alice")
    digest, trusted = package_digest(archive), tmp_path / "trusted.pub"
    shutil.copy(signer, trusted)
    cached_model(digest, lambda: archive, {"trusted_keys": [trusted]})  # signed by the key in that file
    shutil.copy(generate_key(tmp_path / "mallory"), trusted)  # the same path now names another key
    with pytest.raises(SignatureError):
        cached_model(digest, lambda: archive, {"trusted_keys": [trusted]})


def test_an_option_that_is_not_a_plain_value_is_keyed_by_the_object_held_with_the_model(archive):
    class Options(dict):  # prints alike whatever it holds, as an object printed by its address may
        def __repr__(self) -> str:
            return "Options()"

    digest, one, two = package_digest(archive), Options(), Options(intra_op_num_threads=1)
    first = cached_model(digest, lambda: archive, {"session_options": one})
    assert cached_model(digest, lambda: archive, {"session_options": one}) is first
    assert cached_model(digest, lambda: archive, {"session_options": two}) is not first
