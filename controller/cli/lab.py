"""`autonomy lab up|down|status|attack NAME|replay FILE...`: the lab of examples/lab/README.md from the terminal.

Each command is a thin wrapper over `controller.lab.Lab` (and `controller.lab.replay`). Exit codes: 0 done;
1 `down` left something behind, or an attack got no answer; 2 the lab cannot run here (not root, packages
missing and not installable, a port taken, a service that did not start), or the replay's input is unusable,
with the reason on stderr.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, err_console, fail
from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.lab import ATTACKS, Lab, LabConfig, LabError, LabPackagesMissing
from autonomy_controller.controller.lab.lab import load_config
from autonomy_controller.controller.lab.manifest import alerts_of, summarise
from autonomy_controller.controller.lab.network import LabNetworkError
from autonomy_controller.controller.lab.replay import ReplayError, Sent
from autonomy_controller.controller.lab.replay import replay as run_replay
from autonomy_controller.controller.lab.requests import RequestFormatError, read_requests
from autonomy_controller.controller.lab.sessions import DEFAULT_SEED, SessionError, assign
from autonomy_controller.controller.lab.tool_attack import TOOL_ATTACK, send_tool_attack
from autonomy_controller.controller.lab.waf import WafError
from autonomy_controller.controller.models import Level

RootOption = Annotated[
    Path,
    typer.Option(
        "--root", help="The lab folder: configs, logs, pid files, ledger, Temporal's DB.", envvar="AUTONOMY_LAB_DIR"
    ),
]
DEFAULT_ROOT = REPO_ROOT / "var" / "lab"


def _lab(root: Path) -> Lab:
    """The lab in `root` as `up` configured it (namespaces, ports), so every command talks about the same one."""
    return Lab(load_config(root.resolve()))


def up(
    root: RootOption = DEFAULT_ROOT,
    level: Annotated[
        Level | None, typer.Option("--level", help="Run incidents at this level (default: the scope's, L3 for web-01).")
    ] = None,
    services: Annotated[
        bool, typer.Option("--services/--no-services", help="Also start Temporal, a worker and the follow ingest.")
    ] = True,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="apt-get install missing Debian packages (as root).")
    ] = True,
    fresh: Annotated[bool, typer.Option("--fresh", help="Tear down and delete the lab folder first.")] = False,
    prefix: Annotated[str, typer.Option(help="Prefix of the namespace names (victim, attacker, benign).")] = "",
    temporal_port: Annotated[int, typer.Option(help="Port of the lab's Temporal dev server.")] = 7234,
    settle: Annotated[float, typer.Option(min=0, help="Seconds an incident collects alerts before planning.")] = 1.0,
    paranoia_level: Annotated[
        int, typer.Option(min=1, max=4, help="CRS paranoia level of the WAF (1-4); on a running lab: reloads nginx.")
    ] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Build the lab: namespaces, nginx + ModSecurity + CRS in the victim, the nftables enforcement file, and
    (unless --no-services) the Temporal dev server, a worker and `ingest --follow` on the WAF's audit log.

    Idempotent: run it again to complete a half-built lab. Needs root; installs nginx,
    libnginx-mod-http-modsecurity, modsecurity-crs, nftables, iproute2 and curl with apt-get when missing.
    """
    config = LabConfig(
        root=root.resolve(),
        prefix=prefix,
        temporal_port=temporal_port,
        level=level,
        settle_seconds=settle,
        paranoia_level=paranoia_level,
    )
    lab = Lab(config)
    try:
        steps = lab.up(services=services, install=install, fresh=fresh)
    except (LabError, LabPackagesMissing, LabNetworkError, WafError) as exc:
        fail(f"lab up failed: {exc} (what did start keeps running: `autonomy lab down` stops it)", 2)
    if as_json:
        emit_json({"steps": steps, "status": lab.status().as_dict()})
        return
    for step in steps:
        console.print(f"[green]+[/] {escape(step)}")
    _print_status(lab)
    if services:
        console.print(
            f"[dim]try: autonomy lab attack sqli --root {escape(str(lab.root))}; then with "
            f"AUTONOMY_STATE_DIR={escape(str(lab.state_dir))} AUTONOMY_TEMPORAL_ADDRESS={lab.temporal_address}: "
            "autonomy incidents list, autonomy report sqli:198.51.100.66[/]"
        )


