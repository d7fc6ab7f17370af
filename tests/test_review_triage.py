"""Adversarial review of triage's outputs for people: a WAF exclusion proposal carries only what its safe alphabet
allows. Python's `$` also matches before a final newline and `\\d` matches any script's digits, so a check
written with them let a line break or a non-ASCII digit into a ModSecurity directive a person may paste."""

from __future__ import annotations

import pytest

from autonomy_controller.controller.triage.exclusions import ExclusionRefused, propose_exclusion

UNSAFE = {
    "path ending in a line break": {"rule_id": "942100", "path": "/search\n"},
    "argument ending in a line break": {"rule_id": "942100", "arg": "id\n"},
    "rule id ending in a line break": {"rule_id": "942100\n", "arg": "id"},
    "rule id in Arabic-Indic digits": {"rule_id": "9\u0664\u0662\u0661\u0660\u0660", "arg": "id"},
    "path with a non-ASCII letter": {"rule_id": "942100", "path": "/caf\u00e9"},
}


@pytest.mark.parametrize("case", list(UNSAFE), ids=list(UNSAFE))
def test_an_exclusion_refuses_what_its_alphabet_does_not_hold(case: str) -> None:
    with pytest.raises(ExclusionRefused):
        propose_exclusion(**UNSAFE[case])


def test_a_plain_exclusion_is_still_proposed() -> None:
    proposal = propose_exclusion("942100", path="/search", arg="q")
    assert proposal.directive.startswith('SecRule REQUEST_URI "@beginsWith /search" "id:')
    assert proposal.directive.endswith('ctl:ruleRemoveTargetById=942100;ARGS:q"') and "\n" not in proposal.directive
