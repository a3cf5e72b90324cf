"""``GET /metrics``: Prometheus text from both protocols, read back with prometheus-client's parser."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest

from .conftest import create_app, make_arith, running

httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client", reason="modelpack[metrics] is not installed")
tc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _body(rows: int) -> dict:
    return {"inputs": [{"name": "a", "shape": [rows, 3], "datatype": "FP32", "data": [1.0] * 3 * rows},
                       {"name": "b", "shape": [rows], "datatype": "INT64", "data": [1] * rows}]}


def test_requests_latency_errors_and_batches_are_counted(tmp_path: Path) -> None:
    app = create_app([make_arith(tmp_path)], grpc_port=0, max_batch_size=32, max_latency_ms=20)
    with running(app) as url:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: httpx.post(f"{url}/v2/models/arith/infer", json=_body(1)).status_code,
                                  range(16)))
        assert codes == [200] * 16
        assert httpx.post(f"{url}/v2/models/arith/infer", json={"inputs": []}).status_code == 400
        assert httpx.post(f"{url}/v2/models/no-such-model/infer", json=_body(1)).status_code == 404
        client = tc.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
        items = [tc.InferInput("a", [2, 3], "FP32"), tc.InferInput("b", [2], "INT64")]
        items[0].set_data_from_numpy(np.ones((2, 3), np.float32))
        items[1].set_data_from_numpy(np.ones(2, np.int64))
        client.infer("arith", items)
        with pytest.raises(Exception, match="INVALID_ARGUMENT"):
            client.infer("arith", items[:1])
        client.close()
        samples = _samples(url)
    count = {labels: v for (name, labels), v in samples.items() if name == "modelpack_requests_total"}
    assert count[(("model", "arith"), ("protocol", "rest"), ("status", "200"))] == 16
    assert count[(("model", "arith"), ("protocol", "rest"), ("status", "400"))] == 1
    assert count[(("model", ""), ("protocol", "rest"), ("status", "404"))] == 1  # unknown names share one label
    assert count[(("model", "arith"), ("protocol", "grpc"), ("status", "200"))] == 1
    assert count[(("model", "arith"), ("protocol", "grpc"), ("status", "400"))] == 1
    assert samples["modelpack_request_seconds_count", (("model", "arith"), ("protocol", "rest"))] == 16
    batches = samples["modelpack_batch_requests_count", (("model", "arith"),)]
    assert samples["modelpack_batch_requests_sum", (("model", "arith"),)] == 17  # 16 REST + 1 gRPC
    assert samples["modelpack_batch_rows_sum", (("model", "arith"),)] == 18
    assert 1 <= batches <= 17


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with running(create_app([make_arith(tmp_path)], metrics=False)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404
