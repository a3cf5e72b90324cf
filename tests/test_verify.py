"""verify(): checksums and stored samples re-run on this machine."""

import shutil

import numpy as np

import modelpack
from modelpack._package import write_package


def test_verify_a_good_package(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((5, 4)))
    report = modelpack.verify(tmp_path / "a.mpk")
    assert report.ok and bool(report)
    assert "recorded outputs: 5 rows re-run, max abs diff 0" in str(report)


def test_verify_without_samples_says_so(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk")
    report = modelpack.verify(tmp_path / "a.mpk")
    assert report.ok and "no samples stored" in str(report)


def test_tampered_file_fails_verification(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a", sample=np.ones((2, 4)))
    model = tmp_path / "a" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    report = modelpack.verify(tmp_path / "a")
    assert not report.ok
    assert "model.onnx does not match its checksum in the manifest" in str(report)


def test_recorded_outputs_that_differ_fail_verification(add_one, tmp_path):
    """A package whose recorded outputs disagree with the model (re-signed consistently)."""
    modelpack.pack(add_one, tmp_path / "a", sample=np.ones((2, 4)))
    with modelpack.load(tmp_path / "a") as m:
        manifest = m.manifest
        files = {f.path: m._package.read_bytes(f.path) for f in manifest.files}
    import io

    buf = io.BytesIO()
    np.savez(buf, Y=np.full((2, 4), 3.0, np.float32))
    files["samples/outputs.npz"] = buf.getvalue()
    shutil.rmtree(tmp_path / "a")
    write_package(tmp_path / "b", manifest, files)
    report = modelpack.verify(tmp_path / "b")
    assert not report.ok and "outside tolerance: ['Y']" in str(report)
