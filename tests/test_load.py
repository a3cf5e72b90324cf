"""load(): packages, bare model files, devices, and a machine without a runtime."""

import subprocess
import sys

import numpy as np
import pytest

import modelpack


def test_bare_onnx_file_is_packed_on_the_fly(add_one):
    with modelpack.load(add_one) as m:
        assert m.manifest.name == "add_one"
        np.testing.assert_array_equal(m.predict(np.zeros((1, 4))), np.ones((1, 4)))


def test_missing_package(tmp_path):
    with pytest.raises(modelpack.PackageNotFoundError) as err:
        modelpack.load(tmp_path / "nope.mpk")
    assert isinstance(err.value, FileNotFoundError)
    assert "packages are folders or .mpk files" in str(err.value)


def test_folder_without_manifest(tmp_path):
    with pytest.raises(modelpack.PackageError, match="has no modelpack.json"):
        modelpack.load(tmp_path)


def test_unknown_device_suggests_the_right_name(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk")
    with pytest.raises(modelpack.DeviceError, match="Did you mean 'cuda'"):
        modelpack.load(tmp_path / "a.mpk", device="cdua")


def test_strict_device_request_raises_naming_what_to_install(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk")
    with pytest.raises(modelpack.DeviceUnavailableError) as err:
        modelpack.load(tmp_path / "a.mpk", device="cuda", fallback=False)
    assert "CUDAExecutionProvider" in str(err.value) and "modelpack[gpu]" in str(err.value)


def test_fallback_warns_and_reports_the_truth(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk")
    with pytest.warns(RuntimeWarning, match=r"CUDAExecutionProvider.*not available"):
        m = modelpack.load(tmp_path / "a.mpk", device=["cuda", "cpu"])
    with m:
        assert m.providers == ["CPUExecutionProvider"]


def test_without_onnxruntime_load_names_the_extras(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk")
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import modelpack\n"
            "try:\n"
            f"    modelpack.load({str(tmp_path / 'a.mpk')!r})\n"
            "except modelpack.RuntimeBackendError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ONNX Runtime is not installed" in out and "pip install 'modelpack[cpu]'" in out


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib", "model.pt", "weights.pth", "model.keras",
                                  "model.bin"])
def test_pickles_and_framework_files_are_refused_with_the_way_to_export(tmp_path, name):
    import pickle

    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4) if name.endswith(".bin") else b"data")
    with pytest.raises(modelpack.PackageError, match="modelpack loads no pickles") as caught:
        modelpack.load(path)
    assert name in str(caught.value) and "modelpack.export(model" in caught.value.fix
