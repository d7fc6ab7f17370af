"""`autonomy`: the command line for security leads, platform teams and auditors.

Every command prints a table for people and, with --json, one JSON document per line for machines. This
module is only the command map; each group lives in its own module:

- `judge`: evaluate, levels, policy (what the controller *would* do; nothing runs, no Temporal)
- `loop`: server, worker, submit, ingest, approve, reject, incidents (the Temporal loop)
- `audit`: report, audit show / verify / export (the ledger and the workflow history)
- `demo`: the whole loop on the sample alerts at several levels
- `simulate`: what-if replay of past alerts through levels and candidate configs
- `scorecard`: what autonomy did per scope and level; `levels promote-check` for shadow trials
- `lab`: a real WAF and nftables in network namespaces
- `keys`: approvers' signing keys (approvers keygen / list) for signed votes
"""

from __future__ import annotations

import os
import sys

import typer

from controller.cli import audit, demo, judge, loop, scorecard, trail
from controller.cli import keys as keys_cli
from controller.cli import lab as lab_cli
from controller.cli import simulate as simulate_cli
from controller.cli import triage as triage_cli
from workflows.worker import temporal_client_created

app = typer.Typer(
    help="Policy-guarded autonomy controller for incident response: alerts in, guarded response actions out.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
levels_app = typer.Typer(help="Inspect and validate the autonomy levels (levels/).", no_args_is_help=True)
policy_app = typer.Typer(help="Work with the Rego policies (policies/).", no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents: the ledger's list, and each workflow's live status.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The audit trail: ledger records, tamper check, one-file export, per-action narrative.", no_args_is_help=True
)
app.add_typer(levels_app, name="levels")
app.add_typer(policy_app, name="policy")
app.add_typer(incidents_app, name="incidents")
app.add_typer(audit_app, name="audit")
approvers_app = typer.Typer(help="Approvers' signing keys for signed votes (approve --key).", no_args_is_help=True)
app.add_typer(approvers_app, name="approvers")
lab_app = typer.Typer(
    help="The lab: a real WAF and nftables in network namespaces (examples/lab/).", no_args_is_help=True
)
app.add_typer(lab_app, name="lab")
app.add_typer(triage_cli.app, name="triage", no_args_is_help=True)

# judging, without running anything
app.command()(judge.evaluate)
levels_app.command("validate")(judge.levels_validate)
levels_app.command("show")(judge.levels_show)
levels_app.command("explain")(judge.levels_explain)
levels_app.command("promote-check")(scorecard.promote_check)
policy_app.command("test")(judge.policy_test)
app.command()(simulate_cli.simulate)
app.command()(scorecard.scorecard)

# the loop
app.command()(demo.demo)
app.command()(loop.server)
app.command()(loop.worker)
app.command()(loop.submit)
app.command()(loop.ingest)
app.command()(loop.approve)
app.command()(loop.reject)
approvers_app.command("keygen")(keys_cli.keygen)
approvers_app.command("list")(keys_cli.approvers_list)
incidents_app.command("list")(loop.incidents_list)
incidents_app.command("show")(loop.incidents_show)

# the audit
app.command()(audit.report)
audit_app.command("show")(audit.audit_show)
audit_app.command("verify")(audit.audit_verify)
audit_app.command("export")(audit.audit_export)
audit_app.command("trail")(trail.audit_trail)

# the lab
lab_app.command("up")(lab_cli.up)
lab_app.command("down")(lab_cli.down)
lab_app.command("status")(lab_cli.status)
lab_app.command("attack")(lab_cli.attack)
lab_app.command("replay")(lab_cli.replay)

__all__ = ["app"]


def main() -> None:
    """The `autonomy` console script: the Typer app, with a clean exit after Temporal was used.

    The Temporal SDK's Rust threads can call into Python while the interpreter finalizes and abort the process
    ("PyGILState_Release: thread state must be current", temporalio/sdk-python#300): a short command that
    already finished its work would then exit with SIGABRT. After a Temporal client was made, the process
    flushes its output and leaves with its exit code without finalizing.
    """
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if temporal_client_created():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
