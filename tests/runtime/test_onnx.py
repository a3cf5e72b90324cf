"""The ONNX Runtime backend: placement, session settings, CPU quota, optimized-model cache, IO binding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelpack
from modelpack._devices import CPU, DeviceWarning
from modelpack._devices import cgroup as _cgroup
from modelpack._package import write_package
from modelpack._runtime.settings import SETTINGS
from modelpack.manifest import Runtime

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def dense(tmp_path: Path) -> Path:
    """Y = relu(X @ W + B), X float32 [N, 8], written as a package."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "B")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["a"]),
             helper.make_node("Relu", ["a"], ["Y"])]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 6])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "dense.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _package(model: Path, dest: Path, session: dict | None = None) -> Path:
    """A package of ``model`` whose manifest stores ``session`` settings."""
    manifest = modelpack.pack(model, dest.with_name(dest.stem + "-plain.mpk"))
    manifest = manifest.replace(runtime=Runtime(requires=manifest.runtime.requires, session=session or {}))
    write_package(dest, manifest, {manifest.model.file: model.read_bytes()})
    return dest


X = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)


def _reference(model: Path) -> np.ndarray:
    return ort.InferenceSession(str(model), providers=[CPU]).run(None, {"X": X})[0]


# -- placement ---------------------------------------------------------------------------------------
def test_placement_reports_the_optimized_graph_per_provider(add_one, dense):
    with modelpack.load(add_one) as m:
        assert m.backend.placement() == {CPU: {"nodes": 1, "ops": {"Add": 1}}}
    with modelpack.load(dense) as m:
        placement = m.backend.placement()
    assert placement[CPU]["nodes"] < 3  # MatMul + Add (+ Relu) were fused
    assert "MatMul" not in placement[CPU]["ops"]


def test_placement_is_a_copy(add_one):
    with modelpack.load(add_one) as m:
        m.backend.placement()[CPU]["ops"]["Add"] = 99
        assert m.backend.placement()[CPU]["ops"] == {"Add": 1}


# -- session settings ---------------------------------------------------------------------------------
def test_settings_stored_in_the_package_are_applied(dense, tmp_path):
    pkg = _package(dense, tmp_path / "d.mpk", {"graph_optimization_level": "disable", "intra_op_num_threads": 1,
                                                "config": {"session.set_denormal_as_zero": "1"}})
    with modelpack.load(pkg) as m:
        assert m.backend.placement()[CPU]["ops"] == {"Add": 1, "MatMul": 1, "Relu": 1}  # nothing fused
        options = m.backend.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"
        np.testing.assert_allclose(m.run(X)["Y"], _reference(dense), rtol=1e-6)


def test_load_overrides_the_package_settings(dense, tmp_path):
    pkg = _package(dense, tmp_path / "d.mpk", {"graph_optimization_level": "disable"})
    with modelpack.load(pkg, session_options={"graph_optimization_level": "all",
                                              "execution_mode": "parallel", "inter_op_num_threads": 2}) as m:
        assert "MatMul" not in m.backend.placement()[CPU]["ops"]
        assert m.backend.session.get_session_options().execution_mode == ort.ExecutionMode.ORT_PARALLEL


def test_a_package_cannot_set_entries_that_touch_files(dense, tmp_path):
    target = tmp_path / "written-by-the-package.onnx"
    pkg = _package(dense, tmp_path / "d.mpk", {"config": {"ep.context_enable": "1",
                                                          "ep.context_file_path": str(target)}})
    with pytest.warns(DeviceWarning, match=r"ignoring session config entries \['ep.context_enable'"):
        m = modelpack.load(pkg)
    with m:
        options = m.backend.session.get_session_options()
        with pytest.raises(RuntimeError, match="does not have configuration with key"):
            options.get_session_config_entry("ep.context_enable")
    assert not target.exists()


def test_a_package_cannot_ask_for_more_threads_than_the_process_may_use(dense, tmp_path):
    pkg = _package(dense, tmp_path / "d.mpk", {"intra_op_num_threads": 4096})
    with modelpack.load(pkg) as m:
        assert m.backend.session.get_session_options().intra_op_num_threads == _cgroup.usable_cpus()
    with modelpack.load(pkg, session_options={"intra_op_num_threads": 3}) as m:  # the caller may
        assert m.backend.session.get_session_options().intra_op_num_threads == 3


@pytest.mark.parametrize(("settings", "match"), [
    ({"threads": 2}, "unknown session setting"), ({"graph_optimization_level": "max"}, "is not one of"),
    ({"intra_op_num_threads": "2"}, "whole number"), ({"intra_op_num_threads": -1}, "whole number"),
    ({"enable_cpu_mem_arena": "no"}, "true or false"), ({"config": ["a"]}, "is not a mapping"),
    ({"graph_optimization_level": ["all"]}, "is not one of"), ({"log_severity_level": 2**70}, "from 0 to 4"),
    ({"config": {"session.intra_op.allow_spinning": [1]}}, "not name: string or number"),
    ({"execution_mode": "async"}, "is not one of")])
