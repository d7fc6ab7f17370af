"""What our own Alert JSON may claim (docs/sensors.md, "Provenance"): sensor facts come only from a sensor's own
format, parsed by our adapter; a native record is a claim that may lower a verdict, never raise one, unless an
operator declared its channel a trusted feed for that source (`--trust-native`, a token's `trust_native`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.impact import assess
from autonomy_controller.controller.case.grouping import group_alerts, incident_from_alerts, incident_key
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.entities import guessed_users, source_assets
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.levels import load_level_config
from autonomy_controller.controller.ingest import IngestError, IngestReport, parse_line, read_alerts, trusted_sources
from autonomy_controller.controller.ingest.classify import AUTH_GUESSED
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, Category, Provenance, Severity
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.tokens import Scope, TokenError, TokenStore, tokens_file
from autonomy_controller.controller.triage import guard_summary, triage
from autonomy_controller.controller.triage.ledger_view import LedgerView
from autonomy_controller.workflows.contracts import slim_alert
from tests.harness import ATTACKER, alert, alert_lines, burst, running_loop
from tests.test_http import live
from tests.test_impact import got_through

runner = CliRunner()
SAMPLES = REPO_ROOT / "tests" / "data"
GUESSED = {"event": "authentication", "outcome": "success", "user_failures_before": 50, "source_failures": 0}
"""A login service's "success after 50 failures against the account": full login_outcome evidence."""


def claimed_logins(n: int = 4, start: int = 100, src_ip: str = ATTACKER, **extra: Any) -> list[Alert]:
    """Native records that say they are the login service's, with its guessed-login facts in raw."""
    fields = {"source": "auth-log", "raw": GUESSED, "provenance": Provenance.CLAIM, **extra}
    return burst(src_ip, Category.BRUTE_FORCE, n=n, start=start, **fields)


def native_line(a: Alert, **extra: Any) -> str:
    return json.dumps({**a.model_dump(mode="json"), **extra})


# -- the parser sets provenance; the input cannot ----------------------------------------------------------------


@pytest.mark.parametrize("sample", ["suricata7-lab-eve.jsonl", "nginx-access.jsonl"])
def test_a_sensors_own_format_is_vouched_for_by_its_adapter(sample: str) -> None:
    alerts = list(read_alerts(SAMPLES / sample))
    assert alerts and {a.provenance for a in alerts} == {Provenance.SENSOR}


@pytest.mark.parametrize("written", [None, "sensor", "trusted_feed", "anything", 7])
def test_a_native_records_own_provenance_key_is_ignored(written: object) -> None:
    # Ignored rather than the record's error: an export re-ingests (as claims), and the claim is still kept.
    [claim] = claimed_logins(n=1)
    extra = {} if written is None else {"provenance": written}
    [parsed] = parse_line(native_line(claim, **extra), "x:1").alerts
    assert parsed.provenance is Provenance.CLAIM
    assert parsed.source == "auth-log" and parsed.raw == GUESSED  # kept for display, grouping and reports


def test_only_the_sources_a_channel_trusts_are_a_trusted_feed() -> None:
    [login] = claimed_logins(n=1)
    waf = burst(n=1, provenance=Provenance.CLAIM)[0]
    trusted = trusted_sources(["auth-log"])
    assert parse_line(native_line(login), "x:1", trusted).alerts[0].provenance is Provenance.TRUSTED_FEED
    assert parse_line(native_line(waf), "x:2", trusted).alerts[0].provenance is Provenance.CLAIM
    assert parse_line(native_line(login, provenance="claim"), "x:3", trusted).alerts[0].provenance is (
        Provenance.TRUSTED_FEED
    )


@pytest.mark.parametrize("name", ["native", "", "auth-log\n", "auth\u202elog", "x" * 65])
def test_a_trusted_source_must_name_a_sensor(name: str) -> None:
    with pytest.raises(ValueError, match="--trust-native"):
        trusted_sources([name])


def test_a_bad_native_record_is_still_that_records_error() -> None:
    [claim] = claimed_logins(n=1)
    with pytest.raises(IngestError, match="confidence"):
        parse_line(native_line(claim, confidence=7), "x:1")


# -- triage reads no claim as a sensor fact --------------------------------------------------------------------


@pytest.fixture
def model(settings: Settings) -> Any:
    return load_level_config(settings.levels_dir).triage


