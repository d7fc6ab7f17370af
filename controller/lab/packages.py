"""The Debian packages the lab runs on, checked by what they install and installed when we may.

A fresh CI machine (root, apt-get) gets them installed on first use, so `autonomy lab up` and the end-to-end
tests need no manual step. Elsewhere nothing is installed behind anyone's back: the error names each missing
package and the one command that installs them.

Each requirement is checked by a file the package ships, not by dpkg's database, so a lab built from other
packages (or by hand) that puts the same files in place works too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
INSTALL_TIMEOUT_SECONDS = 600.0
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
DENY_SERVICE_STARTS = "#!/bin/sh\n# autonomy lab: no service starts while packages install\nexit 101\n"
"""Installing nginx would start Debian's own nginx on port 80 of this machine; the lab runs its own instance
inside the victim namespace instead, so service starts are refused for the duration of the install."""


@dataclass(frozen=True)
class Requirement:
    package: str
    what: str
    binary: str | None = None
    files: tuple[str, ...] = ()

    def present(self) -> bool:
        if self.binary is not None and find_binary(self.binary) is None:
            return False
        return all(Path(path).exists() for path in self.files)


MODSECURITY_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
MODSECURITY_DEFAULTS = Path("/usr/share/nginx/docs/modsecurity/modsecurity.conf")
"""The package's pristine recommended settings (/etc/nginx/modsecurity.conf is the editable copy)."""
UNICODE_MAPPING = Path("/usr/share/nginx/docs/modsecurity/unicode.mapping")

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("nginx", "the web server in the victim namespace", binary="nginx"),
    Requirement(
        "libnginx-mod-http-modsecurity",
        "ModSecurity v3 for nginx (the WAF engine)",
        files=(str(MODSECURITY_MODULE), str(MODSECURITY_DEFAULTS), str(UNICODE_MAPPING)),
    ),
    Requirement("modsecurity-crs", "the OWASP Core Rule Set", files=(str(CRS_RULES), str(CRS_SETUP))),
    Requirement("nftables", "the enforcement point (nft)", binary="nft"),
    Requirement("iproute2", "network namespaces and veth pairs (ip)", binary="ip"),
    Requirement("curl", "the attacker's and the benign host's HTTP client", binary="curl"),
)


class LabPackagesMissing(RuntimeError):
    """What is missing, and why it could not be installed here."""

    def __init__(self, missing: list[Requirement], why: str) -> None:
        self.missing = missing
        names = " ".join(r.package for r in missing)
        listed = "; ".join(f"{r.package} ({r.what})" for r in missing)
        super().__init__(
            f"the lab needs Debian packages that are missing: {listed}. {why} "
            f"Install them with: apt-get install -y --no-install-recommends {names}"
        )


def find_binary(name: str) -> str | None:
    """`name` on PATH or in the sbin folders (root's tools live there; a user's PATH often lacks them)."""
    return shutil.which(name, path=SBIN_PATH)


def missing_requirements() -> list[Requirement]:
    return [r for r in REQUIREMENTS if not r.present()]


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SBIN_PATH}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_SECONDS, check=False
    )


def _install(packages: list[str]) -> None:
    placed = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text(DENY_SERVICE_STARTS)
        POLICY_RC_D.chmod(0o755)
        placed = True
    try:
        install = ("install", "-y", "-q", "--no-install-recommends", *packages)
        result = _apt_get(*install)
        if result.returncode != 0:  # a stale or empty package list: refresh it once and try again
            _apt_get("update", "-q")
            result = _apt_get(*install)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"apt-get install {' '.join(packages)} failed ({result.returncode}): {tail}")
    finally:
        if placed:
            POLICY_RC_D.unlink(missing_ok=True)


def ensure_packages(install: bool = True) -> list[str]:
    """Make sure every requirement is present; returns the packages installed now (empty when all were there).

    Raises LabPackagesMissing when something is missing and cannot be installed here (not root, no apt-get,
    install refused or failed), naming each package."""
    missing = missing_requirements()
    if not missing:
        return []
    if not install:
        raise LabPackagesMissing(missing, "Installing was not asked for.")
    if os.geteuid() != 0:
        raise LabPackagesMissing(missing, "Installing them needs root.")
    if shutil.which("apt-get") is None:
        raise LabPackagesMissing(missing, "There is no apt-get here: use this system's package manager.")
    packages = [r.package for r in missing]
    try:
        _install(packages)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise LabPackagesMissing(missing, f"apt-get could not install them: {exc}.") from exc
    still = missing_requirements()
    if still:
        raise LabPackagesMissing(still, "They are still missing after apt-get install.")
    return packages
