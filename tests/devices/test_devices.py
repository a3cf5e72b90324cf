"""Device names, the fallback policy, placement and the device report.

Runs in the main environment (CPU provider only) and, through `make test-openvino`,
in an environment with onnxruntime-openvino, where OpenVINO is a real second
provider: a dense MLP runs on it and ai.onnx.ml operators stay on the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelpack
from modelpack._cli.devices import add_parser
from modelpack._devices import (
    CPU,
    DEVICES,
    DeviceWarning,
    PlacementWarning,
    devices,
    parse_device,
    provider_name,
    resolve_providers,
)
from modelpack._devices.placement import describe, forecast

ort = pytest.importorskip("onnxruntime")
OPENVINO = "OpenVINOExecutionProvider"
AVAILABLE = ort.get_available_providers()
needs_openvino = pytest.mark.skipif(OPENVINO not in AVAILABLE,
                                    reason="needs onnxruntime-openvino (`make test-openvino` runs these)")
without_openvino = pytest.mark.skipif(OPENVINO in AVAILABLE, reason="checks a machine without OpenVINO")


# -- models, built in memory -----------------------------------------------------------------------
def _save(path: Path, nodes: list, width_in: int, width_out: int, initializers: list, ml: bool = False) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", width_in])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", width_out])],
                              initializer=initializers)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _dense(rng: np.random.Generator, prefix: str, n_in: int, n_out: int, x: str, y: str) -> tuple[list, list]:
    w = numpy_helper.from_array((rng.standard_normal((n_in, n_out)) * 0.3).astype(np.float32), f"{prefix}w")
    b = numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32), f"{prefix}b")
    nodes = [helper.make_node("MatMul", [x, w.name], [f"{prefix}m"]),
             helper.make_node("Add", [f"{prefix}m", b.name], [f"{prefix}a"]),
             helper.make_node("Relu", [f"{prefix}a"], [y])]
    return nodes, [w, b]


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    """A dense MLP: 8 -> 32 -> 32 -> 4, MatMul/Add/Relu only."""
    rng = np.random.default_rng(1)
    n1, i1 = _dense(rng, "l1", 8, 32, "X", "h1")
    n2, i2 = _dense(rng, "l2", 32, 32, "h1", "h2")
    n3, i3 = _dense(rng, "l3", 32, 4, "h2", "Y")
    return _save(tmp_path / "mlp.onnx", n1 + n2 + n3, 8, 4, i1 + i2 + i3)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A dense layer followed by an ai.onnx.ml LinearRegressor."""
    rng = np.random.default_rng(2)
    nodes, inits = _dense(rng, "l1", 4, 16, "X", "h")
    nodes.append(helper.make_node("LinearRegressor", ["h"], ["Y"], domain="ai.onnx.ml",
                                  coefficients=rng.standard_normal(16).tolist(), intercepts=[0.5]))
    return _save(tmp_path / "mixed.onnx", nodes, 4, 1, inits, ml=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """One decision stump as an ai.onnx.ml TreeEnsembleRegressor: y = 1 if x0 <= 0.5 else 2."""
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
                            nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                            nodes_values=[0.5, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                            nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
                            target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
                            target_weights=[1.0, 2.0])
    return _save(tmp_path / "tree.onnx", [node], 3, 1, [], ml=True)


def _cpu_reference(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=[CPU])
    return session.run(None, {"X": x})[0]


X8 = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)


# -- device names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "spec"), [
    ("cpu", CPU),
    (" CUDA ", "CUDAExecutionProvider"),
    ("cuda:1", ("CUDAExecutionProvider", {"device_id": 1})),
    ("openvino:GPU", (OPENVINO, {"device_type": "GPU"})),
    ("openvino:gpu.1", (OPENVINO, {"device_type": "GPU.1"})),
    ("directml:0", ("DmlExecutionProvider", {"device_id": 0})),
    ("CUDAExecutionProvider", "CUDAExecutionProvider"),
])
def test_device_names_map_to_providers_and_options(name, spec):
    assert parse_device(name) == spec


@pytest.mark.parametrize(("typo", "suggestion"), [("cdua", "cuda"), ("opnevino", "openvino"),
                                                  ("tensorrtt", "tensorrt"), ("aut", "auto")])
