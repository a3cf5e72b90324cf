"""The PMML compiler's evaluator comparison (test_pmml_compile.py), importable by the other
compiler tests as ``pmml_compile_checks``: tests are not a package, and pytest imports them
with importlib, so a test module cannot import another by name otherwise."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load() -> None:
    path = Path(__file__).with_name("test_pmml_compile.py")
    spec = importlib.util.spec_from_file_location("pmml_compile_checks", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pmml_compile_checks"] = module
    spec.loader.exec_module(module)


_load()
