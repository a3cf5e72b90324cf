"""The Open Inference Protocol's gRPC messages (``grpc_service.proto``) as Python classes.

``grpc_service_pb2.py`` and ``.pyi`` are generated from ``grpc_service.proto`` by
``python -m modelpack.serve._proto`` (grpcio-tools; the version used is written in
:data:`GENERATOR`) and committed, so installing modelpack needs no code generator.
A test regenerates them when grpcio-tools is installed and compares.

The messages live in a descriptor pool of their own rather than protobuf's default
one: the protocol's package and message names (``inference.ModelInferRequest``, ...)
are also registered by other libraries of the field, tritonclient among them, and
protobuf refuses a second definition of a name in one pool. The names on the wire
(the service path ``/inference.GRPCInferenceService/...``) and the field numbers are
the protocol's, so clients see no difference.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["GENERATOR", "PROTO", "SERVICE", "generate"]

#: The protocol's gRPC service name, as clients call it.
SERVICE = "inference.GRPCInferenceService"
#: The generator the committed modules were made with.
GENERATOR = "grpcio-tools 1.80.0"
PROTO = Path(__file__).with_name("grpc_service.proto")
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate() -> dict[str, bytes]:
    """The generated modules' contents by file name (needs grpcio-tools).

    Example
    -------
    >>> sorted(generate())                        # doctest: +SKIP
    ['grpc_service_pb2.py', 'grpc_service_pb2.pyi']
    """
    import tempfile

    from grpc_tools import protoc

    src = PROTO.parents[3]  # the folder holding the modelpack package
    relative = PROTO.relative_to(src).as_posix()
    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(["protoc", f"-I{src}", f"--python_out={out}", f"--pyi_out={out}", relative])
        if code != 0:
            raise RuntimeError(f"protoc failed with status {code} on {relative}")
        folder = Path(out, relative).parent
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".py", ".pyi")}
    module = files["grpc_service_pb2.py"].decode()
    if module.count(_DEFAULT_POOL) != 1:
        raise RuntimeError("the generated module does not register its file in protobuf's default pool "
                           "the way this generator expects; check the grpcio-tools version")
    files["grpc_service_pb2.py"] = re.sub(re.escape(_DEFAULT_POOL), _OWN_POOL, module).encode()
    return files