def test_typos_get_a_suggestion(typo, suggestion):
    with pytest.raises(modelpack.DeviceError, match=f"Did you mean '{suggestion}'"):
        parse_device(typo)


@pytest.mark.parametrize(("name", "match"), [("quantum", "unknown device 'quantum'.*Use one of"),
                                             ("cpu:1", "takes no index"), ("cuda:first", "needs a number"),
                                             (0, "must be a string")])
def test_bad_device_names_say_what_to_write(name, match):
    with pytest.raises(modelpack.DeviceError, match=match) as err:
        parse_device(name)
    assert "Did you mean" not in str(err.value) or name != "quantum"


# -- resolving a request against what is installed ---------------------------------------------------
def test_strict_request_for_a_missing_provider_names_what_to_install():
    with pytest.raises(modelpack.DeviceUnavailableError) as err:
        resolve_providers("openvino", None, False, [CPU])
    text = str(err.value)
    assert "OpenVINOExecutionProvider" in text and "modelpack[openvino]" in text and "pip uninstall" in text


def test_fallback_warns_and_keeps_the_rest_of_the_list_in_order():
    available = ["CUDAExecutionProvider", OPENVINO, CPU]
    with pytest.warns(DeviceWarning, match=r"TensorrtExecutionProvider.*next device"):
        plan = resolve_providers(["tensorrt", "openvino", "cuda:1"], None, True, available)
    assert plan == [OPENVINO, ("CUDAExecutionProvider", {"device_id": 1}), CPU]


def test_auto_takes_installed_devices_best_first_and_skips_non_devices():
    available = [CPU, "AzureExecutionProvider", OPENVINO, "CUDAExecutionProvider"]
    assert resolve_providers("auto", None, False, available) == ["CUDAExecutionProvider", OPENVINO, CPU]


def test_expert_providers_pass_through_unchanged():
    spec = (OPENVINO, {"device_type": "CPU", "num_of_threads": "1"})
    assert resolve_providers("cuda", [spec], False, [OPENVINO, CPU]) == [spec, CPU]


@pytest.mark.parametrize(("device", "providers", "match"), [
    ([], None, "empty device list"), (["auto", "cpu"], None, "cannot be part of a list"),
    ("cpu", "CUDAExecutionProvider", "takes a list")])
def test_malformed_requests_are_refused(device, providers, match):
    with pytest.raises(modelpack.DeviceError, match=match):
        resolve_providers(device, providers, True, [CPU])


@without_openvino
def test_load_on_a_missing_device_warns_and_runs_on_the_cpu(mlp):
    with pytest.warns(DeviceWarning, match="not available") as record:
        m = modelpack.load(mlp, device="openvino")
    with m:
        assert m.providers == [CPU]
        np.testing.assert_allclose(m.run(X8)["Y"], _cpu_reference(mlp, X8), rtol=1e-6)
    assert record[0].filename == __file__  # attributed to the caller, not to modelpack


# -- the report ----------------------------------------------------------------------------------------
def test_report_proves_the_cpu_works_by_running_a_model():
    report = devices()
    cpu = next(p for p in report.providers if p.provider == CPU)
    assert cpu.works is True and "ms" in cpu.detail
    assert "cpu" in report.working
    assert report.onnxruntime == ort.__version__
    text = str(report)
    assert f"onnxruntime {ort.__version__}" in text and "CPUExecutionProvider" in text and "works" in text
    assert json.loads(json.dumps(report.to_dict()))["onnxruntime"] == ort.__version__


def test_report_without_probing_claims_nothing():
    report = devices(probe=False)
    assert report.providers and all(p.works is None for p in report.providers)
    assert report.working == []


