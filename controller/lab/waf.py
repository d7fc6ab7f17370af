"""The victim's web server: Debian's nginx with ModSecurity v3 and the OWASP CRS, configured from scratch.

Everything it needs is generated into the lab folder (nginx.conf, the ModSecurity settings, the includes file,
the page it serves), so the machine's /etc/nginx is never edited and the instance is the lab's alone. What
LAB.md found and this follows:
- libmodsecurity3 has no IncludeOptional: the CRS is pulled in by plain Include lines, in CRS's order.
- nginx's `return 200` answers before ModSecurity runs, so the WAF is a reverse proxy in front of an "app": a
  second server on a unix socket, without ModSecurity, that serves the page for every path and every method
  (its static module refuses POST/PUT with 405, so its `error_page 405 =200` turns those into the page). Only
  the WAF says 403. The proxying matters for the replay: a 405 is a "relevant" status the audit log would
  record on every form post, and an `error_page` in the WAF's own server re-runs ModSecurity on the internal
  redirect, as a GET with a body (rule 920170).
- The audit log is JSON (`SecAuditLogFormat JSON`), one transaction per line: what `autonomy ingest --follow`
  reads. Request and response bodies are left out (parts C, E, I, J): the lab's attacks are in the URL and
  headers, and a huge line helps nobody.
- So is the WAF server's access log (`nginx/access.json`, controller/ingest/nginx_access.py's format): every
  request with its status, bytes, timing and upstream, so what got *through* the WAF is seen too. The app
  server behind it logs nothing (its lines would repeat the WAF server's).
- One path the WAF does not cover (`UNCOVERED_PATH`, `/legacy/`): `modsecurity off` there, as a legacy endpoint
  excluded from the WAF "until it is rewritten" is in many real deployments. The app answers it 200 like any
  other path, so an attack sent there gets through: only the IDS sees it, and the access log says the
  application answered (the impact verdict's "likely", docs/attackers.md). The access log still records it.
- One deliberate change to stock CRS 3.3.4 (`crs_settings`): `Accept-Charset` is not a restricted header here.
  CRS 3.3.4 restricts it (rule 901165), so rule 920450 blocks every request of a client population that sends
  it, CSIC 2010's included (/work/shared/corpora/csic2010/README.md): with it the replay would measure one rule.
  CRS 4 dropped it from the list for the same reason. The paranoia level is a setting (1 by default).

The workers run as root: the lab folder sits in the repository, whose parents another user may not be able to
traverse (nginx would then answer 403 itself and look like the WAF). The server is reachable only through the
lab's veth pairs inside a throwaway namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from autonomy_controller.controller.ingest.nginx_access import LOG_FORMAT, LOG_FORMAT_NAME
from autonomy_controller.controller.lab.network import alive, kill_all, run_ip
from autonomy_controller.controller.lab.packages import (
    CRS_RULES,
    CRS_SETUP,
    MODSECURITY_DEFAULTS,
    MODSECURITY_MODULE,
    SBIN_PATH,
    UNICODE_MAPPING,
    find_binary,
)

CRS_BEFORE = Path("/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf")
CRS_AFTER = Path("/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf")
SERVER_NAME = "web-01.lab"
"""The Host header the lab's clients send. A numeric Host makes CRS log rule 920350 on every request, so each
health check would be an audit line (and an alert) of its own; a name keeps the log to real attacks."""
UNCOVERED_PATH = "/legacy/"
"""A location the WAF server proxies without ModSecurity (see the module docstring): what gets through."""
PAGE = """<!doctype html>
<html><head><title>web-01</title></head>
<body><h1>web-01</h1><p>The autonomy lab's victim web server (nginx + ModSecurity v3 + OWASP CRS).</p></body></html>
"""
OVERRIDES = {
    "SecRuleEngine": "On",
    "SecAuditEngine": "RelevantOnly",
    "SecAuditLogParts": "ABFHZ",
    "SecAuditLogType": "Serial",
    "SecStatusEngine": "Off",
}


LAB_RESTRICTED_HEADERS = "/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/"
"""CRS 3.3.4's default list (crs-setup.conf, id 900250) without /accept-charset/: see the module docstring."""
PARANOIA_LEVELS = (1, 2, 3, 4)


class WafError(RuntimeError):
    pass