def test_bad_settings_name_the_setting(add_one, settings, match):
    with pytest.raises(modelpack.DeviceError, match=match):
        modelpack.load(add_one, session_options=settings)


HOSTILE_VALUES = [None, "x", [], {}, -1, 2**70, 1.5, True, {"a": [1]}, [1], "1"]


def _valid(key: str, value: object) -> bool:
    """The few of HOSTILE_VALUES that a setting takes."""
    if key == "optimized_model_cache":  # a path is replaced by the default cache, with a warning
        return value is None or isinstance(value, (bool, str))
    if key in ("enable_cpu_mem_arena", "enable_mem_pattern"):
        return value is True
    return key == "config" and value == {}


@pytest.mark.parametrize("key", [*SETTINGS, "unknown_key"])
def test_hostile_stored_settings_are_manifest_errors(add_one, tmp_path, key):
    """A package's JSON can hold any type in any setting: each is refused, naming it, at load."""
    for i, value in enumerate(v for v in HOSTILE_VALUES if not _valid(key, v)):
        pkg = _package(add_one, tmp_path / f"s{i}.mpk", {key: value})
        with pytest.raises(modelpack.ManifestError, match=rf"runtime\.session\.{key} = .*Do not load"):
            modelpack.load(pkg)


# -- CPU quota -------------------------------------------------------------------------------------------
def _cgroup_tree(root: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    own = root / "self-cgroup"
    own.write_text(lines)
    return root, own


@pytest.mark.parametrize(("lines", "files", "quota"), [
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    ("0::/kubepods/pod1/c1\n", {"kubepods/cpu.max": "400000 100000", "kubepods/pod1/c1/cpu.max": "max 100000",
                                "kubepods/pod1/cpu.max": "250000 100000"}, 2.5),
    ("4:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/cpu.cfs_quota_us": "200000",
                                     "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 2.0),
    ("4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
    ("0::/\n", {"cpu.max": "garbage"}, None),
    ("0::/\n", {}, None),
])
def test_cpu_quota_is_read_from_cgroup_v2_and_v1(tmp_path, lines, files, quota):
    root, own = _cgroup_tree(tmp_path, lines, files)
    assert _cgroup.cpu_quota(root, own) == quota


def test_usable_cpus_rounds_the_quota_down_but_keeps_one(tmp_path):
    root, own = _cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "50000 100000"})
    assert _cgroup.usable_cpus(root, own) == 1
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _cgroup.usable_cpus(tmp_path / "none", tmp_path / "missing") == affinity


def test_threads_default_to_the_container_quota(dense, tmp_path, monkeypatch):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs to tell a quota of 1 from the default")
    root, own = _cgroup_tree(tmp_path / "cg", "0::/\n", {"cpu.max": "100000 100000"})
    monkeypatch.setattr(_cgroup, "ROOT", root)
    monkeypatch.setattr(_cgroup, "SELF", own)
    with modelpack.load(dense) as m:
        assert m.backend.session.get_session_options().intra_op_num_threads == 1


# -- optimized-model cache ------------------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(folder))
    return folder


def test_the_cache_is_filled_once_then_read(dense, tmp_path, cache):
    pkg = _package(dense, tmp_path / "d.mpk")
    with modelpack.load(pkg) as m:
        assert not cache.exists()  # off unless asked for
    with modelpack.load(pkg, session_options={"optimized_model_cache": True}) as m:
        first = m.run(X)["Y"]
    (entry,) = cache.iterdir()
    assert entry.suffix == ".onnx" and "-cpu-" in entry.name
    with modelpack.load(pkg, session_options={"optimized_model_cache": True}) as m:
        assert Path(m.backend.session._model_path) == entry  # loaded from the cache, not the package
        np.testing.assert_array_equal(m.run(X)["Y"], first)
    np.testing.assert_allclose(first, _reference(dense), rtol=1e-6)


def test_the_cache_key_follows_the_settings(dense, tmp_path, cache):
    pkg = _package(dense, tmp_path / "d.mpk")
    for level in ("basic", "all"):
        modelpack.load(pkg, session_options={"optimized_model_cache": True, "graph_optimization_level": level}).close()
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_cache_entry_is_rebuilt(dense, tmp_path, cache):
    pkg = _package(dense, tmp_path / "d.mpk")
    modelpack.load(pkg, session_options={"optimized_model_cache": True}).close()
    (entry,) = cache.iterdir()
    entry.write_bytes(b"truncated")
    with modelpack.load(pkg, session_options={"optimized_model_cache": True}) as m:
        np.testing.assert_allclose(m.run(X)["Y"], _reference(dense), rtol=1e-6)
    assert entry.stat().st_size > 100


def test_a_package_may_switch_the_cache_on_but_not_point_it(dense, tmp_path, cache):
    elsewhere = tmp_path / "chosen-by-the-package"
    pkg = _package(dense, tmp_path / "d.mpk", {"optimized_model_cache": str(elsewhere)})
    with pytest.warns(DeviceWarning, match="only load\\(\\) may choose one"):
        modelpack.load(pkg).close()
    assert not elsewhere.exists() and len(list(cache.iterdir())) == 1


def test_load_may_choose_the_cache_folder(dense, tmp_path, cache):
    chosen = tmp_path / "mine"
    modelpack.load(dense, session_options={"optimized_model_cache": str(chosen)}).close()
    assert len(list(chosen.iterdir())) == 1 and not cache.exists()


# -- IO binding and DLPack ---------------------------------------------------------------------------------------
def test_run_bound_takes_numpy_and_returns_ortvalues(dense):
    with modelpack.load(dense) as m:
        (y,) = m.backend.run_bound({"X": X})
        assert isinstance(y, ort.OrtValue)
        np.testing.assert_allclose(y.numpy(), _reference(dense), rtol=1e-6)
        (y,) = m.backend.run_bound(X, ["Y"])  # one input: the value alone is enough
        np.testing.assert_allclose(y.numpy(), _reference(dense), rtol=1e-6)


def test_run_bound_takes_torch_tensors_through_dlpack_without_a_copy(dense):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(X.copy())
    with modelpack.load(dense) as m:
        (y,) = m.backend.run_bound({"X": x})
    out = torch.from_dlpack(y)
    assert out.shape == (5, 6) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _reference(dense), rtol=1e-6)


