"""`autonomy`: the command line for security leads, platform teams and auditors.

Every command prints a table for people and, with --json, one JSON document per line for machines. This
module is only the command map, and imports none of the commands: each is a `Lazy` entry (its function, the
line `--help` shows for it, its panel) whose module loads when the command runs (controller/cli/lazy.py), so
`autonomy --help` and a short command do not pay for Temporal, the ledger or the Anthropic SDK. The groups:

- `judge`, `policy_test`, `policy_bundle`: evaluate, levels, policy test and bundle (what the controller *would*
  do; nothing runs, no Temporal)
- `loop`: server, worker, submit, ingest, approve, reject, incidents (the Temporal loop)
- `audit`: report, audit show / verify / export (the ledger and the workflow history)
- `demo`: the whole loop on the sample alerts at several levels
- `simulate`: what-if replay of past alerts through levels and candidate configs
- `scorecard`: what autonomy did per scope and level; `levels promote-check` for shadow trials
- `lab`: a real WAF and nftables in network namespaces
- `keys`: approvers' signing keys (approvers keygen / list) for signed votes
- `serve`, `tokens`: the HTTP service (controller/service/) and its senders' bearer tokens
- `accounts`: the approval inbox's local accounts (argon2-hashed passwords, mapped to identities.yaml)
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from autonomy_controller.controller.cli.lazy import Lazy, lazy_group

JUDGE, LOOP, AUDIT = "Judge (nothing runs)", "Run the loop", "Report and audit"
_CLI = "autonomy_controller.controller.cli"

COMMANDS = {
    "evaluate": Lazy(
        f"{_CLI}.judge:evaluate", "Plan and guard a file of alerts: each action's verdict, risk, reasons.", JUDGE
    ),
    "simulate": Lazy(
        f"{_CLI}.simulate:simulate", "What-if: replay past alerts through L1-L5 or candidate levels.", JUDGE
    ),
    "init": Lazy(
        f"{_CLI}.init:init", "Write a configuration folder (levels, policies, playbooks) to keep in git.", JUDGE
    ),
    "demo": Lazy(
        f"{_CLI}.demo:demo", "Run the sample alerts through the whole loop, for real, at L1, L2 and L3.", LOOP
    ),
    "server": Lazy(f"{_CLI}.loop:server", "Run Temporal's dev server in the foreground until Ctrl-C.", LOOP),
    "worker": Lazy(f"{_CLI}.loop:worker", "Run a worker: the incident workflow and its activities.", LOOP),
    "submit": Lazy(f"{_CLI}.loop:submit", "Submit alert files: one workflow per incident, started or joined.", LOOP),
    "ingest": Lazy(f"{_CLI}.loop:ingest", "Tail a growing alert log (like tail -F) and submit each new line.", LOOP),
    "approve": Lazy(f"{_CLI}.loop:approve", "Approve an action that awaits approval (--key signs the vote).", LOOP),
    "reject": Lazy(f"{_CLI}.loop:reject", "Reject an action that awaits approval (--key signs the vote).", LOOP),
    "serve": Lazy(f"{_CLI}.serve:serve", "Serve the HTTP API: alert ingest, incidents, reports, metrics.", LOOP),
    "report": Lazy(f"{_CLI}.audit:report", "Write an incident's report (Markdown and JSON) from the ledger.", AUDIT),
    "scorecard": Lazy(
        f"{_CLI}.scorecard:scorecard",
        "What autonomy did per scope and level: handled alone, approvals, reverts.",
        AUDIT,
    ),
}
GROUPS = {
    "levels": (
        JUDGE,
        "Inspect and validate the autonomy levels (levels/).",
        {
            "validate": Lazy(f"{_CLI}.judge:levels_validate", "Check L1-L5, scopes and the risk model; every error."),
            "show": Lazy(f"{_CLI}.judge:levels_show", "Which level applies where, kill switch, shadow flag, limits."),
            "explain": Lazy(f"{_CLI}.judge:levels_explain", "What each action class may do alone, per level."),
            "promote-check": Lazy(
                f"{_CLI}.scorecard:promote_check", "Does a scope's shadow trial meet the next level's criteria?"
            ),
        },
    ),
    "policy": (
        JUDGE,
        "Work with the Rego policies (policies/).",
        {
            "test": Lazy(
                f"{_CLI}.policy_test:policy_test", "Run the policies' tests: PASS/FAIL per file and coverage."
            ),
            "bundle": Lazy(
                f"{_CLI}.policy_bundle:policy_bundle", "Write the policies as an OPA bundle (.tar.gz) for your own OPA."
            ),
            "check": Lazy(
                f"{_CLI}.policy_check:policy_check", "Load the policies on each engine: which run them, and why not."
            ),
        },
    ),
    "incidents": (
        LOOP,
        "Incidents: the ledger's list, and each workflow's live status.",
        {
            "list": Lazy(f"{_CLI}.loop:incidents_list", "Every incident in the ledger, with its workflow's phase."),
            "show": Lazy(f"{_CLI}.loop:incidents_show", "One incident now: each action's verdict, status, approvers."),
        },
    ),
    "audit": (
        AUDIT,
        "The audit trail: ledger records, tamper check, one-file export, per-action narrative.",
        {
            "show": Lazy(f"{_CLI}.audit:audit_show", "The incident's ledger records in order, one row each."),
            "verify": Lazy(
                f"{_CLI}.audit:audit_verify", "Recompute the ledger's hash chain; name the first bad record."
            ),
            "export": Lazy(f"{_CLI}.audit:audit_export", "One JSON document with everything an auditor needs."),
            "trail": Lazy(f"{_CLI}.trail:audit_trail", "One narrative per action, from alert evidence to outcome."),
        },
    ),
    "approvers": (
        LOOP,
        "Approvers' signing keys for signed votes (approve --key).",
        {
            "keygen": Lazy(f"{_CLI}.keys:keygen", "Make an approver's signing key pair (private key file 0600)."),
            "list": Lazy(f"{_CLI}.keys:approvers_list", "The approvers with signing keys; are unsigned votes refused?"),
        },
    ),
    "tokens": (
        LOOP,
        "The HTTP API's bearer tokens: one per sender, scoped, stored hashed, revocable.",
        {
            "add": Lazy(f"{_CLI}.tokens:tokens_add", "Make a sender's token (printed once, stored as its SHA-256)."),
            "list": Lazy(f"{_CLI}.tokens:tokens_list", "The tokens: name, scopes, created, revoked."),
            "revoke": Lazy(f"{_CLI}.tokens:tokens_revoke", "Revoke a token: its next request gets 401."),
        },
    ),
    "accounts": (
        LOOP,
        "The approval inbox's local accounts: argon2-hashed passwords, each mapped to a person in identities.yaml.",
        {
            "add": Lazy(f"{_CLI}.accounts:accounts_add", "Make an account for a person in identities.yaml."),
            "passwd": Lazy(f"{_CLI}.accounts:accounts_passwd", "Set a new password; its sessions end."),
            "disable": Lazy(f"{_CLI}.accounts:accounts_disable", "Disable an account; its sessions end."),
            "list": Lazy(f"{_CLI}.accounts:accounts_list", "The accounts: name, identity, created, disabled."),
        },
    ),
    "lab": (
        LOOP,
        "The lab: a real WAF and nftables in network namespaces (examples/lab/).",
        {
            "up": Lazy(f"{_CLI}.lab:up", "Build the lab: namespaces, nginx + ModSecurity, nftables, the loop."),
            "down": Lazy(f"{_CLI}.lab:down", "Stop everything the lab runs and delete its namespaces."),
            "status": Lazy(f"{_CLI}.lab:status", "What runs, and the addresses in the nft blocklist."),
            "attack": Lazy(f"{_CLI}.lab:attack", "Send a named attack (or benign traffic) to the victim's WAF."),
            "replay": Lazy(f"{_CLI}.lab:replay", "Replay labelled HTTP requests from many source addresses."),
        },
    ),
    "attackers": (
        AUDIT,
        "Attacker profiles: one per source address, across incidents, categories and sensors.",
        {
            "list": Lazy(f"{_CLI}.attackers:attackers_list", "Profiles, furthest kill-chain stage first."),
            "show": Lazy(f"{_CLI}.attackers:attackers_show", "One source: stages, targets, outcomes, our actions."),
        },
    ),
    "triage": (
        AUDIT,
        "Triage: explain an incident's verdict; WAF exclusions people's feedback suggests.",
        {
            "explain": Lazy(f"{_CLI}.triage:explain", "The incident's recorded triage: verdict, confidence, factors."),
            "exclusions": Lazy(
                f"{_CLI}.triage:exclusions", "WAF exclusions for rules people keep rejecting (never applied)."
            ),
        },
    ),
}

app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="Policy-guarded autonomy controller for incident response: alerts in, guarded response actions out.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


_TEMPORAL = "Temporal connection (commands that talk to Temporal)"


@app.callback()
def _root_options(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Configuration folder (levels, policies, playbooks; `autonomy init` makes one). Default: env "
            "AUTONOMY_HOME, else the nearest folder from here up holding autonomy.yaml, else the shipped defaults.",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--temporal-namespace",
            rich_help_panel=_TEMPORAL,
            help="Temporal namespace (env AUTONOMY_TEMPORAL_NAMESPACE).",
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--temporal-tls/--temporal-plaintext",
            rich_help_panel=_TEMPORAL,
            help="TLS to Temporal; default: on when a TLS setting or an API key is given (env AUTONOMY_TEMPORAL_TLS).",
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            "--temporal-tls-cert",
            rich_help_panel=_TEMPORAL,
            help="mTLS client certificate, PEM (env AUTONOMY_TEMPORAL_TLS_CERT).",
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            "--temporal-tls-key",
            rich_help_panel=_TEMPORAL,
            help="mTLS client key, PEM (env AUTONOMY_TEMPORAL_TLS_KEY).",
        ),
    ] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option(
            "--temporal-tls-ca",
            rich_help_panel=_TEMPORAL,
            help="CA of the server's certificate (env AUTONOMY_TEMPORAL_TLS_CA).",
        ),
    ] = None,
    tls_server_name: Annotated[
        str | None,
        typer.Option(
            "--temporal-tls-server-name",
            rich_help_panel=_TEMPORAL,
            help="Name the server's certificate must carry (env AUTONOMY_TEMPORAL_TLS_SERVER_NAME).",
        ),
    ] = None,
    api_key_file: Annotated[
        str | None,
        typer.Option(
            "--temporal-api-key-file",
            rich_help_panel=_TEMPORAL,
            help="File holding the Temporal Cloud API key (env AUTONOMY_TEMPORAL_API_KEY_FILE, or the key itself in "
            "AUTONOMY_TEMPORAL_API_KEY; never a flag: it would show in ps).",
        ),
    ] = None,
) -> None:
    """The configuration folder, and the Temporal connection for every command that talks to Temporal."""
    from autonomy_controller.workflows.connection import set_flags

    _settle_home(home)

    set_flags(
        {
            "AUTONOMY_TEMPORAL_NAMESPACE": namespace,
            "AUTONOMY_TEMPORAL_TLS": None if tls is None else str(tls).lower(),
            "AUTONOMY_TEMPORAL_TLS_CERT": tls_cert,
            "AUTONOMY_TEMPORAL_TLS_KEY": tls_key,
            "AUTONOMY_TEMPORAL_TLS_CA": tls_ca,
            "AUTONOMY_TEMPORAL_TLS_SERVER_NAME": tls_server_name,
            "AUTONOMY_TEMPORAL_API_KEY_FILE": api_key_file,
        }
    )


def _settle_home(flag: Path | None) -> None:
    """Check the home now (a bad one is named before any work) and export it, so the processes a command starts
    (worker, lab, demo) read the same configuration whatever their working folder. Without the flag, `main`
    exports the one found from the current folder (the in-process test runner must not leave it behind)."""
    from autonomy_controller.controller.config import ConfigError, find_home, home_layout

    if flag is not None:
        os.environ["AUTONOMY_HOME"] = str(flag.expanduser().resolve())
    try:
        home_layout(find_home())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


for _name, (_panel, _help, _commands) in GROUPS.items():
    _group = typer.Typer(cls=lazy_group(_commands), help=_help, no_args_is_help=True)
    app.add_typer(_group, name=_name, rich_help_panel=_panel)

__all__ = ["COMMANDS", "GROUPS", "app"]


def main() -> None:
    """The `autonomy` console script: the Typer app, with a clean exit after Temporal was used.

    The Temporal SDK's Rust threads can call into Python while the interpreter finalizes and abort the process
    ("PyGILState_Release: thread state must be current", temporalio/sdk-python#300): a short command that
    already finished its work would then exit with SIGABRT. After a Temporal client was made, the process
    flushes its output and leaves with its exit code without finalizing.
    """
    from autonomy_controller.controller.config import ConfigError, find_home

    with contextlib.suppress(ConfigError):  # the root callback names the error, after --help had its chance
        os.environ["AUTONOMY_HOME"] = str(find_home())
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    worker = sys.modules.get("autonomy_controller.workflows.worker")  # only a command that used Temporal imported it
    if worker is not None and worker.temporal_client_created():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
