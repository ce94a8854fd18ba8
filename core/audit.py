"""The audit log, pure: entry building, queries, deterministic export.

No I/O, no clock. The ledger worker (``workers/ledger``) derives entries from each fact on
``exec.evt.<cid>`` and publishes them to ``exec.audit.<cid>`` (stream ``AUDIT``: deny delete and
purge); readers set :attr:`AuditEntry.seq` from the AUDIT stream sequence when they read.

What is an entry
----------------
One of :data:`EVENT_TYPES`:

* ``EXECUTION_TRANSITION`` — the execution state machine moved (``from_state`` → ``to_state``).
* ``ORDER_TRANSITION`` — an order-ledger history event of one order (``client_order_id``):
  created, submitted, acknowledged, (partially) filled, late fill, cancelled, rejected, expired,
  failed. ``from_state`` is the state before the event (None for a new order).
* ``ORDER_REPLACED`` — a child was re-priced or replaced under a new client order id.
* ``ALERT`` — a coded alert: the pipeline's FS0xx/GR0xx (``code``), or one of the ledger's own
  (``LEDGER_*``, e.g. a position invariant breach).
* ``OPERATOR_ACTION`` — escape (an ``EscapeStarted`` fact with an operator reason), halt, resume,
  mode change, fence set/cleared (changes of KV ``SAFETY``). ``code`` names the action.
* ``RECON_DISCREPANCY`` / ``RECON_BACKFILL`` / ``RECON_RESOLVED`` — reconciliation against the venue.

Identity and exactly-once
-------------------------
Every entry carries ``source`` (what produced it: ``evt:<fact stream seq>``, ``safety:<KV revision>``,
``recon:<issue digest>``, ``dlq:<seq>``) and ``n`` (its index among that source's entries). The
publisher's ``Nats-Msg-Id`` is :func:`msg_id` of the two, so a redelivered fact re-publishes the same
ids and the server keeps one copy.

Determinism
-----------
Entries derived from a fact use the fact's *stream timestamp* as ``ts`` (not a wall clock), so the same
fact log gives the same entries, byte for byte (:func:`export_bytes`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from core.ledger import OrderLedgerEntry
from schemas.messages import Alert, EscapeStarted, ExecutionRecord

__all__ = [
    "ALERT",
    "EVENT_TYPES",
    "EXECUTION_TRANSITION",
    "OPERATOR_ACTION",
    "OPERATOR_ESCAPE_REASONS",
    "ORDER_REPLACED",
    "ORDER_TRANSITION",
    "RECON_BACKFILL",
    "RECON_DISCREPANCY",
    "RECON_RESOLVED",
    "SYSTEM_CID",
    "AuditEntry",
    "alert_entries",
    "decode_entry",
    "encode_entry",
    "entry_json",
    "execution_entries",
    "export_bytes",
    "filter_entries",
    "ledger_alert",
    "msg_id",
    "operator_entries_for_fact",
    "order_entries",
    "parse_ts",
    "safety_entries",
]

EXECUTION_TRANSITION = "EXECUTION_TRANSITION"
ORDER_TRANSITION = "ORDER_TRANSITION"
ORDER_REPLACED = "ORDER_REPLACED"
ALERT = "ALERT"
OPERATOR_ACTION = "OPERATOR_ACTION"
RECON_DISCREPANCY = "RECON_DISCREPANCY"
RECON_BACKFILL = "RECON_BACKFILL"
RECON_RESOLVED = "RECON_RESOLVED"
EVENT_TYPES = (
    EXECUTION_TRANSITION,
    ORDER_TRANSITION,
    ORDER_REPLACED,
    ALERT,
    OPERATOR_ACTION,
    RECON_DISCREPANCY,
    RECON_BACKFILL,
    RECON_RESOLVED,
)

SYSTEM_CID = "system"
"""Correlation id (and subject token) of entries that belong to no execution (halt, resume, mode)."""

OPERATOR_ESCAPE_REASONS = frozenset({"MANUAL", "HALT"})
"""``EscapeStarted.reason`` values that come from an operator (``jetexec escape`` / ``halt``); other
reasons are the pipeline's own escapes, audited as transitions and alerts."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    correlation_id: str
    event_type: str
    from_state: str | None = None
    to_state: str | None = None
    code: str | None = None
    client_order_id: str | None = None
    payload: dict[str, Any] = {}
    source: str = ""
    n: int = 0
    seq: int = 0  # AUDIT stream sequence, set by the reader (0 until stored)


# --------------------------------------------------------------------------------------------
# identity and wire
# --------------------------------------------------------------------------------------------


def msg_id(source: str, n: int) -> str:
    """Deterministic ``Nats-Msg-Id`` of the ``n``-th entry of ``source``."""
    return f"audit.{source}.{n}"


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:20]


_enc = msgspec.json.Encoder(decimal_format="string", order="sorted")


