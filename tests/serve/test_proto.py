"""The committed message modules are what the generator makes of the committed .proto, and
they agree with the protocol's definition as tritonclient ships it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

from modelpack.serve._proto import GENERATOR, PROTO, SERVICE
from modelpack.serve._proto import grpc_service_pb2 as pb


def test_regenerating_gives_the_committed_files() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (the test extra pins it)")
    installed = f"grpcio-tools {importlib.metadata.version('grpcio-tools')}"
    if installed != GENERATOR:
        pytest.skip(f"the files were made with {GENERATOR}; {installed} writes other version stamps")
    # protoc runs in a process of its own: loaded into the test process beside other native
    # protobuf users (TensorFlow, the PMML runtime's JVM) it crashed the interpreter.
    code = ("import json, sys; from modelpack.serve._proto import generate; "
            "json.dump({k: v.decode() for k, v in generate().items()}, sys.stdout)")
    made = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True, timeout=120).stdout)
    assert made
    for name, text in made.items():
        assert PROTO.with_name(name).read_text() == text, f"{name} is stale: run python -m modelpack.serve._proto"


def test_every_shared_message_has_the_protocols_fields() -> None:
    tpb = pytest.importorskip("tritonclient.grpc.service_pb2", reason="tritonclient[grpc] is not installed")
    ours = pb.DESCRIPTOR
    theirs = tpb.DESCRIPTOR

    def fields(message) -> dict:
        found = {f.name: (f.number, f.type, f.message_type.name if f.message_type else None)
                 for f in message.fields}
        for nested in message.nested_types:
            found.update({f"{nested.name}.{k}": v for k, v in fields(nested).items()})
        return found

    for name, message in ours.message_types_by_name.items():
        mine, triton = fields(message), fields(theirs.message_types_by_name[name])
        shared = {k: v for k, v in mine.items() if k in triton}
        assert shared == {k: triton[k] for k in shared}, name
        assert set(mine) - set(triton) <= {"parameters", "ParametersEntry.key", "ParametersEntry.value"}, name
    service = ours.services_by_name["GRPCInferenceService"]
    assert f"{ours.package}.{service.name}" == SERVICE
    for method in service.methods:
        other = theirs.services_by_name["GRPCInferenceService"].methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (other.input_type.name, other.output_type.name)
