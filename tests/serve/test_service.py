"""Models coming and going on a running server: versions side by side, hot reload, the
repository extension, readiness while loading, and shutdown finishing what is in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelpack

from .conftest import create_app, make_scaled, make_slow, running

httpx = pytest.importorskip("httpx")
tc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")


def _rest_scaled(url: str, x: list[float], version: str | None = None) -> list[float]:
    path = "/v2/models/scaled" + (f"/versions/{version}" if version else "")
    body = {"inputs": [{"name": "x", "shape": [len(x)], "datatype": "FP32", "data": x}]}
    r = httpx.post(url + path + "/infer", json=body, timeout=30)
    r.raise_for_status()
    return r.json()["outputs"][0]["data"]


def _grpc_scaled(client, x: list[float], version: str = "") -> tuple[list[float], str]:
    item = tc.InferInput("x", [len(x)], "FP32")
    item.set_data_from_numpy(np.array(x, np.float32))
    result = client.infer("scaled", [item], model_version=version)
    return result.as_numpy("y").tolist(), result.get_response().model_version


def test_several_versions_of_a_model_at_once_over_rest_and_grpc(tmp_path: Path) -> None:
    v1, v2 = make_scaled(tmp_path, factor=2, version="1"), make_scaled(tmp_path, factor=3, version="2")
    app = create_app([v1, v2], grpc_port=0)
    with running(app) as url:
        assert _rest_scaled(url, [1.0], "1") == [2.0] and _rest_scaled(url, [1.0], "2") == [3.0]
        assert _rest_scaled(url, [1.0]) == [3.0]  # without a version: the last one given
        assert httpx.get(f"{url}/v2/models/scaled").json()["versions"] == ["1", "2"]
        assert httpx.get(f"{url}/v2/models/scaled/versions/1/ready").json() == {"ready": True}
        assert httpx.get(f"{url}/v2/models/scaled/versions/3/ready").status_code == 404
        client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
        assert _grpc_scaled(client, [1.0], "1") == ([2.0], "1")
        assert _grpc_scaled(client, [1.0]) == ([3.0], "2")
        assert client.get_model_metadata("scaled", "1", as_json=True)["versions"] == ["1", "2"]
        client.close()


def test_a_changed_package_is_reloaded_without_dropping_a_request(tmp_path: Path) -> None:
    path = make_scaled(tmp_path, factor=2, version="1", dest=tmp_path / "live.mpk")
    app = create_app([path], grpc_port=0, reload_interval=0.05)
    failures: list[BaseException] = []
    seen: set[float] = set()
    stop = threading.Event()
    with running(app) as url:
        client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")

        def hammer(use_grpc: bool) -> None:
            while not stop.is_set():
                try:
                    y = _grpc_scaled(client, [1.0])[0] if use_grpc else _rest_scaled(url, [1.0])
                    seen.add(y[0])
                except BaseException as exc:  # noqa: BLE001 (every failure is a dropped request)
                    failures.append(exc)

        threads = [threading.Thread(target=hammer, args=(g,)) for g in (True, False, True, False)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        make_scaled(tmp_path, factor=5, version="2", dest=path)  # modelpack writes by an atomic rename
        deadline = time.monotonic() + 20
        while 5.0 not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert httpx.get(f"{url}/v2/models/scaled").json()["versions"] == ["2"]
        client.close()
    assert failures == []
    assert seen == {2.0, 5.0}


def test_a_broken_rewrite_keeps_the_old_model_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_scaled(tmp_path, factor=2, version="1", dest=tmp_path / "live.mpk")
    app = create_app([path], reload_interval=0.05)
    with running(app) as url:
        path.write_bytes(b"PK\x03\x04 not a package")
        deadline = time.monotonic() + 10
        while "keeps serving" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reloading scaled" in caplog.text and "keeps serving" in caplog.text
        assert _rest_scaled(url, [1.0]) == [2.0]


def test_repository_index_unload_and_load(tmp_path: Path) -> None:
    path = make_scaled(tmp_path, factor=2, version="1")
    app = create_app([path], grpc_port=0)
    with running(app) as url:
        client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
        index = httpx.post(f"{url}/v2/repository/index").json()
        assert index == [{"name": "scaled", "version": "1", "state": "READY", "reason": ""}]
        client.unload_model("scaled")
        assert not client.is_model_ready("scaled")
        assert httpx.post(f"{url}/v2/repository/index", json={"ready": True}).json() == []
        r = httpx.post(f"{url}/v2/models/scaled/infer", json={"inputs": []})
        assert r.status_code == 503 and "/v2/repository/models/scaled/load" in r.json()["error"]
        with pytest.raises(Exception, match="UNAVAILABLE"):
            _grpc_scaled(client, [1.0])
        assert httpx.post(f"{url}/v2/repository/models/scaled/load").status_code == 200
        assert _grpc_scaled(client, [2.0]) == ([4.0], "1")
        r = httpx.post(f"{url}/v2/repository/models/other/load")
        assert r.status_code == 404 and "other" in r.json()["error"]
        path.write_bytes(b"not a package")  # a failed load names no server path to the client
        r = httpx.post(f"{url}/v2/repository/models/scaled/load")
        assert r.status_code == 503 and "failed to load" in r.json()["error"] and str(tmp_path) not in r.text
        assert _grpc_scaled(client, [2.0]) == ([4.0], "1")  # the loaded version goes on serving
        index = client.get_model_repository_index(as_json=True)["models"]
        assert [(m["name"], m["state"]) for m in index] == [("scaled", "READY")]
        client.close()


@pytest.mark.parametrize(("path", "body", "words"), [
    ("index", b"[1]", "invalid at body"), ("index", b"nope", "not valid JSON"),
    ("index", b'{"ready": "false"}', "invalid at ready"),
    ("models/scaled/load", b'{"parameters": {"file:1/model.onnx": "eA=="}}', "without parameters"),
    ("models/scaled/load", b'{"parameters": 1}', "invalid at parameters"),
])
def test_repository_requests_that_do_not_fit_get_400(tmp_path: Path, path: str, body: bytes, words: str) -> None:
    app = create_app([make_scaled(tmp_path, factor=2, version="1")])
    with running(app) as url:
        r = httpx.post(f"{url}/v2/repository/{path}", content=body)
        assert r.status_code == 400 and words in r.json()["error"], r.text
        assert _rest_scaled(url, [1.0]) == [2.0]


def test_a_reload_racing_an_unload_leaves_the_model_unloaded(tmp_path: Path) -> None:
    path = make_scaled(tmp_path, factor=2, version="1", dest=tmp_path / "live.mpk")
    service = create_app([path]).state.service
    make_scaled(tmp_path, factor=5, version="2", dest=path)

    async def race() -> None:
        reload = asyncio.create_task(service.reload_changed())
        await asyncio.sleep(0)  # the reload is now loading the new package on a worker thread
        await service.unload_model("scaled")
        await reload

    asyncio.run(race())
    assert list(service.repository) == []
    assert service.repository.index() == [{"name": "scaled", "version": "", "state": "UNAVAILABLE",
                                           "reason": "unloaded"}]


def test_readiness_is_false_while_a_model_loads(tmp_path: Path) -> None:
    scaled = make_scaled(tmp_path, factor=2, version="1")
    app = create_app([scaled], threads=1)
    loader = app.state.service.loader
    real_open = loader.open

    def slow_open(*args: Any) -> Any:
        # A real load, held open long enough for the readiness answers to be read while it runs,
        # however fast this machine loads a small package.
        time.sleep(0.5)
        return real_open(*args)

    with running(app) as url:
        httpx.post(f"{url}/v2/repository/models/scaled/unload").raise_for_status()
        loader.open = slow_open
        load = threading.Thread(target=httpx.post, args=(f"{url}/v2/repository/models/scaled/load",),
                                kwargs={"timeout": 60})
        load.start()
        seen = []
        while load.is_alive():
            states = {m["name"]: m["state"] for m in httpx.post(f"{url}/v2/repository/index").json()}
            seen.append((states["scaled"], httpx.get(f"{url}/v2/health/ready").json()["ready"],
                         httpx.get(f"{url}/v2/models/scaled/ready").status_code))
            time.sleep(0.05)
        assert httpx.get(f"{url}/v2/health/ready").json()["ready"]
        assert httpx.get(f"{url}/v2/models/scaled/ready").json()["ready"]
    assert ("LOADING", False, 503) in seen


def _slow_binary(url: str, x: np.ndarray) -> np.ndarray:
    """The slow model's answer over REST with binary tensors (no JSON to encode for seconds)."""
    header = (b'{"inputs":[{"name":"X","shape":[%d,256],"datatype":"FP32","parameters":{"binary_data_size":%d}}],'
              b'"parameters":{"binary_data_output":true}}' % (len(x), x.nbytes))
    r = httpx.post(f"{url}/v2/models/slow/infer", content=header + x.tobytes(), timeout=60,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    n = int(r.headers["inference-header-content-length"])
    return np.frombuffer(r.content[n:], "<f4").reshape(x.shape)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_shutdown_finishes_requests_in_flight(tmp_path: Path, protocol: str) -> None:
    app = create_app([make_slow(tmp_path, layers=96)], grpc_port=0)
    x = np.random.default_rng(1).normal(size=(4000, 256)).astype(np.float32)
    answers: list[np.ndarray] = []
    with running(app) as url:
        if protocol == "grpc":
            client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
            item = tc.InferInput("X", list(x.shape), "FP32")
            item.set_data_from_numpy(x)

            def call() -> None:
                answers.append(client.infer("slow", [item]).as_numpy("Y"))
        else:
            def call() -> None:
                answers.append(_slow_binary(url, x))

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.4)  # the run is under way when the server is told to stop
    caller.join()
    assert len(answers) == 1
    np.testing.assert_allclose(answers[0], x, rtol=1e-5, atol=1e-5)


