"""Regenerate the committed message modules from ``grpc_service.proto``: ``python -m modelpack.serve._proto``."""

from __future__ import annotations

from ..._atomic import write_file
from . import PROTO, generate


def main() -> None:
    """Write every generated module beside the .proto file."""
    for name, data in generate().items():
        write_file(PROTO.with_name(name), data)
        print(f"wrote {PROTO.with_name(name)}")  # noqa: T201 (a developer's command)


if __name__ == "__main__":
    main()
