"""The identity adapter's test directory: the product's throwaway slapd (controller/lab/directory_server.py).

One server per test session (tests/test_identity.py, tests/test_lab_brute.py); tests make their own accounts
with known passwords (`Slapd.add_user`), so they never share state.
"""

from autonomy_controller.controller.lab.directory_server import (
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
