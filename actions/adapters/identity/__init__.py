"""identity.disable_user / identity.enable_user against a real directory: OpenLDAP with the ppolicy overlay, or
Active Directory (Samba's AD DC in the tests).

Configured by the enforcement file's `identity:` section, and only then (docs/identity.md). One concept per
module, each importing only the ones listed above it:

- config: the `identity:` section (URL, TLS CA, bind DN, the secret's file or variable, protected groups).
- directory: LDAP over ldap3: find an account, read a group, one atomic modify, a bind attempt.
- dialects: how each kind of directory disables an account and whom it protects (openldap-ppolicy,
  active-directory).
- lockout: disable / enable / verify, the holds recorded on the entry and the ownership rule.
- adapters: the two adapters and the factory from the enforcement file.
- packages: the Debian packages a test or lab directory server needs (slapd; samba and its AD DC parts).
"""

from __future__ import annotations

from autonomy_controller.actions.adapters.identity.adapters import (
    DisableUserAdapter,
    EnableUserAdapter,
    identity_adapters,
)
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory

__all__ = ["DisableUserAdapter", "EnableUserAdapter", "IdentityDirectory", "identity_adapters"]
