"""Param schemas per action. Param names are a contract (planners, playbooks, policies and adapters use them).

Every model forbids unknown fields and normalises what it accepts, so the guard and the policy only ever see
canonical, validated values: a planner (or an attacker steering one) cannot smuggle free text into a target.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from autonomy_controller.controller.addresses import canonical_network
from autonomy_controller.controller.models import Severity

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 30 * 24 * 3600


# One address or one network, canonical (controller/addresses.py: no zone id; host bits set are refused).
IpOrNetwork = Annotated[str, AfterValidator(canonical_network)]
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")]
UserName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,127}$")]
TtlSeconds = Annotated[int, Field(ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlockIpParams(_Params):
    ip: IpOrNetwork
    ttl_seconds: TtlSeconds | None = Field(default=None, description="unblock automatically after this long")


class UnblockIpParams(_Params):
    ip: IpOrNetwork
    ttl_seconds: TtlSeconds | None = Field(default=None, description="re-block automatically after this long")


class HostParams(_Params):
    host: HostName
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="undo automatically after this long (release an isolation, re-isolate a release)"
    )


class HostLookupParams(_Params):
    host: HostName


class UserParams(_Params):
    user: UserName
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="undo automatically after this long (re-enable a disable, re-disable an enable)"
    )


class TicketParams(_Params):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    severity: Severity
    body: Annotated[str, Field(max_length=20_000)] = ""


class WebhookParams(_Params):
    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$", description="a configured channel name")]
    message: Annotated[str, Field(min_length=1, max_length=4_000)]


class IpLookupParams(_Params):
    ip: IpOrNetwork
