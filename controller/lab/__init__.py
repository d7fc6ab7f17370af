"""The lab: a real WAF, real enforcement and the real loop on one machine (examples/lab/README.md).

Module map: `packages` (Debian packages: check, install), `network` (namespaces and veth pairs), `waf` (nginx +
ModSecurity + CRS in the victim), `attacks` (named attacks with curl), `services` (background processes with
pid files), `lab` (the `Lab` object: up, status, attack, down), `loop` (the loop in-process, for the end-to-end
tests and the benchmark: time-skipping Temporal, a worker on the lab's enforcement, the follow ingest).
The replay (`autonomy lab replay`): `requests` (labelled requests: CSIC 2010 raw, JSONL), `sessions` (which
source address sends which run), `sender` (the client inside the attacker namespace), `replay` (addresses,
client processes, the manifest), `manifest` (the ground truth, and alerts attributed to it).
"""

from autonomy_controller.controller.lab.attacks import ATTACKS, HttpResult
from autonomy_controller.controller.lab.lab import DownReport, Lab, LabConfig, LabError, LabStatus
from autonomy_controller.controller.lab.packages import LabPackagesMissing, ensure_packages

__all__ = [
    "ATTACKS",
    "DownReport",
    "HttpResult",
    "Lab",
    "LabConfig",
    "LabError",
    "LabPackagesMissing",
    "LabStatus",
    "ensure_packages",
]
