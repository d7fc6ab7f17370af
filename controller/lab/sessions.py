"""Who sends what: labelled requests cut into sessions, each session one source address.

CSIC 2010 has no client addresses, so the replay invents a population, deterministically (same inputs, same
seed: same sources, same sessions):

- A benign "user" is one address sending a run of `run_length` consecutive normal requests (file order), an
  attacker one address sending a run of `attack_run_length` consecutive anomalous ones. Each label's requests
  (the files in the order given) are cut into full runs from the start; `random.Random(seed)` picks which runs
  are used (a spread over the file, not just its head), sent in their file order.
- Requests that carry a `session` (JSONL) keep it: each session is one source, in order of first appearance,
  and a session must hold one label only. `run_length` does not apply to them.
- Addresses come from the lab's replay pool (`REPLAY_POOL`: 198.51.100.0/24 without the victim's .1, the lab
  attacker's .66, the network and broadcast addresses and the allowlisted gateway .254), shuffled by the same
  seed, so an address says nothing about its label.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass

from autonomy_controller.controller.lab.requests import Label, LabelledRequest

REPLAY_POOL = ipaddress.IPv4Network("198.51.100.0/24")
"""On the attacker's segment: every address is routable to the victim (198.51.100.1/24) with no route added."""
RESERVED = frozenset(ipaddress.IPv4Address(a) for a in ("198.51.100.1", "198.51.100.66", "198.51.100.254"))
"""The victim, the lab attacker, and the gateway `policies/allowlists/data.yaml` allowlists."""
DEFAULT_SEED = 2010


class SessionError(ValueError):
    pass


@dataclass(frozen=True)
class Session:
    source: str
    label: Label
    name: str
    """Where it came from: `<file>:<line of its first request>+<count>` or the JSONL session id."""
    requests: tuple[LabelledRequest, ...]


def pool_addresses() -> list[str]:
    return [str(a) for a in REPLAY_POOL.hosts() if a not in RESERVED]


def assign(
    requests: Iterable[LabelledRequest],
    sources: int,
    attackers: int,
    run_length: int = 72,
    attack_run_length: int = 72,
    seed: int = DEFAULT_SEED,
) -> list[Session]:
    """`sources` sessions, `attackers` of them anomalous, each with its own address (see the module doc)."""
    if run_length < 1 or attack_run_length < 1:
        raise SessionError("run lengths must be at least 1")
    if not 0 <= attackers <= sources:
        raise SessionError(f"attackers ({attackers}) must be between 0 and sources ({sources})")
    pool = pool_addresses()
    if sources > len(pool):
        raise SessionError(f"{sources} sources: the replay pool {REPLAY_POOL} has {len(pool)} addresses")
    rng = random.Random(seed)
    runs: dict[Label, list[tuple[str, list[LabelledRequest]]]] = {"normal": [], "anomalous": []}
    tagged: dict[str, list[LabelledRequest]] = {}
    streams: dict[Label, list[LabelledRequest]] = {"normal": [], "anomalous": []}
    for request in requests:
        if request.session is not None:
            tagged.setdefault(request.session, []).append(request)
        else:
            streams[request.label].append(request)
    for name, members in tagged.items():
        labels = {r.label for r in members}
        if len(labels) != 1:
            raise SessionError(f"session {name!r} mixes labels {sorted(labels)}: one session, one label")
        runs[members[0].label].append((name, members))
    lengths: dict[Label, int] = {"normal": run_length, "anomalous": attack_run_length}
    for label, length in lengths.items():
        stream = streams[label]
        for start in range(0, len(stream) - length + 1, length):
            run = stream[start : start + length]
            runs[label].append((f"{run[0].origin}+{length}", run))
    wanted: dict[Label, int] = {"normal": sources - attackers, "anomalous": attackers}
    chosen: list[tuple[Label, str, list[LabelledRequest]]] = []
    for label, count in wanted.items():
        available = runs[label]
        if count > len(available):
            raise SessionError(f"{count} {label} sources wanted; the input holds {len(available)} {label} session(s)")
        picked = sorted(rng.sample(range(len(available)), count))
        chosen += [(label, available[i][0], available[i][1]) for i in picked]
    addresses = rng.sample(pool, len(chosen))
    return [
        Session(source=address, label=label, name=name, requests=tuple(run))
        for address, (label, name, run) in zip(addresses, chosen, strict=True)
    ]
