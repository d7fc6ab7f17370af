"""network.block_ip / network.unblock_ip / host.isolate / host.release on nftables: real enforcement.

Configured by the enforcement file (Settings.enforcement_file, YAML), and only then: without that file the four
actions have no adapter and fail closed, so nothing ever touches a machine's firewall by default.

    nftables:
      netns: victim                # where blocks are enforced; omit (null) for the current namespace
      table: autonomy              # ours alone: `table inet autonomy`; the host's own tables are never touched
      hosts:                       # host.isolate/release: which namespace each host name is (null = this machine)
        web-01: {netns: victim, management: [192.0.2.10]}
      probe:                       # optional: verify a block by trying to connect from the blocked source
        {from_netns: attacker, to: "198.51.100.1:8080", bystander_netns: benign, bystander_to: "203.0.113.1:8080"}

Blocks are elements of two interval sets with timeouts (`blocklist4`, `blocklist6`: addresses and networks),
matched by a drop rule in chains on the input (and forward) hook at priority -10. Each element's comment is the
idempotency key of the action that added it (hashed when longer than nft's 128-character limit), so a repeat
answers ALREADY_DONE and says whose element it is. `ttl_seconds` becomes the element's timeout: the kernel
drops the element itself, and the workflow's later revert finds it gone (ALREADY_DONE).

One address, several incidents: the incident whose need ends last owns the block. A request whose TTL outlasts
an exact element's remaining expiry takes that element over (delete + create in one batch: our comment, our
timeout), and an undo (TTL revert, compensation) removes only the element its own block created, so the first
incident's revert leaves a block the second still needs (ALREADY_DONE, `left_in_place`). Reading, deciding and
writing elements runs under a lock file per table, because nft has no compare-and-swap for elements.

Isolation is a table of its own per host namespace (`autonomy_isolation`: input, output and forward chains with
policy drop, loopback and the management allowlist accepted). Its presence is the isolation, so isolating is one
atomic `create table` batch and releasing is one `delete table`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from actions.adapters._common import check_action, parse_params
from actions.adapters._nft import (
    Endpoint,
    IPNetwork,
    Nft,
    NftCommandError,
    NsExec,
    PendingProbe,
    ProbeResult,
    SetElement,
    TableState,
    first_line,
    serialized,
    source_address,
    start_probe,
    where,
)
from actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    Adapter,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from actions.params import BlockIpParams, HostName, HostParams, IpOrNetwork, UnblockIpParams
from controller.validation import read_yaml_model

log = logging.getLogger(__name__)

FAMILY = "inet"
COMMENT_MAX_BYTES = 128
"""nft refuses longer comments in its text grammar ("comment too long, 128 characters maximum allowed"); its
JSON parser takes them, but a ruleset listed with one could no longer be loaded back with `nft -f`."""
ENSURE_ATTEMPTS = 3
DECIDE_ATTEMPTS = 3
"""How often `block` reads and decides again when nft refused its batch because the element changed meanwhile."""
CHANGED_MARKERS = ("does not exist", "No such file", "File exists", "overlaps")
"""nft's words for a batch refused because an element is no longer (or already) there: userspace's cache check
("element does not exist"), or the kernel's ENOENT / EEXIST, whichever saw the change first."""
UNDO_PURPOSES = ("revert", "compensate")
BLOCK_ACTIONS = ("network.block_ip", "network.unblock_ip")
HOST_ACTIONS = ("host.isolate", "host.release")

Hook = Literal["input", "forward"]
DEFAULT_HOOKS: tuple[Hook, ...] = ("input", "forward")
"""Forward too, so the same blocklist works on a namespace or machine that routes for others."""
NftName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
NetnsName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class EnforcementConfigError(AdapterError):
    """The enforcement file is malformed: every action it configures fails until an operator fixes it."""


class ElementChanged(Exception):
    """nft refused a batch because the element it names changed since our read: read again and decide again.

    Not an AdapterError on purpose: it never leaves the adapter (the caller retries or turns it into one)."""

    def __init__(self, error: NftCommandError) -> None:
        super().__init__(str(error))
        self.stderr_line = first_line(error.stderr)


# -- config ------------------------------------------------------------------------------------------------


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
    model_config = ConfigDict(extra="forbid", frozen=True)

    nftables: NftFirewall | None = None


def load_enforcement(path: Path) -> EnforcementFile | None:
    """The validated enforcement file, or None when there is none; errors read `file: key: message`."""
    return read_yaml_model(path, EnforcementFile, EnforcementConfigError)


# -- ownership comments ------------------------------------------------------------------------------------


