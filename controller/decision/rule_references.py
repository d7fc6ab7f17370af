"""References to rules no module defines: undefined on every engine, and nothing says so.

`not guardrails.denny with input as {...}` (a misspelled `deny`) in a test is `not` of an undefined value, so the
test passes whatever the policy does; `targets.all_well_formd` in a policy (a misspelled rule read through an
import) is always undefined. OPA compiles and runs both without a word (`opa check --strict`
too: a rule of a package may come from data). Found here from OPA's own parse of every module
(`rego.parse_module`): each reference into a package the modules define must name a rule some module of that
package defines. `autonomy policy test` reports the tests' (CANNOT FAIL); every engine refuses a policy's
(engines/input_types.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError, is_test_module

_PARSE_ALL = "x := {name: rego.parse_module(name, source) | some name, source in input}"


@dataclass(frozen=True)
class UndefinedRule:
    file: Path  # the module, under the folder scanned
    line: int
    reader: str  # the rule the reference is in (package.rule)
    rule: str  # what it reads: data.autonomy.guardrails.denny

    def __str__(self) -> str:
        if self.rule == NOTHING:
            return f"{self.file}:{self.line}: {self.reader} reads no rule and no data: it tests nothing of the policy"
        happens = "the test cannot fail on it" if is_test_module(self.file) else "it is always undefined"
        return (
            f"{self.file}:{self.line}: {self.reader} reads {self.rule}, which no policy module defines: "
            f"{happens} (a misspelled rule name?)"
        )


NOTHING = "nothing"  # UndefinedRule.rule of a test that reads no rule and no data at all (`test_x if { true }`)


def undefined_rules(opa: Path, policies_dir: Path, tests: bool = True) -> list[UndefinedRule]:
    """Every reference the test modules (tests=True) or the policy modules (tests=False) under policies_dir make
    to a rule no module of its package defines."""
    sources = {str(path.relative_to(policies_dir)): path.read_text() for path in sorted(policies_dir.rglob("*.rego"))}
    modules = _parse(opa, sources)
    defined: dict[tuple[str, ...], set[str]] = {}
    for module in modules.values():
        defined.setdefault(_package(module), set()).update(_rule_name(rule) for rule in module.get("rules") or [])
    found = []
    for name, module in sorted(modules.items()):
        if is_test_module(Path(name)) is not tests:
            continue
        aliases = _aliases(module)
        own = _package(module)
        for rule in module.get("rules") or []:
            for path, written in _references(rule, aliases):
                missing = _missing(path, defined)
                if missing is not None and written.split(".", 1)[0] not in defined.get(own, set()):
                    line = _line(sources[name], _rule_name(rule), written)
                    reader = ".".join([*own, _rule_name(rule)])
                    found.append(UndefinedRule(policies_dir / name, line, reader, "data." + ".".join(missing)))
    if tests:
        found.extend(_reading_nothing(modules, sources, policies_dir))
    return found


def _reading_nothing(modules: dict[str, Any], sources: dict[str, str], policies_dir: Path) -> list[UndefinedRule]:
    """Each test (test_*) that reads, itself or through its package's helper rules, no data and no rule of the
    policy: `test_x if { true }`, or one that checks OPA's built-ins (`net.cidr_contains(...)`) instead of ours."""
    policy_rules: dict[tuple[str, ...], set[str]] = {}
    helpers: dict[tuple[str, ...], dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    for name, module in modules.items():
        package, rules = _package(module), module.get("rules") or []
        if is_test_module(Path(name)):
            for rule in rules:
                helpers.setdefault(package, {}).setdefault(_rule_name(rule), []).append((name, rule))
        else:
            policy_rules.setdefault(package, set()).update(_rule_name(rule) for rule in rules)
    found = []
    for package, rules in helpers.items():
        reads: dict[str, bool] = {}
        depends: dict[str, set[str]] = {}
        for rule_name, definitions in rules.items():
            aliases = {alias for name, _ in definitions for alias in _aliases(modules[name])}
            names = {var for _, rule in definitions for var in _vars(rule)}
            reads[rule_name] = bool(names & (aliases | {"data"} | policy_rules.get(package, set())))
            depends[rule_name] = (names & set(rules)) - {rule_name}
        changed = True
        while changed:  # a helper that reads the policy lends that to every rule using it
            changed = False
            for rule_name, uses in depends.items():
                if not reads[rule_name] and any(reads[used] for used in uses):
                    reads[rule_name] = changed = True
        for rule_name, definitions in sorted(rules.items()):
            if rule_name.startswith("test_") and not reads[rule_name]:
                name = definitions[0][0]
                reader = ".".join([*package, rule_name])
                line = _line(sources[name], rule_name, rule_name)
                found.append(UndefinedRule(policies_dir / name, line, reader, NOTHING))
    return found


def _vars(node: Any) -> Iterator[str]:
    """Every variable name in a parsed rule (a ref's head is one: `data`, an import's name, a rule's name)."""
    return (term["value"] for term in _terms(node, "var") if isinstance(term.get("value"), str))


def _parse(opa: Path, sources: dict[str, str]) -> dict[str, Any]:
    command = [str(opa), "eval", "--format", "json", "--stdin-input", _PARSE_ALL]
    done = subprocess.run(command, input=json.dumps(sources), capture_output=True, text=True, timeout=120)
    try:
        modules: dict[str, Any] = json.loads(done.stdout)["result"][0]["bindings"]["x"]
    except (ValueError, KeyError, IndexError, TypeError):
        said = (done.stderr or done.stdout).strip()[:800]
        raise PolicyBundleError(f"opa could not parse the policies: {said}") from None
    return modules


def _strings(terms: list[dict[str, Any]]) -> list[str]:
    """The leading string segments of a ref's terms (a variable or a computed key ends the static path)."""
    segments = []
    for term in terms:
        if term.get("type") != "string":
            break
        segments.append(term["value"])
    return segments


def _package(module: dict[str, Any]) -> tuple[str, ...]:
    return tuple(_strings(module["package"]["path"][1:]))  # [data, "autonomy", "guardrails"]


def _rule_name(rule: dict[str, Any]) -> str:
    head = rule.get("head") or {}
    return str(head.get("name") or head["ref"][0]["value"])


def _aliases(module: dict[str, Any]) -> dict[str, list[str]]:
    """Each data import's name in the module (its alias, else its last segment) and the path it stands for."""
    aliases = {}
    for imported in module.get("imports") or []:
        terms = imported["path"]["value"]
        if terms[0].get("value") != "data":
            continue
        path = _strings(terms[1:])
        if path:
            aliases[imported.get("alias") or path[-1]] = path
    return aliases


def _references(rule: dict[str, Any], aliases: dict[str, list[str]]) -> Iterator[tuple[list[str], str]]:
    """(the data path, the text as written) of every data reference in the rule."""
    for ref in _refs(rule):
        head, rest = ref[0], ref[1:]
        if head.get("type") != "var":
            continue
        if head["value"] == "data":
            path = _strings(rest)
            yield path, ".".join(["data", *path])
        elif head["value"] in aliases:
            tail = _strings(rest)
            yield [*aliases[head["value"]], *tail], ".".join([head["value"], *tail])


def _refs(node: Any) -> Iterator[list[dict[str, Any]]]:
    return (term["value"] for term in _terms(node, "ref") if isinstance(term.get("value"), list) and term["value"])


def _terms(node: Any, kind: str) -> Iterator[dict[str, Any]]:
    """Every term of the type `kind` (var, ref...) anywhere in a parsed module's JSON."""
    if isinstance(node, dict):
        if node.get("type") == kind:
            yield node
        for value in node.values():
            yield from _terms(value, kind)
    elif isinstance(node, list):
        for item in node:
            yield from _terms(item, kind)


# The guardrail contract the base policy reads (policies/README.md, "Guardrails"): a guardrail set may answer
# neither set, which means nothing to deny or to ask.
OPTIONAL_RULES = {("autonomy", "guardrails", "deny"), ("autonomy", "guardrails", "require_approval")}


def _missing(path: list[str], defined: dict[tuple[str, ...], set[str]]) -> list[str] | None:
    """The path up to the rule it names, when that lies in a package the modules define and no module defines
    the rule (nor a package below it), unless the rule is optional (OPTIONAL_RULES); else None."""
    for length in range(len(path) - 1, 0, -1):
        package = tuple(path[:length])
        if package in defined:
            rule = path[length]
            below = any(other[: length + 1] == (*package, rule) for other in defined)
            known = rule in defined[package] or below or (*package, rule) in OPTIONAL_RULES
            return None if known else path[: length + 1]
    return None


def _line(source: str, rule: str, written: str) -> int:
    """The line of `written` in the rule's first definition (OPA's parse of a module in memory has no locations)."""
    start = re.search(rf"(?m)^{re.escape(rule)}\b", source)
    offset = start.start() if start else 0
    at = source.find(written, offset)
    return source.count("\n", 0, at if at >= 0 else offset) + 1
