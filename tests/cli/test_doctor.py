"""``modelpack doctor``: the machine, then a package, each problem with its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelpack
from modelpack._cli import main


def test_a_package_that_runs_here_is_all_fine(add_one, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((2, 4)))
    assert main(["doctor", str(tmp_path / "a.mpk")]) == 0
    out = capsys.readouterr().out
    for topic in ("python", "onnxruntime", "threads", "java", "package", "checksums", "recorded outputs", "runs on"):
        assert f"] {topic}: " in out, out
    assert "[!!]" not in out and "runs on: CPUExecutionProvider" in out


def test_a_package_newer_than_the_runtime_is_a_problem_with_the_fix(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from modelpack._formats import build_manifest, read_model_file
    from modelpack._package import write_package

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 99
    onnx.save(model, tmp_path / "new.onnx")
    _, data, _, desc = read_model_file(tmp_path / "new.onnx")
    manifest = build_manifest(desc, name="new")
    write_package(tmp_path / "new.mpk", manifest, {manifest.model.file: data})
    assert main(["doctor", str(tmp_path / "new.mpk")]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[!!]")]
    assert len(problems) == 1 and "IR version 99" in problems[0] and "Fix: Upgrade onnxruntime" in problems[0]


def test_a_hostile_package_is_a_problem_not_a_traceback(add_one, tmp_path, capsys):
    modelpack.pack(add_one, tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / "modelpack.json").read_text())
    manifest["runtime"]["session"] = {"intra_op_num_threads": "all"}
    (tmp_path / "p" / "modelpack.json").write_text(json.dumps(manifest))
    assert main(["doctor", str(tmp_path / "p")]) == 1
    out = capsys.readouterr().out
    assert "[!!] load:" in out and "runtime.session.intra_op_num_threads" in out


def test_the_machine_alone(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert out.startswith("[ok] python: ") and "] threads: " in out
    assert code == (1 if "[!!]" in out else 0)


def test_without_java_the_doctor_says_so_with_the_install_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    main(["doctor"])
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "] java: " in x]
    assert line.startswith("[--] java: ") and "needed only for PMML packages" in line and "Fix: Install Java" in line


def test_a_package_at_a_url_is_fetched_once(add_one, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fsspec")
    from modelpack._package import remote

    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((2, 4)))
    fetched = []
    real = remote.fetch

    def counted(url, **kwargs):
        fetched.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(remote, "fetch", counted)
    url = (tmp_path / "a.mpk").as_uri()
    assert main(["doctor", url]) == 0
    out = capsys.readouterr().out
    assert "] recorded outputs: " in out and "[!!]" not in out
    assert fetched == [url]
