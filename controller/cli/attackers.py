"""`autonomy attackers list|show`: who attacks us, how far they got, and what we did about it (docs/attackers.md).

Both first fold what the ledger gained since the loop last did (the profiles are a view of the ledger), then
read. A database they may only read still answers, from the profiles as they are, and says how far behind.
Everything a profile holds that a client chose (paths, User-Agents) is escaped before Rich sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.attackers import STAGES, AttackerProfile, AttackerStore, Stage, stage_rank, track
from autonomy_controller.controller.cli.common import JsonFlag, cell, console, emit_json, err_console, fail, when
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.oversight.attacker_page import write_page

STAGE_STYLE = {
    "none": "dim",
    "recon": "cyan",
    "exploitation_attempt": "yellow",
    "possible_success": "bold red",
    "post_exploitation": "bold magenta",
}
AddressArg = Annotated[str, typer.Argument(help="The source address, e.g. 198.51.100.66 (any spelling).")]


def _refreshed(ledger: Ledger, settings: Settings) -> AttackerStore:
    store = AttackerStore(ledger)
    try:
        track(ledger, settings)
    except Exception as exc:  # read-only database, broken config: show what is stored, and say so
        status = store.status()
        err_console.print(
            f"[yellow]profiles not brought up to date ({escape(str(exc))}); they cover the ledger up to seq "
            f"{status.through} of {status.head}[/]"
        )
    return store


def _stage(stage: Stage) -> str:
    return f"[{STAGE_STYLE[stage]}]{stage}[/]"


def _top(counts: dict[str, int], n: int = 3) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def attackers_list(
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many profiles.")] = 50,
    min_stage: Annotated[
        str, typer.Option("--min-stage", help=f"Only profiles that reached at least this stage: {', '.join(STAGES)}.")
    ] = "recon",
    as_json: JsonFlag = False,
) -> None:
    """Attacker profiles, furthest kill-chain stage first, then the most recently seen: alerts, sensors, attack
    categories, targets, what the application answered, and what the controller did. `--min-stage none` adds
    sources that only the access log saw (answers, no detection)."""
    if min_stage not in STAGES:
        fail(f"--min-stage must be one of {', '.join(STAGES)}, not {min_stage!r}")
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        store = _refreshed(ledger, settings)
        profiles = store.profiles(limit=limit, min_stage=stage_rank(min_stage))
        status = store.status()
    if as_json:
        for profile in profiles:
            emit_json(_summary(profile))
        return
    table = Table(
        title=f"Attacker profiles ({status.profiles} kept, {status.evicted} evicted, ledger seq {status.through})"
    )
    for column in (
        "address",
        "stage",
        "alerts",
        "sensors",
        "categories",
        "assets",
        "app 2xx",
        "controller",
        "last seen",
    ):
        table.add_column(column, overflow="fold", justify="right" if column in ("alerts", "app 2xx") else "left")
    for p in profiles:
        summary = _summary(p)
        table.add_row(
            escape(p.address),
            _stage(p.stage),
            str(p.alerts),
            cell(_top(p.sensors)),
            cell(_top(p.categories)),
            cell(_top(p.assets)),
            str(summary["app_2xx"]),
            cell(_top(p.controller)) or "-",
            when(p.last_seen),
        )
    if profiles:
        console.print(table)
    elif status.profiles:
        console.print(f"[dim]none of the {status.profiles} attacker profiles reached {min_stage} (--min-stage)[/]")
    else:
        console.print(
            "[dim]no attacker profile yet: profiles are folded from the alerts the loop wrote to the ledger "
            "(`autonomy submit` or `ingest --follow`, with a worker running; `evaluate` writes none)[/]"
        )


def _summary(p: AttackerProfile) -> dict[str, Any]:
    return {
        "address": p.address,
        "network": p.network,
        "stage": p.stage,
        "first_seen": p.first_seen.isoformat(),
        "last_seen": p.last_seen.isoformat(),
        "alerts": p.alerts,
        "sensors": p.sensors,
        "categories": p.categories,
        "assets": p.assets,
        "waf_blocked": p.outcomes.waf_blocked,
        "app_2xx": sum(by_class.get("2xx", 0) for by_class in p.outcomes.app_status.values()),
        "controller": p.controller,
    }


def attackers_show(
    address: AddressArg,
    as_json: JsonFlag = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the attacker page here (HTML: timeline, stages, targets, actions)."),
    ] = None,
) -> None:
    """One source's profile: stages reached (each with the ledger record that reached it), targets, outcomes,
    techniques, the controller's actions, and other profiled addresses linked to it by a hint (same /24 or /64,
    same User-Agent; a hint, never proof of one actor). Exit 1 when the address has no profile."""
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        store = _refreshed(ledger, settings)
        try:
            profile = store.get(address)
        except ValueError:
            fail(f"{address!r} is not an IP address")
        if profile is None:
            fail(f"no attacker profile for {address} (never seen, or evicted: see docs/attackers.md)")
        linked = store.linked(profile)
        if html is not None:
            written = write_page(ledger, profile, linked, html)
            err_console.print(f"attacker page written to {escape(str(written))}")
    if as_json:
        emit_json({**profile.model_dump(mode="json"), "stage": profile.stage, "linked": linked})
        return
    _print_profile(profile, linked)


def _print_profile(p: AttackerProfile, linked: dict[str, list[str]]) -> None:
    console.print(
        f"[bold]{escape(p.address)}[/] ({escape(p.network)}) · {_stage(p.stage)} · {p.alerts} alert(s) · "
        f"{when(p.first_seen)} .. {when(p.last_seen)}"
    )
    stages = Table(title="Stages reached")
    for column in ("stage", "at", "ledger seq", "why"):
        stages.add_column(column, overflow="fold")
    for s in p.stages:
        stages.add_row(_stage(s.stage), when(s.at), str(s.seq), cell(s.why, 200))
    console.print(stages if p.stages else "[dim]no stage: only answers (access log), no detection[/]")
    facts = Table(title="What it did, where, and what happened", show_header=False)
    facts.add_column("", style="bold")
    facts.add_column("", overflow="fold")
    out = p.outcomes
    answered = "; ".join(f"{sensor}: {_top(by, 4)}" for sensor, by in sorted(out.app_status.items()))
    for label, value in (
        ("sensors", _top(p.sensors, 10)),
        ("categories", _top(p.categories, 20)),
        ("ATT&CK", ", ".join(f"{t} {n}" for t, n in sorted(p.techniques.items()))),
        ("assets", _top(p.assets, 16)),
        ("paths", _paths(p)),
        ("blocked by the WAF", str(out.waf_blocked)),
        ("application answered", answered or "-"),
        ("bytes sent back (2xx)", str(out.bytes_sent)),
        ("User-Agents (hints)", _top(p.user_agents, 8)),
        ("incidents", _top(p.incidents, 16)),
        ("dropped by caps", _top(p.dropped, 10) or "-"),
        ("ledger seqs", ", ".join(map(str, p.seqs))),
    ):
        facts.add_row(label, cell(value or "-", 2000))
    console.print(facts)
    actions = Table(title="What the controller did")
    for column in ("incident", "action", "target", "verdict", "status", "ledger seqs"):
        actions.add_column(column, overflow="fold")
    for a in p.actions:
        actions.add_row(
            cell(a.incident),
            escape(a.action) + (" [magenta](shadow)[/]" if a.shadow else ""),
            cell(a.target or "-"),
            escape(a.verdict),
            escape(a.status),
            ", ".join(map(str, a.seqs)),
        )
    console.print(actions if p.actions else "[dim]the controller took no containment action on this source[/]")
    if linked:
        hints = "; ".join(f"{address} ({', '.join(kinds)})" for address, kinds in linked.items())
        console.print(f"linked by hints (not proof): {escape(hints)}", soft_wrap=True)


def _paths(p: AttackerProfile) -> str:
    rows = sorted(p.paths.items(), key=lambda kv: (-kv[1].requests, kv[0]))[:10]
    return "; ".join(
        f"{path} ({s.requests} req, {s.attacks_refused + s.attacks_through} attack, {s.app_success} app 2xx)"
        for path, s in rows
    )
