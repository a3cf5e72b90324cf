"""verify(): checksums and stored samples re-run on this machine."""

import shutil

import numpy as np
import pytest

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


# -- hostile samples: consistent checksums, hostile contents ---------------------------------
def _npy(header: str, body: bytes = b"") -> bytes:
    """A hand-made .npy file (version 1.0) with ``header`` as its dict."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    return b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text + b" " * pad + b"\n" + body


def _npz(**members: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return buf.getvalue()


HOSTILE_SAMPLES = {
    "terabytes": (_npz(X=_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 4), }")),
                  "declares shape (1000000000000, 4)"),
    "short body": (_npz(X=_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 4), }", b"\0" * 8)),
                   "over 8 bytes"),
    "not a zip": (b"these are not arrays", "is not an .npz archive"),
    "object array": (_npz(X=_npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", b"\0" * 16)),
                     "holds Python objects"),
    "bad header": (_npz(X=_npy("{'descr': __import__('os'), }")), "no readable .npy header"),
    "not an npy": (_npz(X=b"plain bytes"), "no readable .npy header"),
    "missing input": (_npz(Z=_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 4), }", b"\0" * 80)),
                      "X"),
}


@pytest.mark.parametrize("case", HOSTILE_SAMPLES)
def test_hostile_sample_inputs_fail_verification_with_the_reason(add_one, tmp_path, case: str) -> None:
    data, fragment = HOSTILE_SAMPLES[case]
    path = _rewritten(add_one, tmp_path, "samples/inputs.npz", data)
    report = modelpack.verify(path)
    assert not report.ok
    (detail,) = [d for name, ok, d in report.checks if name == "samples" and not ok]
    assert fragment in detail and str(path) in detail, detail


def test_recorded_outputs_the_model_does_not_have_fail_verification(add_one, tmp_path) -> None:
    data = _npz(Q=_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 4), }", b"\0" * 80))
    report = modelpack.verify(_rewritten(add_one, tmp_path, "samples/outputs.npz", data))
    assert not report.ok and "records an output 'Q' the model does not have" in str(report)


def test_the_sample_reader_returns_what_numpy_wrote() -> None:
    from modelpack._formats.samples import read_samples, write_samples

    arrays = {"f": np.arange(12, dtype=np.float32).reshape(3, 4), "s": np.array(["a", "bc", ""]),
              "b": np.array([True, False]), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "scalar": np.array(7, dtype=np.int64)}
    back = read_samples(write_samples(arrays), "samples/inputs.npz", "pkg")
    assert back.keys() == arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].dtype == array.dtype and back[name].shape == array.shape


def _rewritten(add_one, tmp_path, name: str, data: bytes):
    """The add-one package with ``name`` replaced by ``data``, its manifest's checksums all true."""
    modelpack.pack(add_one, tmp_path / "a", sample=np.ones((5, 4)))
    with modelpack.load(tmp_path / "a") as m:
        manifest = m.manifest
        files = {f.path: m._package.read_bytes(f.path) for f in manifest.files}
    files[name] = data
    write_package(tmp_path / "hostile.mpk", manifest, files)
    return tmp_path / "hostile.mpk"