def owner_comment(idempotency_key: str) -> str:
    """The comment that marks an element (or isolation) as this key's: the key itself when it fits nft's limit
    and is plain printable ASCII, else its readable start (the incident key) plus a hash of the whole key."""
    plain = idempotency_key.isascii() and idempotency_key.isprintable() and not set('"\\') & set(idempotency_key)
    if plain and len(idempotency_key) <= COMMENT_MAX_BYTES:
        return idempotency_key
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:16]
    readable = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in idempotency_key)
    return f"{readable[: COMMENT_MAX_BYTES - len(digest) - 1]}~{digest}"


def undone_key(idempotency_key: str) -> str | None:
    """The idempotency key of the block an undo reverses, or None when `idempotency_key` is not an undo's.

    workflows/activities.py (`_adapter_request`) hands adapters `<workflow>/<run>/<action id>/<purpose>`: the
    block ran as `.../execute` and left owner_comment of that key on its element; its TTL revert and its
    compensation run the undo action (network.unblock_ip) as `.../revert` and `.../compensate`. Any other key
    (a person's or a plan's own unblock runs as `.../execute`) is not an undo and gets None."""
    base, sep, purpose = idempotency_key.rpartition("/")
    return f"{base}/execute" if sep and base and purpose in UNDO_PURPOSES else None


def whose(comment: str | None, idempotency_key: str) -> str:
    """Names the owner of an element or isolation for details: its comment, and whether that is this key."""
    if comment is None:
        return "no comment (added outside the controller)"
    mine = " (this idempotency key)" if comment == owner_comment(idempotency_key) else ""
    return f"comment {comment!r}{mine}"


