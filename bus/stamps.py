"""Stream timestamps: integer nanoseconds, the same on every read path.

The coordinator decides with ``now`` = the fact's stream timestamp, and the ledger replays the same
decisions with the same clock, so the audit log's transitions are exactly the coordinator's.
"""

from __future__ import annotations

import datetime as _dt
import re

from nats.aio.msg import Msg



def ns_from_reply(reply: str | None) -> int:
    """The stream timestamp (ns) from a JetStream delivery's reply subject ($JS.ACK....)."""
    if not reply:
        return 0
    tokens = reply.split(".")
    if len(tokens) == 9:  # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[7])
    if len(tokens) >= 11:  # v2: $JS.ACK.<domain>.<acchash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[9])
    return 0


def ns_from_rfc3339(s: str) -> int:
    """``2024-05-18T02:40:00.123456789Z`` → ns (nanosecond digits kept exactly)."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$", s.strip())
    if not m:
        raise ValueError(f"bad timestamp {s!r}")
    base = _dt.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = (m.group(2) or "").ljust(9, "0")[:9]
    return int(base.timestamp()) * 1_000_000_000 + int(frac)


def ns_to_ts(ns: int) -> float:
    """Epoch seconds at microsecond resolution (deterministic: the same ns → the same float)."""
    return (ns // 1000) / 1_000_000


def msg_ts(msg: Msg) -> float:
    return ns_to_ts(ns_from_reply(msg.reply))


