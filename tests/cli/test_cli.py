"""The modelpack command, run as users run it: a real subprocess of the console script."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack._cli import main

SCRIPT = shutil.which("modelpack", path=str(Path(sys.executable).parent))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True)


@pytest.mark.skipif(SCRIPT is None, reason="the modelpack console script is not installed in this environment")
def test_pack_inspect_verify_from_a_shell(add_one, tmp_path):
    out = run("pack", str(add_one), str(tmp_path / "a.mpk"), "--name", "adder", "--version", "1.0.0",
              "--metadata", '{"owner": "ml-team"}')
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "adder 1.0.0" in out.stdout
    shown = run("inspect", str(tmp_path / "a.mpk"))
    assert shown.returncode == 0 and "X: tensor float32 [N, 4]" in shown.stdout
    as_json = json.loads(run("inspect", "--json", str(tmp_path / "a.mpk")).stdout)
    assert as_json["metadata"] == {"owner": "ml-team"}
    verified = run("verify", str(tmp_path / "a.mpk"))
    assert verified.returncode == 0 and "OK" in verified.stdout


def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.mpk")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1


def test_verify_fails_with_status_1_on_a_tampered_package(add_one, tmp_path, capsys):
    modelpack.pack(add_one, tmp_path / "a", sample=np.ones((2, 4)))
    path = tmp_path / "a" / "samples" / "inputs.npz"
    path.write_bytes(path.read_bytes() + b"x")
    assert main(["verify", str(tmp_path / "a")]) == 1
    assert "samples/inputs.npz is larger than the" in capsys.readouterr().out


# -- signatures from the command line ------------------------------------------------------------
def test_trusted_keys_on_verify_predict_and_what_inspect_says(add_one, tmp_path, capsys):
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
    from modelpack._package import generate_key, key_id, sign

    alice, mallory = generate_key(tmp_path / "alice"), generate_key(tmp_path / "mallory")
    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((2, 4)))
    assert main(["inspect", str(tmp_path / "a.mpk")]) == 0
    assert "signature: none" in capsys.readouterr().out
    sign(tmp_path / "a.mpk", tmp_path / "alice")
    assert main(["inspect", str(tmp_path / "a.mpk")]) == 0
    assert f"signature: by key {key_id(alice)[:16]}… (not checked" in capsys.readouterr().out

    assert main(["verify", str(tmp_path / "a.mpk"), "--trusted-key", str(mallory), "--trusted-key", str(alice)]) == 0
    assert f"[ok] signature: signed by trusted key {key_id(alice)[:16]}" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "a.mpk")]) == 0
    assert "not checked: pass trusted_keys=" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "a.mpk"), "--trusted-key", str(mallory)]) == 1
    assert "none of them is trusted" in capsys.readouterr().out

    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n1,2,3,4\n")
    args = ["predict", str(tmp_path / "a.mpk"), "--input", str(rows), "--output", str(tmp_path / "out.csv")]
    assert main([*args, "--trusted-key", str(mallory)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "none of them is trusted" in err and err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()
    assert main([*args, "--trusted-key", str(alice)]) == 0 and (tmp_path / "out.csv").exists()


# -- hostile packages: one line, exit status 2 (verify: a failed report, status 1) ----------------
def _hostile(kind: str, add_one: Path, tmp_path: Path) -> Path:
    import os
    import zipfile

    folder = tmp_path / kind
    modelpack.pack(add_one, folder)
    manifest = json.loads((folder / "modelpack.json").read_text())
    if kind == "hard link":
        os.link(folder / "model.onnx", tmp_path / "elsewhere.onnx")
    elif kind == "session setting":
        manifest["runtime"]["session"] = {"graph_optimization_level": ["all"]}
    elif kind == "outputs":
        manifest["outputs"][0]["name"] = "Z"
    elif kind == "bomb":
        manifest["files"].append({"path": "pad.bin", "sha256": "0" * 64, "size": 64 * 2**20})
        archive = tmp_path / "bomb.mpk"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("modelpack.json", json.dumps(manifest))
            zf.write(folder / "model.onnx", "model.onnx")
            zf.writestr("pad.bin", b"\0" * 64 * 2**20)
        return archive
    (folder / "modelpack.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("kind, fragment", [
    ("hard link", "hard link"), ("bomb", "zip bomb"),
    ("session setting", "runtime.session.graph_optimization_level"), ("outputs", "the model file has"),
])
def test_hostile_packages_end_in_one_line_on_every_command(add_one, tmp_path, capsys, kind, fragment):
    path = _hostile(kind, add_one, tmp_path)
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n1,2,3,4\n")
    commands = [["predict", str(path), "--input", str(rows), "--output", str(tmp_path / "out.csv")]]
    if kind in ("hard link", "bomb"):  # container problems: inspect sees them too
        commands.append(["inspect", str(path)])
    for command in commands:
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert fragment in captured.err and str(path) in captured.err and "Traceback" not in captured.err
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and fragment in out
    assert not (tmp_path / "out.csv").exists()


# -- the command's manners -----------------------------------------------------------------------
def _actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a}", act) for a, act in _actions(sub))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield action.dest, action


def test_every_command_and_argument_has_help_and_shows_its_default():
    from modelpack._cli import build_parser

    parser = build_parser()
    found = list(_actions(parser))
    assert len(found) > 40
    assert [name for name, action in found if not action.help] == []
    text = " ".join(parser._subparsers._group_actions[0].choices["predict"].format_help().split())
    assert "(default: 65536)" in text and "(default: cpu)" in text and "(default: label)" in text
    assert "(default: None)" not in text


@pytest.mark.skipif(SCRIPT is None, reason="the modelpack console script is not installed in this environment")
def test_warnings_print_as_one_line(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((2, 4)))
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: nothing to warn about")
    done = run("verify", str(tmp_path / "a.mpk"), "--device", "gpu")
    assert done.returncode == 0 and "(on CPUExecutionProvider)" in done.stdout
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), done.stderr
    assert "CUDAExecutionProvider" in lines[0] and "running on the CPU" in lines[0]


@pytest.mark.skipif(SCRIPT is None, reason="the modelpack console script is not installed in this environment")
def test_a_reader_that_leaves_early_ends_the_command_quietly(add_one, tmp_path):
    modelpack.pack(add_one, tmp_path / "a.mpk", metadata={"notes": "x" * 200_000})  # more than a pipe holds
    proc = subprocess.Popen([SCRIPT, "inspect", "--json", str(tmp_path / "a.mpk")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)  # as `| head -c 10` does, then leave
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err and proc.returncode in (0, 1), err


def test_verify_on_a_device_that_is_not_here_says_where_it_ran_or_fails_when_strict(add_one, tmp_path, capsys):
    import warnings

    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    modelpack.pack(add_one, tmp_path / "a.mpk", sample=np.ones((2, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", modelpack.DeviceWarning)
        assert main(["verify", str(tmp_path / "a.mpk"), "--device", "cuda"]) == 0
    assert "OK (on CPUExecutionProvider)" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "a.mpk"), "--device", "cuda", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "CUDAExecutionProvider" in out and "not available" in out


def test_pack_stores_session_settings_from_the_command_line(add_one, tmp_path, capsys):
    assert main(["pack", str(add_one), str(tmp_path / "a.mpk"), "--session", '{"intra_op_num_threads": 1}']) == 0
    assert modelpack.inspect(tmp_path / "a.mpk").runtime.session == {"intra_op_num_threads": 1}
    assert main(["pack", str(add_one), str(tmp_path / "b.mpk"), "--session", '{"threads": 1}']) == 2
    assert "is not a setting modelpack knows" in capsys.readouterr().err