def test_cli_prints_the_report_as_text_and_json(capsys):
    parser = argparse.ArgumentParser(prog="modelpack")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["devices", "--json"])
    assert args.handler(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert any(p["provider"] == CPU and p["works"] for p in data["providers"])
    args = parser.parse_args(["devices", "--no-probe"])
    assert args.handler(args) == 0
    assert "not probed" in capsys.readouterr().out


def test_report_without_onnxruntime_says_what_to_install():
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from modelpack import devices\n"
            "r = devices(); print(r.onnxruntime); print(r)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("None") and "onnxruntime: not installed" in out and "modelpack[cpu]" in out


# -- placement forecast -------------------------------------------------------------------------------------
def test_forecast_counts_the_model_operators_per_installed_device(mixed):
    result = forecast(mixed.read_bytes())
    assert result["onnxruntime"] == ort.__version__ and result["nodes"] == 4
    cpu = result["devices"]["cpu"][CPU]
    assert cpu == {"nodes": 4, "ops": {"Add": 1, "MatMul": 1, "Relu": 1, "ai.onnx.ml.LinearRegressor": 1}}
    installed = {d for d, p in DEVICES.items() if p in AVAILABLE}
    assert set(result["devices"]) == installed
    assert "cpu: 4 nodes on CPUExecutionProvider" in describe(result)


def test_forecast_of_an_unreadable_model_records_the_error():
    result = forecast(b"not a model")
    assert "protobuf" in result["devices"]["cpu"]["error"].lower()
    assert "fails here" in describe(result)


def test_forecast_without_onnxruntime_is_none(mixed):
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from modelpack._devices.placement import forecast, describe\n"
            f"f = forecast({str(mixed)!r}); print(f); print(describe(f))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "None" and "placement forecast: none" in out


def test_importing_the_device_modules_imports_no_runtime():
    code = ("import sys, modelpack, modelpack._devices, modelpack._devices.placement\n"
            "print([m for m in ('onnxruntime', 'onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- OpenVINO: a real second provider -------------------------------------------------------------------------
@needs_openvino
def test_report_proves_openvino_works():
    assert "openvino:CPU" in devices().working


@needs_openvino
def test_dense_mlp_runs_on_openvino_with_the_cpu_numbers(mlp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a dense model must load without any placement warning
        m = modelpack.load(mlp, device="openvino", fallback=False)
    with m:
        assert m.providers == [OPENVINO]
        placement = m.backend.placement()
        assert placement[OPENVINO]["nodes"] >= 3 and placement[CPU]["nodes"] == 0
        assert set(placement[OPENVINO]["ops"]) <= {"MatMul", "Add", "Relu", "Gemm"}
        np.testing.assert_allclose(m.run(X8)["Y"], _cpu_reference(mlp, X8), rtol=1e-4, atol=1e-4)


@needs_openvino
def test_ml_operators_stay_on_the_cpu_and_the_user_is_told(mixed):
    with pytest.warns(PlacementWarning, match=r"1 of 3 nodes .*OpenVINOExecutionProvider.*LinearRegressor"):
        m = modelpack.load(mixed, device="openvino", fallback=False)
    with m:
        assert m.providers == [OPENVINO, CPU]
        placement = m.backend.placement()
        assert placement[CPU]["ops"] == {"ai.onnx.ml.LinearRegressor": 1}
        x = X8[:, :4].copy()
        np.testing.assert_allclose(m.run(x)["Y"], _cpu_reference(mixed, x), rtol=1e-4, atol=1e-4)


@needs_openvino
def test_a_tree_model_on_openvino_runs_on_the_device_as_standard_operators(tree):
    m = modelpack.load(tree, device="openvino", fallback=False)
    with m:
        assert m.providers == [OPENVINO]
        assert m.engine == "modelpack-trees" and "tensor" in m.engine_reason
        x = np.array([[0.2, 0, 0], [0.9, 0, 0]], dtype=np.float32)
        np.testing.assert_array_equal(m.run(x)["Y"].ravel(), [1.0, 2.0])


@needs_openvino
def test_a_tree_operator_on_openvino_runs_wholly_on_the_cpu_and_providers_say_so(tree):
    with pytest.warns(PlacementWarning, match="no kernel for any operator.*TreeEnsembleRegressor"):
        m = modelpack.load(tree, device="openvino", fallback=False, engine="onnxruntime")
    with m:
        assert m.providers == [CPU]
        x = np.array([[0.2, 0, 0], [0.9, 0, 0]], dtype=np.float32)
        np.testing.assert_array_equal(m.run(x)["Y"].ravel(), [1.0, 2.0])


@needs_openvino
def test_forecast_splits_a_mixed_model_between_openvino_and_the_cpu(mixed):
    entry = forecast(mixed)["devices"]["openvino"]
    assert entry[OPENVINO] == {"nodes": 3, "ops": {"Add": 1, "MatMul": 1, "Relu": 1}}
    assert entry[CPU] == {"nodes": 1, "ops": {"ai.onnx.ml.LinearRegressor": 1}}


def _openvino_has(device_type: str) -> bool:
    try:
        return device_type in ort.capi._pybind_state.get_available_openvino_device_ids()
    except AttributeError:
        return False


@needs_openvino
def test_a_device_that_does_not_load_is_an_error_when_strict(mlp):
    if _openvino_has("NPU"):
        pytest.skip("this machine has an OpenVINO NPU")
    with pytest.raises(modelpack.DeviceUnavailableError, match=r"device_type=NPU\) did not load"):
        modelpack.load(mlp, device="openvino:NPU", fallback=False)


@needs_openvino
def test_fallback_moves_to_the_next_variant_of_the_same_provider(mlp):
    if _openvino_has("NPU"):
        pytest.skip("this machine has an OpenVINO NPU")
    with pytest.warns(DeviceWarning, match=r"device_type=NPU\) did not load"):
        m = modelpack.load(mlp, device=["openvino:NPU", "openvino:CPU"])
    with m:
        assert m.providers == [OPENVINO]  # NPU is absent, so it is the CPU variant that runs
        np.testing.assert_allclose(m.run(X8)["Y"], _cpu_reference(mlp, X8), rtol=1e-4, atol=1e-4)


@needs_openvino
def test_a_provider_failing_on_the_model_is_an_error_when_strict_and_skipped_otherwise(mlp):
    broken = [(OPENVINO, {"no_such_option": "1"})]
    with pytest.raises(modelpack.DeviceUnavailableError, match="OpenVINOExecutionProvider.*fails on this model"):
        modelpack.load(mlp, providers=broken, fallback=False)
    with pytest.warns(DeviceWarning, match="fails on this model"):
        m = modelpack.load(mlp, providers=broken)
    with m:
        assert m.providers == [CPU]
        np.testing.assert_allclose(m.run(X8)["Y"], _cpu_reference(mlp, X8), rtol=1e-6)


@needs_openvino
def test_a_broken_model_is_blamed_on_the_model_not_the_device(tmp_path):
    path = _save(tmp_path / "bad.onnx", [helper.make_node("NoSuchOperator", ["X"], ["Y"])], 4, 4, [])
    with pytest.raises(modelpack.ModelpackError) as err:
        modelpack.load(path, device="openvino", fallback=False)
    assert not isinstance(err.value, modelpack.DeviceUnavailableError)
    assert "NoSuchOperator" in str(err.value)


@needs_openvino
def test_auto_picks_openvino_first(mlp):
    with modelpack.load(mlp, device="auto") as m:
        assert m.providers == [OPENVINO]


@needs_openvino
def test_the_report_tells_a_device_that_does_not_load():
    if _openvino_has("NPU"):
        pytest.skip("this machine has an OpenVINO NPU")
    from modelpack._devices.report import probe_provider

    check = probe_provider(ort, (OPENVINO, {"device_type": "NPU"}), "openvino:NPU")
    assert check.works is False and check.detail.startswith("did not load")


@pytest.mark.parametrize(("checks", "runtimes", "gpus", "expected"), [
    ((), ("onnxruntime 1.32.0", "onnxruntime-gpu 1.32.0"), False, "overwrite each other"),
    ((("cpu", CPU, True),), ("onnxruntime 1.32.0",), True, "no CUDA provider.*modelpack\\[gpu\\]"),
    ((("cuda", "CUDAExecutionProvider", False),), ("onnxruntime-gpu 1.32.0",), False, "finds no NVIDIA GPU"),
    ((("cuda", "CUDAExecutionProvider", False),), ("onnxruntime-gpu 1.32.0",), True, "onnxruntime-gpu\\[cuda,cudnn\\]"),
    ((("tensorrt", "TensorrtExecutionProvider", False), ("cuda", "CUDAExecutionProvider", True)),
     ("onnxruntime-gpu 1.32.0",), True, "TensorRT does not load"),
])
def test_the_report_advises_what_to_install(checks, runtimes, gpus, expected):
    from modelpack._devices.report import Gpu, ProviderCheck, _advice

    found = (Gpu(0, "NVIDIA H100", 81559, "580.1"),) if gpus else ()
    advice = _advice(ort, tuple(ProviderCheck(*c) for c in checks), runtimes, found)
    assert any(re.search(expected, line) for line in advice), advice


# -- CUDA: the same promises on an NVIDIA GPU -------------------------------------------------------------------
CUDA = "CUDAExecutionProvider"
needs_cuda = pytest.mark.skipif(CUDA not in AVAILABLE, reason="needs onnxruntime-gpu and an NVIDIA GPU")


@pytest.mark.gpu
@needs_cuda
def test_report_proves_cuda_works():
    assert "cuda" in devices().working


@pytest.mark.gpu
@needs_cuda
def test_dense_mlp_runs_on_cuda_with_the_cpu_numbers(mlp):
    with modelpack.load(mlp, device="cuda", fallback=False) as m:
        assert m.providers[0] == CUDA
        placement = m.backend.placement()
        assert placement is None or placement[CUDA]["nodes"] >= 3
        np.testing.assert_allclose(m.run(X8)["Y"], _cpu_reference(mlp, X8), rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_a_tree_operator_on_cuda_runs_on_the_cpu_and_the_user_is_told(tree):
    with pytest.warns(PlacementWarning, match="TreeEnsembleRegressor"):
        m = modelpack.load(tree, device="cuda", fallback=False, engine="onnxruntime")  # the provider did load
    with m:
        assert m.providers == [CPU]
        x = np.array([[0.2, 0, 0], [0.9, 0, 0]], dtype=np.float32)
        np.testing.assert_array_equal(m.run(x)["Y"].ravel(), [1.0, 2.0])


@pytest.mark.gpu
@needs_cuda
def test_a_tree_model_on_cuda_runs_on_the_gpu_as_standard_operators(tree):
    with modelpack.load(tree, device="cuda", fallback=False) as m:
        assert "CUDAExecutionProvider" in m.providers and m.engine == "modelpack-trees"
        x = np.array([[0.2, 0, 0], [0.9, 0, 0]], dtype=np.float32)
        np.testing.assert_array_equal(m.run(x)["Y"].ravel(), [1.0, 2.0])


@pytest.mark.gpu
@needs_cuda
def test_a_missing_gpu_index_is_an_error_when_strict(mlp):
    with pytest.raises(modelpack.DeviceUnavailableError):
        modelpack.load(mlp, device="cuda:97", fallback=False)


@pytest.mark.parametrize(("name", "available", "device"), [
    ("gpu", [CPU], "coreml" if sys.platform == "darwin" else "cuda"),
    ("GPU", ["CUDAExecutionProvider", CPU], "cuda"),
    ("gpu:1", ["ROCMExecutionProvider", CPU], "rocm:1"),
    ("gpu", ["DmlExecutionProvider", "CUDAExecutionProvider", CPU], "cuda"),
    ("gpu", ["DmlExecutionProvider", CPU], "directml"),
    ("gpu", ["CoreMLExecutionProvider", CPU], "coreml"),
    ("cuda", [CPU], "cuda"),
])
def test_gpu_means_this_platforms_gpu_provider(name, available, device):
    from modelpack._devices import platform_gpu

    assert platform_gpu(name, available) == device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeviceWarning)  # the one missing when nothing is installed
        chosen = resolve_providers(name, None, True, available)
    wanted = parse_device(device)
    assert chosen[0] == (wanted if provider_name(wanted) in available else CPU)


def test_gpu_on_a_machine_without_one_falls_back_naming_what_to_install(add_one):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.warns(modelpack.DeviceWarning, match="CUDAExecutionProvider.*pip install 'modelpack\\[gpu\\]'"):
        with modelpack.load(add_one, device="gpu") as m:
            assert m.providers == [CPU]
    with pytest.raises(modelpack.DeviceUnavailableError):
        modelpack.load(add_one, device="gpu", fallback=False)


@pytest.mark.parametrize(("vendor", "suggested"), [("GenuineIntel", True), ("AuthenticAMD", False),
                                                   ("Apple", False), ("", False)])
def test_intel_software_is_suggested_on_intel_cpus_only(vendor, suggested):
    from modelpack._devices.report import ProviderCheck, _advice

    advice = _advice(ort, (ProviderCheck("cpu", CPU, True),), ("onnxruntime 1.32.0",), (), vendor=vendor)
    assert any("OpenVINO" in line or "openvino" in line for line in advice) is suggested, advice