def show(network: IPNetwork) -> str:
    """An address as params spell it (no /32 or /128), a network in CIDR."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


# -- the blocklist -----------------------------------------------------------------------------------------


def _match(protocol: str, field: str, right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": protocol, "field": field}}, "right": right}}


def _prefix(network: IPNetwork) -> Any:
    """An element or match value: a bare address for a single host, else {"prefix": ...}."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def to_network(text: str) -> IPNetwork:
    """Params are canonical already (one address or a network without host bits); this only types them."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AdapterError(f"not an address or network: {text!r} ({exc})") from None


class Blocklist:
    """The blocklist table in the enforcement namespace: ensure it, add/remove elements, read them back."""

    def __init__(self, config: NftFirewall) -> None:
        self.config = config
        self.nft = Nft(config.ns(config.netns), config.nft)

    # desired objects -------------------------------------------------------------------------------------

    def _base(self, **fields: Any) -> dict[str, Any]:
        return {"family": FAMILY, "table": self.config.table, **fields}

    def set_name(self, network: IPNetwork) -> str:
        return self.config.set4 if network.version == 4 else self.config.set6

    def _set_object(self, name: str, kind: str) -> dict[str, Any]:
        return self._base(name=name, type=kind, flags=["interval", "timeout"])

    def _chain_object(self, hook: str) -> dict[str, Any]:
        return self._base(name=hook, type="filter", hook=hook, prio=self.config.priority, policy="accept")

    def rule_comment(self, protocol: str) -> str:
        name = self.config.set4 if protocol == "ip" else self.config.set6
        return f"autonomy: drop {protocol} saddr in @{name}"

    def _rules(self, hook: str) -> list[dict[str, Any]]:
        return [
            self._base(
                chain=hook,
                comment=self.rule_comment(protocol),
                expr=[_match(protocol, "saddr", f"@{name}"), {"counter": None}, {"drop": None}],
            )
            for protocol, name in (("ip", self.config.set4), ("ip6", self.config.set6))
        ]

    # ensure ----------------------------------------------------------------------------------------------

    def read(self) -> TableState | None:
        items = self.nft.list_table(FAMILY, self.config.table)
        return None if items is None else TableState.parse(items)

    def ensure_commands(self, state: TableState | None) -> list[dict[str, Any]]:
        """What makes the table complete: nothing when it is. Missing objects are `create`d, so of two workers
        completing a fresh table at once one batch fails whole ("File exists") instead of both appending the
        drop rules. Objects that exist with other properties are refused, not replaced (replacing a set would
        drop every active block in it)."""
        commands: list[dict[str, Any]] = []
        if state is None:
            commands.append({"create": {"table": {"family": FAMILY, "name": self.config.table}}})
            state = TableState()
        for name, kind in ((self.config.set4, "ipv4_addr"), (self.config.set6, "ipv6_addr")):
            existing = state.sets.get(name)
            if existing is None:
                commands.append({"create": {"set": self._set_object(name, kind)}})
            elif existing.get("type") != kind or not {"interval", "timeout"} <= set(existing.get("flags", [])):
                raise AdapterError(
                    f"set {FAMILY} {self.config.table} {name} in {where(self.config.netns)} has type "
                    f"{existing.get('type')} flags {existing.get('flags', [])}; the adapter needs {kind} with flags "
                    f"interval,timeout: delete that set or configure another name"
                )
        for hook in self.config.hooks:
            commands += self._chain_commands(state, hook)
        return commands

    def _chain_commands(self, state: TableState, hook: str) -> list[dict[str, Any]]:
        """A missing chain is added with its rules; a chain whose rules differ is flushed and refilled in the
        same batch (no moment without the drop rule); a chain hooked differently is refused."""
        wanted = self._chain_object(hook)
        existing = state.chains.get(hook)
        rules = [{"add": {"rule": rule}} for rule in self._rules(hook)]
        if existing is None:
            return [{"create": {"chain": wanted}}, *rules]
        differing = [key for key in ("type", "hook", "prio", "policy") if existing.get(key) != wanted[key]]
        if differing:
            found = ", ".join(f"{key} {existing.get(key)!r}" for key in differing)
            raise AdapterError(
                f"chain {FAMILY} {self.config.table} {hook} in {where(self.config.netns)} has {found}; expected "
                f"type filter hook {hook} priority {self.config.priority} policy accept: delete the chain to let "
                "the adapter recreate it"
            )
        if state.rule_comments(hook) == [rule["add"]["rule"]["comment"] for rule in rules]:
            return []
        return [{"flush": {"chain": self._base(name=hook)}}, *rules]

    def ensure(self) -> list[dict[str, Any]]:
        """Create (or repair) table, sets, chains and drop rules; returns the commands applied (none when whole).
        Touches nothing outside `table inet <table>`, so the host's own ruleset stays as it is."""
        return self._ensure(self.read())[1]

    def _ensure(self, state: TableState | None) -> tuple[TableState | None, list[dict[str, Any]]]:
        """Apply what `state` lacks; when another worker completed the table meanwhile, read it and retry."""
        for _ in range(ENSURE_ATTEMPTS):
            commands = self.ensure_commands(state)
            try:
                self.nft.apply(commands, f"ensure table {FAMILY} {self.config.table}")
                return state, commands
            except NftCommandError as exc:
                if "File exists" not in exc.stderr:
                    raise
                state = self.read()
        raise TransientAdapterError(f"table {FAMILY} {self.config.table} kept changing while being completed")

    # elements --------------------------------------------------------------------------------------------

    def matching(self, state: TableState | None, network: IPNetwork) -> list[SetElement]:
        """Elements that share at least one address with `network`."""
        if state is None:
            return []
        return [element for element in state.elements(self.set_name(network)) if element.intersects(network)]

    def _evidence(self, network: IPNetwork) -> dict[str, Any]:
        return {"netns": self.config.netns, "table": f"{FAMILY} {self.config.table}", "set": self.set_name(network)}

    def serialized(self) -> contextlib.AbstractContextManager[None]:
        """The lock around every read-decide-write of this table's elements (see `_nft.serialized` for why)."""
        return serialized(f"{self.config.netns or '-'}.{self.config.table}", self.config.command_timeout_seconds)

    def block(self, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None) -> ActionOutcome:
        """Make sure `network` is blocked at least until this request's TTL ends, and say whose element does it.

        "The incident whose need ends last owns the block": a new element is ours (DONE, mine). An exact element
        of someone else's that expires before our TTL would is taken over (DONE, mine, `took_over_from`): the
        owner whose need ended first must not lift, at its TTL, a block another incident still needs. One that
        lasts long enough, has no expiry (an operator's), or covers `network` as part of a wider network is left
        as it is (ALREADY_DONE, not mine): a revert from here would lift more, or longer, than this request set.

        Whatever is decided is decided on a read taken under the table's lock, and written in one batch that
        fails whole when the element changed anyway (expired, removed by hand): then we read and decide again."""
        with self.serialized():
            # The table is completed in a batch of its own: nft 1.0.6 answers "File exists" to a `create element`
            # into an interval set made in the same batch. A failure between the two leaves an empty, complete
            # table, never a partial block; the element itself is still one atomic batch.
            state, _ = self._ensure(self.read())
            changes: list[str] = []
            for _ in range(DECIDE_ATTEMPTS):
                try:
                    return self._block_once(state, network, idempotency_key, ttl_seconds)
                except ElementChanged as exc:
                    changes.append(exc.stderr_line)
                    state = self.read()
        raise TransientAdapterError(
            f"{show(network)} in {self.set_name(network)} ({where(self.config.netns)}) changed under every one of "
            f"{DECIDE_ATTEMPTS} attempts to block it ({'; '.join(changes)}): nothing applied, try again"
        )

    def _block_once(
        self, state: TableState | None, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None
    ) -> ActionOutcome:
        """One decision on `state`; ElementChanged when nft refused the batch because the set moved meanwhile."""
        found = self.matching(state, network)
        covering = next((element for element in found if element.covers(network)), None)
        if covering is not None:
            if self._outlived_by(covering, network, idempotency_key, ttl_seconds):
                return self._take_over(network, covering, idempotency_key, ttl_seconds)
            return self._already_blocked(network, covering, idempotency_key)
        if found:
            raise AdapterError(self._overlap_message(network, found))
        comment = owner_comment(idempotency_key)
        # `create`, so an element that appeared since our read makes nft refuse instead of silently updating its
        # timeout (`add` on an existing element does).
        elem = [self._element(network, comment, ttl_seconds)]
        create = {"create": {"element": self._base(name=self.set_name(network), elem=elem)}}
        try:
            self.nft.apply([create], f"block {show(network)}")
        except NftCommandError as exc:
            if "File exists" not in exc.stderr and "overlaps" not in exc.stderr:
                raise
            raise ElementChanged(exc) from None
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"blocked {show(network)} in {self.set_name(network)} ({where(self.config.netns)}) "
            f"{self._for(ttl_seconds)}",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {show(network)}",
            evidence={
                **self._evidence(network),
                **{"element": show(network), "comment": comment, "timeout": ttl_seconds, "mine": True},
            },
        )

    @staticmethod
    def _element(network: IPNetwork, comment: str, ttl_seconds: int | None) -> dict[str, Any]:
        element: dict[str, Any] = {"val": _prefix(network), "comment": comment}
        if ttl_seconds:
            element["timeout"] = ttl_seconds
        return {"elem": element}

    @staticmethod
    def _for(ttl_seconds: int | None) -> str:
        return f"for {ttl_seconds} s (nftables expires it)" if ttl_seconds else "with no expiry"

    @staticmethod
    def _outlived_by(element: SetElement, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None) -> bool:
        """Whether this request needs the block longer than `element` will hold it, so it should own it.

        Only an exact element (never a wider network: its other addresses are not ours to extend or lift), not
        our own (a retried execute must not stretch its block), and only one that expires by itself (one without
        expiry is an operator's or an explicit permanent block: it outlasts any need). `expires` is nft's
        countdown in whole seconds, rounded down: a tie at equal TTLs goes to the later request, which is right."""
        if not element.exactly(network) or element.comment == owner_comment(idempotency_key):
            return False
        if element.timeout is None or element.expires is None:
            return False
        return not ttl_seconds or element.expires < ttl_seconds

    def _take_over(
        self, network: IPNetwork, element: SetElement, idempotency_key: str, ttl_seconds: int | None
    ) -> ActionOutcome:
        """Replace `element` by ours, with our comment and timeout, in one batch: there is no moment without the
        block, and a delete of an element that no longer exists (expired, lifted by hand) fails the batch whole,
        so a changed element is never half-replaced (ElementChanged: the caller reads and decides again)."""
        comment = owner_comment(idempotency_key)
        set_name = self.set_name(network)
        batch = [
            {"delete": {"element": self._base(name=set_name, elem=[element.val])}},
            {"create": {"element": self._base(name=set_name, elem=[self._element(network, comment, ttl_seconds)])}},
        ]
        try:
            self.nft.apply(batch, f"take over the block of {show(network)}")
        except NftCommandError as exc:
            if not any(marker in exc.stderr for marker in CHANGED_MARKERS):
                raise
            raise ElementChanged(exc) from None
        previous = whose(element.comment, idempotency_key)
        left = f"would have expired in {element.expires} s"
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"blocked {show(network)} in {set_name} ({where(self.config.netns)}) {self._for(ttl_seconds)}, "
            f"taking the element over from {previous}, which {left}: that owner's revert now leaves it in place",
            reference=f"{FAMILY} {self.config.table} {set_name} {show(network)}",
            evidence={
                **self._evidence(network),
                **{"element": show(network), "comment": comment, "timeout": ttl_seconds, "mine": True},
                "took_over_from": element.evidence(),
            },
        )

    def _already_blocked(self, network: IPNetwork, element: SetElement, idempotency_key: str) -> ActionOutcome:
        inside = "" if element.exactly(network) else f" (inside {element.label})"
        expiry = f"expires in {element.expires} s" if element.expires is not None else "no expiry"
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"{show(network)} is already blocked{inside} by {whose(element.comment, idempotency_key)}; "
            f"{expiry}; nothing added",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {element.label}",
            evidence={**self._evidence(network), **element.evidence(), "mine": self._mine(element, idempotency_key)},
        )

    @staticmethod
    def _mine(element: SetElement, idempotency_key: str) -> bool:
        """Whether this key added the element: a revert or compensation may want to leave others' alone."""
        return element.comment == owner_comment(idempotency_key)

    def _overlap_message(self, network: IPNetwork, found: list[SetElement]) -> str:
        """nft's interval sets refuse overlapping elements; say which ones, rather than merging other owners'."""
        listed = ", ".join(element.describe() for element in found)
        return (
            f"cannot block {show(network)}: it overlaps {listed} in {self.set_name(network)} "
            f"({where(self.config.netns)}); unblock those first or block them and the rest separately"
        )

    def unblock(self, network: IPNetwork, idempotency_key: str) -> ActionOutcome:
        """Remove exactly `network`'s element; an address still matched by another element is refused.

        Run as an undo (a TTL revert or a compensation, see `undone_key`), it removes only the element the
        undone block created: one that another incident took over since, or that somebody else added, is left
        in place (ALREADY_DONE, `left_in_place`), because that owner still needs it and lifts it itself. Run as
        an action of its own (a person's or a plan's explicit unblock, guarded and maybe approved as such), it
        removes the element whoever owns it: lifting the block is then the decision, and the outcome names the
        owner it overrode."""
        with self.serialized():
            state = self.read()
            found = self.matching(state, network)
            if not found:
                return ActionOutcome(
                    status=ActionStatus.ALREADY_DONE,
                    detail=f"{show(network)} is not in the blocklist ({where(self.config.netns)}): "
                    "expired or never blocked",
                    reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {show(network)}",
                    evidence={**self._evidence(network), "table_present": state is not None},
                )
            undone = undone_key(idempotency_key)
            if undone is not None and not any(
                element.exactly(network) and element.comment == owner_comment(undone) for element in found
            ):
                return self._left_in_place(network, found, undone)
            others = [element for element in found if not element.exactly(network)]
            if others:
                listed = ", ".join(element.describe() for element in others)
                raise AdapterError(
                    f"cannot unblock {show(network)} alone: {listed} still matches it; "
                    "unblock that by its own address or network"
                )
            element = found[0]
            delete = {"delete": {"element": self._base(name=self.set_name(network), elem=[element.val])}}
            try:
                self.nft.apply([delete], f"unblock {show(network)}")
            except NftCommandError as exc:
                if "does not exist" not in exc.stderr and "No such file" not in exc.stderr:
                    raise
                return ActionOutcome(
                    status=ActionStatus.ALREADY_DONE,
                    detail=f"{show(network)} expired from the blocklist while being unblocked",
                    evidence=self._evidence(network),
                )
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"unblocked {show(network)} ({where(self.config.netns)}): removed {element.describe()}",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {show(network)}",
            evidence={**self._evidence(network), "removed": element.evidence()},
        )

    def _left_in_place(self, network: IPNetwork, found: list[SetElement], undone: str) -> ActionOutcome:
        """An undo that finds the address blocked by an element that is not the undone block's own."""
        holder = next((element for element in found if element.exactly(network)), found[0])
        who = f"incident/key {holder.comment!r}" if holder.comment else "an element added outside the controller"
        if holder.expires is not None:
            why = f"{who} took it over (or blocked it since) and lifts it at its own TTL ({holder.expires} s left)"
        else:
            why = f"{who} holds it with no expiry, and an undo never lifts someone else's block"
        inside = "" if holder.exactly(network) else f" (inside {holder.label})"
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"left {show(network)}{inside} in place: {why}; the element this undo had to remove "
            f"({owner_comment(undone)!r}) is no longer there",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {holder.label}",
            evidence={
                **self._evidence(network),
                "left_in_place": True,
                "owner": holder.comment,
                "undoes": owner_comment(undone),
                "holder": holder.evidence(),
            },
        )

    # verify ----------------------------------------------------------------------------------------------

    def missing_rules(self, state: TableState) -> list[str]:
        """What keeps set elements from dropping anything: a chain or drop rule that is not there."""
        problems = []
        for hook in self.config.hooks:
            chain = state.chains.get(hook)
            if chain is None or chain.get("hook") != hook:
                problems.append(f"chain {hook} is missing or not on the {hook} hook")
                continue
            present = state.rule_comments(hook)
            problems += [
                f"chain {hook} lacks the rule {comment!r}"
                for comment in (self.rule_comment("ip"), self.rule_comment("ip6"))
                if comment not in present
            ]
        return problems

    def counters(self, state: TableState, network: IPNetwork) -> dict[str, int | None]:
        protocol = "ip" if network.version == 4 else "ip6"
        return {hook: state.counter(hook, self.rule_comment(protocol)) for hook in self.config.hooks}

    def verify_blocked(self, network: IPNetwork, idempotency_key: str) -> VerifyOutcome:
        """The element (or one covering it) is in the set, the drop rules are in place, and, when a probe is
        configured and its source is inside `network`, that source cannot connect while a bystander can."""
        state = self.read()
        if state is None:
            return VerifyOutcome(ok=False, detail=f"table {FAMILY} {self.config.table} is gone", evidence={})
        covering = next((e for e in self.matching(state, network) if e.covers(network)), None)
        evidence = {**self._evidence(network), "drop_counters": self.counters(state, network)}
        if covering is None:
            return VerifyOutcome(
                ok=False, detail=f"{show(network)} is not in {self.set_name(network)}", evidence=evidence
            )
        evidence.update(covering.evidence())
        problems = self.missing_rules(state)
        if problems:
            return VerifyOutcome(ok=False, detail="element present but " + "; ".join(problems), evidence=evidence)
        found = f"{covering.label} is in {self.set_name(network)} ({whose(covering.comment, idempotency_key)})"
        probe = ReachabilityProbe(self.config, self.config.probe)
        verdict = probe.expect_cut_off(network)
        evidence["probe"] = verdict.evidence
        if verdict.evidence.get("blocked"):  # the probe's SYNs were dropped by now: the counters show it
            after = self.read()
            evidence["drop_counters"] = self.counters(after, network) if after else None
        return VerifyOutcome(ok=verdict.ok, detail=f"{found}; {verdict.detail}", evidence=evidence)

    def verify_unblocked(
        self, network: IPNetwork, idempotency_key: str | None = None, outcome: ActionOutcome | None = None
    ) -> VerifyOutcome:
        """No element matches any address of `network` any more (a probe result is added as evidence only:
        a target that is down must not make the controller block again by compensation).

        For an undo whose outcome said it left the element in place (another owner holds it), the question is
        whether the undone block's own element is gone: the address staying blocked by someone else's element is
        then what should be, and the probe is skipped (it would only show that block working). The undone
        block's own element still there fails, as does anything matching after an outcome that claimed removal."""
        state = self.read()
        found = self.matching(state, network)
        evidence: dict[str, Any] = {**self._evidence(network), "matching": [e.evidence() for e in found]}
        if found:
            listed = ", ".join(element.describe() for element in found)
            undone = undone_key(idempotency_key) if idempotency_key is not None else None
            own = owner_comment(undone) if undone is not None else None
            if own is not None and any(element.comment == own for element in found):
                return VerifyOutcome(
                    ok=False,
                    detail=f"{show(network)} is still blocked by the element this undo had to remove: {listed}",
                    evidence=evidence,
                )
            if own is not None and outcome is not None and outcome.evidence.get("left_in_place") is True:
                return VerifyOutcome(
                    ok=True,
                    detail=f"{show(network)} stays blocked by {listed}, which is not the undone block's "
                    f"({own!r}): left in place as the undo said; probe skipped",
                    evidence={**evidence, "left_in_place": True},
                )
            return VerifyOutcome(ok=False, detail=f"{show(network)} is still matched by {listed}", evidence=evidence)
        verdict = ReachabilityProbe(self.config, self.config.probe).observe_restored(network)
        evidence["probe"] = verdict.evidence
        return VerifyOutcome(
            ok=True, detail=f"{show(network)} is in no blocklist element; {verdict.detail}", evidence=evidence
        )


