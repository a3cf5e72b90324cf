"""Tree ensembles on modelpack's tree engine (docs/trees.md).

split.py cuts the graph around its ensemble, forest.py reads the trees into arrays,
kernels.py and engine.py predict them on the CPU, tensor_form.py writes them as
standard operators for a device, backend.py puts either in front of ONNX Runtime.
"""

from __future__ import annotations

#: ``Model.engine_reason`` of a model that holds no tree ensemble.
NO_TREES = "no tree ensemble in the graph"
#: ``Model.engine`` when the tree engine (or its tensor form, on a device) runs the ensemble.
ENGINE_NAME = "modelpack-trees"
#: The values of ``modelpack.load(engine=...)``.
ENGINES = ("auto", "onnxruntime", ENGINE_NAME)


def check_engine(engine: str, package: str) -> None:
    """A RuntimeBackendError naming the choices, for an engine that is not one of them."""
    if engine not in ENGINES:
        from ...errors import RuntimeBackendError

        raise RuntimeBackendError(f"unknown engine {engine!r}", package=package,
                                  fix=f"Use one of {', '.join(map(repr, ENGINES))}.")
