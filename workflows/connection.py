"""How every command reaches Temporal: address, namespace, mTLS and API key, validated before the first call.

One home for the connection settings of the worker, the CLI commands and the HTTP service. They come from
flags (the root `autonomy --temporal-...` options, see controller/cli/__init__.py), else the environment
(AUTONOMY_TEMPORAL_*), else the local dev server's defaults (127.0.0.1:7233, namespace `default`, no TLS).

Everything is checked at start, before a connection is tried, and a bad setting is an error that names it:
a certificate that does not parse, a key that is not the certificate's, an API key over plaintext. The API key
and the private key are secrets: they never appear in a message, a repr or `describe()`.

Importing this module does not import the Temporal SDK (the CLI's start-up stays fast); `connect` does.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomy_controller.controller.config import DEFAULT_TEMPORAL_ADDRESS

if TYPE_CHECKING:
    from cryptography import x509
    from temporalio.client import Client
    from temporalio.service import TLSConfig

DEFAULT_ADDRESS = DEFAULT_TEMPORAL_ADDRESS
DEFAULT_NAMESPACE = "default"
MAX_API_KEY_BYTES = 16 * 1024

# Each setting: (environment variable, root flag). Error messages name both, so the person knows where to look.
ADDRESS = ("AUTONOMY_TEMPORAL_ADDRESS", "--address")
NAMESPACE = ("AUTONOMY_TEMPORAL_NAMESPACE", "--temporal-namespace")
TLS = ("AUTONOMY_TEMPORAL_TLS", "--temporal-tls")
TLS_CERT = ("AUTONOMY_TEMPORAL_TLS_CERT", "--temporal-tls-cert")
TLS_KEY = ("AUTONOMY_TEMPORAL_TLS_KEY", "--temporal-tls-key")
TLS_CA = ("AUTONOMY_TEMPORAL_TLS_CA", "--temporal-tls-ca")
TLS_SERVER_NAME = ("AUTONOMY_TEMPORAL_TLS_SERVER_NAME", "--temporal-tls-server-name")
API_KEY = ("AUTONOMY_TEMPORAL_API_KEY", "(environment only)")
API_KEY_FILE = ("AUTONOMY_TEMPORAL_API_KEY_FILE", "--temporal-api-key-file")

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConnectionSettingsError(ValueError):
    """A Temporal connection setting is wrong; the message names the setting (never a secret's value)."""

    def __init__(self, setting: tuple[str, str], problem: str) -> None:
        env, flag = setting
        where = env if flag.startswith("(") else f"{env} / {flag}"
        super().__init__(f"Temporal connection setting {where}: {problem}")
        self.setting = env


@dataclass(frozen=True)
class TemporalConnection:
    """Validated connection settings. Build with `resolve()` (flags + environment) or directly (tests, dev
    servers); call `validate()` (done by `resolve()` and `connect()`) before using the files."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    tls: bool | None = None
    """None: TLS when any TLS setting or an API key is given; False with any of them is refused."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        if self.tls is not None:
            return self.tls
        return any((self.tls_cert, self.tls_key, self.tls_ca, self.tls_server_name, self.api_key))

    @property
    def mutual_tls(self) -> bool:
        return self.tls_cert is not None

    def describe(self) -> str:
        """For a terminal or a log: where and how, never a secret."""
        how = "plaintext"
        if self.uses_tls:
            how = "mTLS" if self.mutual_tls else "TLS"
            how += f", CA {self.tls_ca}" if self.tls_ca else ", system CAs"
            how += f", server name {self.tls_server_name}" if self.tls_server_name else ""
        if self.api_key:
            how += ", API key"
        return f"{self.address} namespace {self.namespace} ({how})"

    # -- validation --------------------------------------------------------------------------------------------

    def validate(self) -> TemporalConnection:
        """Check every setting now (files read and parsed), raising ConnectionSettingsError naming the first bad one."""
        _check_address(self.address)
        if not _NAMESPACE_RE.match(self.namespace):
            raise ConnectionSettingsError(NAMESPACE, f"{self.namespace!r} is not a namespace name")
        if self.tls is False:
            for setting, value in (
                (TLS_CERT, self.tls_cert),
                (TLS_KEY, self.tls_key),
                (TLS_CA, self.tls_ca),
                (TLS_SERVER_NAME, self.tls_server_name),
            ):
                if value:
                    raise ConnectionSettingsError(setting, f"set while {TLS[0]} is false: turn TLS on or unset it")
            if self.api_key:
                raise ConnectionSettingsError(API_KEY, f"an API key is never sent in plaintext ({TLS[0]} is false)")
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = TLS_KEY if self.tls_key is None else TLS_CERT
            other = TLS_CERT if self.tls_key is None else TLS_KEY
            raise ConnectionSettingsError(
                missing, f"missing: mutual TLS needs both a certificate and its key ({other[0]} is set)"
            )
        if self.tls_server_name is not None and not _HOST_RE.match(self.tls_server_name):
            raise ConnectionSettingsError(TLS_SERVER_NAME, f"{self.tls_server_name!r} is not a host name")
        if self.tls_ca is not None:
            _load_certificates(self.tls_ca, TLS_CA)
        if self.tls_cert is not None and self.tls_key is not None:
            certificate = _load_certificates(self.tls_cert, TLS_CERT)[0]
            if _public_der(certificate.public_key()) != _public_der(_load_private_key(self.tls_key).public_key()):
                raise ConnectionSettingsError(TLS_KEY, f"is not the private key of {TLS_CERT[0]}'s certificate")
        if self.api_key is not None:
            _check_api_key(self.api_key)
        return self

    def tls_config(self) -> TLSConfig | bool:
        if not self.uses_tls:
            return False
        from temporalio.service import TLSConfig

        return TLSConfig(
            server_root_ca_cert=self.tls_ca.read_bytes() if self.tls_ca else None,
            domain=self.tls_server_name,
            client_cert=self.tls_cert.read_bytes() if self.tls_cert else None,
            client_private_key=self.tls_key.read_bytes() if self.tls_key else None,
        )

    # -- building ----------------------------------------------------------------------------------------------

    @classmethod
    def resolve(
        cls,
        address: str | None = None,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, str | None] | None = None,
    ) -> TemporalConnection:
        """Flags (the root options, or `flags`) win over the environment, which wins over the defaults; validated.

        `address` / `namespace`: a command's own --address, or a caller's choice (a demo's namespace)."""
        env = os.environ if env is None else env
        flags = _flags if flags is None else flags

        def pick(setting: tuple[str, str]) -> str | None:
            value = flags.get(setting[0])
            if value is None:
                value = env.get(setting[0])
            return value.strip() if value is not None and value.strip() else None

        def path(setting: tuple[str, str]) -> Path | None:
            value = pick(setting)
            return Path(value).expanduser() if value else None

        tls_text = pick(TLS)
        tls: bool | None = None
        if tls_text is not None:
            if tls_text.lower() not in _TRUE | _FALSE:
                raise ConnectionSettingsError(TLS, f"{tls_text!r} is not a boolean (true/false)")
            tls = tls_text.lower() in _TRUE
        api_key = env.get(API_KEY[0]) or None
        api_key_file = path(API_KEY_FILE)
        if api_key is not None and api_key_file is not None:
            raise ConnectionSettingsError(API_KEY_FILE, f"set together with {API_KEY[0]}: choose one")
        if api_key_file is not None:
            api_key = _read(api_key_file, API_KEY_FILE).decode("utf-8", "replace").strip()
            if not api_key:
                raise ConnectionSettingsError(API_KEY_FILE, f"{api_key_file} is empty")
        connection = cls(
            address=address or pick(ADDRESS) or DEFAULT_ADDRESS,
            namespace=namespace or pick(NAMESPACE) or DEFAULT_NAMESPACE,
            tls=tls,
            tls_cert=path(TLS_CERT),
            tls_key=path(TLS_KEY),
            tls_ca=path(TLS_CA),
            tls_server_name=pick(TLS_SERVER_NAME),
            api_key=api_key,
        )
        return connection.validate()

    def with_namespace(self, namespace: str) -> TemporalConnection:
        return replace(self, namespace=namespace).validate()

    async def connect(self, wait_seconds: float = 15.0) -> Client:
        """A client with our pydantic converter (the one every side must use).

        A server that accepts connections may not serve yet ("Frontend is not healthy yet", seen right after a
        server starts): retried for `wait_seconds`, so a worker started together with its server just waits.
        A TLS or authentication failure is not retried: it will not heal by itself."""
        import asyncio

        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        self.validate()
        tls = self.tls_config()
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return await Client.connect(
                    self.address,
                    namespace=self.namespace,
                    data_converter=pydantic_data_converter,
                    tls=tls,
                    api_key=self.api_key,
                )
            except RuntimeError as exc:
                if "not healthy" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


