"""The policy bundle: Rego modules + compiled data + levels, and the revision hash that names them.

Both engines load the same bundle, so the same decision comes out of both; the revision (a hash over every
module, the compiled data and the levels) is recorded with each decision so an auditor can tie a decision
to the exact policy that made it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autonomy_controller.controller.addresses import AddressError, address_facts, parse_network
from autonomy_controller.controller.config import defaults_home
from autonomy_controller.controller.decision.inventory import AssetError, canonical_host_text, checked_asset
from autonomy_controller.controller.decision.levels import LevelConfig

ENTRYPOINT = "autonomy/decision/result"
# Static checks of the bundle's data (policies/autonomy/config.rego): evaluated once when an engine loads the
# bundle, never per decision; an engine refuses a bundle whose errors are not empty.
CONFIG_ENTRYPOINT = "autonomy/config/errors"
CONFIG_PACKAGE = "autonomy.config"
# Each data document lives where plain OPA loads it: policies/<name>/data.yaml is data.<name> in our bundle and
# in `opa eval -d policies/`, `opa test policies/` alike (OPA places a data file at its folder's path).
DATA_FILE = "data.yaml"
# What OPA's loader reads as data under a folder (any name, hidden files too): every such file under policies/
# other than a <name>/data.yaml would land in plain OPA's data where our bundle has nothing, so it is refused.
OPA_DATA_SUFFIXES = (".json", ".yaml", ".yml")
# Top-level documents the controller writes itself (compile_data, _with_meta): no data file may name them.
COMPILED_DOCUMENTS = ("levels", "triage_model", "number_text", "meta")
# The JSON Schemas of the input and data documents: in the repository beside policies/ (so that `opa eval -d
# policies/` loads no schema as data), and in an exported bundle under schema/ (OPA reads only data.json there).
SCHEMA_DIR = defaults_home() / "schema"
SCHEMA_FILES = ("input.schema.json", "data.schema.json")
# What the engines type-check the modules' reads of `input` against at load (engines/input_types.py).
INPUT_SCHEMA = SCHEMA_DIR / "input.schema.json"


# A module path followed by `:` (OPA's and regopy's `file:line`), not inside a longer path.
_MODULE_PATH = re.compile(r"(?<![\w/.-])([\w./-]+\.rego):")


class PolicyBundleError(ValueError):
    pass


@dataclass(frozen=True)
class PolicyBundle:
    modules: dict[str, str]
    data: dict[str, Any]
    revision: str
    levels: LevelConfig
    source_dir: Path
    # The input contract the modules are type-checked against; None only for a test harness's own modules that
    # read an input of their own.
    input_schema: Path | None = INPUT_SCHEMA

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

    def as_authored(self, said: str, written_to: Path | None = None) -> str:
        """A tool's words about this bundle's modules (opa, regopy, a wasm abort) naming the files an author
        edits: a module's path relative to the bundle (`guardrails/x.rego:3`), or under `written_to` (a copy
        made by write_to), becomes the file under source_dir, so that `file:line` leads to the right file."""
        if written_to is not None:
            said = said.replace(f"{written_to}{os.sep}", "")
        return _MODULE_PATH.sub(lambda m: f"{self.source_dir / m[1]}:" if self._authored(m[1]) else m[0], said)

    def _authored(self, relative: str) -> bool:
        """A module of the bundle, or a test module beside them (`autonomy policy test` runs those too)."""
        return relative in self.modules or (self.source_dir / relative).is_file()

    def opa_bundle_files(self) -> dict[str, bytes]:
        """The files of a standard OPA bundle: `.manifest` (revision, roots), the Rego modules (no tests), the
        compiled `data.json`, and the JSON Schemas under schema/. `opa run --server --bundle` serves it as is."""
        files = {".manifest": json.dumps(self.opa_manifest(), indent=2, sort_keys=True).encode() + b"\n"}
        files.update({relative: source.encode() for relative, source in sorted(self.modules.items())})
        files["data.json"] = json.dumps(self.data, sort_keys=True).encode()
        files.update({f"schema/{name}": (SCHEMA_DIR / name).read_bytes() for name in SCHEMA_FILES})
        return files

    def opa_manifest(self) -> dict[str, Any]:
        """The bundle's .manifest: OPA reports the revision at /v1/status and refuses data outside the roots."""
        return {
            "revision": self.revision,
            "roots": bundle_roots(self.modules, self.data),
            "rego_version": 1,
            "metadata": {
                "entrypoint": ENTRYPOINT,
                "config_check": CONFIG_ENTRYPOINT,
                "schemas": {name.split(".")[0]: f"schema/{name}" for name in SCHEMA_FILES},
            },
        }

    def write_opa_bundle(self, out: Path) -> dict[str, bytes]:
        """Write the bundle as OPA's .tar.gz, byte for byte the same for the same revision (fixed times and
        owners, sorted entries), so two exports of one policy compare equal. Returns the files written."""
        files = self.opa_bundle_files()
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buffer.getvalue())
        return files


PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w]*)", re.MULTILINE)
_COMMENT_OR_STRING = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|#[^\n]*')
_DATA_ROOT = re.compile(r"(?<![\w.])data\.([A-Za-z_]\w*)")


def rego_code(source: str) -> str:
    """Rego source with its comments and string literals blanked, lines and offsets kept: what a scan of the code
    (called built-ins, data references) reads."""
    return _COMMENT_OR_STRING.sub(lambda literal: re.sub(r"[^\n]", " ", literal[0]), source)


def bundle_roots(modules: dict[str, str], data: dict[str, Any]) -> list[str]:
    """The manifest's roots: every top-level data document and the first segment of every package. OPA then
    refuses another bundle that writes under them, and this one writing anywhere else."""
    packages = {match.group(1) for source in modules.values() for match in PACKAGE.finditer(source)}
    return sorted(packages | set(data))


def is_test_module(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def read_modules(policies_dir: Path, include_tests: bool) -> dict[str, str]:
    modules = {
        str(path.relative_to(policies_dir)): path.read_text()
        for path in sorted(policies_dir.rglob("*.rego"))
        if include_tests or not is_test_module(path)
    }
    if not modules:
        raise PolicyBundleError(f"no Rego modules under {policies_dir}")
    return modules


def _compiled_first(compiled: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The document with the compiled keys added (they win over any of the same name), placed first (DATA_ORDER)."""
    return {**compiled, **{key: value for key, value in document.items() if key not in compiled}}


def _where(source: Path) -> str:
    """A data file as error messages name it: inventory/data.yaml."""
    return f"{source.parent.name}/{source.name}"


FAMILIES = {4: "ipv4", 6: "ipv6"}
WIDTHS = {"ipv4": 32, "ipv6": 128}


def comparison_views(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(family, bits) pairs an address or network is compared as: itself, plus each IPv4 prefix it embeds
    (IPv4-mapped, NAT64, 6to4, ...: controller/addresses.py). The policy does the same with a target's
    `embedded`, so a protected address is protected in every spelling, on either side."""
    views = [(FAMILIES[facts["version"]], str(facts["bits"]))]
    views.extend(("ipv4", str(bits)) for bits in facts["embedded"])
    return views


def _compile_allowlists(allowlists: dict[str, Any], source: Path) -> dict[str, Any]:
    """Add address facts to every network, and two per-family views of them for the policy.

    by_family: [{name, bits}] per family, IPv6 networks that embed IPv4 listed under ipv4 too, so the policy
    compares a target with one startswith per entry instead of three IPv4/IPv6 cases.
    prefixes: the same bits as one list per family, for the policy's single-call pre-check
    (strings.any_prefix_match): most targets hit no allowlisted network, and in regopy one built-in over a
    list costs far less than a Rego loop over it (about 3 us per iteration).
    """
    networks: dict[str, Any] = {}
    by_family: dict[str, list[dict[str, str]]] = {family: [] for family in WIDTHS}
    for name, entry in (allowlists.get("networks") or {}).items():
        try:
            networks[name] = {**entry, **address_facts(str(entry["cidr"]))}
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyBundleError(f"{_where(source)}: networks.{name}.cidr: {exc}") from None
        for family, bits in comparison_views(networks[name]):
            by_family[family].append({"name": name, "bits": bits})
    for views in by_family.values():
        views.sort(key=lambda view: (view["name"], view["bits"]))
    prefixes = {family: [view["bits"] for view in views] for family, views in by_family.items()}
    return _compiled_first({"prefixes": prefixes, "by_family": by_family, "networks": networks}, allowlists)


def hashed_index(entries: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The entries regrouped as {h[0]: {h[1]: {key: value}}}, where h is the hex md5 of the key.

    Why: regopy 1.5.2 finds a key in an object by walking the keys in order, present or missing (measured:
    0.5 us per key before it; 2.2 ms for the last of 4,096 keys, against 0.02 ms for the first). So a lookup
    in a 5,000-asset object costs up to ~3 ms, more than the whole decision. Hashed, a lookup walks at most
    16 + 16 keys and one leaf of about 1/256 of the entries, whatever the key: 0.02-0.04 ms at 5,000 entries.
    The policy hashes the same way (hashed_lookup in policies/guardrails/targets.rego). md5 only spreads the
    keys (both engines have crypto.md5); nothing here relies on it being hard to collide.
    """
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for key in sorted(entries):
        digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
        index.setdefault(digest[0], {}).setdefault(digest[1], {})[key] = entries[key]
    return index


# Naming the assets inside a range walks one bucket: the addresses sharing the range's first 24 (IPv4) or
# 64 (IPv6) bits.
RANGE_BUCKET_BITS = {"ipv4": 24, "ipv6": 64}


def _compile_inventory(inventory: dict[str, Any], source: Path) -> dict[str, Any]:
    """Index the assets by name and their addresses by bits, hashed (see hashed_index), for the guardrails.

    asset_index: the assets, by name.
    address_index: every asset address, {bits: asset}: a single address is one hashed lookup.
    range_index: the addresses in buckets, {first range_bucket_bits[family] bits: {bits: asset}} (an IPv4
    key has 24 bits, an IPv6 one 64, so the families share one index), with the bucket keys per family in
    range_keys. A range at least as long as a bucket key lies in one bucket (one lookup, then a walk of that
    bucket); a wider one is first checked with one strings.any_prefix_match over the keys (one built-in over
    a list costs regopy far less than a Rego loop over it, about 3 us per iteration).

    An IPv6 address that embeds an IPv4 one is indexed as that IPv4 too (the policy compares targets the same
    way). Addresses must be single addresses: an asset is a host, and the policy looks its addresses up by
    their full bits.
    """
    assets = _checked_assets(inventory.get("assets") or {}, source)
    _check_host_names(assets, source)
    by_bits: dict[str, str] = {}
    buckets: dict[str, dict[str, dict[str, str]]] = {family: {} for family in WIDTHS}
    for name, asset in assets.items():
        for address in (asset or {}).get("addresses") or []:
            try:
                facts = address_facts(str(address))
            except ValueError as exc:
                raise PolicyBundleError(f"{_where(source)}: assets.{name}.addresses: {exc}") from None
            if facts["num_addresses"] != 1:
                raise PolicyBundleError(
                    f"{_where(source)}: assets.{name}.addresses: {address} is a network, not an address"
                )
            for family, bits in comparison_views(facts):
                other = by_bits.setdefault(bits, name)
                if other != name:
                    raise PolicyBundleError(f"{_where(source)}: assets.{name}.addresses: {address} is also {other}'s")
                buckets[family].setdefault(bits[: RANGE_BUCKET_BITS[family]], {})[bits] = name
    compiled = {
        "asset_index": hashed_index(assets),
        "address_index": hashed_index(by_bits),
        "range_index": hashed_index({key: bucket for family in WIDTHS for key, bucket in buckets[family].items()}),
        "range_keys": {family: sorted(buckets[family]) for family in WIDTHS},
        "range_bucket_bits": dict(RANGE_BUCKET_BITS),
    }
    return _compiled_first(compiled, {**inventory, "assets": assets})


def _checked_assets(assets: Any, source: Path) -> dict[str, Any]:
    """Every asset's attributes validated (controller/decision/inventory.py, checked_asset), `tags` always a list."""
    if not isinstance(assets, dict):
        raise PolicyBundleError(f"{_where(source)}: assets must be a mapping of asset name to attributes")
    checked: dict[str, Any] = {}
    for name, asset in assets.items():
        try:
            checked[name] = checked_asset(asset)
        except AssetError as exc:
            raise PolicyBundleError(f"{_where(source)}: assets.{name}: {exc}") from None
    return checked


def _check_host_names(assets: dict[str, Any], source: Path) -> None:
    """Every spelling of a host (its name, its aliases, as DNS compares them) names one asset: a clash would move
    the crown-jewel rule and the level cap onto another asset (controller/decision/inventory.py resolves by these)."""
    owner: dict[str, str] = {}
    for name, asset in assets.items():
        for spelling in [name, *((asset or {}).get("aliases") or [])]:
            key = canonical_host_text(str(spelling))
            other = owner.setdefault(key, name)
            if other != name:
                raise PolicyBundleError(f"{_where(source)}: assets.{name}: host name {spelling!r} is also {other}'s")


def _compile_identities(identities: dict[str, Any], source: Path) -> dict[str, Any]:
    """Add user_index: the users by name, hashed (see hashed_index), for the identity guardrails."""
    users = identities.get("users") or {}
    if not isinstance(users, dict):
        raise PolicyBundleError(f"{_where(source)}: users must be a mapping of user name to attributes")
    return _compiled_first({"user_index": hashed_index(users)}, identities)


SPECIAL_PURPOSE_DECISIONS = ("deny", "approve", "allow")


def _compile_special_purpose(registry: dict[str, Any], source: Path) -> dict[str, Any]:
    """Check every special-purpose entry, add its address facts, and index the deny and approve entries per
    family the way allowlists are (by_family with each entry's decision, prefixes for the single-call
    pre-check): policies/guardrails/special_purpose.rego. `allow` entries (documentation ranges) stay listed
    but out of the indexes: the policy never matches them.

    An entry is compared in its own family only: the IPv6 entries that embed IPv4 (NAT64, 6to4, ...) stand for
    the IPv6 spelling itself, and a target's embedded IPv4 address is checked against the IPv4 entries anyway.
    """
    approval = registry.get("approval")
    if not (
        isinstance(approval, dict)
        and isinstance(approval.get("group"), str)
        and type(approval.get("quorum")) is int
        and approval["quorum"] >= 1
    ):
        raise PolicyBundleError(f"{_where(source)}: approval must be {{group: <approver group>, quorum: <whole >= 1>}}")
    entries = registry.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise PolicyBundleError(f"{_where(source)}: entries must map each address block to its entry")
    compiled: dict[str, Any] = {}
    by_family: dict[str, list[dict[str, str]]] = {family: [] for family in WIDTHS}
    for cidr, entry in entries.items():
        where = f"{_where(source)}: entries.{cidr}"
        try:
            network = parse_network(cidr)
        except AddressError as exc:
            raise PolicyBundleError(f"{where}: {exc}") from None
        if cidr != str(network):  # the key is what deny reasons name: one spelling per block
            raise PolicyBundleError(f"{where}: write the block as {network}")
        if not isinstance(entry, dict) or any(not isinstance(entry.get(key), str) for key in ("name", "rfc", "reason")):
            raise PolicyBundleError(f"{where}: needs name, rfc, decision and reason (text)")
        if entry.get("decision") not in SPECIAL_PURPOSE_DECISIONS:
            raise PolicyBundleError(f"{where}: decision must be one of {', '.join(SPECIAL_PURPOSE_DECISIONS)}")
        compiled[cidr] = {**entry, **address_facts(cidr)}
        if entry["decision"] != "allow":
            family = FAMILIES[network.version]
            by_family[family].append({"name": cidr, "bits": compiled[cidr]["bits"], "decision": entry["decision"]})
    for views in by_family.values():
        views.sort(key=lambda view: (view["bits"], view["name"]))
    prefixes = {family: [view["bits"] for view in views] for family, views in by_family.items()}
    return _compiled_first({"prefixes": prefixes, "by_family": by_family, "entries": compiled}, registry)


COMPILERS = {
    "allowlists": _compile_allowlists,
    "inventory": _compile_inventory,
    "identities": _compile_identities,
    "special_purpose": _compile_special_purpose,
}


def compile_document(name: str, document: dict[str, Any], source: Path) -> dict[str, Any]:
    compiler = COMPILERS.get(name)
    return compiler(document, source) if compiler else document


def data_file(policies_dir: Path, name: str) -> Path:
    """Where the data document `name` lives: policies/<name>/data.yaml, which OPA loads as data.<name>."""
    return policies_dir / name / DATA_FILE


def data_files(policies_dir: Path) -> dict[str, Path]:
    """The data documents under policies/, by name. Refused (PolicyBundleError): any other file OPA would load
    as data (a stray YAML, a data.json, a data file nested deeper), so plain OPA on policies/ never sees data
    the bundle lacks."""
    found: dict[str, Path] = {}
    stray: list[str] = []
    for path in sorted(policies_dir.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(OPA_DATA_SUFFIXES):
            continue
        relative = path.relative_to(policies_dir)
        if len(relative.parts) == 2 and relative.name == DATA_FILE:
            found[relative.parts[0]] = path
        else:
            stray.append(relative.as_posix())
    if stray:
        raise PolicyBundleError(
            f"{policies_dir}: {', '.join(stray)}: OPA would load it as data; policy data goes in <name>/{DATA_FILE} "
            "(data.<name>), anything else outside policies/ (approver keys: AUTONOMY_APPROVER_KEYS_FILE)"
        )
    return found


def check_data_roots(data: dict[str, Any], modules: dict[str, str]) -> None:
    """No data document shares its name with a package root (data.autonomy is the policy's own)."""
    roots = {match.group(1) for source in modules.values() for match in PACKAGE.finditer(source)}
    for name in sorted(roots.intersection(data)):
        raise PolicyBundleError(f"{name}/{DATA_FILE}: data.{name} is a package root; give the data another folder")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: `<line>: duplicate key ...`."""


# Measured (libyaml, this machine): a 5.5 MB data file parses in 8 s and peaks at 440 MB. A 10,000-asset inventory is
# about 2 MB.
MAX_DATA_FILE_BYTES = 32 * 2**20
# libyaml's parser when PyYAML has it (2.8x faster: a 5.5 MB data file parses in 8 s instead of 23 s), else PyYAML's.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UniqueKeyLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc]
    """safe_load that refuses a key given twice in one mapping. PyYAML (and OPA's own loader) keep the last one
    silently: a second `web-01:` further down the inventory would replace the first asset, crown-jewel flag and
    all. Merge keys (`<<: *anchor`) still work: an explicit key overrides a merged one, as YAML says."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(f"{key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def compile_data(policies_dir: Path, levels: LevelConfig) -> dict[str, Any]:
    """Each <name>/data.yaml as data.<name>; allowlists and inventory addresses compiled to bit prefixes; the
    levels."""
    data: dict[str, Any] = {}
    for name, path in data_files(policies_dir).items():
        where = f"{name}/{DATA_FILE}"
        if name in COMPILED_DOCUMENTS:
            raise PolicyBundleError(f"{where}: data.{name} is compiled by the controller; give the data another folder")
        size = path.stat().st_size
        if size > MAX_DATA_FILE_BYTES:
            raise PolicyBundleError(
                f"{where}: {size / 2**20:.0f} MB, above the {MAX_DATA_FILE_BYTES // 2**20} MB a data file may have: "
                "parsing YAML costs about 80 times its size in memory and 1.5 s per MB, at every start (a 100 MB "
                "file would take minutes and some 8 GB); keep bulk feeds out of the policy data"
            )
        try:
            document = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
        except DuplicateKeyError as exc:
            raise PolicyBundleError(f"{where}:{exc}") from None
        except yaml.YAMLError as exc:
            raise PolicyBundleError(f"{where}: not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise PolicyBundleError(f"{where}: top level must be a mapping")
        data[name] = compile_document(name, document, path)
    data["levels"] = {name: _level_first(level) for name, level in levels.policy_data().items()}
    # No rule reads the triage weights (the controller scores with them), but they decide verdicts, so they are
    # part of the revision a decision names.
    data["triage_model"] = {"revision": levels.triage.revision}
    data["number_text"] = number_texts()
    return data


# The keys of a level the policy reads, put first (regopy walks an object's keys in insertion order: DATA_ORDER).
LEVEL_ORDER = ("enabled", "classes", "risk", "approval")


def _level_first(level: dict[str, Any]) -> dict[str, Any]:
    return {**{key: level[key] for key in LEVEL_ORDER if key in level}, **level}


def number_texts() -> list[str]:
    """The text of each tenth from 0 to 100, indexed by tenths: how the policy prints a number (num in
    policies/autonomy/decision.rego). An array lookup there costs regopy far less than the arithmetic."""
    return [str(tenths // 10) if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}" for tenths in range(1001)]


def revision_of(modules: dict[str, str], data: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + digest.hexdigest()


# The order of the data document's top-level keys: the small documents every decision reads first, the big
# inventory last. regopy 1.5.2 finds a key by walking an object's keys in insertion order (0.5 us per key
# before it), so this order is a little faster there; it changes nothing else (the revision hashes sorted keys).
DATA_ORDER = ("meta", "levels", "number_text", "guardrails", "allowlists", "special_purpose", "identities")


def _with_meta(data: dict[str, Any], revision: str) -> dict[str, Any]:
    with_meta = {**data, "meta": {"revision": revision}}
    first = {key: with_meta[key] for key in DATA_ORDER if key in with_meta}
    return {**first, **{key: value for key, value in with_meta.items() if key not in first}}


def check_escalations(levels: LevelConfig, identities: dict[str, Any]) -> None:
    """Each level's `escalate_to` must name an approver group: caught at load, not at the first timeout."""
    groups = identities.get("approver_groups") or {}
    unknown = [
        f"{level.value}.yaml: approval.escalate_to: {spec.approval.escalate_to!r} is not an approver group "
        f"in identities.yaml (groups: {', '.join(sorted(groups)) or 'none'})"
        for level, spec in levels.levels.items()
        if spec.approval.escalate_to and spec.approval.escalate_to not in groups
    ]
    if unknown:
        raise PolicyBundleError("; ".join(unknown))


# The data document a shipped module cannot do without: a policies/ holding the module but not the data file is
# refused, not run with the guardrail silently finding nothing. (A policy set without the module needs neither.)
REQUIRED_DATA = {"guardrails/special_purpose.rego": "special_purpose"}


def check_data_references(modules: dict[str, str], data: dict[str, Any], policies_dir: Path) -> None:
    """Every `data.<name>` a module reads names a data document or a package. A reference to neither is undefined
    on every engine (OPA's type checker knows no data), so a rule reading a document nobody deployed (a forgotten
    blocklists/data.yaml) or a misspelled one (`data.inventroy`) silently never fires."""
    known = {match.group(1) for source in modules.values() for match in PACKAGE.finditer(source)}
    known |= set(data) | set(COMPILED_DOCUMENTS)
    problems = []
    for name, source in sorted(modules.items()):
        code = rego_code(source)
        for match in _DATA_ROOT.finditer(code):
            if match[1] not in known:
                line = code.count("\n", 0, match.start()) + 1
                problems.append(
                    f"{policies_dir / name}:{line}: reads data.{match[1]}, which no data file ({match[1]}/{DATA_FILE}) "
                    "and no package defines: it is always undefined"
                )
    if problems:
        raise PolicyBundleError("; ".join(dict.fromkeys(problems)))


def check_required_data(modules: dict[str, str], data: dict[str, Any]) -> None:
    for module, document in REQUIRED_DATA.items():
        if module in modules and document not in data:
            raise PolicyBundleError(f"{document}/{DATA_FILE} is missing, and {module} reads it")


def load_bundle(policies_dir: Path, levels: LevelConfig) -> PolicyBundle:
    modules = read_modules(policies_dir, include_tests=False)
    data = compile_data(policies_dir, levels)
    check_data_roots(data, modules)
    check_required_data(modules, data)
    check_data_references(modules, data, policies_dir)
    check_escalations(levels, data.get("identities") or {})
    revision = revision_of(modules, data)
    return PolicyBundle(
        modules=modules, data=_with_meta(data, revision), revision=revision, levels=levels, source_dir=policies_dir
    )


def with_documents(bundle: PolicyBundle, **documents: Any) -> PolicyBundle:
    """The same bundle with some top-level data documents replaced, re-hashed (benchmarks, what-if runs)."""
    data = {key: value for key, value in bundle.data.items() if key != "meta"}
    data.update(
        {name: compile_document(name, doc, data_file(bundle.source_dir, name)) for name, doc in documents.items()}
    )
    revision = revision_of(bundle.modules, data)
    return PolicyBundle(
        modules=bundle.modules,
        data=_with_meta(data, revision),
        revision=revision,
        levels=bundle.levels,
        source_dir=bundle.source_dir,
    )
