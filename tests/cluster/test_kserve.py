"""KServe InferenceService manifests: parsed back as YAML and held to the fields KServe reads."""

from __future__ import annotations

import argparse

import pytest

from modelpack._cli.deploy import add_parsers as add_parser
from modelpack._package import open_package
from modelpack.deploy import inference_service, to_yaml, write_storage
from modelpack.errors import ConversionError, ModelpackError

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

DNS_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# What serving.kserve.io/v1beta1 InferenceService takes for a predictor with the "model" spec
# (KServe's CRD, spec.predictor.model = ModelSpec): anything else here would be a typo.
SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
                           "namespace": {"type": "string", "pattern": DNS_LABEL},
                           "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["predictor"],
            "properties": {"predictor": {
                "type": "object", "additionalProperties": False, "required": ["model"],
                "properties": {
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 0},
                    "model": {
                        "type": "object", "additionalProperties": False,
                        "required": ["modelFormat", "protocolVersion", "storageUri"],
                        "properties": {
                            "modelFormat": {"type": "object", "additionalProperties": False, "required": ["name"],
                                            "properties": {"name": {"enum": ["onnx", "pmml"]},
                                                           "version": {"type": "string"}}},
                            "protocolVersion": {"const": "v2"},
                            "storageUri": {"type": "string", "pattern": "^[a-z0-9]+://."},
                            "runtime": {"type": "string"},
                            "resources": {"type": "object", "additionalProperties": False,
                                          "properties": {"limits": {"type": "object",
                                                                    "additionalProperties": {"type": "string"}},
                                                         "requests": {"type": "object",
                                                                      "additionalProperties": {"type": "string"}}}},
                        }}}}}}},
}


def applied(resource: dict) -> dict:
    """What kubectl would read: the YAML text parsed back, checked against the schema."""
    text = to_yaml(resource)
    assert text.startswith("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n")
    doc = yaml.safe_load(text)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_onnx_service(classifier):
    doc = applied(inference_service(classifier.path, storage_uri="s3://models/iris"))
    model = doc["spec"]["predictor"]["model"]
    assert model == {"modelFormat": {"name": "onnx"}, "protocolVersion": "v2", "storageUri": "s3://models/iris"}
    assert doc["metadata"] == {"name": "iris", "annotations": {"modelpack/package": "iris",
                                                               "modelpack/version": "1.2.0"}}


def test_pmml_service_and_derived_name(pmml_package):
    doc = applied(inference_service(pmml_package, storage_uri="gs://bucket/lin", namespace="scoring",
                                    runtime="kserve-pmmlserver", min_replicas=1, max_replicas=4))
    assert doc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "pmml"}
    assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-pmmlserver"
    assert (doc["spec"]["predictor"]["minReplicas"], doc["spec"]["predictor"]["maxReplicas"]) == (1, 4)
    assert doc["metadata"]["name"] == "linear-pmml" and doc["metadata"]["namespace"] == "scoring"


def test_gpus_and_resources(classifier):
    doc = applied(inference_service(classifier.path, storage_uri="pvc://models/iris", gpus=1,
                                    resources={"requests": {"cpu": "1", "memory": "2Gi"},
                                               "limits": {"memory": "4Gi"}}))
    assert doc["spec"]["predictor"]["model"]["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}}


@pytest.mark.parametrize("uri", ["models/iris", "ftp://host/iris", "s3://", "file:///srv/iris"])
def test_storage_uris_kserve_cannot_read_are_refused(classifier, uri):
    with pytest.raises(ModelpackError, match="not one KServe can download from.*s3://"):
        inference_service(classifier.path, storage_uri=uri)


@pytest.mark.parametrize("name", ["Iris", "iris_1", "1iris", "-iris", "a" * 64])
def test_names_must_be_dns_labels(classifier, name):
    with pytest.raises(ModelpackError, match="not a Kubernetes DNS label"):
        inference_service(classifier.path, storage_uri="s3://m/iris", name=name)


def test_storage_for_onnx_is_a_triton_repository(classifier, tmp_path):
    folder = write_storage(classifier.path, tmp_path / "upload", max_batch_size=16)
    assert folder == tmp_path / "upload"
    assert 'name: "iris"' in (folder / "iris" / "config.pbtxt").read_text()
    assert "max_batch_size: 16" in (folder / "iris" / "config.pbtxt").read_text()
    assert (folder / "iris" / "1" / "model.onnx").is_file()


def test_storage_for_pmml_is_model_pmml(pmml_package, tmp_path):
    folder = write_storage(pmml_package, tmp_path / "upload")
    with open_package(pmml_package) as pkg:
        assert (folder / "model.pmml").read_bytes() == pkg.read_bytes("model.pmml")
    with pytest.raises(ConversionError, match="ONNX packages only"):
        write_storage(pmml_package, tmp_path / "other", max_batch_size=4)


def test_command_line_prints_the_manifest(classifier, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="modelpack")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["export-kserve", str(classifier.path), "--storage-uri", "s3://models/iris",
                              "--gpus", "1", "--write", str(tmp_path / "upload")])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    doc = yaml.safe_load(out)
    jsonschema.validate(doc, SCHEMA)
    assert doc["spec"]["predictor"]["model"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "s3://models/iris" in err and (tmp_path / "upload" / "iris" / "config.pbtxt").is_file()