_flags: dict[str, str | None] = {}
"""The root `autonomy --temporal-...` options of this process (set once by the CLI's callback)."""


def set_flags(values: Mapping[str, str | None]) -> None:
    """Record the CLI's root options by environment-variable name; they win over the environment."""
    _flags.clear()
    _flags.update({name: value for name, value in values.items() if value is not None})


# -- checks -----------------------------------------------------------------------------------------------------


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConnectionSettingsError(ADDRESS, f"{address!r} is not host:port")
    if any(c.isspace() for c in host) or "/" in host:
        raise ConnectionSettingsError(ADDRESS, f"{address!r} is not host:port (no scheme, no path)")


def _check_api_key(key: str) -> None:
    """Printable ASCII without spaces (it travels in an HTTP/2 header), not absurdly long. The value is never quoted."""
    if not key:
        raise ConnectionSettingsError(API_KEY, "is empty")
    if len(key.encode("utf-8")) > MAX_API_KEY_BYTES:
        raise ConnectionSettingsError(API_KEY, f"is longer than {MAX_API_KEY_BYTES} bytes")
    if not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise ConnectionSettingsError(API_KEY, "holds whitespace, control or non-ASCII characters (value not shown)")


def _read(path: Path, setting: tuple[str, str]) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConnectionSettingsError(setting, f"{path} does not exist") from None
    except IsADirectoryError:
        raise ConnectionSettingsError(setting, f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConnectionSettingsError(setting, f"{path} cannot be read: {exc.strerror}") from None


def _public_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _load_certificates(path: Path, setting: tuple[str, str]) -> list[x509.Certificate]:
    from cryptography import x509

    data = _read(path, setting)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConnectionSettingsError(setting, f"{path} holds no PEM certificate") from None
    return list(certificates)


def _load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, TLS_KEY)
    try:
        return load_pem_private_key(data, password=None)
    except TypeError:
        raise ConnectionSettingsError(TLS_KEY, f"{path} is encrypted: give an unencrypted key (mode 0600)") from None
    except ValueError:
        raise ConnectionSettingsError(TLS_KEY, f"{path} holds no PEM private key") from None
