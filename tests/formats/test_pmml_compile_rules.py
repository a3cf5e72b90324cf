"""Compiled RuleSetModels against the PMML evaluator (pmml4s on a real JVM)."""

from __future__ import annotations

import pytest

from modelpack._formats.pmml_compile import NotCompiled, compile_pmml

from .test_pmml_compile import compare

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="z" optype="continuous" dataType="double"/>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/></DataField>
<DataField name="y" optype="categorical" dataType="string"><Value value="p"/><Value value="q"/><Value value="r"/>
</DataField></DataDictionary>"""

# Weights no two subsets of which sum alike: ties are left out (pmml4s breaks them by hash order).
RULES = """<SimpleRule id="r1" score="q" weight="0.9" confidence="0.8">
  <SimplePredicate field="x" operator="greaterThan" value="1"/></SimpleRule>
<CompoundRule><SimpleSetPredicate field="c" booleanOperator="isIn"><Array type="string">a</Array></SimpleSetPredicate>
  <SimpleRule id="r2" score="p" weight="0.61" confidence="0.7">
    <CompoundPredicate booleanOperator="or"><SimplePredicate field="z" operator="lessThan" value="0"/>
    <SimplePredicate field="x" operator="lessOrEqual" value="-2"/></CompoundPredicate></SimpleRule>
  <SimpleRule id="r3" score="r" weight="0.37" confidence="0.35"><SimplePredicate field="z" operator="isMissing"/>
  </SimpleRule></CompoundRule>
<SimpleRule id="r4" score="p" weight="0.23" confidence="0.2">
  <SimplePredicate field="z" operator="greaterOrEqual" value="3"/></SimpleRule>
<SimpleRule id="r5" score="r" weight="0.13" confidence="0.1"><True/></SimpleRule>"""


def rule_set(criterion: str, *, rules: str = RULES, default: str = 'defaultScore="r" defaultConfidence="0.05"',
             function: str = "classification") -> bytes:
    body = f"""<RuleSetModel functionName="{function}"><MiningSchema><MiningField name="x"/><MiningField name="z"/>
<MiningField name="c"/><MiningField name="y" usageType="target"/></MiningSchema>
<RuleSet {default}><RuleSelectionMethod criterion="{criterion}"/>{rules}</RuleSet></RuleSetModel></PMML>"""
    return (HEAD + body).encode()


@pytest.mark.parametrize("criterion", ["firstHit", "weightedMax", "weightedSum"])
def test_each_criterion_agrees_with_the_evaluator_with_missing_values(pmml_java: None, criterion: str) -> None:
    compare(rule_set(criterion), rows=300)


@pytest.mark.parametrize("criterion", ["firstHit", "weightedSum"])
def test_no_rule_fired_gives_the_default_or_no_prediction(pmml_java: None, criterion: str) -> None:
    rules = RULES.replace("<True/>", "<False/>")
    compare(rule_set(criterion, rules=rules), rows=200)
    compare(rule_set(criterion, rules=rules, default=""), rows=200)


def test_what_is_not_compiled_names_its_element() -> None:
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(rule_set("firstHit", rules=RULES.replace('score="q"', 's="q"')), name="model.pmml")
    assert caught.value.element == "SimpleRule"
    with pytest.raises(NotCompiled) as caught:
        compile_pmml(rule_set("weightedAverage"), name="model.pmml")
    assert caught.value.element == "RuleSelectionMethod"
