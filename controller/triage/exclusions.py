"""WAF exclusion proposals for rules people keep rejecting: a ModSecurity line for a person to review.

Never applied by the controller. The path and argument name come from requests (attacker-chosen), so each is
checked against a small safe alphabet and anything else is refused rather than escaped: a quote, space,
comma, semicolon, pipe, percent or backslash could end the directive, add an action, expand a macro or turn a
target into a regular expression. A refusal says why, so a person can write the exclusion by hand.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

# Whole-string matches (fullmatch) over ASCII classes: `$` would also match before a final line break, and `\d`
# any script's digits.
RULE_ID = re.compile(r"[1-9][0-9]{0,6}")
ARG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")
PATH = re.compile(r"/[A-Za-z0-9/._~\-]{0,199}")
LOCAL_IDS = (10000, 99999)
"""Where a generated exclusion id falls: ModSecurity reserves 1-99,999 for local rules (CRS lives in 9xxxxx)."""
_NEVER_EXCLUDED = ("901", "949", "959", "980")
"""CRS set-up and anomaly evaluation: excluding them switches the whole rule set off, not one false positive."""


class ExclusionRefused(ValueError):
    """The exclusion cannot be expressed safely; the message says which input and why."""


class ExclusionProposal(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule_id: str
    path: str | None = None
    arg: str | None = None
    directive: str
    scope: Literal["argument", "path", "path_argument"]
    why: str
    applied: Literal[False] = False


def propose_exclusion(
    rule_id: str, *, path: str | None = None, arg: str | None = None, exclusion_id: int | None = None
) -> ExclusionProposal:
    """One ModSecurity directive that stops `rule_id` firing on `arg` (everywhere or under `path`), or on
    everything under `path`. A rule without a path or argument is refused: that would disable it everywhere."""
    rule_id = str(rule_id)
    if not RULE_ID.fullmatch(rule_id):
        raise ExclusionRefused(f"rule id {rule_id[:40]!r} is not a ModSecurity rule id (digits only)")
    if len(rule_id) == 6 and rule_id[:3] in _NEVER_EXCLUDED:
        raise ExclusionRefused(f"rule {rule_id} is CRS set-up or anomaly evaluation: excluding it disables CRS")
    if path is None and arg is None:
        raise ExclusionRefused("give a path or an argument: removing a rule everywhere is not proposed")
    if arg is not None and not ARG_NAME.fullmatch(arg):
        raise ExclusionRefused(f"argument name {arg[:60]!r} has characters a directive cannot carry safely")
    if path is not None and (not PATH.fullmatch(path) or _dot_segment(path)):
        raise ExclusionRefused(f"path {path[:60]!r} is not a plain absolute path (letters, digits, / . _ ~ -)")
    if path is None:
        assert arg is not None
        return ExclusionProposal(
            rule_id=rule_id,
            arg=arg,
            directive=f'SecRuleUpdateTargetById {rule_id} "!ARGS:{arg}"',
            scope="argument",
            why=f"rule {rule_id} no longer inspects argument {arg}, on every path",
        )
    eid = exclusion_id if exclusion_id is not None else _generated_id(rule_id, path, arg)
    if not LOCAL_IDS[0] // 10000 <= eid <= LOCAL_IDS[1]:
        raise ExclusionRefused(f"exclusion id {eid} is outside ModSecurity's local range 1-99999")
    if arg is None:
        ctl, scope, what = f"ctl:ruleRemoveById={rule_id}", "path", "anything"
    else:
        ctl, scope, what = f"ctl:ruleRemoveTargetById={rule_id};ARGS:{arg}", "path_argument", f"argument {arg}"
    return ExclusionProposal(
        rule_id=rule_id,
        path=path,
        arg=arg,
        directive=f'SecRule REQUEST_URI "@beginsWith {path}" "id:{eid},phase:1,pass,nolog,{ctl}"',
        scope=scope,
        why=f"rule {rule_id} no longer inspects {what} for requests whose URI begins with {path}",
    )


def _dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _generated_id(rule_id: str, path: str, arg: str | None) -> int:
    """Deterministic, so proposing the same exclusion twice gives the same line (check it is free before use)."""
    digest = hashlib.sha256(f"{rule_id}\0{path}\0{arg or ''}".encode()).digest()
    low, high = LOCAL_IDS
    return low + int.from_bytes(digest[:4], "big") % (high - low + 1)
