"""The committed OpenAPI document is current, and real traffic fits what it documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import V2_CORPUS, create_app

jsonschema = pytest.importorskip("jsonschema")
httpx = pytest.importorskip("httpx")

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app([]).openapi()


def test_committed_document_is_current(document: dict[str, Any]) -> None:
    committed = json.loads(DOCUMENT.read_text())
    assert committed == document, (
        "docs/openapi.json is out of date: regenerate it with `modelpack serve --openapi > docs/openapi.json`")


def test_every_route_is_documented_with_its_error_body(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for route in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
                  "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/infer",
                  "/v2/models/{name}/versions/{version}/predict"):
        assert route in paths
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"400", "404", "413", "500"} <= set(infer["responses"])
    assert "version" not in [p["name"] for p in infer["parameters"]]


def _validator(document: dict[str, Any], schema: str) -> Any:
    root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def test_real_responses_fit_the_documented_schemas(document: dict[str, Any], server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as c:
        pairs = [
            (c.get("/v2").json(), "ServerMetadata"),
            (c.get("/v2/models/churn").json(), "ModelMetadata"),
            (c.get("/v2/models/nope").json(), "ErrorResponse"),
            (c.post("/v2/models/text/infer", json={"inputs": [
                {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["cat"]}]}).json(), "InferenceResponse"),
            (c.post("/v2/models/churn/predict", json={"records": [
                {"age": 3, "spend": 4, "plan": "pro"}]}).json(), "PredictResponse"),
        ]
    for body, schema in pairs:
        errors = list(_validator(document, schema).iter_errors(body))
        assert not errors, (schema, errors[0].message)
    bad = {"model_name": "x", "outputs": [{"name": "y", "shape": "oops", "datatype": "FP32"}]}
    assert list(_validator(document, "InferenceResponse").iter_errors(bad))  # the check can fail


def test_corpus_requests_fit_the_request_schema(document: dict[str, Any]) -> None:
    if not V2_CORPUS.is_dir():
        pytest.skip(f"the V2 corpus is absent ({V2_CORPUS})")
    validator = _validator(document, "InferenceRequest")
    request = json.loads((V2_CORPUS / "mlserver-testdata" / "inference-request.json").read_text())
    assert not list(validator.iter_errors(request))
    assert list(validator.iter_errors({"inputs": [{"name": "x", "shape": ["1"], "datatype": "FP32"}]}))
