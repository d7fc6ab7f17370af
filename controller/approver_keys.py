"""Signed approvals: an approver proves who they are with an Ed25519 signature instead of asserting it (`--as`).

The config (Settings.approver_keys_file: config/approver_keys.yaml, in git) holds only PUBLIC keys, one or
more per approver, so reading it never lets anyone sign. Each private key stays with its approver in a file only
they can read (mode 0600), never in the repo.

A token is one vote, signed: `v1.<base64url claim>.<base64url signature>`, where the claim is canonical JSON
(sorted keys, no spaces, ASCII) binding the incident (workflow id), the run, the action id, the choice and the
approver, with a key id, a short validity window and a nonce. The binding is the point: a token cannot be
replayed on another action, incident or run, nor flipped from reject to approve, and a stolen one dies quickly.
The signature covers a context prefix plus the exact claim bytes, so the bytes never need re-serialising to
verify, and a signature made for anything else (another protocol, another version) never verifies here.

The worker verifies (workflows/activities.py verify_approval); the client only signs. Every refusal carries a
`RefusalCode` and a sentence, because the reason ends up in the ledger where an auditor reads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from autonomy_controller.controller.validation import error_lines, read_yaml_model

KEYS_FILE_ENV = "AUTONOMY_APPROVER_KEYS_FILE"
"""Named explicitly, the keys file must exist: a typo must not silently turn `require_signed` off."""
TOKEN_VERSION = "v1"
SIGNING_CONTEXT = b"autonomy-approval-token/v1\n"
DEFAULT_LIFETIME = timedelta(minutes=15)
MAX_TOKEN_CHARS = 4_096
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$"
"""Approver names and key ids: no spaces, slashes or colons (`planner:`, `svc:` are service identities)."""

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class ApproverKeysError(ValueError):
    """The keys config or a private key file is unusable; the message names the file and the bad field."""


class RefusalCode(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_APPROVER = "unknown_approver"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    TOO_LONG_LIVED = "too_long_lived"
    WRONG_INCIDENT = "wrong_incident"
    WRONG_RUN = "wrong_run"
    WRONG_ACTION = "wrong_action"
    WRONG_CHOICE = "wrong_choice"
    APPROVER_MISMATCH = "approver_mismatch"
    UNSIGNED = "unsigned"
    CONFIG = "config"
    NOT_ELIGIBLE = "not_eligible"
    """The voter left the action's approver groups while the vote waited (the identities data changed)."""