@dataclass(frozen=True)
class WafPaths:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "nginx" / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "nginx" / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "nginx" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.root / "nginx" / "access.json"

    @property
    def modsecurity_conf(self) -> Path:
        return self.root / "modsecurity" / "modsecurity.conf"

    @property
    def crs_settings(self) -> Path:
        return self.root / "modsecurity" / "crs-lab.conf"

    @property
    def includes(self) -> Path:
        return self.root / "modsecurity" / "includes.conf"

    @property
    def app_socket(self) -> Path:
        return self.root / "nginx" / "app.sock"

    @property
    def www(self) -> Path:
        return self.root / "www"

    @property
    def audit_log(self) -> Path:
        return self.root / "waf" / "audit.log"


def modsecurity_settings(defaults: str, audit_log: Path, work_dir: Path) -> str:
    """The packaged recommended settings with the lab's changes: blocking mode, JSON audit log in the lab."""
    overrides = {
        **OVERRIDES,
        "SecAuditLog": str(audit_log),
        "SecTmpDir": str(work_dir),
        "SecDataDir": str(work_dir),
    }
    lines = []
    for line in defaults.splitlines():
        directive = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if directive in overrides:
            line = f"{directive} {overrides.pop(directive)}"
        lines.append(line)
    lines += [f"{directive} {value}" for directive, value in overrides.items()]
    lines.append("SecAuditLogFormat JSON")
    return "\n".join(lines) + "\n"


def crs_settings(paranoia_level: int) -> str:
    """The lab's CRS settings, read after crs-setup.conf (which leaves ids 900000 and 900250 commented out)."""
    if paranoia_level not in PARANOIA_LEVELS:
        raise WafError(f"paranoia level {paranoia_level}: CRS knows 1 to 4")
    return "\n".join(
        [
            "# Generated by controller/lab/waf.py: the lab's CRS settings (paranoia level, restricted headers).",
            f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia_level}"',
            "# Accept-Charset allowed: CRS 3.3.4 blocks every request carrying it (920450), CSIC 2010's included.",
            'SecAction "id:900250,phase:1,nolog,pass,t:none,'
            f"setvar:'tx.restricted_headers={LAB_RESTRICTED_HEADERS}'\"",
            "",
        ]
    )


def includes_file(modsecurity_conf: Path, crs_lab: Path) -> str:
    return "\n".join(
        [
            f"Include {modsecurity_conf}",
            f"Include {CRS_SETUP}",
            f"Include {crs_lab}",
            f"Include {CRS_BEFORE}",
            f"Include {CRS_RULES}/*.conf",
            f"Include {CRS_AFTER}",
            "",
        ]
    )


def nginx_conf(paths: WafPaths, port: int) -> str:
    temp = paths.root / "nginx" / "temp"
    return f"""# Generated by `autonomy lab up` (controller/lab/waf.py); rewritten on every start.
user root;
worker_processes 1;
daemon on;
pid {paths.pid_file};
error_log {paths.error_log} warn;
load_module {MODSECURITY_MODULE};

events {{
    worker_connections 512;
}}

http {{
    log_format {LOG_FORMAT_NAME} escape=json '{LOG_FORMAT}';
    access_log off;
    default_type text/html;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    server {{
        listen {port} default_server;
        server_name {SERVER_NAME};
        modsecurity on;
        modsecurity_rules_file {paths.includes};
        access_log {paths.access_log} {LOG_FORMAT_NAME};
        location / {{
            proxy_pass http://unix:{paths.app_socket}:;
            proxy_set_header Host $host;
        }}
        location {UNCOVERED_PATH} {{
            modsecurity off;
            proxy_pass http://unix:{paths.app_socket}:;
            proxy_set_header Host $host;
        }}
    }}

    server {{
        listen unix:{paths.app_socket};
        modsecurity off;
        root {paths.www};
        error_page 405 =200 /index.html;
        location / {{
            try_files $uri /index.html;
        }}
    }}
}}
"""