# -- probes ------------------------------------------------------------------------------------------------


class ProbeVerdict(BaseModel):
    ok: bool
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ReachabilityProbe:
    """Runs a configured Probe: the source's connect and the bystander's at once (one timeout, not two)."""

    def __init__(self, config: NftFirewall, probe: Probe | None) -> None:
        self.config, self.probe = config, probe

    def _run(self, probe: Probe) -> tuple[ProbeResult, ProbeResult | None]:
        started: list[PendingProbe] = []
        try:
            started.append(self._start(probe.from_netns, probe.to, probe.timeout_seconds))
            if probe.bystander_to is not None:
                started.append(self._start(probe.bystander_netns, probe.bystander_to, probe.timeout_seconds))
            results = [pending.result() for pending in started]
        finally:
            for pending in started:
                if pending.process.poll() is None:
                    pending.process.kill()
                    pending.process.communicate()
        return results[0], (results[1] if len(results) > 1 else None)

    def _start(self, netns: str | None, target: str, timeout: float) -> PendingProbe:
        return start_probe(self.config.ns(netns), parse_endpoint(target), timeout, self.config.python)

    def _source_inside(self, probe: Probe, network: IPNetwork) -> tuple[bool, str]:
        source = source_address(self.config.ns(probe.from_netns), parse_endpoint(probe.to).host)
        if source is not None and ipaddress.ip_address(source) in network:
            return True, source
        why = (
            f"probe skipped: the probe source {source or '(no route)'} ({where(probe.from_netns)}) is not in "
            f"{show(network)}, so a connect from it would say nothing about this block"
        )
        return False, why

    def expect_cut_off(self, network: IPNetwork | None) -> ProbeVerdict:
        """After a block (network given: only when the probe source is inside it) or an isolation (None)."""
        if self.probe is None:
            return ProbeVerdict(ok=True, detail="no probe configured")
        if network is not None:
            inside, why = self._source_inside(self.probe, network)
            if not inside:
                return ProbeVerdict(ok=True, detail=why, evidence={"skipped": why})
        blocked, bystander = self._run(self.probe)
        evidence = {"blocked": blocked.evidence(), "bystander": bystander.evidence() if bystander else None}
        if blocked.connected:
            return ProbeVerdict(
                ok=False, detail=f"probe: {blocked.describe()}: the drop does not bite", evidence=evidence
            )
        if bystander is not None and not bystander.connected:
            return ProbeVerdict(
                ok=False,
                detail=f"probe: {blocked.describe()}, but the bystander {bystander.describe()} too: the target is "
                "down or the drop is too wide, so the probe proves nothing",
                evidence=evidence,
            )
        also = f"; bystander {bystander.describe()}" if bystander else ""
        return ProbeVerdict(ok=True, detail=f"probe: {blocked.describe()}{also}", evidence=evidence)

    def observe_restored(self, network: IPNetwork | None) -> ProbeVerdict:
        """After an unblock or release: record whether the source connects again, without judging (ok=True)."""
        if self.probe is None:
            return ProbeVerdict(ok=True, detail="no probe configured")
        if network is not None:
            inside, why = self._source_inside(self.probe, network)
            if not inside:
                return ProbeVerdict(ok=True, detail=why, evidence={"skipped": why})
        source, _ = self._run(self.probe.model_copy(update={"bystander_to": None, "bystander_netns": None}))
        return ProbeVerdict(ok=True, detail=f"probe (informational): {source.describe()}", evidence=source.evidence())