def encode_entry(entry: AuditEntry) -> bytes:
    """Wire form (no ``seq``: the stream assigns it)."""
    return _enc.encode(msgspec.structs.replace(entry, seq=0))


def decode_entry(data: bytes, seq: int = 0) -> AuditEntry:
    e = msgspec.json.decode(data, type=AuditEntry)
    return msgspec.structs.replace(e, seq=seq) if seq else e


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The public JSON object (contract keys first; every key always present, null when n/a)."""
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "correlation_id": entry.correlation_id,
        "event_type": entry.event_type,
        "from_state": entry.from_state,
        "to_state": entry.to_state,
        "code": entry.code,
        "client_order_id": entry.client_order_id,
        "payload": entry.payload,
        "source": entry.source,
        "n": entry.n,
    }


def _s(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def numbered(entries: Sequence[AuditEntry], source: str, start: int = 0) -> list[AuditEntry]:
    """Stamp ``source`` and consecutive ``n`` (from ``start``) on entries built without them."""
    return [msgspec.structs.replace(e, source=source, n=start + i) for i, e in enumerate(entries)]


# --------------------------------------------------------------------------------------------
# building entries
# --------------------------------------------------------------------------------------------


def execution_entries(cid: str, before: ExecutionRecord | None, after: ExecutionRecord, ts: float, fact_type: str) -> list[AuditEntry]:
    """Execution transitions and alerts that ``after`` has and ``before`` had not (both lists only
    grow in :func:`core.coordinator.decide`)."""
    out: list[AuditEntry] = []
    n_tr = len(before.transitions) if before is not None else 0
    for t in after.transitions[n_tr:]:
        out.append(
            AuditEntry(
                ts=ts,
                correlation_id=cid,
                event_type=EXECUTION_TRANSITION,
                from_state=t.from_state.value,
                to_state=t.to_state.value,
                payload={"reason": t.reason, "fact": fact_type, "version": after.version},
            )
        )
    n_al = len(before.alerts) if before is not None else 0
    out.extend(alert_entries(cid, after.alerts[n_al:], ts))
    return out


def alert_entries(cid: str, alerts: Iterable[Alert], ts: float, client_order_id: str | None = None) -> list[AuditEntry]:
    return [
        AuditEntry(
            ts=ts,
            correlation_id=cid,
            event_type=ALERT,
            code=a.code.value,
            client_order_id=client_order_id,
            payload={"severity": a.severity.value, "stage": a.stage, "message": a.message, "alert_ts": a.ts},
        )
        for a in alerts
    ]


def ledger_alert(cid: str, code: str, message: str, ts: float, client_order_id: str | None = None, **details: Any) -> AuditEntry:
    """An alert raised by the ledger itself (``LEDGER_*`` / ``RECON_*`` codes)."""
    payload: dict[str, Any] = {"severity": "LEDGER", "stage": "LEDGER", "message": message}
    payload.update({k: (str(v) if isinstance(v, Decimal) else v) for k, v in details.items()})
    return AuditEntry(ts=ts, correlation_id=cid, event_type=ALERT, code=code, client_order_id=client_order_id, payload=payload)


def order_entries(cid: str, before: Mapping[str, OrderLedgerEntry], after: Mapping[str, OrderLedgerEntry], ts: float) -> list[AuditEntry]:
    """One ORDER_TRANSITION per order-ledger history item ``after`` added (orders in id order, items
    in history order), one ORDER_REPLACED per price change."""
    out: list[AuditEntry] = []
    for coid in sorted(after):
        new = after[coid]
        old = before.get(coid)
        start = len(old.history) if old is not None else 0
        prev_state = new.history[start - 1].state.value if start > 0 else None
        for item in new.history[start:]:
            if item.event == "ORDER_REPLACED":
                out.append(
                    AuditEntry(
                        ts=ts,
                        correlation_id=cid,
                        event_type=ORDER_REPLACED,
                        from_state=prev_state,
                        to_state=item.state.value,
                        client_order_id=coid,
                        payload={"detail": item.detail, "symbol": new.symbol, "side": new.side.value, "price": _s(new.price), **({"venue": new.venue} if new.venue else {})},
                    )
                )
            else:
                out.append(
                    AuditEntry(
                        ts=ts,
                        correlation_id=cid,
                        event_type=ORDER_TRANSITION,
                        from_state=prev_state,
                        to_state=item.state.value,
                        client_order_id=coid,
                        payload={"event": item.event, "detail": item.detail, "symbol": new.symbol, "side": new.side.value, "qty": str(new.qty), "filled_qty": str(new.filled_qty), **({"venue": new.venue} if new.venue else {})},
                    )
                )
            prev_state = item.state.value
    return out


def operator_entries_for_fact(fact: object, ts: float) -> list[AuditEntry]:
    """An operator escape (``jetexec escape`` / ``halt``) seen as its EscapeStarted fact."""
    if isinstance(fact, EscapeStarted) and fact.reason in OPERATOR_ESCAPE_REASONS:
        return [
            AuditEntry(
                ts=ts,
                correlation_id=fact.cid,
                event_type=OPERATOR_ACTION,
                code="ESCAPE",
                payload={"reason": fact.reason, "fence": fact.fence, "requested_ts": fact.ts},
            )
        ]
    return []


def safety_entries(key: str, value: str | None, previous: str | None, deleted: bool, ts: float) -> list[AuditEntry]:
    """Operator actions from one change of KV ``SAFETY`` (``state``, ``mode``, ``halt.<cid|ALL>``)."""
    if key == "state":
        if deleted or value is None:
            return []
        action = {"LOCKDOWN": "HALT", "NORMAL": "RESUME"}.get(value, "SAFETY_STATE")
        return [AuditEntry(ts=ts, correlation_id=SYSTEM_CID, event_type=OPERATOR_ACTION, code=action, from_state=previous, to_state=value, payload={"key": key})]
    if key == "mode":
        if deleted or value is None:
            return []
        return [AuditEntry(ts=ts, correlation_id=SYSTEM_CID, event_type=OPERATOR_ACTION, code="MODE_CHANGE", from_state=previous, to_state=value, payload={"key": key})]
    if key.startswith("halt."):
        target = key[5:]
        cid = SYSTEM_CID if target == "ALL" else target
        if deleted or not value:
            return [AuditEntry(ts=ts, correlation_id=cid, event_type=OPERATOR_ACTION, code="FENCE_CLEARED", payload={"key": key, "scope": target})]
        return [AuditEntry(ts=ts, correlation_id=cid, event_type=OPERATOR_ACTION, code="FENCE_SET", payload={"key": key, "scope": target, "value": value})]
    if key == "risk_hook":
        return [AuditEntry(ts=ts, correlation_id=SYSTEM_CID, event_type=OPERATOR_ACTION, code="RISK_HOOK_CLEARED" if deleted else "RISK_HOOK_SET", payload={"key": key, "value": None if deleted else value})]
    return [AuditEntry(ts=ts, correlation_id=SYSTEM_CID, event_type=OPERATOR_ACTION, code="SAFETY_KEY_DELETED" if deleted else "SAFETY_KEY_SET", payload={"key": key, "value": value})]


# --------------------------------------------------------------------------------------------
# queries and export
# --------------------------------------------------------------------------------------------

_REL = re.compile(r"^-?(\d+(?:\.\d+)?)([smhd])$")


def parse_ts(text: str | float | int | None, now: float | None = None) -> float | None:
    """Epoch seconds from ``1716000000.5``, ISO-8601 (``2024-05-18T02:40:00Z``; naive = UTC) or a
    relative ``-15m`` / ``2h`` (before ``now``; needs ``now``). None passes through."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    m = _REL.match(s)
    if m:
        if now is None:
            raise ValueError(f"relative time {s!r} needs a reference time")
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        dt = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (epoch seconds, ISO-8601 or -15m)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return dt.timestamp()