def test_claims_change_no_factor_and_the_explanation_says_why(model: Any) -> None:
    waf = incident_from_alerts(f"src:{ATTACKER}", burst(n=4))
    mixed = incident_from_alerts(f"src:{ATTACKER}", [*burst(n=4), *claimed_logins(), *claimed_waf()])
    alone, with_claims = triage(waf, model), triage(mixed, model)
    assert (with_claims.score, with_claims.verdict, with_claims.confidence) == (
        alone.score,
        alone.verdict,
        alone.confidence,
    )
    assert with_claims.evidence.requests == alone.evidence.requests  # claims buy no evidence cap either
    assert with_claims.evidence.claims == 8 and alone.evidence.claims == 0
    assert with_claims.evidence.sensors == ["modsecurity3"]
    [note] = [f for f in with_claims.factors if f.name == "native_claims"]
    assert note.trust == "claim" and note.contribution == 0
    assert "8 alert(s)" in note.why and "auth-log" in note.why and "--trust-native" in note.why


def claimed_waf(n: int = 4) -> list[Alert]:
    """Native records with the WAF's rule facts in raw, from the same attacker: a claimed storm."""
    return burst(n=n, start=200, provenance=Provenance.CLAIM, confidence=1.0, blocked=False)


def test_the_same_facts_from_a_trusted_feed_count(model: Any) -> None:
    # The test above could not pass by reading nothing: declared trusted, the login facts lift triage.
    trusted = [a.model_copy(update={"provenance": Provenance.TRUSTED_FEED}) for a in claimed_logins()]
    plain = triage(incident_from_alerts("k", burst(n=4)), model)
    lifted = triage(incident_from_alerts("k", [*burst(n=4), *trusted]), model)
    assert lifted.score > plain.score and lifted.evidence.guessed_logins == 4


def test_a_claimed_high_severity_is_shown_but_never_acted_on(model: Any) -> None:
    # The unrated-sensor floor (an EDR's C2 is never de-noised away) shows a claimed critical as suspicious for
    # people; the guard's summary does without those points, as without a scanner user agent's.
    edr = alert(1, source="native", category=Category.C2, severity=Severity.CRITICAL, confidence=1.0)
    result = triage(incident_from_alerts("k", [edr]), model)
    [floor] = [f for f in result.factors if f.name == "floor_unrated_sensor"]
    assert result.verdict == "suspicious" and floor.trust == "claim" and "claimed" in floor.why
    assert guard_summary(result, model).verdict == "noise"
    sensed = alert(1, category=Category.C2, severity=Severity.CRITICAL, confidence=1.0)  # OCSF, our adapter's
    assert guard_summary(triage(incident_from_alerts("k", [sensed]), model), model).verdict == "suspicious"


def test_a_claims_confidence_and_blocked_flag_never_lift_the_cases() -> None:
    # The operating domain reads the case's confidence and the risk score whether the sensor blocked it: a claim
    # saying "1.0 sure" or "not blocked" (less risk in containing) moves neither.
    waf = burst(n=2, confidence=0.5)
    case = incident_from_alerts("k", [*waf, *claimed_waf()])
    assert case.confidence == 0.5 and case.blocked is True
    claims_only = incident_from_alerts("k", claimed_waf())
    assert claims_only.confidence == 1.0 and claims_only.blocked is False  # nothing else to go by: as today