class TokenRefused(ValueError):
    """The vote's token (or its absence) is not accepted; `code` is for machines, the message for people."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- the config: public keys only -------------------------------------------------------------------------


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


class PublicKey(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Name
    public_key: str = Field(description="base64 of the 32 raw bytes of an Ed25519 public key")

    @field_validator("public_key")
    @classmethod
    def _decodes(cls, value: str) -> str:
        _public_key(value)
        return value

    def key(self) -> Ed25519PublicKey:
        return _public_key(self.public_key)


class ApproverEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    keys: list[PublicKey] = Field(min_length=1, description="several while a key is being rotated")

    @field_validator("keys")
    @classmethod
    def _unique_ids(cls, keys: list[PublicKey]) -> list[PublicKey]:
        ids = [k.id for k in keys]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"key id(s) listed twice: {', '.join(repeated)}")
        return keys


class ApproverKeys(BaseModel):
    """The keys config file. Empty (no file at the default place) means: no keys, unsigned votes allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    require_signed: bool = Field(default=False, description="refuse every vote without a valid signed token")
    max_token_seconds: int = Field(default=3_600, gt=0, le=86_400, description="longest validity a token may claim")
    clock_skew_seconds: int = Field(default=60, ge=0, le=600, description="how far in the future issued_at may be")
    approvers: dict[Name, ApproverEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_owner_per_key(self) -> ApproverKeys:
        """A public key listed for two approvers would let one sign as the other."""
        owners: dict[str, str] = {}
        for name, entry in self.approvers.items():
            for key in entry.keys:
                other = owners.setdefault(key.public_key, name)
                if other != name:
                    raise ValueError(f"approvers.{name}: key {key.id} is also listed for {other}")
        return self

    def find_key(self, approver: str, key_id: str) -> PublicKey:
        entry = self.approvers.get(approver)
        if entry is None:
            raise TokenRefused(RefusalCode.UNKNOWN_APPROVER, f"{approver} has no key in the approver keys config")
        key = next((k for k in entry.keys if k.id == key_id), None)
        if key is None:
            raise TokenRefused(
                RefusalCode.UNKNOWN_KEY, f"{approver} has no key {key_id} (unknown, or removed: revoked)"
            )
        return key


def load_approver_keys(path: Path, required: bool = False) -> ApproverKeys:
    """The validated config; every error names the file and the field. A missing file is an empty config
    unless `required` (the path was given explicitly)."""
    keys = read_yaml_model(path, ApproverKeys, ApproverKeysError)
    if keys is None and required:
        raise ApproverKeysError(f"{path}: no such file ({KEYS_FILE_ENV} names it)")
    return keys or ApproverKeys()


def load_configured(keys_file: Path) -> ApproverKeys:
    """The config at Settings.approver_keys_file, required to exist when the environment names it."""
    return load_approver_keys(keys_file, required=bool(os.environ.get(KEYS_FILE_ENV)))


# -- the approver's secret ---------------------------------------------------------------------------------


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw public key, hex: what `approvers list` shows to compare keys by eye."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()


@dataclass(frozen=True)
class ApproverSecret:
    """An approver's private key with the name and key id it signs under."""

    approver: str
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.private_key.public_key().public_bytes_raw()).decode()

    def config_entry(self) -> dict[str, Any]:
        return {"approvers": {self.approver: {"keys": [{"id": self.key_id, "public_key": self.public_key_b64}]}}}

    def file_text(self) -> str:
        seed = base64.b64encode(self.private_key.private_bytes_raw()).decode()
        return (
            f"# Private approval key of {self.approver}: keep it to yourself (mode 0600), never commit it.\n"
            f"# Its public half goes in the approver keys config (`autonomy approvers keygen` printed it).\n"
            + yaml.safe_dump({"approver": self.approver, "key_id": self.key_id, "private_key": seed}, sort_keys=False)
        )

    def write(self, path: Path) -> None:
        """Create the file readable by its owner only; never overwrite (an existing key may be in use)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.file_text())


def generate_key(approver: str, key_id: str | None = None, today: datetime | None = None) -> ApproverSecret:
    """A new key pair. The default key id (name-date-fingerprint prefix) makes rotations distinguishable."""
    if not re.match(NAME_PATTERN, approver):
        raise ApproverKeysError(f"approver name {approver!r}: letters, digits and . _ @ + - only, no spaces")
    private_key = Ed25519PrivateKey.generate()
    if key_id is None:
        day = (today or datetime.now(UTC)).strftime("%Y%m%d")
        key_id = f"{approver}-{day}-{fingerprint(private_key.public_key())[:8]}"
    if not re.match(NAME_PATTERN, key_id):
        raise ApproverKeysError(f"key id {key_id!r}: letters, digits and . _ @ + - only, no spaces")
    return ApproverSecret(approver, key_id, private_key)


class _SecretFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    approver: Name
    key_id: Name
    private_key: str


def load_secret(path: Path) -> ApproverSecret:
    """Read a private key file, refusing one that others can read (as ssh does): it may already be copied."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ApproverKeysError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ApproverKeysError(f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    try:
        secret = _SecretFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ApproverKeysError(f"{path}: not valid YAML{_where(exc)}") from None
    except ValidationError as exc:
        raise ApproverKeysError(f"{path}: " + "; ".join(error_lines(exc))) from None
    try:
        seed = base64.b64decode(secret.private_key, validate=True)
        private_key = Ed25519PrivateKey.from_private_bytes(seed)
    except (binascii.Error, ValueError):
        raise ApproverKeysError(f"{path}: private_key: not base64 of a 32-byte Ed25519 key") from None
    return ApproverSecret(secret.approver, secret.key_id, private_key)


