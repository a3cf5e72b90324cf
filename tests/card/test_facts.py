"""What the card gathers: per-row differences, metadata routing, bounded text."""

from __future__ import annotations

import numpy as np

from modelpack._card.facts import Facts, _metadata, _row_diffs, _sample_table, text
from modelpack.manifest import ColumnSpec, Manifest, ModelInfo, TensorSpec


def _manifest(**changes) -> Manifest:
    return Manifest(name="m", task="classification", model=ModelInfo("onnx", "model.onnx"),
                    inputs=(TensorSpec("X", "float32", ("N", 2)),),
                    outputs=(TensorSpec("out_label", "int64", ("N",), role="label"),
                             TensorSpec("out_proba", "float32", ("N", 2), role="probabilities")), **changes)


def test_row_diffs_per_output_by_role():
    outputs = {"out_label": np.array([0, 1, 1], np.int64),
               "out_proba": np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], np.float32)}
    reference = {"label": np.array([0.0, 0.0, 1.0]),             # the source gave floats: compared as numbers
                 "probabilities": np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.7]])}
    diffs = _row_diffs(_manifest(), outputs, reference)
    assert diffs["label"].tolist() == [0.0, 1.0, 0.0]
    np.testing.assert_allclose(diffs["probabilities"], [0.0, 0.0, 0.1], atol=1e-6)


def test_string_labels_and_mismatched_sizes():
    outputs = {"out_label": np.array(["a", "b"]), "out_proba": np.zeros((3, 2), np.float32)}
    diffs = _row_diffs(_manifest(), outputs, {"label": np.array(["a", "c"]), "probabilities": np.zeros((2, 2))})
    assert diffs == {"label": diffs["label"]} and diffs["label"].tolist() == [0.0, 1.0]


def test_metadata_goes_to_sections_metrics_and_the_rest():
    facts = Facts(manifest=_manifest(metadata={"intended_use": "x" * 5000, "auc": 0.9, "metrics": {"f1": 0.8},
                                               "license": "mit", "owner": {"team": "a"}, "flag": True}),
                  signature="")
    _metadata(facts)
    assert len(facts.sections["Intended uses"]) < 2100 and facts.sections["Intended uses"].endswith("…")
    assert facts.metrics == {"auc": "0.9", "f1": "0.8"}
    assert facts.other_metadata == {"owner": '{"team": "a"}', "flag": "true"}
    assert text(["<b>", 1]) == '["<b>", 1]'


def test_samples_without_rows_leave_a_note_not_a_crash():
    facts = Facts(manifest=_manifest(), signature="")
    _sample_table(facts, {"X": np.zeros((0, 2), np.float32)}, {"out_proba": np.zeros((3, 2), np.float32)})
    assert facts.sample_rows == [] and "hold no rows" in facts.notes[0]


def test_an_input_without_columns_in_its_array_gives_no_widget_not_a_crash():
    spec = TensorSpec("X", "float32", ("N", 1), columns=(ColumnSpec("c", "float32"),))
    facts = Facts(manifest=_manifest().replace(inputs=(spec,)), signature="")
    _sample_table(facts, {"X": np.zeros((40, 0), np.float32)}, {})
    assert facts.widget == {} and facts.sample_header == []