# -- host isolation ----------------------------------------------------------------------------------------


class Isolation:
    """The isolation table in one inventory host's namespace: present = isolated."""

    def __init__(self, config: NftFirewall, host: str) -> None:
        target = config.hosts.get(host)
        if target is None:
            known = ", ".join(sorted(config.hosts)) or "none"
            raise AdapterError(
                f"host {host!r} is not in the enforcement file's nftables.hosts (known: {known}): the adapter "
                "isolates only hosts it is told where to find"
            )
        self.config, self.host, self.target = config, host, target
        self.nft = Nft(config.ns(target.netns), config.nft)

    @property
    def place(self) -> str:
        return f"{self.host} ({where(self.target.netns)})"

    def read(self) -> TableState | None:
        items = self.nft.list_table(FAMILY, self.config.isolation_table)
        return None if items is None else TableState.parse(items)

    def owner(self, state: TableState) -> str | None:
        """The comment on the input chain's last rule (a bare counter of what the policy then drops)."""
        rules = state.rules.get("input", [])
        return rules[-1].get("comment") if rules else None

    def _rule(self, chain: str, expr: list[dict[str, Any]], comment: str) -> dict[str, Any]:
        rule = {"family": FAMILY, "table": self.config.isolation_table, "chain": chain, "expr": expr}
        return {"add": {"rule": {**rule, "comment": comment}}}

    def _chain_rules(self, chain: str, owner: str) -> list[dict[str, Any]]:
        """Loopback and management accepted (both directions), then a counter carrying the owner; policy drop."""
        rules: list[dict[str, Any]] = []
        if chain in ("input", "output"):
            key, field = ("iifname", "saddr") if chain == "input" else ("oifname", "daddr")
            lo = {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": "lo"}}
            rules.append(self._rule(chain, [lo, {"accept": None}], "loopback"))
            for text in self.target.management:
                network = ipaddress.ip_network(text)
                protocol = "ip" if network.version == 4 else "ip6"
                rules.append(self._rule(chain, [_match(protocol, field, _prefix(network)), {"accept": None}], "mgmt"))
        rules.append(self._rule(chain, [{"counter": None}], owner))
        return rules

    def commands(self, owner: str) -> list[dict[str, Any]]:
        table = self.config.isolation_table
        commands: list[dict[str, Any]] = [{"create": {"table": {"family": FAMILY, "name": table}}}]
        for chain in ("input", "output", "forward"):
            body = {"family": FAMILY, "table": table, "name": chain, "type": "filter", "hook": chain}
            commands.append({"add": {"chain": {**body, "prio": self.config.isolation_priority, "policy": "drop"}}})
            commands += self._chain_rules(chain, owner)
        return commands

    def isolate(self, idempotency_key: str) -> ActionOutcome:
        state = self.read()
        if state is not None:
            return self._already_isolated(state, idempotency_key)
        try:
            self.nft.apply(self.commands(owner_comment(idempotency_key)), f"isolate {self.host}")
        except NftCommandError as exc:
            state = self.read() if "File exists" in exc.stderr else None
            if state is None:
                raise
            return self._already_isolated(state, idempotency_key)
        allowed = ", ".join(self.target.management) or "nothing else"
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"isolated {self.place}: all traffic dropped but loopback and management ({allowed})",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner_comment(idempotency_key)),
        )

    def _already_isolated(self, state: TableState, idempotency_key: str) -> ActionOutcome:
        owner = self.owner(state)
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"{self.place} is already isolated by {whose(owner, idempotency_key)}: nothing applied again",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner),
        )

    def release(self, idempotency_key: str) -> ActionOutcome:
        state = self.read()
        if state is None:
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE, detail=f"{self.place} is not isolated", evidence=self._evidence()
            )
        owner = self.owner(state)
        delete = {"delete": {"table": {"family": FAMILY, "name": self.config.isolation_table}}}
        try:
            self.nft.apply([delete], f"release {self.host}")
        except NftCommandError as exc:
            if "No such file" not in exc.stderr:
                raise
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE,
                detail=f"{self.place} was released meanwhile",
                evidence=self._evidence(),
            )
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"released {self.place}: removed the isolation set by {whose(owner, idempotency_key)}",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner),
        )

    def _evidence(self, **more: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "netns": self.target.netns,
            "table": f"{FAMILY} {self.config.isolation_table}",
        } | more

    def verify_isolated(self, idempotency_key: str) -> VerifyOutcome:
        state = self.read()
        if state is None:
            return VerifyOutcome(ok=False, detail=f"{self.place} has no isolation table", evidence=self._evidence())
        problems = [
            f"chain {chain} is missing, not on its hook or not policy drop"
            for chain in ("input", "output", "forward")
            if not ((found := state.chains.get(chain)) and found.get("hook") == chain and found.get("policy") == "drop")
        ]
        owner = self.owner(state)
        evidence = self._evidence(owner=owner, dropped_in=state.counter("input", owner) if owner else None)
        if problems:
            return VerifyOutcome(ok=False, detail=f"{self.place}: " + "; ".join(problems), evidence=evidence)
        verdict = ReachabilityProbe(self.config, self.target.probe).expect_cut_off(None)
        evidence["probe"] = verdict.evidence
        detail = f"{self.place} is isolated ({whose(owner, idempotency_key)}); {verdict.detail}"
        return VerifyOutcome(ok=verdict.ok, detail=detail, evidence=evidence)

    def verify_released(self) -> VerifyOutcome:
        if self.read() is not None:
            return VerifyOutcome(ok=False, detail=f"{self.place} still has its isolation table", evidence={})
        verdict = ReachabilityProbe(self.config, self.target.probe).observe_restored(None)
        return VerifyOutcome(
            ok=True, detail=f"{self.place} is not isolated; {verdict.detail}", evidence={"probe": verdict.evidence}
        )


