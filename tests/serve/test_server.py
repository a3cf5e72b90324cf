"""A real uvicorn server on loopback, driven with plain HTTP (httpx)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from .conftest import IRIS_WEIGHTS, V2_CORPUS

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def client(server: str):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def arith_body(a: list[list[float]], b: list[int], **extra: object) -> dict:
    return {"inputs": [{"name": "a", "shape": [len(a), 3], "datatype": "FP32", "data": a},
                       {"name": "b", "shape": [len(b)], "datatype": "INT64", "data": b}], **extra}


def test_health_and_server_metadata(client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "modelpack" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_comes_from_the_manifest(client) -> None:
    meta = client.get("/v2/models/arith").json()
    assert meta["versions"] == ["1.2.0"]
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                              {"name": "b", "datatype": "INT64", "shape": [-1]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("total", "FP32"), ("doubled", "INT64"), ("positive", "BOOL")]
    churn = client.get("/v2/models/churn/versions/2.0.0").json()
    assert churn["inputs"][2] == {"name": "plan", "datatype": "BYTES", "shape": [-1, 1]}
    assert churn["outputs"][1] == {"name": "output_probability", "datatype": "FP32", "shape": [-1, 2]}
    assert json.loads(churn["parameters"]["classes"]) == ["no", "yes"]
    assert client.get("/v2/models/churn/versions/2.0.0/ready").json() == {"ready": True}


def test_infer_json_runs_the_model(client) -> None:
    a = [[1.0, 2.0, 3.0], [-4.0, 0.5, 0.25]]
    r = client.post("/v2/models/arith/infer", json=arith_body(a, [10, -1], id="abc"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["id"] == "abc" and doc["model_name"] == "arith" and doc["model_version"] == "1.2.0"
    out = {o["name"]: o for o in doc["outputs"]}
    np.testing.assert_allclose(out["total"]["data"], np.sum(a, axis=1) + [10, -1])
    assert out["doubled"] == {"name": "doubled", "datatype": "INT64", "shape": [2], "data": [20, -2]}
    assert out["positive"]["data"] == [True, False]


def test_infer_returns_only_the_outputs_asked_for_with_versioned_url(client) -> None:
    body = arith_body([[1, 1, 1]], [2], outputs=[{"name": "doubled"}])
    doc = client.post("/v2/models/arith/versions/1.2.0/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["doubled"] and doc["outputs"][0]["data"] == [4]


def test_infer_binary_output_over_plain_http(client) -> None:
    body = arith_body([[1, 2, 3]], [1], outputs=[{"name": "total", "parameters": {"binary_data": True}},
                                                  {"name": "doubled"}])
    r = client.post("/v2/models/arith/infer", json=body)
    n = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:n])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4}
    assert np.frombuffer(r.content[n:], dtype="<f4").tolist() == [7.0]
    assert header["outputs"][1]["data"] == [2]


def test_string_input_and_string_output(client) -> None:
    body = {"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES", "data": ["cat", "dog", "émeu"]}]}
    out = {o["name"]: o for o in client.post("/v2/models/text/infer", json=body).json()["outputs"]}
    assert out["echo"]["datatype"] == "BYTES" and out["echo"]["data"] == ["cat", "dog", "émeu"]
    assert out["code"]["data"] == [1, 2, -1]


def test_classifier_infer_gives_labels_and_probability_tensor(client) -> None:
    body = {"inputs": [{"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [30, 50]},
                       {"name": "spend", "shape": [2, 1], "datatype": "FP32", "data": [95, 1]},
                       {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": ["pro", "basic"]}]}
    out = {o["name"]: o for o in client.post("/v2/models/churn/infer", json=body).json()["outputs"]}
    assert out["output_label"]["data"] == ["yes", "no"]
    proba = np.array(out["output_probability"]["data"]).reshape(out["output_probability"]["shape"])
    assert proba.shape == (2, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert proba[0, 1] > 0.5 > proba[1, 1]


@pytest.mark.parametrize("form", ["records", "columns"])
def test_predict_takes_records_or_columns(client, form: str) -> None:
    rows = [{"age": 30, "spend": 95.0, "plan": "pro"}, {"age": 50, "spend": 1.0, "plan": "basic"}]
    data = rows if form == "records" else {k: [r[k] for r in rows] for k in rows[0]}
    doc = client.post("/v2/models/churn/predict", json={form: data}).json()
    assert doc["predictions"] == ["yes", "no"]
    assert doc["classes"] == ["no", "yes"]
    assert np.argmax(doc["probabilities"], axis=1).tolist() == [1, 0]
    plain = client.post("/v2/models/churn/predict", json={form: data, "probabilities": False}).json()
    assert "probabilities" not in plain and plain["predictions"] == ["yes", "no"]


def test_predict_takes_input_arrays(client) -> None:
    doc = client.post("/v2/models/text/predict", json={"inputs": {"s": ["dog"]}})
    assert doc.status_code == 400  # two outputs and no role: predict cannot choose
    assert "run()" in doc.json()["error"]
    doc = client.post("/v2/models/fixed/predict", json={"inputs": {"x": [[1.5, -2]]}}).json()
    assert doc["predictions"] == [[-1.5, 2.0]] and "probabilities" not in doc


def _infer(name: str, body: object) -> tuple[str, str, bytes | object]:
    return ("POST", f"/v2/models/{name}/infer", body)


BAD = {
    "unknown model": (("GET", "/v2/models/nope", None), 404, "no model 'nope'"),
    "unknown version": (("GET", "/v2/models/arith/versions/9.9/ready", None), 404, "arith version 9.9"),
    "unknown route": (("GET", "/v3", None), 404, "GET /v3"),
    "wrong method": (("GET", "/v2/models/arith/infer", None), 405, "Method Not Allowed"),
    "not JSON": (_infer("arith", b"{nope"), 400, "not valid JSON"),
    "JSON not an object": (_infer("arith", b"[1, 2]"), 400, "invalid"),
    "wrong input name": (_infer("arith", {"inputs": [{"name": "z", "shape": [1], "datatype": "FP32",
                                                      "data": [1]}]}), 400, "input 'z': not an input of the model"),
    "missing input": (_infer("arith", {"inputs": [{"name": "b", "shape": [1], "datatype": "INT64",
                                                   "data": [1]}]}), 400, "input 'a': missing from the request"),
    "wrong datatype": (_infer("arith", {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP64",
                                                    "data": [1, 2, 3]}, {"name": "b", "shape": [1],
                                                                         "datatype": "INT64", "data": [1]}]}),
                       400, "datatype FP64 where the model takes FP32"),
    "wrong shape": (_infer("arith", {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32",
                                                 "data": [1, 2, 3, 4]}, {"name": "b", "shape": [1],
                                                                         "datatype": "INT64", "data": [1]}]}),
                    400, "shape [1, 4] does not fit [-1, 3]"),
    "wrong rank": (_infer("fixed", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                                "data": [1, 2]}]}), 400, "does not fit [1, 2]"),
    "fixed batch": (_infer("fixed", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                                 "data": [1, 2, 3, 4]}]}), 400, "does not fit [1, 2]"),
    "unknown output": (_infer("text", {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                                                   "data": ["a"]}], "outputs": [{"name": "nope"}]}),
                       400, "unknown output(s) ['nope']"),
    "rows disagree": (_infer("arith", arith_body([[1, 2, 3]], [1, 2])), 400, "dimension 'N' is 1 in input 'a'"),
    "predict two forms": (("POST", "/v2/models/churn/predict", {"records": [{"age": 1}], "columns": {"age": [1]}}),
                          400, "exactly one"),
    "predict unknown key": (("POST", "/v2/models/churn/predict", {"rows": []}), 400, "rows"),
    "predict missing column": (("POST", "/v2/models/churn/predict", {"records": [{"age": 1, "spend": 2}]}),
                               400, "plan"),
    "predict proba of a transform": (("POST", "/v2/models/fixed/predict", {"inputs": {"x": [[1, 2]]},
                                                                          "probabilities": True}),
                                     400, "predict_proba() needs a classifier"),
    "65 dimensions": (_infer("fixed", {"inputs": [{"name": "x", "shape": [1] * 65, "datatype": "FP32",
                                                   "data": [1]}]}), 400, "at most 64 dimensions"),
    "shape beyond int64": (_infer("fixed", {"inputs": [{"name": "x", "shape": [0, 2**70], "datatype": "FP32",
                                                        "data": []}]}), 400, "fewer than 2**63 bytes"),
    "zero rows of a huge shape": (_infer("fixed", {"inputs": [{"name": "x", "shape": [0, 2**62, 2**62],
                                                               "datatype": "FP32", "data": []}]}),
                                  400, "fewer than 2**63 bytes"),
    "ragged data": (_infer("fixed", {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                                 "data": [[1], [2, 3]]}]}), 400, "input 'x'"),
    "predict ragged columns": (("POST", "/v2/models/churn/predict",
                                {"columns": {"age": [1, 2], "spend": [1], "plan": ["pro", "pro"]}}),
                               400, "different numbers of rows"),
    "predict extra key": (("POST", "/v2/models/churn/predict",
                           {"records": [{"age": 1, "spend": 2, "plan": "pro", "pln": "x"}]}),
                          400, "unknown field(s) ['pln']"),
    "predict ragged input": (("POST", "/v2/models/fixed/predict", {"inputs": {"x": [[1, 2], [3]]}}),
                             400, "input 'x'"),
    "predict input beside the right one": (("POST", "/v2/models/fixed/predict",
                                            {"inputs": {"x": [[1, 2]], "y": [[1, 2]]}}),
                                           400, "unknown input(s) ['y']"),
    "model failure": (_infer("fragile", {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64",
                                                     "data": [4]}]}), 500, "fragile: ONNX Runtime"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_an_error_body_naming_the_problem(client, case: str) -> None:
    (method, path, body), status, words = BAD[case]
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    r = client.request(method, path, content=content)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error
    assert "/tmp" not in error and str(Path.home()) not in error  # no server paths leak
    assert client.get("/v2/health/live").status_code == 200  # and the server lives on


def test_oversized_bodies_get_413_by_length_or_while_streaming(client) -> None:
    big = b"x" * ((1 << 20) + 1)
    r = client.post("/v2/models/arith/infer", content=big)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"y" * 65536

    r = client.post("/v2/models/arith/infer", content=chunks())
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200


def test_concurrent_requests_all_get_their_own_answer(server: str) -> None:
    def worker(first: int) -> list[tuple[int, list[int]]]:
        answers = []
        with httpx.Client(base_url=server, timeout=30) as c:
            for k in range(first, first + 4):
                body = arith_body([[k, 0, 0]] * (k % 3 + 1), [k] * (k % 3 + 1), id=str(k))
                doc = c.post("/v2/models/arith/infer", json=body).json()
                answers.append((int(doc["id"]), doc["outputs"][1]["data"]))
        return answers

    with ThreadPoolExecutor(8) as pool:
        results = [a for answers in pool.map(worker, range(0, 32, 4)) for a in answers]
    assert results == [(k, [2 * k] * (k % 3 + 1)) for k in range(32)]


# -- the V2 corpus ---------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory: pytest.TempPathFactory):
    if not V2_CORPUS.is_dir():
        pytest.skip(f"the V2 corpus is absent ({V2_CORPUS})")
    from .conftest import create_app, make_iris, make_sum_model, running

    folder = tmp_path_factory.mktemp("corpus")
    app = create_app([make_iris(folder), make_sum_model(folder)])
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_mlserver_examples(corpus_server) -> None:
    folder = V2_CORPUS / "mlserver-testdata"
    request = json.loads((folder / "inference-request.json").read_text())
    expected = json.loads((folder / "inference-response.json").read_text())
    got = corpus_server.post("/v2/models/sum-model/infer", json=request).json()
    assert set(got) >= set(expected) - {"id"}
    (out,) = got["outputs"]
    (want,) = expected["outputs"]
    assert {k: out[k] for k in ("name", "datatype", "shape")} == {k: want[k] for k in ("name", "datatype", "shape")}
    assert out["data"] == [6.0]  # the model sums its input; the example response was made by another model
    meta = corpus_server.get("/v2/models/sum-model").json()
    example = json.loads((folder / "metadata-model-response.json").read_text())
    assert set(meta) >= set(example)
    assert set(meta["inputs"][0]) == set(example["inputs"][0])
    invalid = json.loads((folder / "inference-request-invalid-datatype.json").read_text())
    r = corpus_server.post("/v2/models/sum-model/infer", json=invalid)
    assert r.status_code == 400 and "INT322" in r.json()["error"]


def _recorded_requests() -> list[tuple[str, str, dict[str, str], bytes | None]]:
    import ast

    lines = (V2_CORPUS / "client-probe" / "requests.log").read_text().splitlines()
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = []
    for line in lines:
        if line.startswith("b'"):
            method, path, headers, _ = requests[-1]
            requests[-1] = (method, path, headers, ast.literal_eval(line))
        elif line.strip():
            head, _, rest = line.partition(" headers=")
            method, path = head.split()
            requests.append((method, path, ast.literal_eval(rest) if rest else {}, None))
    return requests


def test_recorded_tritonclient_and_kserve_requests_replay(corpus_server) -> None:
    recorded = _recorded_requests()
    assert len(recorded) == 10 and sum(p.endswith("/infer") for _, p, _, _ in recorded) == 3
    x = np.array([[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4]], dtype=np.float32)
    for method, path, headers, body in recorded:
        sent = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        r = corpus_server.request(method, path, content=body, headers=sent)
        assert r.status_code == 200, (path, r.text)
        if path.endswith("/ready") or path.endswith("/live"):
            assert r.json() in ({"ready": True}, {"live": True})
        if path.endswith("/infer"):
            if "inference-header-content-length" in r.headers:
                n = int(r.headers["inference-header-content-length"])
                doc, y = json.loads(r.content[:n]), np.frombuffer(r.content[n:], dtype="<f4")
            else:
                doc = r.json()
                y = np.array(doc["outputs"][0]["data"], dtype=np.float32)
            assert doc["id"] in ("42", "43") and doc["outputs"][0]["name"] == "Y"
            np.testing.assert_allclose(y.reshape(2, 3), x @ IRIS_WEIGHTS, rtol=1e-6)