class _Producer:
    """Any DLPack producer: here numpy's own protocol behind a foreign type."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __dlpack__(self, **kwargs: object) -> object:
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._array.__dlpack_device__()


def test_run_bound_takes_any_dlpack_producer(dense):
    with modelpack.load(dense) as m:
        (y,) = m.backend.run_bound({"X": _Producer(X.copy())})
    np.testing.assert_allclose(y.numpy(), _reference(dense), rtol=1e-6)


@pytest.mark.parametrize(("feeds", "error", "match"), [
    ({"x": X}, modelpack.MissingColumnError, "inputs do not match"),
    ({"X": X, "extra": X}, modelpack.MissingColumnError, "inputs do not match"),
    ({"X": X.astype(np.float64)}, modelpack.DTypeError, "expected tensor\\(float\\), got tensor\\(double\\)"),
])
def test_run_bound_bad_inputs(dense, feeds, error, match):
    with modelpack.load(dense) as m, pytest.raises(error, match=match):
        m.backend.run_bound(feeds)


def test_run_bound_unknown_output_and_closed_model(dense):
    m = modelpack.load(dense)
    with pytest.raises(modelpack.InputError, match="unknown output"):
        m.backend.run_bound({"X": X}, ["Z"])
    m.close()
    with pytest.raises(modelpack.RuntimeBackendError, match="closed"):
        m.backend.run_bound({"X": X})


def test_a_single_value_for_a_multi_input_model_is_refused(multi_io):
    with modelpack.load(multi_io) as m, pytest.raises(modelpack.MissingColumnError, match="several inputs"):
        m.backend.run_bound(np.zeros((1, 2), np.float32))


def _cuda() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_inputs_and_outputs_stay_on_the_gpu(dense):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA build of torch")
    with modelpack.load(dense, device="cuda", fallback=False) as m:
        assert m.providers[0] == "CUDAExecutionProvider"
        (y,) = m.backend.run_bound({"X": torch.from_numpy(X).cuda()})
        assert y.device_name().lower() == "cuda"
        out = torch.from_dlpack(y)
        assert out.is_cuda
        np.testing.assert_allclose(out.cpu().numpy(), _reference(dense), rtol=1e-4, atol=1e-5)


class _PublicOnly:
    """A real InferenceSession seen through its public methods only, as an onnxruntime
    whose wrapper keeps no ``_sess`` binding would show it."""

    def __init__(self, session: object) -> None:
        self._inner = session

    def __getattr__(self, name: str) -> object:
        if name == "_sess":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_session_without_the_private_binding_runs_through_the_public_method(dense):
    from modelpack._runtime.onnx import OnnxBackend

    with modelpack.load(dense) as m:
        public = OnnxBackend(_PublicOnly(m.backend._session), ort, m.backend._package)
        assert public._run.__func__ is ort.InferenceSession.run
        np.testing.assert_array_equal(public.run({"X": X})[0], m.backend.run({"X": X})[0])
        errors = []
        for backend in (public, m.backend):  # ONNX Runtime's own errors, mapped the same way
            with pytest.raises(modelpack.InputError, match=r"tensor\(double\)") as caught:
                backend.run({"X": X.astype(np.float64)})
            errors.append(str(caught.value))
        assert errors[0] == errors[1]
