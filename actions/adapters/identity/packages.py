"""The Debian package a real directory server for the tests (and, later, the lab) runs on: OpenLDAP's slapd.

Installed on first use when root (`--no-install-recommends`, no service started: the tests run their own slapd
on a loopback port), checked by the files it ships, the same way the lab checks its own (controller/lab/
packages.py, whose installer this reuses). Elsewhere nothing is installed: the error names the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from controller.lab.packages import (
    Requirement,
    apt_install,  # the lab's installer: service starts refused
)

SLAPD = Requirement(
    "slapd",
    "OpenLDAP's directory server with the ppolicy overlay (the identity adapter's test directory)",
    binary="slapd",
    files=("/usr/lib/ldap/ppolicy.so", "/usr/lib/ldap/back_mdb.so", "/etc/ldap/schema/inetorgperson.schema"),
)


class DirectoryPackagesMissing(RuntimeError):
    pass


def ensure_slapd(install: bool = True) -> bool:
    """True when slapd was installed now, False when it was there; DirectoryPackagesMissing saying why not."""
    if SLAPD.present():
        return False
    command = f"apt-get install -y --no-install-recommends {SLAPD.package}"
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DirectoryPackagesMissing(f"{SLAPD.package} ({SLAPD.what}) is missing; as root: {command}")
    try:
        apt_install([SLAPD.package])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise DirectoryPackagesMissing(f"{command} failed: {exc}") from exc
    if not SLAPD.present():
        raise DirectoryPackagesMissing(f"{SLAPD.package} is still missing after {command}")
    return True
