"""Action registry: the param contract and its validation, which is the guard's first line."""

from __future__ import annotations

import pytest

from autonomy_controller.actions.registry import (
    SPECS,
    InvalidParamsError,
    UnknownActionError,
    get_spec,
    validate_params,
)
from autonomy_controller.controller.models import ActionClass

CONTRACT = {
    "network.block_ip": {"ip", "ttl_seconds"},
    "network.unblock_ip": {"ip", "ttl_seconds"},
    "host.isolate": {"host", "ttl_seconds"},
    "host.release": {"host", "ttl_seconds"},
    "identity.disable_user": {"user", "ttl_seconds"},
    "identity.enable_user": {"user", "ttl_seconds"},
    "ticket.create": {"title", "severity", "body"},
    "notify.webhook": {"channel", "message"},
}


@pytest.mark.parametrize(("name", "fields"), CONTRACT.items())
def test_param_names_are_the_contract(name: str, fields: set[str]) -> None:
    assert set(get_spec(name).params_schema["properties"]) == fields


def test_every_undo_action_exists_and_points_back() -> None:
    for spec in SPECS.values():
        if spec.undo_action:
            assert get_spec(spec.undo_action).undo_action == spec.name
    assert any(s.action_class is ActionClass.INVESTIGATE for s in SPECS.values())


def test_addresses_are_canonicalised() -> None:
    spec = get_spec("network.block_ip")
    assert validate_params(spec, {"ip": " 2001:DB8:0:0::1 "}).model_dump()["ip"] == "2001:db8::1"
    assert validate_params(spec, {"ip": "198.51.100.66/32"}).model_dump()["ip"] == "198.51.100.66"
    assert validate_params(spec, {"ip": "198.51.100.0/24"}).model_dump()["ip"] == "198.51.100.0/24"


@pytest.mark.parametrize(
    ("name", "params", "bad_field"),
    [
        ("network.block_ip", {"ip": "198.51.100.66; nft flush ruleset"}, "ip"),
        ("network.block_ip", {"ip": "10.1.2.3/8"}, "ip"),
        ("network.block_ip", {"ip": "198.51.100.66", "ttl_seconds": 5}, "ttl_seconds"),
        ("network.block_ip", {"ip": "198.51.100.66", "reason": "x"}, "reason"),
        ("host.isolate", {"host": "web-01 && rm -rf /"}, "host"),
        ("identity.disable_user", {}, "user"),
        ("ticket.create", {"title": "t", "severity": "apocalyptic"}, "severity"),
        ("notify.webhook", {"channel": "https://evil.example/hook", "message": "hi"}, "channel"),
    ],
)
def test_invalid_params_name_the_field(name: str, params: dict[str, object], bad_field: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        validate_params(get_spec(name), params)
    assert any(error.startswith(bad_field) for error in caught.value.errors), caught.value.errors


def test_unknown_action() -> None:
    with pytest.raises(UnknownActionError, match=r"network\.nuke"):
        get_spec("network.nuke")
