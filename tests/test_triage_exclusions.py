"""WAF exclusion proposals: a ModSecurity line for a person, never applied; attacker-chosen names cannot escape."""

from __future__ import annotations

import pytest

from autonomy_controller.controller.triage import ExclusionRefused, propose_exclusion
from autonomy_controller.controller.triage.exclusions import LOCAL_IDS


def test_argument_everywhere() -> None:
    proposal = propose_exclusion("942100", arg="id")
    assert proposal.directive == 'SecRuleUpdateTargetById 942100 "!ARGS:id"'
    assert proposal.scope == "argument" and proposal.applied is False


def test_argument_under_a_path() -> None:
    proposal = propose_exclusion("942100", path="/item", arg="id", exclusion_id=10042)
    assert proposal.directive == (
        'SecRule REQUEST_URI "@beginsWith /item" "id:10042,phase:1,pass,nolog,ctl:ruleRemoveTargetById=942100;ARGS:id"'
    )
    assert proposal.scope == "path_argument"


def test_whole_rule_under_a_path_with_a_stable_generated_id() -> None:
    first = propose_exclusion(920450, path="/tienda1/publico/anadir.jsp")  # type: ignore[arg-type]
    again = propose_exclusion("920450", path="/tienda1/publico/anadir.jsp")
    assert first == again and first.scope == "path"
    assert first.directive.startswith('SecRule REQUEST_URI "@beginsWith /tienda1/publico/anadir.jsp" "id:')
    assert first.directive.endswith(',phase:1,pass,nolog,ctl:ruleRemoveById=920450"')
    eid = int(first.directive.split('"id:')[1].split(",")[0])
    assert LOCAL_IDS[0] <= eid <= LOCAL_IDS[1]
    assert eid != int(propose_exclusion("920450", path="/other").directive.split('"id:')[1].split(",")[0])


@pytest.mark.parametrize(
    "arg",
    [
        'id" "t:none',  # closes the target string
        "id,deny",  # would read as another action inside ctl
        "id;ARGS:password",  # a second target
        "id|ARGS",  # target alternation
        "/^.*$/",  # a regular-expression target: every argument
        "a b",
        "x%{tx.anomaly_score}",  # macro expansion
        "a\\",
        "new\nline",
        "",
        "x" * 101,
        "!id",
        "ARGS:id",
    ],
)
def test_argument_names_that_could_break_out_are_refused(arg: str) -> None:
    with pytest.raises(ExclusionRefused, match="argument name"):
        propose_exclusion("942100", arg=arg)


@pytest.mark.parametrize(
    "path",
    [
        '/a" "id:1,phase:1,pass,ctl:ruleEngine=Off',
        "/a b",
        "/%2e%2e/admin",
        "/a/../admin",
        "/.",
        "relative/path",
        "/search?q=1",
        "/a;b",
        "/a,b",
        "/a\\b",
        "/" + "a" * 300,
        "/a\r\nSecRuleEngine Off",
    ],
)
def test_paths_that_could_break_out_are_refused(path: str) -> None:
    with pytest.raises(ExclusionRefused, match="path"):
        propose_exclusion("942100", path=path, arg="id")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rule_id": "942100"}, "give a path or an argument"),
        ({"rule_id": "94210x", "arg": "id"}, "not a ModSecurity rule id"),
        ({"rule_id": "0", "arg": "id"}, "not a ModSecurity rule id"),
        ({"rule_id": "949110", "path": "/x"}, "disables CRS"),
        ({"rule_id": "980130", "arg": "id"}, "disables CRS"),
        ({"rule_id": "942100", "path": "/x", "exclusion_id": 100000}, "outside ModSecurity's local range"),
    ],
)
def test_what_is_too_broad_or_not_a_rule_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ExclusionRefused, match=match):
        propose_exclusion(**kwargs)  # type: ignore[arg-type]
