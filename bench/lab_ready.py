"""What the lab benchmarks need before they start: root (network namespaces, nftables) and the lab's packages."""

from __future__ import annotations

import os

from autonomy_controller.controller.lab import LabPackagesMissing, ensure_packages


def lab_unready(bench: str) -> str | None:
    """Why `bench` cannot run the lab here, or None when it can (installing missing packages as root)."""
    if os.geteuid() != 0:
        return f"{bench} needs root (network namespaces, nftables)"
    try:
        ensure_packages()
    except LabPackagesMissing as exc:
        return str(exc)
    return None
