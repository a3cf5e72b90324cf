"""``modelpack serve``: the argparse sub-command, in-process and as a real process."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelpack import ModelpackError
from modelpack._cli.serve import add_parser

from .conftest import create_app, make_scaled

httpx = pytest.importorskip("httpx")

# The sub-command as the `modelpack` command wires it: through add_parser(subparsers).
LAUNCH = ("import argparse, sys; from modelpack._cli.serve import add_parser; "
          "p = argparse.ArgumentParser(prog='modelpack'); add_parser(p.add_subparsers()); "
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelpack")
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_defaults() -> None:
    args = parse("a.mpk")
    assert (args.packages, args.host, args.port, args.device) == (["a.mpk"], "127.0.0.1", 8080, "cpu")
    assert args.max_batch_size == 0 and args.max_body_size == 64.0
    assert (args.grpc_port, args.metrics, args.reload_interval, args.load_in_background) == (None, None, 0.0, False)


def test_openapi_flag_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--openapi")
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out) == create_app([]).openapi()


@pytest.mark.parametrize(("argv", "words"), [
    ((), "no package to serve"),
    (("x.mpk", "--threads", "0"), "--threads is 0"),
    (("x.mpk", "--max-batch-size", "-1"), "--max-batch-size is -1"),
    (("x.mpk", "--max-body-size", "-2"), "--max-body-size is -2"),
    (("x.mpk", "--grpc-port", "-1"), "--grpc-port is -1"),
    (("x.mpk", "--reload-interval", "-1"), "--reload-interval is -1"),
])
def test_bad_arguments_raise_with_the_fix(argv: tuple[str, ...], words: str) -> None:
    args = parse(*argv)
    with pytest.raises(ModelpackError, match=words):
        args.handler(args)


def test_a_missing_package_fails_before_listening(tmp_path: Path) -> None:
    args = parse(str(tmp_path / "absent.mpk"), "--port", "0")
    with pytest.raises(ModelpackError, match="absent.mpk"):
        args.handler(args)


def test_without_the_extra_the_command_says_what_to_install(packages: dict[str, Path]) -> None:
    code = ("import sys; sys.modules['uvicorn'] = None; " + LAUNCH)
    done = subprocess.run([sys.executable, "-c", code, "serve", str(packages["arith"])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'modelpack[serve]'" in done.stderr


def test_grpc_without_its_extra_says_what_to_install(packages: dict[str, Path]) -> None:
    code = ("import sys; sys.modules['grpc'] = None; " + LAUNCH)
    done = subprocess.run([sys.executable, "-c", code, "serve", str(packages["arith"]), "--grpc-port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'modelpack[grpc]'" in done.stderr


def test_a_taken_grpc_port_fails_before_loading(packages: dict[str, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = parse(str(packages["arith"]), "--port", "0", "--grpc-port", str(taken.getsockname()[1]))
        with pytest.raises(ModelpackError, match="cannot listen for gRPC"):
            args.handler(args)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_until_interrupted_with_renamed_packages(packages: dict[str, Path], tmp_path: Path) -> None:
    port, grpc_port = _free_port(), _free_port()
    v1, v2 = make_scaled(tmp_path, factor=2, version="1"), make_scaled(tmp_path, factor=3, version="2")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "serve", f"calc={packages['arith']}", str(packages["text"]),
         f"times={v1}", f"times={v2}", "--port", str(port), "--grpc-port", str(grpc_port),
         "--max-batch-size", "16", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v2/models/calc").json()["name"] == "calc"
        assert httpx.get(f"{url}/v2/models/arith").status_code == 404
        body = {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": ["dog"]}]}
        assert httpx.post(f"{url}/v2/models/text/infer", json=body).json()["outputs"][1]["data"] == [2]
        assert httpx.get(f"{url}/v2/models/times").json()["versions"] == ["1", "2"]
        tc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
        client = tc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_model_ready("times", "1") and client.get_model_metadata("calc").name == "calc"
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"serving calc 1.2.0 at http://127.0.0.1:{port}/v2/models/calc" in err  # said at start
    assert f"serving gRPC (inference.GRPCInferenceService) at 127.0.0.1:{grpc_port}" in err


def test_the_command_module_imports_no_web_stack() -> None:
    code = ("import sys, modelpack.serve, modelpack._cli.serve\n"
            "print(','.join(m for m in ('fastapi', 'starlette', 'uvicorn', 'pydantic', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_trusted_keys_refuse_an_unsigned_or_foreign_package_before_listening(packages, tmp_path) -> None:
    pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
    import shutil

    from modelpack import SignatureError
    from modelpack._package import generate_key, sign

    alice, mallory = generate_key(tmp_path / "alice"), generate_key(tmp_path / "mallory")
    signed = tmp_path / packages["arith"].name
    shutil.copy(packages["arith"], signed)
    sign(signed, tmp_path / "alice")
    for argv, words in (((str(signed), "--trusted-key", str(mallory)), "none of them is trusted"),
                        ((str(packages["arith"]), "--trusted-key", str(alice)), "not signed")):
        args = parse(*argv, "--port", "0")
        with pytest.raises(SignatureError, match=words):
            args.handler(args)
    app = create_app([signed], trusted_keys=[mallory, alice])  # one trusted signer is enough
    assert app.state.batchers is not None