# -- the four adapters -------------------------------------------------------------------------------------


class BlockIpAdapter:
    action: str = "network.block_ip"

    def __init__(self, config: NftFirewall) -> None:
        self.blocklist = Blocklist(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, BlockIpParams)
        return self.blocklist.block(to_network(params.ip), request.idempotency_key, params.ttl_seconds)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        params = parse_params(request, BlockIpParams)
        return self.blocklist.verify_blocked(to_network(params.ip), request.idempotency_key)


class UnblockIpAdapter:
    action: str = "network.unblock_ip"

    def __init__(self, config: NftFirewall) -> None:
        self.blocklist = Blocklist(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, UnblockIpParams)
        return self.blocklist.unblock(to_network(params.ip), request.idempotency_key)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        network = to_network(parse_params(request, UnblockIpParams).ip)
        return self.blocklist.verify_unblocked(network, request.idempotency_key, outcome)


class IsolateHostAdapter:
    action: str = "host.isolate"

    def __init__(self, config: NftFirewall) -> None:
        self.config = config

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        return Isolation(self.config, parse_params(request, HostParams).host).isolate(request.idempotency_key)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        isolation = Isolation(self.config, parse_params(request, HostParams).host)
        return isolation.verify_isolated(request.idempotency_key)


class ReleaseHostAdapter:
    action: str = "host.release"

    def __init__(self, config: NftFirewall) -> None:
        self.config = config

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        return Isolation(self.config, parse_params(request, HostParams).host).release(request.idempotency_key)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        return Isolation(self.config, parse_params(request, HostParams).host).verify_released()


class MisconfiguredAdapter:
    """Stands in for an nftables adapter when the enforcement file is broken: the action fails with the file's
    error (in the ledger and report) instead of silently having no adapter, and the worker still starts."""

    def __init__(self, action: str, error: EnforcementConfigError) -> None:
        self.action, self.error = action, error

    def execute(self, request: ActionRequest) -> ActionOutcome:
        raise EnforcementConfigError(str(self.error))

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        return VerifyOutcome(ok=False, detail=str(self.error))


def nftables_adapters(config: NftFirewall) -> list[Adapter]:
    return [BlockIpAdapter(config), UnblockIpAdapter(config), IsolateHostAdapter(config), ReleaseHostAdapter(config)]


def enforcement_adapters(path: Path) -> list[Adapter]:
    """The adapters the enforcement file configures: none without the file or without its `nftables:` key."""
    try:
        loaded = load_enforcement(path)
    except EnforcementConfigError as exc:
        log.error("enforcement adapters disabled: %s", exc)
        return [MisconfiguredAdapter(action, exc) for action in (*BLOCK_ACTIONS, *HOST_ACTIONS)]
    if loaded is None or loaded.nftables is None:
        return []
    return nftables_adapters(loaded.nftables)
