"""Export packages to model servers on clusters: Triton Inference Server and KServe.

Both exports read a verified package (checksums checked as by :func:`modelpack.load`)
and write what the server expects, with no runtime and no training framework.

>>> from modelpack.deploy import export_triton, inference_service   # doctest: +SKIP
>>> export_triton("churn.mpk", "model_repository/")                 # doctest: +SKIP
PosixPath('model_repository/churn')
"""

from __future__ import annotations

from ._kserve import inference_service, to_yaml, write_storage
from ._triton import export_triton, triton_config

__all__ = ["export_triton", "inference_service", "to_yaml", "triton_config", "write_storage"]
