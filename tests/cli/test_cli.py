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
