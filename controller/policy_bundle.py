"""The policy bundle: Rego modules + compiled data + levels, and the revision hash that names them.

Both engines load the same bundle, so the same decision comes out of both; the revision (a hash over every
module, the compiled data and the levels) is recorded with each decision so an auditor can tie a decision
to the exact policy that made it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.addresses import address_facts
from controller.levels import LevelConfig

ENTRYPOINT = "autonomy/decision/result"
DATA_SUBDIR = "data"


class PolicyBundleError(ValueError):
    pass


@dataclass(frozen=True)
class PolicyBundle:
    modules: dict[str, str]
    data: dict[str, Any]
    revision: str
    levels: LevelConfig
    source_dir: Path

    @property
    def inventory(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("inventory", {}).get("assets", {}))

    @property
    def identities(self) -> dict[str, Any]:
        return dict(self.data.get("identities", {}))

    def write_to(self, directory: Path) -> Path:
        """Lay the bundle out as files (modules + one data.json) for `opa run` and `opa test`."""
        directory.mkdir(parents=True, exist_ok=True)
        for relative, source in self.modules.items():
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source)
        data_file = directory / "data.json"
        data_file.write_text(json.dumps(self.data, sort_keys=True))
        return data_file


def is_test_module(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def _read_modules(policies_dir: Path, include_tests: bool) -> dict[str, str]:
    modules = {
        str(path.relative_to(policies_dir)): path.read_text()
        for path in sorted(policies_dir.rglob("*.rego"))
        if include_tests or not is_test_module(path)
    }
    if not modules:
        raise PolicyBundleError(f"no Rego modules under {policies_dir}")
    return modules


def _compile_allowlists(allowlists: dict[str, Any], source: Path) -> dict[str, Any]:
    networks: dict[str, Any] = {}
    for name, entry in (allowlists.get("networks") or {}).items():
        try:
            networks[name] = {**entry, **address_facts(str(entry["cidr"]))}
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyBundleError(f"{source.name}: networks.{name}.cidr: {exc}") from None
    return {**allowlists, "networks": networks}


ADDRESS_BUCKET_BITS = 8


def address_bucket(bits: str) -> str:
    """The index bucket of a full-length address: its last 8 bits (the policy computes the same)."""
    return bits[-ADDRESS_BUCKET_BITS:]


def _compile_inventory(inventory: dict[str, Any], source: Path) -> dict[str, Any]:
    """Index every asset address (with bits) in 256 buckets keyed by the address's last 8 bits.

    Why buckets: regopy looks up a *missing* key in O(size of the object) (measured: 4 ms at 5,000 keys,
    against 0.02 ms for a present key), and an attacker's address is a missing key. Every bucket is present,
    so the policy's lookup stays fast at 10,000 assets in both engines.
    """
    index: dict[str, dict[str, Any]] = {format(b, f"0{ADDRESS_BUCKET_BITS}b"): {} for b in range(256)}
    for name, asset in (inventory.get("assets") or {}).items():
        for address in (asset or {}).get("addresses") or []:
            try:
                facts = address_facts(str(address))
            except ValueError as exc:
                raise PolicyBundleError(f"{source.name}: assets.{name}.addresses: {exc}") from None
            bucket = index[address_bucket(facts["bits"])]
            if facts["value"] in bucket:
                other = bucket[facts["value"]]["asset"]
                raise PolicyBundleError(f"{source.name}: assets.{name}.addresses: {address} is also {other}'s")
            bucket[facts["value"]] = {"asset": name, **facts}
    return {**inventory, "address_index": index}


COMPILERS = {"allowlists": _compile_allowlists, "inventory": _compile_inventory}


def compile_document(name: str, document: dict[str, Any], source: Path) -> dict[str, Any]:
    compiler = COMPILERS.get(name)
    return compiler(document, source) if compiler else document


def compile_data(policies_dir: Path, levels: LevelConfig) -> dict[str, Any]:
    """data/*.yaml keyed by file stem; allowlists and inventory addresses compiled to bit prefixes; the levels."""
    data: dict[str, Any] = {}
    for path in sorted((policies_dir / DATA_SUBDIR).glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise PolicyBundleError(f"{path.name}: not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise PolicyBundleError(f"{path.name}: top level must be a mapping")
        data[path.stem] = compile_document(path.stem, document, path)
    data["levels"] = levels.policy_data()
    return data


def revision_of(modules: dict[str, str], data: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + digest.hexdigest()


def load_bundle(policies_dir: Path, levels: LevelConfig) -> PolicyBundle:
    modules = _read_modules(policies_dir, include_tests=False)
    data = compile_data(policies_dir, levels)
    revision = revision_of(modules, data)
    data["meta"] = {"revision": revision}
    return PolicyBundle(modules=modules, data=data, revision=revision, levels=levels, source_dir=policies_dir)


def with_documents(bundle: PolicyBundle, **documents: Any) -> PolicyBundle:
    """The same bundle with some top-level data documents replaced, re-hashed (benchmarks, what-if runs)."""
    data = {key: value for key, value in bundle.data.items() if key != "meta"}
    data.update(
        {name: compile_document(name, doc, bundle.source_dir / DATA_SUBDIR / name) for name, doc in documents.items()}
    )
    revision = revision_of(bundle.modules, data)
    data["meta"] = {"revision": revision}
    return PolicyBundle(
        modules=bundle.modules, data=data, revision=revision, levels=bundle.levels, source_dir=bundle.source_dir
    )
