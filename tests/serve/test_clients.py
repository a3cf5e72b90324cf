"""The reference V2 clients, unchanged, against a real server: tritonclient.http and kserve."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from .conftest import IRIS_WEIGHTS, create_app, make_arith, make_iris, make_text, running


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("clients")
    app = create_app([make_arith(folder), make_text(folder), make_iris(folder)])
    with running(app) as base:
        yield base


# -- tritonclient.http -----------------------------------------------------------------
@pytest.fixture(scope="module")
def triton(url: str):
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    client = httpclient.InferenceServerClient(url.removeprefix("http://"), connection_timeout=30,
                                              network_timeout=30)
    yield httpclient, client
    client.close()


def test_tritonclient_health_and_metadata(triton) -> None:
    _, client = triton
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("arith") and client.is_model_ready("arith", "1.2.0")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("arith")
    assert [i["name"] for i in meta["inputs"]] == ["a", "b"]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification", "model_repository"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer(triton, binary: bool) -> None:
    httpclient, client = triton
    a = np.array([[1, 2, 3], [-1, -2, -3.5]], dtype=np.float32)
    b = np.array([5, 1], dtype=np.int64)
    inputs = [httpclient.InferInput("a", [2, 3], "FP32"), httpclient.InferInput("b", [2], "INT64")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("total", "doubled", "positive")]
    result = client.infer("arith", inputs, outputs=outputs, request_id="r1")
    np.testing.assert_allclose(result.as_numpy("total"), a.sum(axis=1) + b)
    np.testing.assert_array_equal(result.as_numpy("doubled"), 2 * b)
    np.testing.assert_array_equal(result.as_numpy("positive"), [True, False])
    assert result.get_response()["id"] == "r1"


def test_tritonclient_default_request_strings_and_all_outputs(triton) -> None:
    httpclient, client = triton
    s = np.array(["dog", "cat", "ünïcode", ""], dtype=object)
    item = httpclient.InferInput("s", [4], "BYTES")
    item.set_data_from_numpy(s)  # binary by default; no outputs named: all come back binary
    result = client.infer("text", [item])
    assert [v.decode() for v in result.as_numpy("echo")] == s.tolist()
    np.testing.assert_array_equal(result.as_numpy("code"), [2, 1, -1, -1])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(triton, algorithm: str) -> None:
    httpclient, client = triton
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    item = httpclient.InferInput("X", [2, 4], "FP32")
    item.set_data_from_numpy(x)
    result = client.infer("iris", [item], request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    np.testing.assert_allclose(result.as_numpy("Y"), x @ IRIS_WEIGHTS, rtol=1e-6)


def test_tritonclient_sees_the_servers_error_message(triton) -> None:
    httpclient, client = triton
    from tritonclient.utils import InferenceServerException

    item = httpclient.InferInput("a", [1, 3], "FP64")
    item.set_data_from_numpy(np.zeros((1, 3)))
    with pytest.raises(InferenceServerException, match="datatype FP64 where the model takes FP32"):
        client.infer("arith", [item])
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.get_model_metadata("nope")
    assert client.is_server_live()


# -- kserve -------------------------------------------------------------------------------
def test_kserve_rest_client(url: str) -> None:
    kserve = pytest.importorskip(
        "kserve", reason="kserve is not installed (it pins pandas<3 and protobuf<7, so it has an environment "
                         "of its own: `make test-kserve` runs this test there)")

    async def calls() -> None:
        client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", retries=0, timeout=30))
        try:
            assert await client.is_server_live(url) and await client.is_server_ready(url)
            assert await client.is_model_ready(url, "iris")
            x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
            item = kserve.InferInput("X", [1, 4], "FP32")
            item.set_data_from_numpy(x, binary_data=False)
            request = kserve.InferRequest(model_name="iris", infer_inputs=[item], request_id="7")
            response = await client.infer(url, request, model_name="iris")
            assert response.id == "7"
            np.testing.assert_allclose(response.outputs[0].as_numpy(), x @ IRIS_WEIGHTS, rtol=1e-6)
            s = kserve.InferInput("s", [2], "BYTES")
            s.set_data_from_numpy(np.array(["cat", "x"], dtype=object), binary_data=False)
            response = await client.infer(url, kserve.InferRequest(model_name="text", infer_inputs=[s]),
                                          model_name="text")
            assert {o.name: o.as_numpy().tolist() for o in response.outputs}["code"] == [1, -1]
        finally:
            await client.close()

    asyncio.run(calls())