def test_claims_make_no_source_history(tmp_path: Path) -> None:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        for a in [*claimed_logins(), *claimed_waf()]:
            key = f"claimed:{a.id}"  # a case of claims only, per alert: as many past incidents as a sender likes
            ledger.append(key, RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
        view = LedgerView(ledger)
        view.refresh()
        current = incident_from_alerts(f"src:{ATTACKER}", burst(n=1, start=900))
        assert view.history(current) is None
        sensed = burst(n=1, start=901, source="suricata", raw={"alert": {"severity": 1}})
        ledger.append("earlier", RecordKind.ALERT, "ingest", sensed[0].model_dump(mode="json"))
        view.refresh()
        history = view.history(current)
        assert history is not None and history.prior_incidents == 1 and history.sensors == {"suricata"}


def test_claims_show_no_impact(settings: Settings, tmp_path: Path) -> None:
    # Impact credits the risk score of containing (more autonomy). An IDS alert on a request the application
    # answered 200: likely. The same alert claimed in our JSON, or a claimed post-exploitation alert: nothing.
    config = tracking_config(settings)
    ids, answered = got_through(tmp_path)
    claimed_ids = [a.model_copy(update={"provenance": Provenance.CLAIM}) for a in ids]
    c2 = alert(5, source="native", category=Category.C2)
    assert assess([*ids, *answered], config).verdict == "likely"
    assert assess([*claimed_ids, *answered, c2], config).verdict == "none"
    assert assess([*ids, alert(5, source="suricata", category=Category.C2)], config).verdict == "confirmed"


# -- through the CLI: the trust option, and the decision ----------------------------------------------------------


def evaluate(tmp_path: Path, alerts: list[Alert], *args: str) -> list[dict[str, Any]]:
    path = tmp_path / "alerts.jsonl"
    path.write_text(alert_lines(alerts))
    plan = tmp_path / "plan.json"
    block = {"action": "network.block_ip", "params": {"ip": ATTACKER, "ttl_seconds": 3600}, "rationale": "c"}
    plan.write_text(json.dumps({"actions": [{**block, "confidence": 0.9}]}))
    command = ["evaluate", str(path), "--json", "--plan", str(plan), "--level", "L4", *args]
    result = runner.invoke(app, command, env={"AUTONOMY_STATE_DIR": str(tmp_path / "var")})
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_evaluate_trusts_a_native_feed_only_when_told(tmp_path: Path) -> None:
    mixed = [*burst(n=4), *claimed_logins()]
    [claims] = evaluate(tmp_path, mixed)
    [trusted] = evaluate(tmp_path, mixed, "--trust-native", "auth-log")
    assert claims["decisions"][0]["verdict"] == "approve"
    assert claims["triage"]["evidence"]["claims"] == 4
    assert trusted["decisions"][0]["verdict"] == "execute"  # the operator vouched: the login facts count
    assert trusted["triage"]["evidence"]["guessed_logins"] == 4 and trusted["triage"]["evidence"]["claims"] == 0


def test_a_bad_trust_option_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(alert_lines(burst(n=1)))
    result = runner.invoke(app, ["evaluate", str(path), "--trust-native", "native"])
    assert result.exit_code == 2 and "--trust-native 'native'" in result.output


@pytest.mark.parametrize("command", ["evaluate", "submit", "ingest", "simulate", "tokens add"])
def test_help_teaches_the_trust_option(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--trust-native" in result.output and "claim" in result.output


def test_a_token_trusts_a_feed_only_with_the_ingest_scope(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    with pytest.raises(TokenError, match="ingest scope"):
        store.add("dashboard", [Scope.READ], ["auth-log"])
    with pytest.raises(TokenError, match="--trust-native"):
        store.add("shipper", [Scope.INGEST], ["native"])
    _, entry = store.add("shipper", [Scope.INGEST], ["auth-log", "auth-log"])
    assert entry.trust_native == ("auth-log",)
    assert TokenStore(tmp_path / "tokens.json").entries()[0].trust_native == ("auth-log",)  # stored, read back
    legacy = json.loads((tmp_path / "tokens.json").read_text())
    del legacy["tokens"][0]["trust_native"]
    (tmp_path / "tokens.json").write_text(json.dumps(legacy))
    assert TokenStore(tmp_path / "tokens.json").entries()[0].trust_native == ()  # an older file trusts nothing


# -- through HTTP: a token's trusted feed, and the ledger's record of provenance ----------------------------------


@pytest_asyncio.fixture
async def http(tmp_path: Path, settings: Settings) -> AsyncIterator[tuple[Any, dict[str, str], Ledger]]:
    shutil.copytree(settings.levels_dir, tmp_path / "levels")
    shutil.copytree(settings.policies_dir, tmp_path / "policies")
    config = Settings(levels_dir=tmp_path / "levels", policies_dir=tmp_path / "policies", state_dir=tmp_path / "var")
    store = TokenStore(tokens_file(config.state_dir))
    tokens = {
        "siem": store.add("siem", [Scope.INGEST])[0],
        "shipper": store.add("login-shipper", [Scope.INGEST], ["auth-log"])[0],
    }
    limits = ServiceConfig(settle_seconds=0.2, quiet_seconds=0.3, outbox_max_delay_seconds=0.2)
    async with running_loop(config) as loop:
        service = create_app(config, limits, loop.client.service_client.config.target_host)
        async with live(service) as client:
            yield client, tokens, loop.ledger


async def test_http_ingest_reads_native_json_as_the_tokens_trust_says(http: Any) -> None:
    client, tokens, ledger = http
    sent = {"siem": claimed_logins(n=2, src_ip="198.51.100.71"), "shipper": claimed_logins(n=2, src_ip="198.51.100.72")}
    for token, alerts in sent.items():
        body = "".join(native_line(a) + "\n" for a in alerts).encode()
        response = await client.post("/v1/alerts", content=body, headers={"Authorization": f"Bearer {tokens[token]}"})
        assert response.status_code == 202, response.text
    recorded = {
        token: {r.payload["provenance"] for r in ledger.records(incident_key(alerts[0]), [RecordKind.ALERT])}
        for token, alerts in sent.items()
    }
    assert recorded == {"siem": {"claim"}, "shipper": {"trusted_feed"}}


def test_grouping_keeps_a_claims_source_for_display() -> None:
    [case] = group_alerts([*burst(n=2), *claimed_logins(n=2)])
    assert {a.source for a in case.alerts} == {"modsecurity3", "auth-log"}
    assert sum(a.is_claim for a in case.alerts) == 2


def test_the_audit_trail_names_claims_and_trusted_feeds(tmp_path: Path) -> None:
    from autonomy_controller.controller.oversight.trail.decide import _provenance_facts

    trusted = [a.model_copy(update={"provenance": Provenance.TRUSTED_FEED}) for a in claimed_logins(n=1, start=300)]
    with Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        for a in [*burst(n=2), *claimed_logins(n=3), *trusted]:
            ledger.append("k", RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
        records = ledger.records("k", [RecordKind.ALERT])
    claims, feeds = _provenance_facts(records)
    assert claims.text.startswith("3 of them are claims") and "(source auth-log)" in claims.text
    assert [c.ref for c in claims.cites] == [r.seq for r in records[2:5]]
    assert feeds.text.startswith("1 of them came from a trusted native feed") and feeds.cites[0].ref == records[5].seq
    assert _provenance_facts(records[:2]) == []  # the sensors' own: nothing to say


def test_the_ingest_report_counts_claims_and_names_the_option(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(alert_lines([*burst(n=2), *claimed_logins(n=3)]))
    report = IngestReport()
    assert len(list(read_alerts(path, report=report))) == 5
    assert report.claims == {"auth-log": 3} and report.as_dict()["claims"] == {"auth-log": 3}
    assert "3 alert(s) in our Alert JSON read as claims (auth-log 3)" in report.summary()
    assert "--trust-native" in report.summary()
    trusted = IngestReport()
    list(read_alerts(path, report=trusted, trusted=trusted_sources(["auth-log"])))
    assert not trusted.claims and "claims" not in trusted.summary()


def test_evaluate_shows_a_claimed_source_as_text(tmp_path: Path) -> None:
    # The source a claim names is the sender's text: the summary line escapes it (no terminal markup).
    path = tmp_path / "a.jsonl"
    path.write_text(alert_lines(claimed_logins(n=1, source="[bold red]auth-log")))
    result = runner.invoke(app, ["evaluate", str(path)], env={"AUTONOMY_STATE_DIR": str(tmp_path / "var")})
    assert result.exit_code == 0, result.output
    assert "[bold red]auth-log 1" in result.stderr


def test_a_claim_puts_no_account_or_host_in_the_attackers_hands(settings: Settings, embedded_guard: Guard) -> None:
    # The entity guardrail (policies/guardrails/entities.rego) lets containment hit alone only what the sensors'
    # facts put in the attacker's hands. A native record naming auth-log with the guessed-login rule, or naming one
    # of our hosts as its source, is the sender's word: nobody's account is disabled, no host isolated, on it.
    [claim] = claimed_logins(n=1, user="ceo", rule_ids=[AUTH_GUESSED])
    waf = frozenset(load_level_config(settings.levels_dir).triage.waf_sources)
    assert guessed_users([claim], waf) == frozenset()  # the raw record at hand: triage's reading says no
    assert guessed_users([slim_alert(claim)], waf) == frozenset()  # as the workflow carries it (no raw)
    vouched = claim.model_copy(update={"provenance": Provenance.SENSOR})
    assert guessed_users([slim_alert(vouched)], waf) == {"ceo"}  # the same record from the login service's log
    assets = embedded_guard.assets
    from_staging = alert(1, src_ip="10.30.0.11", provenance=Provenance.CLAIM)  # web-stg-01's address
    assert source_assets([from_staging], assets) == ()
    assert source_assets([from_staging.model_copy(update={"provenance": Provenance.SENSOR})], assets) == ("web-stg-01",)
