"""nginx's access log as JSON: what got *through* the WAF, and what the application answered.

A WAF alert says what the WAF saw; only the access log says what happened next: the status the client got, the
bytes sent back, how long it took, and whether the request reached the application behind the proxy at all
(`upstream_status` is empty when nginx or ModSecurity answered by itself). Every request is one record and one
Alert, deliberately weak: category other, severity info, low confidence (classify.classify_access). It is an
outcome, not a detection: the Submitter keeps it as an observation (controller/ledger/observations.py: an ACCESS
ledger record, no case, no workflow), evidence for the source's case and profile.

`LOG_FORMAT` is the format this parser reads, and the lab's nginx writes (controller/lab/waf.py): one home for
the field names. Any nginx can log it:

    log_format autonomy_json escape=json '<LOG_FORMAT>';
    access_log /var/log/nginx/access.json autonomy_json;

Detected by `remote_addr`, `status` and `request_time` together (nginx's own variable names).
"""

from __future__ import annotations

from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import classify_access
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw, content_id, evidence, make_alert, stable_id
from autonomy_controller.controller.models import Alert

SOURCE = "nginx-access"
LOG_FORMAT_NAME = "autonomy_json"
LOG_FORMAT = (
    "{"
    '"time":"$time_iso8601",'
    '"request_id":"$request_id",'
    '"remote_addr":"$remote_addr",'
    '"remote_port":"$remote_port",'
    '"server_addr":"$server_addr",'
    '"server_port":"$server_port",'
    '"host":"$host",'
    '"request_method":"$request_method",'
    '"request_uri":"$request_uri",'
    '"server_protocol":"$server_protocol",'
    '"status":$status,'
    '"body_bytes_sent":$body_bytes_sent,'
    '"request_length":$request_length,'
    '"request_time":$request_time,'
    '"upstream_addr":"$upstream_addr",'
    '"upstream_status":"$upstream_status",'
    '"upstream_response_time":"$upstream_response_time",'
    '"http_user_agent":"$http_user_agent",'
    '"http_referer":"$http_referer"'
    "}"
)
"""nginx variables, with `escape=json`: the numbers unquoted (nginx always fills them), the rest as strings."""


def looks_like(record: Record) -> bool:
    return "remote_addr" in record and "status" in record and "request_time" in record


def skip_reason(record: Record) -> str | None:
    return None


def parse(record: Record) -> Alert:
    status = fields.optional_int(record, "status")
    if status is None or not 100 <= status <= 599:
        raise IngestError(f"field status must be an HTTP status (100-599), got {record.get('status')!r:.40}")
    upstream = fields.optional_text(record, "upstream_status")
    reached_app = upstream is not None and upstream != "-"
    verdict = classify_access()
    request_id = fields.optional_text(record, "request_id")
    return make_alert(
        id=stable_id(SOURCE, request_id) if request_id else content_id(SOURCE, record),
        source=SOURCE,
        observed_at=fields.iso_time(record.get("time"), "time"),
        category=verdict.category,
        severity=verdict.severity,
        confidence=verdict.confidence,
        src_ip=fields.ip(record.get("remote_addr"), "remote_addr"),
        dst_ip=fields.optional_ip(record.get("server_addr"), "server_addr"),
        dst_port=fields.port(record.get("server_port"), "server_port"),
        url=fields.optional_text(record, "request_uri"),
        signature=_signature(status, application_status(record) if reached_app else None, reached_app),
        # Stopped before the application: the WAF (or nginx itself) answered; the app never saw it.
        blocked=not reached_app,
        src_connected=True,  # remote_addr sent a whole HTTP request over a connection nginx accepted
        evidence_text=evidence(_evidence_parts(record, status, upstream)),
        raw=bounded_raw(record),
    )


def _signature(status: int, answered: int | None, reached_app: bool) -> str:
    if not reached_app:
        return f"HTTP {status} before the application"
    if answered is not None and answered != status:
        return f"HTTP {status}, the application answered {answered}"  # nginx made it another (error_page)
    return f"HTTP {status} from the application"


def application_status(record: Record) -> int | None:
    """What the application behind the proxy answered: the last upstream's status (`$upstream_status` lists every
    upstream tried, "502, 200", and internal redirects after " : "). Not `$status`, what the client got: nginx may
    make an application's 404 a 200 (`error_page 404 =200`, a single-page app's fallback). None when nothing was
    proxied or the status is not a number."""
    upstream = record.get("upstream_status")
    if not isinstance(upstream, str | int) or isinstance(upstream, bool):
        return None
    last = str(upstream).replace(":", ",").split(",")[-1].strip()
    return int(last) if last.isdigit() and 100 <= int(last) <= 599 else None


def _evidence_parts(record: Record, status: int, upstream: str | None) -> list[str | None]:
    method, uri, protocol = (
        fields.optional_text(record, k) for k in ("request_method", "request_uri", "server_protocol")
    )
    sent = fields.optional_int(record, "body_bytes_sent")
    took = fields.optional_text(record, "request_time")
    answer = f"HTTP {status}, {sent if sent is not None else '?'} bytes sent, {took or '?'} s"
    agent = fields.optional_text(record, "http_user_agent")
    return [
        " ".join(p for p in (method, uri, protocol) if p) or None,
        answer + (f", upstream {upstream}" if upstream else ", no upstream (not proxied to the application)"),
        f"User-Agent: {agent}" if agent else None,
    ]
