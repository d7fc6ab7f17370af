"""Labelled HTTP requests: the replay's input, read from CSIC 2010 raw files or from our own JSONL.

One `LabelledRequest` is what a client sent (method, path, query, headers, body bytes) and what it is (label
`normal` or `anomalous`), optionally with the session it belongs to. Two ways in:

- CSIC 2010 raw files (`normalTrafficTraining.txt[.gz]`, `anomalousTrafficPart1.txt[.gz]`, ...): Latin-1 bytes,
  CRLF, absolute URIs (`GET http://localhost:8080/tienda1/... HTTP/1.1`), headers, a blank line, the body for
  POST/PUT (Content-Length bytes). The label comes from the file name (`normal...` or `anomalous...`); requests
  carry no session (CSIC has no client addresses: `controller.lab.sessions` assigns them).
- JSONL, one request per line, for teams bringing their own labelled traffic (`write_jsonl` writes it):

      {"label": "normal", "method": "GET", "path": "/shop/item.jsp", "query": "id=3&q=caf%E9",
       "headers": [["User-Agent", "Mozilla/5.0"], ["Cookie", "s=1"]], "body": "", "session": "user-17"}

  `label` (normal|anomalous), `method` and `path` are required; `query` ("" for none), `headers` (ordered
  [name, value] pairs: a name may repeat), `body` and `session` are optional. Text is sent as its UTF-8 bytes
  (CSIC is pure ASCII: its Latin-1 characters are percent-encoded); for exact bytes give `body_base64`
  instead of `body`. Requests with the same `session` are one source's session, in file order.

Nothing here touches the network; `controller.lab.replay` sends what this reads.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast
from urllib.parse import urlsplit

Label = Literal["normal", "anomalous"]
LABELS: tuple[Label, ...] = ("normal", "anomalous")
REQUEST_START = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) (https?://\S*|/\S*) (HTTP/\d\.\d)\r?$")
"""A CSIC request starts at a line like `GET http://localhost:8080/... HTTP/1.1` (the README's rule, any method)."""
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HOP_BY_HOP = frozenset({"host", "connection", "content-length", "keep-alive", "transfer-encoding", "te", "upgrade"})
"""Headers the replay sets itself: Host names the lab's server, the connection and framing are the client's."""


class RequestFormatError(ValueError):
    """A request file that cannot be read as labelled requests: names the file and the line."""


@dataclass(frozen=True)
class LabelledRequest:
    label: Label
    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    session: str | None = None
    origin: str = ""
    """file:line where it was read, for error messages and the manifest."""

    @property
    def target(self) -> str:
        """The request-target in origin form (what goes on the request line)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def wire(self, host: str) -> bytes:
        """The request as bytes: the recorded headers in order, without the hop-by-hop ones (see HOP_BY_HOP),
        with `Host: host` first and Content-Length for a body (or a method that carries one)."""
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers if name.lower() not in HOP_BY_HOP]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"label": self.label, "method": self.method, "path": self.path}
        if self.query:
            record["query"] = self.query
        record["headers"] = [list(pair) for pair in self.headers]
        try:
            record["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(self.body).decode("ascii")
        if self.session is not None:
            record["session"] = self.session
        return record


@dataclass
class _Draft:
    """A CSIC request being read: its request line, then header lines, then body bytes."""

    start: int
    method: str
    uri: str
    lines: list[bytes] = field(default_factory=list)


def label_of(path: Path) -> Label | None:
    """CSIC's file names say the label: normalTraffic... / anomalousTraffic..."""
    name = path.name.lower()
    return "anomalous" if name.startswith("anomalous") else "normal" if name.startswith("normal") else None


def _open(path: Path) -> IO[bytes]:
    return cast(IO[bytes], gzip.open(path, "rb")) if path.suffix == ".gz" else path.open("rb")


def is_jsonl(path: Path) -> bool:
    return ".jsonl" in path.suffixes or ".json" in path.suffixes


def read_requests(path: Path, label: Label | None = None) -> Iterator[LabelledRequest]:
    """Every request of a CSIC raw file or a JSONL file, in file order (streaming)."""
    if is_jsonl(path):
        yield from read_jsonl(path)
        return
    chosen = label or label_of(path)
    if chosen is None:
        raise RequestFormatError(f"{path}: no label: name the file normal*/anomalous* (CSIC) or pass a label")
    yield from read_csic(path, chosen)


def read_csic(path: Path, label: Label) -> Iterator[LabelledRequest]:
    with _open(path) as handle:
        draft: _Draft | None = None
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            match = REQUEST_START.match(line)
            if match:
                if draft is not None:
                    yield _finish(draft, label, path)
                method, uri = match.group(1).decode("ascii"), match.group(2).decode("latin-1")
                draft = _Draft(number, method, uri)
            elif draft is not None:
                draft.lines.append(line)
            elif line.strip():
                raise RequestFormatError(f"{path}:{number}: text before the first request line")
        if draft is not None:
            yield _finish(draft, label, path)


def _finish(draft: _Draft, label: Label, path: Path) -> LabelledRequest:
    origin = f"{path.name}:{draft.start}"
    headers: list[tuple[str, str]] = []
    rest: list[bytes] = []
    for index, line in enumerate(draft.lines):
        if not line:
            rest = draft.lines[index + 1 :]
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not TOKEN.match(name):
            raise RequestFormatError(f"{origin}: malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    body = b"\r\n".join(rest).rstrip(b"\r\n")
    declared = next((value for name, value in headers if name.lower() == "content-length"), None)
    if declared is not None and declared.isdigit():
        body = body[: int(declared)]  # the file adds blank lines between requests; the length is the body
    parts = urlsplit(draft.uri)
    return LabelledRequest(
        label=label,
        method=draft.method,
        path=parts.path or "/",
        query=parts.query,
        headers=tuple(headers),
        body=body,
        origin=origin,
    )


def read_jsonl(path: Path) -> Iterator[LabelledRequest]:
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield parse_json_request(raw.decode("utf-8", errors="replace"), f"{path.name}:{number}")


def parse_json_request(line: str, origin: str) -> LabelledRequest:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise RequestFormatError(f"{origin}: invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise RequestFormatError(f"{origin}: expected a JSON object")
    label, method, path = record.get("label"), record.get("method"), record.get("path")
    if label not in LABELS:
        raise RequestFormatError(f"{origin}: label must be one of {', '.join(LABELS)}, not {label!r}")
    if not isinstance(method, str) or not TOKEN.match(method):
        raise RequestFormatError(f"{origin}: method must be an HTTP token, not {method!r}")
    if not isinstance(path, str) or not path.startswith("/") or _unsafe(path):
        raise RequestFormatError(f"{origin}: path must start with / and hold no spaces or control characters")
    query = record.get("query") or ""
    if not isinstance(query, str) or _unsafe(query):
        raise RequestFormatError(f"{origin}: query must be text without spaces or control characters")
    headers = tuple(_header(pair, origin) for pair in record.get("headers") or [])
    session = record.get("session")
    return LabelledRequest(
        label=label,
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=_body(record, origin),
        session=str(session) if session is not None else None,
        origin=origin,
    )


def _unsafe(text: str) -> bool:
    """Spaces and control characters would break the request line (one request must stay one request)."""
    return any(ch <= " " or ch == "\x7f" for ch in text)


def _header(pair: Any, origin: str) -> tuple[str, str]:
    if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        raise RequestFormatError(f"{origin}: each header must be a [name, value] pair of strings")
    name, value = pair
    if not TOKEN.match(name) or "\r" in value or "\n" in value:
        raise RequestFormatError(f"{origin}: header {name[:40]!r}: bad name, or a line break in the value")
    return name, value


def _body(record: dict[str, Any], origin: str) -> bytes:
    if "body_base64" in record:
        try:
            return base64.b64decode(str(record["body_base64"]), validate=True)
        except ValueError as exc:
            raise RequestFormatError(f"{origin}: body_base64 is not base64: {exc}") from None
    body = record.get("body") or ""
    if not isinstance(body, str):
        raise RequestFormatError(f"{origin}: body must be text (or use body_base64)")
    return body.encode("utf-8")


def write_jsonl(requests: Iterable[LabelledRequest], target: IO[str]) -> int:
    """Write requests as JSONL (the format above); returns how many."""
    count = 0
    for request in requests:
        target.write(json.dumps(request.as_json(), ensure_ascii=False) + "\n")
        count += 1
    return count
