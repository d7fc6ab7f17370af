"""Suricata EVE JSON records.

Every EVE line has `timestamp` and `event_type`. Only `alert` events are alerts; flow, http, fileinfo, dns,
stats ... are valid telemetry and are counted as skipped, not as errors.

Engine events: Suricata's own decoder rules fire on packets it could not decode ("SURICATA IPv4 total length
smaller than header size"), and the alert then has no `src_ip`/`dest_ip` at all. That is valid sensor output,
not a broken record: it becomes an Alert without addresses, low severity and low confidence (nobody to act
on), rule id and signature kept, so it is counted, grouped and visible. A record that has the address keys
with a bad value, or one that claims a flow but names no address, is still broken and dead-lettered.
"""

from __future__ import annotations

from typing import Any

from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import classify_suricata
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw, content_id, evidence, make_alert, stable_id
from autonomy_controller.controller.models import Alert, Severity

SOURCE = "suricata"
ENGINE_SEVERITY = Severity.LOW
ENGINE_CONFIDENCE = 0.3
"""Caps for engine events: a packet the engine could not decode names nobody, so it is never strong evidence."""
ENGINE_NOTE = "Suricata engine event: the packet's addresses could not be decoded (decoder/stream anomaly)"
_FLOW_KEYS = ("flow_id", "src_port", "dest_port", "flow", "app_proto", "http")
"""Keys that only a decoded flow has: an addressless alert carrying one is a damaged record, not an engine event."""
_HUGE = (("payload",), ("packet",), ("http", "http_response_body"), ("http", "http_request_body"))
# Rule-author metadata worth classifying on (ET rules: tag SQL_Injection, cve CVE_2021_44228, ...).
_METADATA_KEYS = ("tag", "cve", "former_category", "mitre_tactic_id", "mitre_technique_id", "malware_family")


def looks_like(record: Record) -> bool:
    return isinstance(record.get("event_type"), str) and "timestamp" in record


def skip_reason(record: Record) -> str | None:
    event_type = str(record.get("event_type"))
    return None if event_type == "alert" else f"{SOURCE}: {event_type[:40]}"


def parse(record: Record) -> Alert:
    alert = fields.mapping(record, "alert")
    signature = fields.text(record, "alert.signature")
    sid = fields.text(record, "alert.signature_id")
    stamp = fields.text(record, "timestamp")
    metadata = _metadata(alert)
    verdict = classify_suricata(
        signature=signature,
        classtype=fields.optional_text(alert, "category"),
        metadata_terms=[str(v) for key in _METADATA_KEYS for v in _as_list(metadata.get(key))],
        severity=fields.optional_int(record, "alert.severity"),
        signature_severity=next(iter(_as_list(metadata.get("signature_severity"))), None),
    )
    engine = is_engine_event(record)
    src_ip, dst_ip, dst_port = (None, None, None) if engine else _client_server(record)
    severity, confidence = verdict.severity, verdict.confidence
    if engine:
        severity = min(severity, ENGINE_SEVERITY, key=lambda s: s.rank)
        confidence = min(confidence, ENGINE_CONFIDENCE)
    http = fields.mapping(record, "http", optional=True)
    flow_id = record.get("flow_id")
    return make_alert(
        id=stable_id(SOURCE, flow_id, sid, stamp) if flow_id is not None else content_id(SOURCE, record),
        source=SOURCE,
        observed_at=fields.iso_time(stamp, "timestamp"),
        category=verdict.category,
        severity=severity,
        confidence=confidence,
        src_ip=src_ip,
        dst_ip=dst_ip,
        dst_port=dst_port,
        url=fields.optional_text(http, "url"),
        rule_ids=[sid],
        signature=signature,
        # IDS mode logs "allowed" even when a WAF behind it answered 403; only an IPS drop is a block.
        blocked=fields.optional_text(alert, "action") == "blocked",
        src_connected=not engine and connected(record) and _flow_carried(record, src_ip),
        evidence_text=evidence([ENGINE_NOTE if engine else None, *_evidence_parts(record, http)]),
        raw=bounded_raw(record, _HUGE),
    )


