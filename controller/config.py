"""Where the controller finds its declarative config, and how the environment overrides it.

Everything a deployment changes (levels, policies, playbooks, OPA address) comes from files or environment
variables, never from code, so scaling out or pointing at a real OPA is configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
"""Where `autonomy server` listens by default (the Temporal CLI's own default port)."""


def _path_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    levels_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_LEVELS_DIR", REPO_ROOT / "levels"))
    policies_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_POLICIES_DIR", REPO_ROOT / "policies"))
    config_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_CONFIG_DIR", REPO_ROOT / "config"))
    """Controller config that is not policy (the approver keys): never under policies_dir, where OPA would load
    it as data."""
    playbooks_dir: Path = field(
        default_factory=lambda: _path_from_env("AUTONOMY_PLAYBOOKS_DIR", REPO_ROOT / "workflows" / "playbooks")
    )
    state_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_STATE_DIR", REPO_ROOT / "var"))
    opa_bin: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_OPA_BIN", REPO_ROOT / ".tools" / "opa"))
    opa_url: str | None = field(default_factory=lambda: os.environ.get("AUTONOMY_OPA_URL") or None)
    policy_engine: str = field(default_factory=lambda: os.environ.get("AUTONOMY_POLICY_ENGINE") or "wasm")
    """wasm (OPA-compiled WebAssembly, in-process; the default), embedded (regopy) or opa (server):
    controller/runtime.py, docs/engines.md."""
    ledger_url_override: str | None = field(default_factory=lambda: os.environ.get("AUTONOMY_LEDGER_URL") or None)
    temporal_address: str = field(
        default_factory=lambda: os.environ.get("AUTONOMY_TEMPORAL_ADDRESS") or DEFAULT_TEMPORAL_ADDRESS
    )
    """host:port of the Temporal frontend that `worker`, `submit`, `approve` and friends talk to."""

    @property
    def ledger_url(self) -> str:
        """SQLite in the state folder unless AUTONOMY_LEDGER_URL names another database (PostgreSQL)."""
        return self.ledger_url_override or f"sqlite:///{self.state_dir / 'ledger.db'}"

    @property
    def example_alert_files(self) -> list[Path]:
        """The bundled example alerts plus, when present beside the repo, the shared real sensor samples."""
        files = sorted((REPO_ROOT / "examples" / "alerts").glob("*.jsonl"))
        shared = REPO_ROOT.parent / "shared" / "samples"
        return files + (sorted(shared.glob("*.jsonl")) if shared.is_dir() else [])

    @property
    def dead_letter_path(self) -> Path:
        return self.state_dir / "dead-letter.jsonl"

    @property
    def tickets_dir(self) -> Path:
        """The local ticket queue (ticket.create): one JSON file per ticket."""
        return Path(os.environ.get("AUTONOMY_TICKETS_DIR") or self.state_dir / "tickets").expanduser()

    @property
    def channels_file(self) -> Path:
        """Webhook channels for notify.webhook: `channels: {name: {url: ..., timeout_seconds: ...}}`."""
        return Path(os.environ.get("AUTONOMY_CHANNELS_FILE") or self.state_dir / "channels.yaml").expanduser()

    @property
    def enforcement_file(self) -> Path:
        """Real enforcement points (`nftables: {...}`, see actions/adapters/nftables/config.py). Without this file the
        network.* and host.* actions have no adapter: nothing touches a firewall unless configured to."""
        return Path(os.environ.get("AUTONOMY_ENFORCEMENT_FILE") or self.state_dir / "enforcement.yaml").expanduser()

    @property
    def approver_keys_file(self) -> Path:
        """Approvers' PUBLIC keys for signed votes (controller/approver_keys.py): config/approver_keys.yaml, in git.

        Not under policies/: OPA loads every YAML file there as data (`opa eval -d policies/`), and rotating a key
        is not a policy change (it never moves the policy revision). When AUTONOMY_APPROVER_KEYS_FILE names a
        file, it must exist."""
        named = os.environ.get("AUTONOMY_APPROVER_KEYS_FILE")
        return Path(named).expanduser() if named else self.config_dir / "approver_keys.yaml"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"