def down(root: RootOption = DEFAULT_ROOT, as_json: JsonFlag = False) -> None:
    """Stop everything the lab runs and delete its namespaces (their nft tables go with them); exit 1 naming
    whatever is left behind. The lab folder's files (logs, ledger, reports) are kept."""
    lab = _lab(root)
    try:
        report = lab.down()
    except (LabError, LabNetworkError, WafError) as exc:
        fail(f"lab down failed: {exc}", 2)
    if as_json:
        emit_json(report.as_dict())
    else:
        for step in report.steps or ["nothing was running"]:
            console.print(f"[green]-[/] {escape(step)}")
        for leftover in report.leftovers:
            err_console.print(f"[red]left behind: {escape(leftover)}[/]")
    if report.leftovers:
        raise typer.Exit(1)


def status(root: RootOption = DEFAULT_ROOT, as_json: JsonFlag = False) -> None:
    """What runs: namespaces, nginx, Temporal, worker, follow ingest, and the addresses in the nft blocklist."""
    lab = _lab(root)
    if as_json:
        emit_json(lab.status().as_dict())
        return
    _print_status(lab)


def _mark(ok: bool) -> str:
    return "[green]up[/]" if ok else "[red]down[/]"


def _print_status(lab: Lab) -> None:
    state = lab.status()
    table = Table(title=f"lab {escape(state.root)}: {'up' if state.up else 'not (fully) up'}")
    for column in ("part", "state", "pid", "detail"):
        table.add_column(column, overflow="fold")
    for name, present in state.namespaces.items():
        table.add_row(f"namespace {escape(name)}", _mark(present), "-", "")
    table.add_row("nginx + ModSecurity", _mark(state.nginx.running), str(state.nginx.pid or "-"), state.nginx.detail)
    for service in state.services:
        table.add_row(escape(service.name), _mark(service.running), str(service.pid or "-"), escape(service.detail))
    blocked = ", ".join(str(e.get("val")) for e in state.nft["blocked"]) or "nothing blocked"
    table.add_row("nft " + (state.nft["table"] or "(no table yet)"), "", "-", escape(blocked))
    lines = state.audit_log["lines"]
    count = "no file yet" if lines is None else f"{lines} line(s)"
    table.add_row("audit log", "", "-", f"{escape(state.audit_log['path'])} ({count})")
    console.print(table)


def attack(
    name: Annotated[
        str,
        typer.Argument(
            help=f"One of: {', '.join(ATTACKS)}; `tool` for a tool-driven attack ({len(TOOL_ATTACK)} payloads "
            "across four classes: what L3 contains alone); or `list`."
        ),
    ],
    root: RootOption = DEFAULT_ROOT,
    source: Annotated[
        str, typer.Option("--from", help="attacker (198.51.100.66) or benign (203.0.113.7, allowlisted).")
    ] = "attacker",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before the request counts as dropped.")] = 3.0,
    as_json: JsonFlag = False,
) -> None:
    """Send a named attack from the attacker (or benign) namespace to the victim's WAF and print the answer:
    403 when the WAF stops it, a timeout once nftables drops the source."""
    if name == "list":
        for item in ATTACKS.values():
            console.print(f"[bold]{item.name}[/] ({item.category}): {escape(item.what)}; CRS {escape(item.rules)}")
        return
    lab = _lab(root)
    if name == "tool":
        _tool_attack(lab, timeout, as_json)
        return
    try:
        result = lab.attack(name, source=source, timeout=timeout)
    except (LabError, LabNetworkError, RuntimeError) as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json(
            {
                "attack": name,
                "from": result.netns,
                "url": result.url,
                "status": result.status,
                "curl_exit": result.curl_exit,
                "seconds": round(result.seconds, 3),
                "timed_out": result.timed_out,
            }
        )
    else:
        console.print(f"{escape(name)} from {escape(result.netns)} -> {escape(result.url)}: {result.describe()}")
    if result.status is None:
        raise typer.Exit(1)


def _tool_attack(lab: Lab, timeout: float, as_json: bool) -> None:
    """The tool-driven attack from the attacker: one line (or JSON document) with the answers it got."""
    try:
        results = send_tool_attack(lab, timeout=timeout)
    except (LabError, LabNetworkError, RuntimeError) as exc:
        fail(str(exc), 2)
    statuses = Counter(str(r.status) if r.status is not None else "timed out" for r in results)
    answered = [r.status for r in results if r.status is not None]
    status = answered[0] if answered and len(set(answered)) == 1 else None
    if as_json:
        emit_json({"attack": "tool", "sent": len(results), "statuses": dict(statuses), "status": status})
    else:
        console.print(f"tool attack: {len(results)} requests: " + ", ".join(f"{k}: {v}" for k, v in statuses.items()))
    if not answered:
        raise typer.Exit(1)