def filter_entries(
    entries: Iterable[AuditEntry],
    *,
    correlation_id: str | None = None,
    client_order_id: str | None = None,
    event_type: str | None = None,
    since: float | None = None,
    until: float | None = None,
    code: str | None = None,
) -> list[AuditEntry]:
    """Entries matching every given criterion (``since <= ts <= until``), ordered by ``seq`` then
    ``(source, n)`` (stable for entries not yet stored)."""
    et = event_type.upper() if event_type else None
    out = [
        e
        for e in entries
        if (correlation_id is None or e.correlation_id == correlation_id)
        and (client_order_id is None or e.client_order_id == client_order_id)
        and (et is None or e.event_type == et)
        and (code is None or e.code == code)
        and (since is None or e.ts >= since)
        and (until is None or e.ts <= until)
    ]
    return sorted(out, key=lambda e: (e.seq, e.source, e.n))


EXPORT_FORMAT = "jetexec-audit/1"


def export_bytes(entries: Iterable[AuditEntry], filters: Mapping[str, Any] | None = None) -> bytes:
    """A deterministic JSON document: same entries (and filters) → byte-identical output.

    Entries are ordered by ``seq`` (then source, n), one per line, keys sorted, decimals as
    strings, no export timestamp or host name. The document is valid JSON::

        {"count":2,"filters":{...},"first_seq":1,"format":"jetexec-audit/1","last_seq":2,"entries":[
        {...},
        {...}
        ]}
    """
    items = sorted(entries, key=lambda e: (e.seq, e.source, e.n))
    head = {
        "count": len(items),
        "filters": {k: v for k, v in sorted((filters or {}).items()) if v is not None},
        "first_seq": items[0].seq if items else None,
        "format": EXPORT_FORMAT,
        "last_seq": items[-1].seq if items else None,
    }
    head_bytes = _enc.encode(head)
    lines = [_enc.encode(entry_json(e)) for e in items]
    body = b",\n".join(lines)
    return head_bytes[:-1] + b',"entries":[\n' + body + (b"\n" if lines else b"") + b"]}\n"