def test_models_passed_in_are_served_under_a_pair_name_and_never_closed(tmp_path: Path) -> None:
    model = modelpack.load(make_scaled(tmp_path, factor=4, version="7"))
    app = create_app([("times4", model)])
    with running(app) as url:
        r = httpx.post(f"{url}/v2/models/times4/infer",
                       json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
        assert r.json()["outputs"][0]["data"] == [4.0]
    assert model.run(np.array([1.0], np.float32))["y"].tolist() == [4.0]  # still open
    model.close()


def test_loading_in_background_answers_at_once_and_is_ready_when_loaded(tmp_path: Path) -> None:
    good, bad = make_scaled(tmp_path, factor=2, version="1"), make_scaled(tmp_path, factor=3, version="1",
                                                                            name="broken")
    app = create_app([good, bad], load_in_background=True, grpc_port=0)
    repo = app.state.service.repository
    assert not repo.ready() and repo.states == {"scaled": ("LOADING", ""), "broken": ("LOADING", "")}
    bad.write_bytes(b"damaged after the manifest was read")
    with running(app) as url:
        deadline = time.monotonic() + 20
        while not httpx.get(f"{url}/v2/health/ready").json()["ready"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rest_scaled(url, [1.0]) == [2.0]
        client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
        assert client.is_model_ready("scaled") and not client.is_model_ready("broken")
        client.close()
        index = {m["name"]: m["state"] for m in httpx.post(f"{url}/v2/repository/index").json()}
    assert index == {"scaled": "READY", "broken": "UNAVAILABLE"}