def connected(record: Record) -> bool:
    """Whether the flow's client held a TCP connection that carried application data (Suricata named its
    `app_proto`): a forged source cannot complete the handshake. A UDP or ICMP alert, a bare SYN, or a TCP flow
    whose protocol Suricata could not tell (`failed`) may carry anyone's address as its source. So may an alert
    that does not say which side sent the packet (Suricata 6: no `direction`, no `flow.src_ip`): on the server's
    answer its src_ip is the server, ours, and the client is not known to be either address."""
    proto = fields.optional_text(record, "proto")
    app_proto = fields.optional_text(record, "app_proto")
    oriented = "direction" in record or fields.get_path(record, "flow.src_ip") is not None
    return oriented and (proto or "").upper() == "TCP" and app_proto not in (None, "", "failed", "unknown")


def _flow_carried(record: Record, client: str | None) -> bool:
    """Whether the client address is one of the flow's own endpoints (`flow.src_ip`/`flow.dest_ip`, Suricata 7 and
    later). With `xff: {mode: overwrite}` Suricata writes the X-Forwarded-For header, the client's own text, as the
    alert's address, and only `flow` keeps the packets' addresses: such an address vouches for no connection."""
    paths = ("flow.src_ip", "flow.dest_ip")
    endpoints = {fields.optional_ip(fields.get_path(record, path), path) for path in paths} - {None}
    return not endpoints or client in endpoints  # none logged (Suricata 6): nothing to compare with


def is_engine_event(record: Record) -> bool:
    """An alert on a packet whose IP header Suricata could not decode: neither address key is present.

    Present-but-empty or null addresses are not this (a producer wrote the key and lost the value), and
    neither is an addressless alert with flow fields: both raise, so the record is dead-lettered."""
    if "src_ip" in record or "dest_ip" in record:
        return False
    flow_keys = [key for key in _FLOW_KEYS if key in record]
    if flow_keys:
        raise IngestError(f"alert has flow fields ({', '.join(flow_keys)}) but neither src_ip nor dest_ip")
    return True


def _client_server(record: Record) -> tuple[str, str | None, int | None]:
    """(client, server, server port) of the flow.

    An alert on a response (`direction: to_client`, e.g. "GPL WEB_SERVER 403 Forbidden") has the server in
    src_ip. Taken literally it would make our own web server the incident's source and a block_ip target;
    the flow's originator is the subject of every alert on the flow.
    """
    src = fields.ip(record.get("src_ip"), "src_ip")
    dst = fields.optional_ip(record.get("dest_ip"), "dest_ip")
    src_port = fields.port(record.get("src_port"), "src_port")
    dst_port = fields.port(record.get("dest_port"), "dest_port")
    flow_src = fields.optional_ip(fields.get_path(record, "flow.src_ip"), "flow.src_ip")
    to_client = record.get("direction") == "to_client" or (
        "direction" not in record and dst is not None and flow_src == dst and flow_src != src
    )
    if to_client and dst is not None:
        return dst, src, src_port
    return src, dst, dst_port


def _evidence_parts(record: Record, http: Record) -> list[str | None]:
    method, url, proto = (fields.optional_text(http, k) for k in ("http_method", "url", "protocol"))
    request_line = " ".join(p for p in (method, url, proto) if p) or None
    agent = fields.optional_text(http, "http_user_agent")
    host = fields.optional_text(http, "hostname")
    return [
        request_line,
        f"Host: {host}" if host else None,
        f"User-Agent: {agent}" if agent else None,
        fields.optional_text(record, "payload_printable"),
    ]


def _metadata(alert: Record) -> Record:
    """The rule author's metadata (Suricata writes an object of lists). Another shape only costs what it could add
    to the classification: the alert stands on its signature and classtype, and raw keeps the metadata as sent."""
    metadata = alert.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