def replay(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, help="CSIC 2010 raw files (normal*/anomalous*, .gz too) or labelled JSONL."
        ),
    ],
    root: RootOption = DEFAULT_ROOT,
    sources: Annotated[int, typer.Option(min=1, help="Source addresses in all (benign users + attackers).")] = 3,
    attackers: Annotated[int, typer.Option(min=0, help="How many of the sources send anomalous runs.")] = 1,
    run_length: Annotated[int, typer.Option(min=1, help="Requests per benign user (consecutive normal ones).")] = 72,
    attack_run_length: Annotated[
        int, typer.Option(min=1, help="Requests per attacker (consecutive anomalous ones).")
    ] = 72,
    seed: Annotated[int, typer.Option(help="Picks the runs and shuffles the addresses: same seed, same replay.")] = (
        DEFAULT_SEED
    ),
    rate: Annotated[float, typer.Option(min=0, help="Requests per second in all; 0: as fast as it goes.")] = 0.0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send at most this many requests (each source stops mid-session).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds without an answer before a request counts as dropped.")
    ] = 3.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Client processes (the sources are split).")] = 1,
    manifest: Annotated[
        Path | None, typer.Option(help="Where to write the manifest (default: replay.json beside the audit log).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay labelled HTTP requests through the lab's WAF from many source addresses, and write the ground truth.

    Each source is one address of 198.51.100.0/24 added to the attacker namespace for the replay (and removed
    after): a benign user sends --run-length consecutive normal requests, an attacker --attack-run-length
    consecutive anomalous ones, in order, over a keep-alive connection; JSONL requests with a `session` keep
    their sessions. The manifest maps every source to its label, the requests it sent and the statuses it got,
    with the audit log's byte range of this replay, so each alert can be scored against ground truth. A source
    that gets no answer twice in a row (blocked by the loop, when `lab up` runs it) stops there.

    The lab's CRS allows the Accept-Charset header (stock CRS 3.3.4 blocks every CSIC request for it: rule
    920450); `lab up --paranoia-level 2` replays against PL2. Example:

        autonomy lab replay ../shared/corpora/csic2010/normalTrafficTraining.txt.gz \\
            ../shared/corpora/csic2010/anomalousTrafficPart1.txt.gz --sources 50 --attackers 10 --rate 200
    """
    lab = _lab(root)
    try:
        requests = [request for path in files for request in read_requests(path)]
        sessions = assign(requests, sources, attackers, run_length, attack_run_length, seed)
    except (RequestFormatError, SessionError, OSError) as exc:
        fail(f"lab replay: {exc}", 2)
    total = sum(len(s.requests) for s in sessions)
    total = min(total, limit) if limit else total
    progress = Progress(
        SpinnerColumn(),
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[blocked]} blocked, {task.fields[dropped]} no answer"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not err_console.is_terminal,
    )
    task = progress.add_task("replay", total=total, blocked=0, dropped=0)
    counts = {"blocked": 0, "dropped": 0}

    def on_sent(sent: Sent) -> None:
        counts["blocked"] += sent.status == 403
        counts["dropped"] += sent.status is None
        progress.update(task, advance=1, blocked=counts["blocked"], dropped=counts["dropped"])

    try:
        with progress:
            result, path = run_replay(
                lab, sessions, rate=rate, limit=limit, timeout=timeout, workers=workers,
                inputs=[str(f) for f in files], seed=seed, manifest_path=manifest, on_sent=on_sent,
            )  # fmt: skip
    except (LabError, LabNetworkError, ReplayError) as exc:
        fail(f"lab replay failed: {exc}", 2)
    summary = summarise(result, alerts_of(result))
    if as_json:
        emit_json({"manifest": str(path), "rate": result.rate, "totals": result.totals, **summary})
        return
    _print_replay(result.totals, result.rate, summary)
    console.print(f"manifest: {escape(str(path))} (audit log bytes {result.audit_log['start_offset']}-"
                  f"{result.audit_log['end_offset']} of {escape(result.audit_log['path'])})")  # fmt: skip


def _print_replay(totals: dict[str, Any], rate: dict[str, float], summary: dict[str, Any]) -> None:
    console.print(
        f"sent {totals['sent']} of {totals['requests']} request(s) at {rate['achieved']}/s; "
        f"statuses {totals['statuses']}, no answer {totals['no_answer']}"
    )
    table = Table(title="alerts by the sources' ground truth")
    for column in ("label", "sources", "sent", "403", "alerts", "sources alerted", "alerts/source", "top rules"):
        table.add_column(column, overflow="fold")
    for label, row in summary["labels"].items():
        per = row["alerts_per_source"]
        rules = ", ".join(f"{rule} ({count})" for rule, count in row["top_rules"][:5]) or "-"
        table.add_row(
            label, str(row["sources"]), str(row["sent"]), str(row["blocked"]), str(row["alerts"]),
            f"{row['sources_alerted']} of {row['sources']}", f"median {per['median']}, max {per['max']}", rules,
        )  # fmt: skip
    console.print(table)
