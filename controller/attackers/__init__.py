"""Attacker profiles: one per source address, kept across incidents, categories and sensors (docs/attackers.md).

A profile is a view of the ledger, folded incrementally into tables of the ledger's own database: first and
last seen, alerts per sensor and category, ATT&CK techniques, targets (inventory assets, URL paths), outcomes
(blocked by the WAF, what the application answered), what the controller did, and the kill-chain stage reached,
each citing the ledger seqs it came from. The loop folds after every alert batch it writes (`track_batch`, called
by workflows/client.py); `autonomy attackers list|show` read them.

Profiles raise no autonomy: the guard reads one fact from them, a source's standing before its case
(standing.py: how long the sensors knew it, how much the application answered), which can only ask a person.
Nothing else in them (a User-Agent, a path) reaches a guard, policy or level.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from autonomy_controller.controller.attackers.observe import TrackingConfig
from autonomy_controller.controller.attackers.profile import AttackerProfile, Limits, network_of
from autonomy_controller.controller.attackers.store import AttackerStore, FoldReport, StoreStatus
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.levels import LevelConfigError, load_level_config
from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError, data_file, load_bundle
from autonomy_controller.controller.ledger import Ledger, LedgerError
from autonomy_controller.controller.models import STAGES, Category, Stage, stage_rank
from autonomy_controller.controller.triage.model import TRIAGE_FILE, load_triage_model

__all__ = [
    "STAGES",
    "AttackerProfile",
    "AttackerStore",
    "FoldReport",
    "Limits",
    "Stage",
    "StoreStatus",
    "TrackingConfig",
    "network_of",
    "stage_rank",
    "track",
    "track_batch",
    "tracking_config",
]

log = logging.getLogger(__name__)
_CACHE: dict[tuple[Path, Path], tuple[tuple[float, float], TrackingConfig]] = {}
_CACHE_LOCK = threading.Lock()


def tracking_config(settings: Settings) -> TrackingConfig:
    """Triage's ATT&CK tables and the inventory as they are on disk now (reloaded when either file changes)."""
    key = (settings.levels_dir, settings.policies_dir)
    inventory_file = data_file(settings.policies_dir, "inventory")
    stamp = (_mtime(settings.levels_dir / TRIAGE_FILE), _mtime(inventory_file))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        model = load_triage_model(settings.levels_dir)
        bundle = load_bundle(settings.policies_dir, load_level_config(settings.levels_dir))
        config = TrackingConfig(
            mapping=model.attack,
            attack_categories=frozenset(Category(c) for c in model.attack_class_categories),
            waf_sources=frozenset(model.waf_sources),
            assets=AssetIndex(bundle.inventory, bundle.data.get("inventory", {}).get("domain")),
        )
        _CACHE[key] = (stamp, config)
        return config


def track(ledger: Ledger, settings: Settings | None = None, limits: Limits | None = None) -> FoldReport:
    """Fold what the ledger gained since the last fold into the profiles (raises on a broken config or database)."""
    config = tracking_config(settings or Settings())
    return AttackerStore(ledger).fold(config, limits or Limits.from_env())


def track_batch(ledger: Ledger) -> FoldReport | None:
    """The loop's hook, after each alert batch is in the ledger. Profiles only describe, so a fold that fails
    must not stop the batch from reaching its workflow: the reason is logged and the next batch folds again
    from the same cursor (nothing is lost; `autonomy attackers list` shows how far the profiles lag)."""
    try:
        return track(ledger)
    except (LedgerError, SQLAlchemyError, LevelConfigError, PolicyBundleError, ValueError, OSError) as exc:
        log.warning("attacker profiles not updated (retried after the next batch): %s", exc)
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0
