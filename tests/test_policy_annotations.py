"""METADATA annotations: the entry point and every guardrail rule carry a title that `opa inspect -a` shows."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from autonomy_controller.controller.config import REPO_ROOT, Settings

RULE = re.compile(r"^(deny|require_approval) contains", re.MULTILINE)


def _annotations(opa_bin: Path, directory: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(opa_bin), "inspect", "--annotations", "--format", "json", str(directory)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout).get("annotations") or [])


def test_every_guardrail_rule_and_the_entry_point_are_annotated(settings: Settings, opa_bin: Path) -> None:
    annotated: dict[tuple[str, int], dict[str, object]] = {}
    for entry in _annotations(opa_bin, settings.policies_dir):
        location = entry["location"]
        assert isinstance(location, dict)
        annotated[(Path(str(location["file"])).name, int(location["row"]))] = dict(entry["annotations"])  # type: ignore[arg-type]
    rules = [
        (path.name, source[: match.start()].count("\n") + 1)
        for path in sorted((settings.policies_dir / "guardrails").glob("*.rego"))
        if not path.name.endswith("_test.rego")
        for source in [path.read_text()]
        for match in RULE.finditer(source)
    ]
    assert len(rules) >= 20
    missing = [rule for rule in rules if not annotated.get(rule, {}).get("title")]
    assert missing == [], "rules without a METADATA title"
    [entry] = [a for (file, _), a in annotated.items() if file == "decision.rego"]
    assert entry.get("entrypoint") is True and entry.get("title")


def test_the_examples_are_annotated_too(opa_bin: Path) -> None:
    entries = _annotations(opa_bin, REPO_ROOT / "examples" / "policies")
    examples = sorted(str(dict(e["annotations"]).get("custom", {}).get("example")) for e in entries)  # type: ignore[arg-type, union-attr]
    assert examples == ["a", "b", "c"]
