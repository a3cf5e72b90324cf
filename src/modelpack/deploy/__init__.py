"""Export packages to model servers on clusters: Triton Inference Server and KServe.

Both exports read a verified package (checksums checked as by :func:`modelpack.load`)
and write what the server expects, with no runtime and no training framework.

>>> from modelpack.deploy import export_triton, inference_service   # doctest: +SKIP
>>> export_triton("churn.mpk", "model_repository/")                 # doctest: +SKIP
PosixPath('model_repository/churn')
"""

from __future__ import annotations

import argparse

from .kserve import inference_service, to_yaml, write_storage
from .triton import export_triton, triton_config

__all__ = ["add_parser", "export_triton", "inference_service", "to_yaml", "triton_config", "write_storage"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``export-triton`` and ``export-kserve`` sub-commands to the ``modelpack`` command."""
    from . import kserve, triton

    triton.add_parser(subparsers)
    kserve.add_parser(subparsers)
