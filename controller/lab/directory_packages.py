"""The Debian packages the tests' (and the lab's) real directory servers run on: OpenLDAP's slapd, and Samba's
Active Directory domain controller (samba with the AD database modules, provisioning data and VFS modules that
`samba-tool domain provision` needs: Recommends of `samba`, so named here as --no-install-recommends skips them).

Installed on first use when root (`--no-install-recommends`, no service started: the tests run their own slapd
on a loopback port and their own samba in a network namespace), checked by the files they ship, the same way
the lab checks its own (controller/lab/packages.py, whose installer this reuses). Elsewhere nothing is
installed: the error names the packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from autonomy_controller.controller.lab.packages import (
    Requirement,
    apt_install,  # the lab's installer: service starts refused
)

SLAPD = Requirement(
    "slapd",
    "OpenLDAP's directory server with the ppolicy overlay (the identity adapter's test directory)",
    binary="slapd",
    files=("/usr/lib/ldap/ppolicy.so", "/usr/lib/ldap/back_mdb.so", "/etc/ldap/schema/inetorgperson.schema"),
)


SAMBA = Requirement(
    "samba samba-dsdb-modules samba-ad-provision samba-vfs-modules",
    "Samba's Active Directory domain controller (the identity adapter's active-directory test directory)",
    binary="samba",
    files=(
        "/usr/bin/samba-tool",
        "/usr/share/samba/setup/provision.ldif",
        "/usr/lib/x86_64-linux-gnu/samba/vfs/acl_xattr.so",
    ),
)
"""`package` lists four: they install together (`apt_install` takes them split)."""


class DirectoryPackagesMissing(RuntimeError):
    pass


def ensure(requirement: Requirement, install: bool = True) -> bool:
    """True when the requirement was installed now, False when it was there; DirectoryPackagesMissing saying
    why not."""
    if requirement.present():
        return False
    packages = requirement.package.split()
    command = f"apt-get install -y --no-install-recommends {requirement.package}"
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DirectoryPackagesMissing(f"{requirement.package} ({requirement.what}) is missing; as root: {command}")
    try:
        apt_install(packages)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise DirectoryPackagesMissing(f"{command} failed: {exc}") from exc
    if not requirement.present():
        raise DirectoryPackagesMissing(f"{requirement.package} is still missing after {command}")
    return True


def ensure_slapd(install: bool = True) -> bool:
    """True when slapd was installed now, False when it was there; DirectoryPackagesMissing saying why not."""
    return ensure(SLAPD, install)


def ensure_samba(install: bool = True) -> bool:
    """True when Samba's AD DC was installed now, False when it was there; DirectoryPackagesMissing saying why
    not."""
    return ensure(SAMBA, install)
