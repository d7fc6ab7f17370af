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
from collections.abc import Sequence
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
    backports: bool = False
    """Installed from the release's backports suite (Suricata 7 is not in Debian 12 itself)."""

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
SURICATA_CONFIG_DIR = Path("/etc/suricata")
"""Read, never edited: classification, reference config and the engine event rules the package ships."""
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/autonomy-lab-backports.sources")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

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
    Requirement(
        "suricata",
        "Suricata 7, the network IDS in the victim namespace",
        binary="suricata",
        files=tuple(
            str(SURICATA_CONFIG_DIR / name) for name in ("classification.config", "rules/decoder-events.rules")
        ),
        backports=True,
    ),
)


class LabPackagesMissing(RuntimeError):
    """What is missing, and why it could not be installed here."""

    def __init__(self, missing: list[Requirement], why: str) -> None:
        self.missing = missing
        names = " ".join(r.package for r in missing)
        listed = "; ".join(f"{r.package} ({r.what})" for r in missing)
        backports = " (suricata: -t <release>-backports, with that suite in the apt sources)"
        super().__init__(
            f"the lab needs Debian packages that are missing: {listed}. {why} "
            f"Install them with: apt-get install -y --no-install-recommends {names}"
            + (backports if any(r.backports for r in missing) else "")
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


def apt_install(packages: list[str], backports: Sequence[str] = ()) -> None:
    """apt-get install (--no-install-recommends) these packages, and those from the release's backports, with
    service starts refused for the duration (see POLICY_RC_D). Root only; the callers check."""
    placed = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text(DENY_SERVICE_STARTS)
        POLICY_RC_D.chmod(0o755)
        placed = True
    try:
        if packages:
            _apt_install(packages)
        if backports:
            suite = f"{_codename()}-backports"
            if add_backports_source(suite):
                _apt_get("update", "-q")
            _apt_install(list(backports), "-t", suite)
    finally:
        if placed:
            POLICY_RC_D.unlink(missing_ok=True)


def _apt_install(packages: list[str], *options: str) -> None:
    install = ("install", "-y", "-q", "--no-install-recommends", *options, *packages)
    result = _apt_get(*install)
    if result.returncode != 0:  # a stale or empty package list: refresh it once and try again
        _apt_get("update", "-q")
        result = _apt_get(*install)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed ({result.returncode}): {tail}")


def _codename() -> str:
    """This Debian release's codename (bookworm), from /etc/os-release."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise RuntimeError("/etc/os-release names no VERSION_CODENAME: cannot tell which backports suite to use")


def add_backports_source(suite: str, sources: tuple[Path, Path] = APT_SOURCES, target: Path = BACKPORTS_SOURCE) -> bool:
    """Add the release's backports suite to apt's sources unless some source names it; True when added.

    Backports are never preferred by apt on their own (priority 100), so adding the suite changes nothing else
    this machine installs: only packages asked for with `-t <suite>` come from it."""
    listed = [sources[0]] if sources[0].exists() else []
    listed += sorted(sources[1].glob("*.list")) + sorted(sources[1].glob("*.sources"))
    if any(suite in path.read_text(errors="replace") for path in listed):
        return False
    target.write_text(
        "# Added by the autonomy lab (controller/lab/packages.py): Suricata 7 comes from backports.\n"
        f"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {suite}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    return True


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
    packages = [r.package for r in missing if not r.backports]
    backports = [r.package for r in missing if r.backports]
    try:
        apt_install(packages, backports)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise LabPackagesMissing(missing, f"apt-get could not install them: {exc}.") from exc
    still = missing_requirements()
    if still:
        raise LabPackagesMissing(still, "They are still missing after apt-get install.")
    return packages