class Waf:
    """nginx + ModSecurity + CRS inside one namespace: write the config, start, stop, reopen the audit log."""

    def __init__(self, root: Path, netns: str, port: int = 8080, paranoia_level: int = 1) -> None:
        self.paths = WafPaths(root)
        self.netns = netns
        self.port = port
        self.paranoia_level = paranoia_level

    @property
    def audit_log(self) -> Path:
        return self.paths.audit_log

    @property
    def access_log(self) -> Path:
        return self.paths.access_log

    def write_config(self) -> None:
        if not MODSECURITY_DEFAULTS.exists():
            raise WafError(f"{MODSECURITY_DEFAULTS} is missing: apt-get install libnginx-mod-http-modsecurity")
        paths = self.paths
        for folder in (paths.conf.parent / "temp", paths.modsecurity_conf.parent, paths.www, paths.audit_log.parent):
            folder.mkdir(parents=True, exist_ok=True)
        work_dir = paths.root / "modsecurity" / "work"
        work_dir.mkdir(exist_ok=True)
        shutil.copyfile(UNICODE_MAPPING, paths.modsecurity_conf.parent / "unicode.mapping")
        defaults = MODSECURITY_DEFAULTS.read_text()
        paths.modsecurity_conf.write_text(modsecurity_settings(defaults, paths.audit_log, work_dir))
        paths.crs_settings.write_text(crs_settings(self.paranoia_level))
        paths.includes.write_text(includes_file(paths.modsecurity_conf, paths.crs_settings))
        (paths.www / "index.html").write_text(PAGE)
        paths.conf.write_text(nginx_conf(paths, self.port))

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        nginx = find_binary("nginx")
        if nginx is None:
            raise WafError("nginx is missing: apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs")
        command = ["netns", "exec", self.netns, nginx, "-e", str(self.paths.error_log), "-c", str(self.paths.conf)]
        return run_ip(*command, *args, check=False)

    def pid(self) -> int | None:
        """The master's pid, when it runs (a stale pid file from a killed nginx says nothing)."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and _is_nginx(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 15.0) -> int:
        """Start (or keep) the server; returns the master pid once it accepts connections."""
        self.write_config()
        pid = self.pid()
        if pid is not None:
            self.reload()
            return pid
        self.paths.app_socket.unlink(missing_ok=True)  # a killed nginx leaves it behind, and nginx cannot bind then
        check = self._nginx("-t", "-q")
        if check.returncode != 0:
            raise WafError(f"nginx -t refused the lab's config: {check.stderr.strip()[-1500:]}")
        started = self._nginx()
        if started.returncode != 0:
            raise WafError(f"nginx did not start: {started.stderr.strip()[-1500:]} (log: {self.paths.error_log})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self._listening():
                return pid
            time.sleep(0.05)
        raise WafError(f"nginx did not listen on port {self.port} in {self.netns} within {timeout} s")

    def _listening(self) -> bool:
        result = run_ip("netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{self.port}", check=False)
        return result.returncode == 0 and bool(result.stdout.strip())

    def reload(self, timeout: float = 10.0) -> None:
        """Re-read the config; returns once the old workers are gone. Note: this does NOT reopen the audit log.
        libmodsecurity keeps its log files open in the master across reloads (measured: after a rename and a
        SIGHUP the new workers still write to the renamed file); only a restart opens the path anew."""
        pid = self.pid()
        if pid is None:
            raise WafError("nginx is not running")
        before = set(_children(pid))
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = set(_children(pid))
            if now and not now & before:
                return
            time.sleep(0.02)
        raise WafError(f"nginx did not replace its workers within {timeout} s after a reload")

    def rotate_audit_log(self, suffix: str = ".1") -> Path:
        """Rotate as ModSecurity v3 allows: rename the log, then restart nginx, which creates the new file.

        Until the restart the renamed file still receives lines, and the path names no file: a follower keeps
        reading the old file meanwhile and switches only when the new one appears, so no line is lost (a
        copytruncate would lose lines written between the copy and the truncate). Returns the rotated file."""
        rotated = self.audit_log.with_name(self.audit_log.name + suffix)
        os.replace(self.audit_log, rotated)
        self.stop()
        self.start()
        return rotated

    def truncate_audit_log(self) -> None:
        """Empty the log in place. ModSecurity appends (O_APPEND), so its next line lands at the new start."""
        os.truncate(self.audit_log, 0)

    def truncate_access_log(self) -> None:
        """Empty the access log in place (nginx appends too)."""
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.access_log, 0)

    def stop(self, timeout: float = 10.0) -> list[int]:
        """Graceful stop (SIGQUIT: requests in flight finish and are logged), then SIGTERM/SIGKILL for whatever
        is still there after half the timeout. Returns the pids that were running."""
        pid = self.pid()
        if pid is None:
            return []
        pids = [pid, *_children(pid)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
        kill_all(pids, grace_seconds=timeout / 2)
        self.paths.pid_file.unlink(missing_ok=True)
        return pids


def _is_nginx(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "nginx"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(word) for word in text.split()]


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": SBIN_PATH}
