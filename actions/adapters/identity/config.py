"""The enforcement file's `identity:` section: where the directory is, how to bind, what never to touch.

    identity:
      dialect: openldap-ppolicy          # OpenLDAP's ppolicy overlay: pwdAccountLockedTime locks an account
                                         # (or active-directory: userAccountControl ACCOUNTDISABLE, over TLS)
      url: ldaps://ldap.example.org      # or ldap://... with start_tls: true; plain ldap:// only on loopback
      ca_file: /etc/autonomy/ldap-ca.pem # the CA that signed the directory's certificate (TLS always verifies)
      bind_dn: cn=autonomy,ou=services,dc=example,dc=org
      password_file: /etc/autonomy/ldap-password      # or password_env: AUTONOMY_LDAP_PASSWORD (exactly one)
      users_base: ou=people,dc=example,dc=org
      user_attribute: uid                # params.user is matched against this attribute, exactly one entry
                                         # (default: uid; sAMAccountName for active-directory)
      default_policy: cn=default,ou=policies,dc=example,dc=org   # slapd's ppolicy_default
      protected_groups: [cn=admins,ou=groups,dc=example,dc=org]  # members are never disabled or enabled
      probe_accounts:                    # optional: verify by binding as these (test accounts, known passwords;
        canary: {password_file: /etc/autonomy/canary-password}   # each disable proves it by a bind first)

Secrets are named here (a file or an environment variable), never written: the file is read when a connection
is made, so the configuration, its errors and its logs never hold a password.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autonomy_controller.actions.adapters.base import AdapterError
from autonomy_controller.actions.params import UserName

Dialect = Literal["openldap-ppolicy", "active-directory"]
"""How an account is disabled: OpenLDAP's ppolicy lock (pwdAccountLockedTime), or Active Directory's
userAccountControl ACCOUNTDISABLE bit (AD, Samba's AD DC). See dialects.py and docs/identity.md."""
DEFAULT_USER_ATTRIBUTE: dict[str, str] = {"openldap-ppolicy": "uid", "active-directory": "sAMAccountName"}
DistinguishedName = Annotated[str, Field(min_length=3, max_length=1024, pattern=r"^[^=,]+=[^\n\r]+$")]
AttributeName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9\-]{0,63}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class SecretError(AdapterError):
    """A configured secret cannot be read; the message names where it was looked for, never a value."""


class Secret(BaseModel):
    """A password kept outside the enforcement file: in a file (its first line) or an environment variable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_file: Path | None = None
    password_env: EnvName | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file and password_env")
        return self

    def reveal(self) -> str:
        """The password, read now (a rotated file is picked up without a restart)."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise SecretError(f"environment variable {self.password_env} is unset or empty")
            return value
        assert self.password_file is not None
        try:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SecretError(f"password file {self.password_file} is unreadable: {exc.strerror or exc}") from None
        if not lines or not lines[0]:
            raise SecretError(f"password file {self.password_file} is empty")
        return lines[0]

    @property
    def where(self) -> str:
        return f"file {self.password_file}" if self.password_file is not None else f"${self.password_env}"


class IdentityDirectory(Secret):
    """The `identity:` section of the enforcement file (the bind password is this section's Secret fields)."""

    dialect: Dialect = "openldap-ppolicy"
    url: Annotated[str, Field(pattern=r"^ldaps?://[^/?#\s]+/?$")]
    start_tls: bool = False
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS; default: the system's")
    bind_dn: DistinguishedName
    users_base: DistinguishedName
    user_attribute: AttributeName = Field(default="uid", description="default: the dialect's (DEFAULT_USER_ATTRIBUTE)")
    default_policy: DistinguishedName | None = Field(
        default=None, description="the server's ppolicy_default: the policy of accounts without pwdPolicySubentry"
    )
    protected_groups: list[DistinguishedName] = Field(
        default_factory=list,
        description="groups (groupOfNames, groupOfUniqueNames, posixGroup; nested ones followed) whose members the "
        "adapter refuses to touch whatever a plan says; a group it cannot read refuses everyone. active-directory "
        "always adds the domain's privileged groups (Domain Admins, Administrators, ...), found by their SIDs",
    )
    holds_attribute: AttributeName = Field(
        default="description",
        description="where the incidents holding an account disabled are recorded, in one value of ours",
    )
    probe_accounts: dict[UserName, Secret] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _dialect_defaults(cls, data: Any) -> Any:
        """An account is named by the dialect's usual attribute unless the file says otherwise."""
        if isinstance(data, dict) and "user_attribute" not in data:
            dialect = data.get("dialect", "openldap-ppolicy")
            if dialect in DEFAULT_USER_ATTRIBUTE:
                return {**data, "user_attribute": DEFAULT_USER_ATTRIBUTE[dialect]}
        return data

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> IdentityDirectory:
        """A bind sends the password: across a network only inside TLS."""
        if self.tls:
            return self
        host = urlsplit(self.url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"{self.url} would send the bind password in clear: use ldaps:// or start_tls: true")
        return self

    @property
    def tls(self) -> bool:
        return self.start_tls or self.url.startswith("ldaps://")
