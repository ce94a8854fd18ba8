"""I/O helpers of the ledger: KV key names, stream timestamps, reading streams and buckets in bulk.

KV ``LEDGER`` keys (one writer: the ledger worker; anyone may read):

* ``pos.<symbol>.<strategy_id>`` — the public position JSON (``qty`` etc. as decimal strings; the
  precheck worker reads ``qty``). Characters a KV key cannot hold are replaced (:func:`key_part`).
* ``pbook.<symbol>.<strategy_id>`` — the position slot (base + seq-ordered tail), the source of truth.
* ``x.<cid>`` — one execution's :class:`core.ledger_fold.CidState` (order ledger, fills, record copy).
* ``mkt.<cid>`` — market data captured for TCA when the execution ended (mids, venue tape VWAP).
* ``hwm.safety`` — the last KV ``SAFETY`` revision audited; ``recon.issues`` / ``recon.last`` /
  ``snap.latest`` — reconciliation state and the latest snapshot.
"""

from __future__ import annotations

from bus.stamps import msg_ts, ns_from_reply, ns_from_rfc3339, ns_to_ts  # noqa: F401 - re-exported
from bus.streams import RawMsg, kv_scan, next_msg, read_stream  # noqa: F401 - re-exported
from core.keys import key_part, pbook_key, pos_key  # noqa: F401 - re-exported

EVT_STREAM = "EXEC_EVT"
AUDIT_STREAM = "AUDIT"

def state_key(cid: str) -> str:
    return f"x.{cid}"


def mkt_key(cid: str) -> str:
    return f"mkt.{cid}"


# ---- stream timestamps: bus.stamps (shared with the coordinator, which decides with that clock) ---


# ---- reading single messages and whole streams: bus.streams (the coordinator reads the log too) ----
