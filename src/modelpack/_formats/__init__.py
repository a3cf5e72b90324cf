"""Model files: what an ONNX or PMML file declares, and the manifest it implies.

Each format module exposes ``describe(data: bytes, *, name: str) -> Description``.
It parses the file safely (an ONNX graph with ``onnx``, a PMML document with a
parser that refuses DOCTYPEs and entities) and reports the inputs, outputs, task
and classes. :func:`build_manifest` turns that into a manifest, for ``pack``,
``export`` and the loading of a bare model file alike. Nothing here runs a model.

* :mod:`.onnx`, :mod:`.pmml`: what each format declares;
* :mod:`.onnx_edits`: graph edits for converter plugins;
* :mod:`.model_file`: reading a bare file, and the manifest a description implies.
"""

from __future__ import annotations

from .description import Description
from .model_file import REQUIRES, build_manifest, describe, format_of, read_model_file

__all__ = ["REQUIRES", "Description", "build_manifest", "describe", "format_of", "read_model_file"]
