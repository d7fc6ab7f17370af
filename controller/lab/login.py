"""The lab's login service and the password-guessing client: the brute-force scenario (examples/lab/README.md).

`serve` runs in the victim namespace: HTTP `POST /login` with Basic credentials, checked by a simple bind to the
directory (slapd, reached over its ldapi:// socket: a file, so the victim namespace needs no route to the
host), answering 204 (in), 401 (refused) or 503 (the directory could not say: never let in). Every attempt is
one JSON line in the auth log (controller/ingest/auth_log.py reads it), with the counts only the service can
know: failures in a row from the source, and from the source against the account before this attempt.
An empty password is refused before any bind (LDAP would take it as an anonymous bind and succeed).

`guess` runs in the attacker namespace: one login per password of a word list, in order, until one works.

    python -m controller.lab.login serve --listen 0.0.0.0:8081 --ldap ldapi://%2Ftmp%2Fslapd%2Fldapi \
        --users-base ou=people,dc=example,dc=org --log auth.json
    python -m controller.lab.login guess --url http://198.51.100.1:8081/login --user frank pw1 pw2 ...
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.ingest.auth_log import EVENT, account_name
from autonomy_controller.controller.lab.network import ip_binary, run_ip
from autonomy_controller.controller.lab.services import Service

SERVICE = "lab-login"
READY = "login service listening on"
WINDOW_SECONDS = 600.0
"""How long a failure counts towards a source's run of failures."""
DEFAULT_PORT = 8081


@dataclass
class Counts:
    """Failures per source (any account) and per (source, account), reset by a success, forgotten after WINDOW."""

    source: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    pair: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, src: str, user: str, ok: bool | None, now: float) -> tuple[int, int]:
        """(source failures in a row including this attempt, failures against `user` before this attempt). The
        account is `user` as the directory matches it (uid: case-insensitively), so `ADMIN` counts for `admin`."""
        pair = (src, user.casefold())
        with self.lock:
            for series in (self.source[src], self.pair[pair]):
                series[:] = [t for t in series if now - t < WINDOW_SECONDS]
            before = len(self.pair[pair])
            if ok is False:
                self.source[src].append(now)
                self.pair[pair].append(now)
            elif ok is True:
                self.source[src].clear()
                self.pair[pair].clear()
            return len(self.source[src]), before


@dataclass
class Directory:
    url: str
    users_base: str
    user_attribute: str = "uid"
    timeout: int = 5
    """Seconds; whole ones (ldap3 packs a receive timeout as integers)."""

    def check(self, user: str, password: str) -> bool | None:
        """True: the bind worked; False: refused (wrong password, locked, unknown); None: no answer."""
        if not password or account_name(user) is None:
            return False
        dn = f"{self.user_attribute}={escape_rdn(user)},{self.users_base}"
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=self.timeout)
        connection = ldap3.Connection(server, dn, password, receive_timeout=self.timeout)
        try:
            return bool(connection.bind())
        except LDAPException:
            return None
        finally:
            connection.unbind()


class AuthLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=True) + "\n"
        with self.lock, self.path.open("a", encoding="ascii") as handle:
            handle.write(line)


def credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def make_handler(directory: Directory, log: AuthLog, counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Login(BaseHTTPRequestHandler):
        server_version = "lab-login"

        def do_POST(self) -> None:
            if self.path != "/login":
                self._answer(HTTPStatus.NOT_FOUND)
                return
            given = credentials(self.headers.get("Authorization"))
            if given is None:
                self._answer(HTTPStatus.UNAUTHORIZED)
                return
            user, password = given
            ok = directory.check(user, password)
            src, port = self.client_address[0], self.client_address[1]
            source_failures, user_failures = counts.record(src, user, ok, time.monotonic())
            local = self.connection.getsockname()
            log.write(
                {
                    "time": datetime.now(UTC).isoformat(),
                    "event": EVENT,
                    "service": SERVICE,
                    "request_id": uuid.uuid4().hex,
                    "src_ip": src,
                    "src_port": port,
                    "dst_ip": local[0],
                    "dst_port": local[1],
                    "user": user[:256],
                    "outcome": {True: "success", False: "failure", None: "error"}[ok],
                    "source_failures": source_failures,
                    "user_failures_before": user_failures,
                }
            )
            status = {True: HTTPStatus.NO_CONTENT, False: HTTPStatus.UNAUTHORIZED, None: HTTPStatus.SERVICE_UNAVAILABLE}
            self._answer(status[ok])

        def _answer(self, status: HTTPStatus) -> None:
            self.send_response(status)
            if status is HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="lab"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # the auth log is the record
            return

    return Login


def serve(listen: str, directory: Directory, log_path: Path) -> None:
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), make_handler(directory, AuthLog(log_path), Counts()))
    print(f"{READY} {listen}", flush=True)
    server.serve_forever()


def guess(url: str, user: str, passwords: Sequence[str], timeout: float = 3.0) -> list[dict[str, Any]]:
    """Try each password in order until one is let in; each attempt's HTTP status (None: no answer)."""
    attempts: list[dict[str, Any]] = []
    for password in passwords:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status: int | None = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:  # refused, reset, timed out (URLError is one): no answer
            status = None
        attempts.append({"password": password, "status": status})
        if status == HTTPStatus.NO_CONTENT:
            break
    return attempts


# -- inside the lab -----------------------------------------------------------------------------------------


class LoginService:
    """The login service as a lab process in the victim namespace, started only by a lab that needs it."""

    def __init__(self, root: Path, netns: str, port: int = DEFAULT_PORT) -> None:
        self.netns, self.port = netns, port
        self.service = Service("login", root / "run", root / "logs")
        self.auth_log = root / "logs" / "auth.json"

    def start(self, ldap_url: str, users_base: str) -> int:
        self.auth_log.parent.mkdir(parents=True, exist_ok=True)
        self.auth_log.touch()
        argv = [
            ip_binary(),
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-m",
            "autonomy_controller.controller.lab.login",
            "serve",
        ]
        argv += ["--listen", f"0.0.0.0:{self.port}", "--ldap", ldap_url, "--users-base", users_base]
        argv += ["--log", str(self.auth_log)]
        pid = self.service.start(argv, {"PYTHONUNBUFFERED": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, REPO_ROOT)
        if not self.service.wait_for_log(READY, 30):
            raise RuntimeError(f"the login service did not start: {self.service.log_tail()}")
        return pid

    def stop(self) -> int | None:
        return self.service.stop()

    def guess(self, netns: str, target: str, user: str, passwords: Sequence[str]) -> list[dict[str, Any]]:
        """Run the guessing client inside `netns` (the attacker's) against the service at `target`."""
        url = f"http://{target}:{self.port}/login"
        argv = [
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "autonomy_controller.controller.lab.login",
            "guess",
            "--url",
            url,
        ]
        result = run_ip(*argv, "--user", user, *passwords)
        attempts: list[dict[str, Any]] = json.loads(result.stdout)
        return attempts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autonomy_controller.controller.lab.login", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve")
    serving.add_argument("--listen", required=True)
    serving.add_argument("--ldap", required=True, help="the directory's URL (ldapi://, ldap://, ldaps://)")
    serving.add_argument("--users-base", required=True)
    serving.add_argument("--user-attribute", default="uid")
    serving.add_argument("--log", required=True, type=Path)
    guessing = commands.add_parser("guess")
    guessing.add_argument("--url", required=True)
    guessing.add_argument("--user", required=True)
    guessing.add_argument("passwords", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.listen, Directory(args.ldap, args.users_base, args.user_attribute), args.log)
    else:
        print(json.dumps(guess(args.url, args.user, args.passwords)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
