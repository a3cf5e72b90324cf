"""A griffe extension for the API reference: modelpack's docstrings, read as mkdocstrings expects.

- A section headed "Example" (modelpack's habit for one example) is read as numpydoc's
  "Examples", which griffe's numpy parser knows; otherwise its doctest shows as prose.
- Sphinx roles (``:func:`modelpack.load```) become code spans: they name things, and
  griffe does not resolve Sphinx roles.
- A doctest in a module's summary (before any section) becomes a code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example\n(\s*)-------$", re.M)
_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj):`~?([^`]+)`")
_SECTION = re.compile(r"^\S[^\n]*\n-{3,}$", re.M)
_DOCTEST = re.compile(r"((?:^>>> .*\n?|^\.\.\. .*\n?)+)", re.M)


def _fence_doctests(text: str) -> str:
    match = _SECTION.search(text)
    head, rest = (text[:match.start()], text[match.start():]) if match else (text, "")
    return _DOCTEST.sub(lambda m: "```pycon\n" + m.group(1).rstrip("\n") + "\n```\n", head) + rest


class ExampleSection(griffe.Extension):
    """Rewrite each docstring before griffe parses it (parsing happens later, when rendered)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        value = _HEADING.sub(r"\1Examples\n\2--------", obj.docstring.value)
        value = _ROLE.sub(lambda m: f"`{m.group(1)}`", value)
        obj.docstring.value = _fence_doctests(value)
