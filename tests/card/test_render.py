"""The card's front matter read back by a YAML parser: every value as it was given."""

from __future__ import annotations

import pytest

from modelpack._card.facts import Facts
from modelpack._card.render import front_matter
from modelpack.manifest import Manifest, ModelInfo, TensorSpec

yaml = pytest.importorskip("yaml", reason="PyYAML reads the front matter back")


def test_characters_past_the_basic_plane_survive_the_front_matter():
    manifest = Manifest(name="m", task="classification", model=ModelInfo("onnx", "model.onnx"),
                        inputs=(TensorSpec("X", "float32", ("N", 1)),), outputs=(),
                        metadata={"license": "mit 😀", "tags": ["🚀 fast", 'a\\ud83d\\ude00"\n---']})
    facts = Facts(manifest=manifest, signature="", widget={"c😀": ["𝔘", 1.5, None]})
    front = yaml.safe_load(front_matter(facts).removeprefix("---\n").removesuffix("\n---"))
    assert front["license"] == "mit 😀"
    assert front["tags"][-2:] == ["🚀 fast", 'a\\ud83d\\ude00"\n---']
    assert front["widget"] == [{"structuredData": {"c😀": ["𝔘", 1.5, None]}}]
