"""The enforcement file's `nftables:` section: its models (blocklist, hosts, probes) and its loader.

Configured by the enforcement file (Settings.enforcement_file, YAML), and only then: without that file the four
actions have no adapter and fail closed (adapters.py), so nothing ever touches a machine's firewall by default.

    nftables:
      netns: victim                # where blocks are enforced; omit (null) for the current namespace
      table: autonomy              # ours alone: `table inet autonomy`; the host's own tables are never touched
      hosts:                       # host.isolate/release: which namespace each host name is (null = this machine)
        web-01: {netns: victim, management: [192.0.2.10]}
      probe:                       # optional: verify a block by trying to connect from the blocked source
        {from_netns: attacker, to: "198.51.100.1:8080", bystander_netns: benign, bystander_to: "203.0.113.1:8080",
         sources: ["198.51.100.0/24"]}   # addresses from_netns may own (the lab replay's): probe from them

Probe endpoints are address literals parsed here (Endpoint), never names to resolve.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from autonomy_controller.actions.adapters.base import AdapterError
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory
from autonomy_controller.actions.adapters.nftables.nft import NsExec
from autonomy_controller.actions.params import HostName, IpOrNetwork
from autonomy_controller.controller.validation import read_yaml_model

Hook = Literal["input", "forward"]
DEFAULT_HOOKS: tuple[Hook, ...] = ("input", "forward")
"""Forward too, so the same blocklist works on a namespace or machine that routes for others."""
NftName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
NetnsName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class EnforcementConfigError(AdapterError):
    """The enforcement file is malformed: every action it configures fails until an operator fixes it."""


@dataclass(frozen=True)
class Endpoint:
    host: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """`198.51.100.1:8080` or `[2001:db8::1]:8080`: an address literal (never a name to resolve) and a port."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not address:port (IPv6 in brackets: [2001:db8::1]:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets: [{host}]:{port}")
    return Endpoint(ipaddress.ip_address(host), int(port))


EndpointText = Annotated[str, AfterValidator(lambda value: str(parse_endpoint(value)))]


class Probe(BaseModel):
    """A TCP connect from `from_netns` to `to` that must fail once the effect is on (block, isolation), and,
    when given, one from `bystander_netns` to `bystander_to` that must still work (the block is not too wide)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_netns: NetnsName | None = None
    to: EndpointText
    bystander_netns: NetnsName | None = None
    bystander_to: EndpointText | None = None
    sources: list[IpOrNetwork] = Field(
        default_factory=list,
        description="addresses `from_netns` may hold besides its own (the lab replay's sources): a block of one "
        "that is assigned there when the block is verified is probed from that very address",
    )
    timeout_seconds: float = Field(default=1.0, gt=0, le=10, description="a dropped SYN costs this long")

    @model_validator(mode="after")
    def _bystander_pair(self) -> Probe:
        if self.bystander_netns is not None and self.bystander_to is None:
            raise ValueError("bystander_netns needs bystander_to (where the bystander connects)")
        return self


class HostTarget(BaseModel):
    """Where one inventory host lives. `netns` is required on purpose: null (this very machine) must be said."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netns: NetnsName | None
    management: list[IpOrNetwork] = Field(default_factory=list, description="still reachable while isolated")
    probe: Probe | None = None


class NftFirewall(BaseModel):
    """The `nftables:` section of the enforcement file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netns: NetnsName | None = Field(default=None, description="where blocks are enforced; None = this namespace")
    table: NftName = "autonomy"
    set4: NftName = "blocklist4"
    set6: NftName = "blocklist6"
    hooks: list[Hook] = Field(default_factory=lambda: list(DEFAULT_HOOKS), min_length=1)
    priority: int = Field(default=-10, ge=-400, le=400)
    isolation_table: NftName = "autonomy_isolation"
    isolation_priority: int = Field(default=-20, ge=-400, le=400)
    hosts: dict[HostName, HostTarget] = Field(default_factory=dict)
    probe: Probe | None = None
    nft: str = Field(default="nft", min_length=1, description="binary name (PATH + sbin) or path")
    ip: str = Field(default="ip", min_length=1)
    python: str | None = Field(default=None, description="interpreter for probes; default: the worker's own")
    command_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _distinct_names(self) -> NftFirewall:
        if self.set4 == self.set6:
            raise ValueError("set4 and set6 must differ (one set per address family)")
        if self.table == self.isolation_table:
            raise ValueError("isolation_table must differ from table: releasing a host deletes its whole table")
        if len(set(self.hooks)) != len(self.hooks):
            raise ValueError("hooks lists a hook twice")
        return self

    def ns(self, netns: str | None) -> NsExec:
        return NsExec(netns, self.ip, self.command_timeout_seconds)


class EnforcementFile(BaseModel):
    """The whole enforcement file: this section, and `identity:` (actions/adapters/identity/config.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nftables: NftFirewall | None = None
    identity: IdentityDirectory | None = None


def load_enforcement(path: Path) -> EnforcementFile | None:
    """The validated enforcement file, or None when there is none; errors read `file: key: message`."""
    return read_yaml_model(path, EnforcementFile, EnforcementConfigError)