def _where(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where, without the snippet of the line it quotes: in a key file that line is
    the private key, and the message reaches logs and, through the inbox, a web page."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ""
    return f" ({getattr(exc, 'problem', None) or 'unparsable'} at line {mark.line + 1}, column {mark.column + 1})"


# -- tokens ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ballot:
    """What a token is bound to: exactly the vote the worker is asked to count."""

    incident: str
    run_id: str
    action_id: str
    choice: str
    approver: str


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    incident: str
    run_id: str
    action_id: str
    choice: Literal["approve", "reject"]
    approver: Name
    key_id: Name
    issued_at: int
    expires_at: int
    nonce: str = Field(min_length=16, max_length=64)


@dataclass(frozen=True)
class VerifiedApproval:
    """A token the worker checked: who signed, with which key, for how long."""

    approver: str
    key_id: str
    issued_at: datetime
    expires_at: datetime
    nonce: str


def canonical(claim: Claim) -> bytes:
    return json.dumps(claim.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _from_b64url(text: str) -> bytes:
    """Strict: only the URL alphabet, no padding, and one spelling per byte string (no malleable trailing bits)."""
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def sign_token(
    secret: ApproverSecret, ballot: Ballot, now: datetime | None = None, lifetime: timedelta = DEFAULT_LIFETIME
) -> str:
    if ballot.approver != secret.approver:
        raise ApproverKeysError(f"this key is {secret.approver}'s; it cannot sign a vote by {ballot.approver}")
    issued = int((now or datetime.now(UTC)).timestamp())
    claim = Claim.model_validate(
        {
            "v": 1,
            "incident": ballot.incident,
            "run_id": ballot.run_id,
            "action_id": ballot.action_id,
            "choice": ballot.choice,
            "approver": ballot.approver,
            "key_id": secret.key_id,
            "issued_at": issued,
            "expires_at": issued + int(lifetime.total_seconds()),
            "nonce": _b64url(secrets.token_bytes(16)),
        }
    )
    body = canonical(claim)
    signature = secret.private_key.sign(SIGNING_CONTEXT + body)
    return f"{TOKEN_VERSION}.{_b64url(body)}.{_b64url(signature)}"


def _parse(token: str) -> tuple[bytes, Claim, bytes]:
    malformed = RefusalCode.MALFORMED
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRefused(malformed, f"token longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise TokenRefused(malformed, f"not a {TOKEN_VERSION} approval token (expected {TOKEN_VERSION}.<claim>.<sig>)")
    try:
        body, signature = _from_b64url(parts[1]), _from_b64url(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise TokenRefused(malformed, f"token: {exc}") from None
    try:
        claim = Claim.model_validate(json.loads(body))
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8 and validation errors are ValueErrors; deep nesting
        detail = "; ".join(error_lines(exc)) if isinstance(exc, ValidationError) else "not JSON"
        raise TokenRefused(malformed, f"token claim: {detail}") from None
    if canonical(claim) != body:
        raise TokenRefused(malformed, "token claim is not canonical JSON (sorted keys, no spaces, ASCII)")
    return body, claim, signature


def _when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def verify_token(keys: ApproverKeys, token: str, ballot: Ballot, now: datetime) -> VerifiedApproval:
    """The signer's identity, or TokenRefused with the first reason it fails.

    The signature is checked before anything the claim says is believed; only then its time and its binding.
    """
    body, claim, signature = _parse(token)
    key = keys.find_key(claim.approver, claim.key_id)
    try:
        key.key().verify(signature, SIGNING_CONTEXT + body)
    except InvalidSignature:
        raise TokenRefused(
            RefusalCode.BAD_SIGNATURE, f"signature does not verify with {claim.approver}'s key {claim.key_id}"
        ) from None
    moment = int(now.timestamp())
    if claim.expires_at <= claim.issued_at:
        raise TokenRefused(RefusalCode.MALFORMED, "token expires before it is issued")
    if claim.expires_at - claim.issued_at > keys.max_token_seconds:
        raise TokenRefused(
            RefusalCode.TOO_LONG_LIVED,
            f"token valid for {claim.expires_at - claim.issued_at} s; at most {keys.max_token_seconds} s accepted",
        )
    if claim.issued_at > moment + keys.clock_skew_seconds:
        raise TokenRefused(
            RefusalCode.NOT_YET_VALID, f"token issued in the future ({_when(claim.issued_at).isoformat()})"
        )
    if moment >= claim.expires_at:
        raise TokenRefused(RefusalCode.EXPIRED, f"token expired at {_when(claim.expires_at).isoformat()}")
    bindings = (
        (RefusalCode.WRONG_INCIDENT, "incident", claim.incident, ballot.incident),
        (RefusalCode.WRONG_RUN, "workflow run", claim.run_id, ballot.run_id),
        (RefusalCode.WRONG_ACTION, "action", claim.action_id, ballot.action_id),
        (RefusalCode.WRONG_CHOICE, "choice", claim.choice, ballot.choice),
    )
    for code, what, signed_for, voted in bindings:
        if signed_for != voted:
            raise TokenRefused(code, f"token signed for {what} {signed_for!r}, not {voted!r}")
    if claim.approver != ballot.approver:
        raise TokenRefused(
            RefusalCode.APPROVER_MISMATCH, f"token signed by {claim.approver}; the vote is cast as {ballot.approver}"
        )
    return VerifiedApproval(claim.approver, claim.key_id, _when(claim.issued_at), _when(claim.expires_at), claim.nonce)


def verify_vote(keys: ApproverKeys, token: str | None, ballot: Ballot, now: datetime) -> VerifiedApproval | None:
    """The worker's rule: a token must verify; no token is an unsigned vote, allowed unless require_signed."""
    if token is None:
        if keys.require_signed:
            raise TokenRefused(
                RefusalCode.UNSIGNED, "unsigned vote: this deployment requires a signed token (approve --key)"
            )
        return None
    return verify_token(keys, token, ballot, now)
