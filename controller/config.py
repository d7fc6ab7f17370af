"""Where the controller finds its declarative config, and how the environment overrides it.

Everything a deployment changes (levels, policies, playbooks, OPA address) comes from files or environment
variables, never from code, so scaling out or pointing at a real OPA is configuration.

A **configuration folder** (a "home") holds `autonomy.yaml` beside `levels/`, `policies/`, the playbooks and
`config/`; `autonomy init DIR` writes one for a team to version in git. The home is, in order: the `--home` flag
(which the CLI puts into AUTONOMY_HOME so the processes it starts find the same one), AUTONOMY_HOME, the current
folder or the nearest parent holding `autonomy.yaml` (like git), else the defaults the product ships (a checkout's
root, or the installed package's folder, where state then goes to the user's state folder). Each part can
still be pointed elsewhere on its own (AUTONOMY_LEVELS_DIR, AUTONOMY_POLICIES_DIR, ...).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The `autonomy_controller` package's folder: a checkout's root, or the installed package in site-packages
(setup.py ships the default configuration there, where it sits in the checkout)."""
INSTALLED = not (REPO_ROOT / "pyproject.toml").is_file()
"""Running from an installed wheel rather than a checkout: the defaults are then read-only."""
HOME_MARKER = "autonomy.yaml"
HOME_LAYOUT = {
    "levels": "levels",
    "policies": "policies",
    "playbooks": "playbooks",
    "config": "config",
    "state": "var",
    "examples": "examples/alerts",
}
"""Where each part lives inside a home, unless its autonomy.yaml says otherwise (a checkout's does: its playbooks
are under workflows/)."""
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
"""Where `autonomy server` listens by default (the Temporal CLI's own default port)."""


class ConfigError(ValueError):
    """A configuration folder that cannot be used; the message names the file and what is wrong."""


def _path_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


SHARED_DIR_ENV = "AUTONOMY_SHARED_DIR"


def shared_dir() -> Path:
    """Real sensor output (`samples/`) and public corpora (`corpora/`) that the tests, benches and the demo read:
    kept beside the repository, not in it (the CSIC 2010 corpus comes with no licence to redistribute).
    `../shared` from the checkout, or AUTONOMY_SHARED_DIR."""
    return _path_from_env(SHARED_DIR_ENV, REPO_ROOT.parent / "shared")


def defaults_home() -> Path:
    """The configuration the product ships: the checkout's root, or the installed package's folder."""
    return REPO_ROOT


def find_home(start: Path | None = None) -> Path:
    """AUTONOMY_HOME, else the nearest folder from `start` (the current one) up holding autonomy.yaml, else
    the shipped defaults. A named home that is not one is an error, never a silent fallback."""
    named = os.environ.get("AUTONOMY_HOME")
    if named:
        return _named_home(named)
    return _home_above(start or Path.cwd())


# Settings() is built on hot paths (every signal, every activity): each answer is looked up once per process
# (a home is not made or moved under a running process; a named home found missing is not cached).
@cache
def _named_home(named: str) -> Path:
    home = Path(named).expanduser().resolve()
    if not (home / HOME_MARKER).is_file():
        raise ConfigError(f"AUTONOMY_HOME={named}: no {HOME_MARKER} there (make one with `autonomy init {named}`)")
    return home


@cache
def _home_above(start: Path) -> Path:
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / HOME_MARKER).is_file():
            return folder
    return defaults_home()


def home_layout(home: Path) -> dict[str, Path]:
    """The parts of a home, from its autonomy.yaml (relative paths; unknown keys refused, so a typo is seen)."""
    return dict(_read_layout(home))


@cache  # Settings() is built often; a home's layout does not change while a process runs
def _read_layout(home: Path) -> dict[str, Path]:
    marker = home / HOME_MARKER
    try:
        declared = yaml.safe_load(marker.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{marker}: cannot read it: {exc}") from exc
    if not isinstance(declared, dict):
        raise ConfigError(f"{marker}: must be a mapping of part -> folder (parts: {', '.join(HOME_LAYOUT)})")
    unknown = sorted(set(declared) - set(HOME_LAYOUT) - {"version"})
    if unknown:
        raise ConfigError(f"{marker}: unknown part(s) {', '.join(unknown)} (parts: {', '.join(HOME_LAYOUT)})")
    parts = {name: home / str(declared.get(name, default)) for name, default in HOME_LAYOUT.items()}
    if INSTALLED and home == REPO_ROOT:
        # Inside site-packages: read-only for the user, so state goes to their state folder.
        state_root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        parts["state"] = state_root / "autonomy"
    return parts


def home_part(name: str) -> Path:
    return _read_layout(find_home())[name]


def find_opa() -> Path:
    """AUTONOMY_OPA_BIN, else a checkout's .tools/opa (make builds it), else `opa` on PATH (looked up only then:
    Settings() is built on hot paths)."""
    named = os.environ.get("AUTONOMY_OPA_BIN")
    if named:
        return Path(named).expanduser().resolve()
    built = REPO_ROOT / ".tools" / "opa"
    on_path = None if built.exists() else shutil.which("opa")
    return Path(on_path) if on_path else built


@dataclass(frozen=True)
class Settings:
    levels_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_LEVELS_DIR", home_part("levels")))
    policies_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_POLICIES_DIR", home_part("policies")))
    config_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_CONFIG_DIR", home_part("config")))
    """Controller config that is not policy (the approver keys): never under policies_dir, where OPA would load
    it as data."""
    playbooks_dir: Path = field(
        default_factory=lambda: _path_from_env("AUTONOMY_PLAYBOOKS_DIR", home_part("playbooks"))
    )
    state_dir: Path = field(default_factory=lambda: _path_from_env("AUTONOMY_STATE_DIR", home_part("state")))
    opa_bin: Path = field(default_factory=find_opa)
    opa_url: str | None = field(default_factory=lambda: os.environ.get("AUTONOMY_OPA_URL") or None)
    policy_engine: str = field(default_factory=lambda: os.environ.get("AUTONOMY_POLICY_ENGINE") or "wasm")
    """wasm (OPA-compiled WebAssembly, in-process; the default), embedded (regopy) or opa (server):
    controller/decision/runtime.py, docs/engines.md."""
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
        """The bundled example alerts plus, when present, the shared real sensor samples (`shared_dir`)."""
        files = sorted(home_part("examples").glob("*.jsonl"))
        samples = shared_dir() / "samples"
        return files + (sorted(samples.glob("*.jsonl")) if samples.is_dir() else [])

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
