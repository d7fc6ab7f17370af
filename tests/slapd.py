"""The identity adapter's test directory: the product's throwaway slapd (actions/adapters/identity/testdir.py).

One server per test session (tests/test_identity.py, tests/test_lab_brute.py); tests make their own accounts
with known passwords (`Slapd.add_user`), so they never share state.
"""

from autonomy_controller.actions.adapters.identity.testdir import (
    ADMIN_DN,
    ADMINS,
    DBAS,
    DEFAULT_POLICY,
    NOLOCK_POLICY,
    PEOPLE,
    SERVICE_DN,
    SUFFIX,
    DirectoryError,
    Slapd,
    free_port,
    ldif,
    make_ca,
    make_server_cert,
)

__all__ = [
    "ADMINS",
    "ADMIN_DN",
    "DBAS",
    "DEFAULT_POLICY",
    "NOLOCK_POLICY",
    "PEOPLE",
    "SERVICE_DN",
    "SUFFIX",
    "DirectoryError",
    "Slapd",
    "free_port",
    "ldif",
    "make_ca",
    "make_server_cert",
]
