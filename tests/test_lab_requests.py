"""The replay's input, without the lab: CSIC 2010 raw requests and JSONL read into labelled requests, the
bytes they go out as, and the deterministic assignment of sessions to source addresses."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path

import pytest

from autonomy_controller.controller.lab.requests import LabelledRequest, RequestFormatError, read_requests, write_jsonl
from autonomy_controller.controller.lab.sessions import REPLAY_POOL, RESERVED, SessionError, assign
from autonomy_controller.controller.lab.waf import WafError, crs_settings

DATA = Path(__file__).parent / "data" / "csic"
NORMAL = DATA / "normalTrafficSample.txt"
ANOMALOUS = DATA / "anomalousTrafficSample.txt"


def sample() -> list[LabelledRequest]:
    return [*read_requests(NORMAL), *read_requests(ANOMALOUS)]


def test_csic_requests_are_read_with_label_method_path_query_headers_and_body() -> None:
    normal, anomalous = list(read_requests(NORMAL)), list(read_requests(ANOMALOUS))
    assert (len(normal), len(anomalous)) == (24, 12)
    assert {r.label for r in normal} == {"normal"} and {r.label for r in anomalous} == {"anomalous"}
    first, post = normal[0], next(r for r in normal if r.method == "POST")
    assert (first.method, first.path, first.query, first.body) == ("GET", "/tienda1/index.jsp", "", b"")
    assert ("Accept-Charset", "utf-8, utf-8;q=0.5, *;q=0.5") in first.headers
    assert first.origin == "normalTrafficSample.txt:1"
    declared = int(dict(post.headers)["Content-Length"])
    assert post.body and len(post.body) == declared and not post.body.endswith(b"\r\n"), "the body is the length"
    assert "DROP+TABLE" in anomalous[0].query and anomalous[0].path == "/tienda1/publico/anadir.jsp"


def test_the_wire_form_names_the_lab_host_and_frames_the_body_itself() -> None:
    post = next(r for r in read_requests(NORMAL) if r.method == "POST")
    wire = post.wire("web-01.lab")
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == f"POST {post.path} HTTP/1.1".encode() and lines[1] == b"Host: web-01.lab"
    assert b"Host: localhost:8080" not in head and b"Connection: close" not in head
    assert lines.count(f"Content-Length: {len(post.body)}".encode()) == 1 and body == post.body
    assert b"Cookie: JSESSIONID=" in head, "the recorded headers go out as recorded"


def test_jsonl_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    with path.open("w") as out:
        assert write_jsonl(sample(), out) == 36
    again = list(read_requests(path))
    strip = [(r.label, r.method, r.path, r.query, r.headers, r.body, r.session) for r in sample()]
    assert [(r.label, r.method, r.path, r.query, r.headers, r.body, r.session) for r in again] == strip


def test_jsonl_keeps_binary_bodies_and_sessions(tmp_path: Path) -> None:
    binary = LabelledRequest("anomalous", "POST", "/upload", body=b"\xff\x00\xfe", session="attacker-1")
    text = io.StringIO()
    write_jsonl([binary], text)
    assert '"body_base64"' in text.getvalue()
    (tmp_path / "one.jsonl").write_text(text.getvalue())
    (read,) = read_requests(tmp_path / "one.jsonl")
    assert (read.body, read.session) == (b"\xff\x00\xfe", "attacker-1")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"label": "evil", "method": "GET", "path": "/"}', "label must be one of"),
        ('{"label": "normal", "method": "GET", "path": "/a b"}', "path must start with /"),
        ('{"label": "normal", "method": "GET", "path": "/", "query": "a=1\\r\\nX: y"}', "query must be text"),
        ('{"label": "normal", "method": "GET", "path": "/", "headers": [["X", "a\\r\\nY: b"]]}', "line break"),
        ('{"label": "normal", "method": "G ET", "path": "/"}', "method must be an HTTP token"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_that_would_smuggle_a_second_request_is_refused(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(RequestFormatError, match=error) as caught:
        list(read_requests(path))
    assert "bad.jsonl:1" in str(caught.value)


def test_a_csic_file_without_a_label_in_its_name_is_refused(tmp_path: Path) -> None:
    renamed = tmp_path / "traffic.txt"
    renamed.write_bytes(NORMAL.read_bytes())
    with pytest.raises(RequestFormatError, match="no label"):
        list(read_requests(renamed))


def test_sessions_are_consecutive_runs_on_distinct_pool_addresses_and_deterministic() -> None:
    sessions = assign(sample(), sources=4, attackers=2, run_length=5, attack_run_length=6, seed=7)
    assert assign(sample(), 4, 2, 5, 6, seed=7) == sessions, "same seed, same replay"
    assert [s.label for s in sessions].count("anomalous") == 2
    addresses = [ipaddress.ip_address(s.source) for s in sessions]
    assert len(set(addresses)) == 4 and all(a in REPLAY_POOL and a not in RESERVED for a in addresses)
    normal = list(read_requests(NORMAL))
    for session in sessions:
        assert len(session.requests) == (5 if session.label == "normal" else 6)
        assert {r.label for r in session.requests} == {session.label}
        if session.label == "normal":
            start = normal.index(session.requests[0])
            assert list(session.requests) == normal[start : start + 5], "a run of consecutive requests"
            assert start % 5 == 0 and session.name == f"{session.requests[0].origin}+5"
    assert assign(sample(), 4, 2, 5, 6, seed=8) != sessions, "another seed, other runs or addresses"


def test_jsonl_sessions_are_kept_and_must_hold_one_label() -> None:
    tagged = [
        LabelledRequest("normal", "GET", "/a", session="u1"),
        LabelledRequest("anomalous", "GET", "/b", session="x1"),
        LabelledRequest("normal", "GET", "/c", session="u1"),
    ]
    sessions = sorted(assign(tagged, sources=2, attackers=1), key=lambda s: s.label)
    assert [(s.label, s.name, [r.path for r in s.requests]) for s in sessions] == [
        ("anomalous", "x1", ["/b"]),
        ("normal", "u1", ["/a", "/c"]),
    ]
    mixed = [*tagged, LabelledRequest("anomalous", "GET", "/d", session="u1")]
    with pytest.raises(SessionError, match="mixes labels"):
        assign(mixed, sources=2, attackers=1)


def test_asking_for_more_sessions_than_the_input_holds_fails() -> None:
    with pytest.raises(SessionError, match="3 anomalous sources wanted; the input holds 2"):
        assign(sample(), sources=4, attackers=3, run_length=5, attack_run_length=6)
    with pytest.raises(SessionError, match="replay pool"):
        assign(sample(), sources=300, attackers=0, run_length=1)


def test_the_lab_crs_settings_allow_accept_charset_and_set_the_paranoia_level() -> None:
    text = crs_settings(2)
    assert "setvar:tx.paranoia_level=2" in text and "id:900000" in text and "id:900250" in text
    restricted = text.split("tx.restricted_headers=")[1]
    assert "/accept-charset/" not in restricted and "/content-encoding/" in restricted and "/if/" in restricted
    with pytest.raises(WafError, match="1 to 4"):
        crs_settings(5)
