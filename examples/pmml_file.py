"""PMML from elsewhere (R, KNIME, SAS): a document in the shape R's pmml package writes, packed and run.

The PMML is written here by hand so nothing is downloaded; modelpack packs it,
runs it in a JVM through JPype, and checks the answers against the formula.
Needs Java 8+ and ``modelpack[pmml]``. ``python examples/pmml_file.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import modelpack

REQUIRES = ("java", "jpype", "pypmml")
SLOW = "the PMML guide runs the same document in the default tests"
PMML = """<?xml version="1.0" encoding="UTF-8"?>
<PMML version="4.4" xmlns="http://www.dmg.org/PMML-4_4">
  <Header description="Logistic regression"/>
  <DataDictionary numberOfFields="3">
    <DataField name="tenure" optype="continuous" dataType="double"/>
    <DataField name="charges" optype="continuous" dataType="double"/>
    <DataField name="churn" optype="categorical" dataType="string"><Value value="no"/><Value value="yes"/></DataField>
  </DataDictionary>
  <RegressionModel functionName="classification" normalizationMethod="logit">
    <MiningSchema>
      <MiningField name="tenure"/><MiningField name="charges"/><MiningField name="churn" usageType="target"/>
    </MiningSchema>
    <Output>
      <OutputField name="Probability_yes" optype="continuous" dataType="double" feature="probability" value="yes"/>
      <OutputField name="Probability_no" optype="continuous" dataType="double" feature="probability" value="no"/>
      <OutputField name="Predicted_churn" optype="categorical" dataType="string" feature="predictedValue"/>
    </Output>
    <RegressionTable targetCategory="yes" intercept="-1.5">
      <NumericPredictor name="tenure" coefficient="-0.08"/><NumericPredictor name="charges" coefficient="0.03"/>
    </RegressionTable>
    <RegressionTable targetCategory="no" intercept="0"/>
  </RegressionModel>
</PMML>
"""


def main(out_dir: Path) -> int:
    source = out_dir / "churn.pmml"
    source.write_text(PMML, encoding="utf-8")
    rows = [{"tenure": 2.0, "charges": 90.0}, {"tenure": 60.0, "charges": 20.0}, {"tenure": 12.0, "charges": 55.0}]
    path = out_dir / "churn.mpk"
    manifest = modelpack.pack(source, path, name="churn", sample=rows)
    print(f"packed    {path.name}: {manifest!r}, classes {manifest.classes}")
    expected = np.array([1 / (1 + math.exp(-(-1.5 - 0.08 * r["tenure"] + 0.03 * r["charges"]))) for r in rows])
    with modelpack.load(path) as model:
        proba = model.predict_proba(rows)
        labels = model.predict(rows)
        column = list(model.classes).index("yes")
    diff = float(np.abs(proba[:, column] - expected).max())
    report = modelpack.verify(path)
    print(f"predicted {list(labels)}, max diff from the formula {diff:.2g}; {report!r}")
    ok = diff < 1e-9 and list(labels) == ["yes" if p > 0.5 else "no" for p in expected] and report.ok
    print("OK: the PMML model answers as its formula says." if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    from _example import run  # beside this file: the folder handling all examples share

    run(main)
