"""Read side of the ledger, for the CLI, the Python client, the report and tests (no worker needed).

* :func:`audit_entries` — the AUDIT stream (``seq`` set from the stream), optionally one execution.
* :func:`positions` — positions from ``pbook.*`` (the source of truth), marked to given quotes.
* :func:`states` / :func:`orders` — executions' ledger states and every order with its history.
* :func:`replay_stream` — the whole ledger rebuilt from EXEC_EVT (what ``jetexec ledger verify``
  compares with the live one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from nats.aio.client import Client

from bus.topology import EVT_ALL, KV_EXECUTIONS, KV_LEDGER, evt_stored
from core import audit
from core.ledger import OrderLedgerEntry, Position, PositionBook, snapshot
from schemas.codec import decode
from schemas.messages import ExecutionRecord
from workers.ledger import store
from core.ledger_fold import CidState, PositionSlot, Replay, decode_for, replay, replay_positions, slot_position


async def audit_entries(nc: Client, correlation_id: str | None = None, since: float | None = None) -> list[audit.AuditEntry]:
    subject = f"exec.audit.{correlation_id}" if correlation_id else "exec.audit.*"
    out: list[audit.AuditEntry] = []
    async for m in store.read_stream(nc, store.AUDIT_STREAM, subject, start_time=since):
        try:
            out.append(audit.decode_entry(m.data, m.seq))
        except Exception:
            continue  # not an audit entry: never written by the ledger
    return out


async def audit_high_water(nc: Client) -> int:
    info = await nc.jetstream(timeout=5).stream_info(store.AUDIT_STREAM)
    return info.state.last_seq


async def slots(nc: Client) -> dict[tuple[str, str], PositionSlot]:
    out = {}
    for _k, v in (await store.kv_scan(nc, KV_LEDGER, "pbook.")).items():
        s = decode(v, PositionSlot)
        out[(s.symbol, s.strategy_id)] = s
    return out


async def position_book(nc: Client) -> PositionBook:
    return PositionBook({k: slot_position(s) for k, s in (await slots(nc)).items()}, {})


def position_rows(book: PositionBook, marks: dict[str, Decimal]) -> list[dict[str, Any]]:
    """The public position objects (``core.ledger.snapshot``: decimals as strings)."""
    return snapshot(book, marks)


async def positions(nc: Client, marks: dict[str, Decimal] | None = None) -> list[dict[str, Any]]:
    return position_rows(await position_book(nc), marks or {})


async def states(nc: Client, cids: Iterable[str] | None = None) -> dict[str, CidState]:
    if cids is None:
        raw = await store.kv_scan(nc, KV_LEDGER, "x.")
        return {k[2:]: decode(v, CidState) for k, v in raw.items()}
    kv = await nc.jetstream(timeout=5).key_value(KV_LEDGER)
    out = {}
    for cid in cids:
        try:
            e = await kv.get(store.state_key(cid))
        except Exception:
            continue
        if e.value:
            out[cid] = decode(e.value, CidState)
    return out


def order_json(o: OrderLedgerEntry, history: bool = False) -> dict[str, Any]:
    """Public order object: contract keys first, decimals as strings."""
    row: dict[str, Any] = {
        "client_order_id": o.client_order_id,
        "correlation_id": o.correlation_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "qty": str(o.qty),
        "filled_qty": str(o.filled_qty),
        "state": o.state.value,
        "strategy_id": o.strategy_id,
        "price": None if o.price is None else str(o.price),
        "avg_fill_price": None if o.avg_fill_price is None else str(o.avg_fill_price),
        "fees": str(o.fees),
        "venue_order_id": o.venue_order_id,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "reason": o.reason,
        "venue": o.venue or None,
    }
    if history:
        row["history"] = [[h.ts, h.state.value, h.event, h.detail] for h in o.history]
    return row


def all_orders(sts: dict[str, CidState]) -> list[OrderLedgerEntry]:
    return sorted((o for s in sts.values() for o in s.orders.values()), key=lambda o: (o.created_at, o.client_order_id))


async def orders(nc: Client) -> list[OrderLedgerEntry]:
    return all_orders(await states(nc))


async def facts(nc: Client, cid: str | None = None) -> list[tuple[int, float, object]]:
    """``(seq, stream ts, fact)`` of EXEC_EVT in stream order; an undecodable fact is
    ``(cid, detail)`` (what :func:`core.ledger_fold.replay` expects)."""
    out: list[tuple[int, float, object]] = []
    async for m in store.read_stream(nc, store.EVT_STREAM, evt_stored(cid) if cid else EVT_ALL):
        out.append((m.seq, m.ts, decode_for(m.subject.rsplit(".", 1)[-1], m.data)))
    return out


async def replay_stream(nc: Client, cid: str | None = None) -> Replay:
    return replay(await facts(nc, cid))


async def rebuild_state(nc: Client, cid: str) -> CidState | None:
    r = await replay_stream(nc, cid)
    return r.states.get(cid)


async def attach_records(nc: Client, sts: dict[str, CidState]) -> dict[str, CidState]:
    """Give each state the coordinator's record (KV ``EXECUTIONS``): the transitions and timings
    that TCA and the report need, which the ledger itself does not derive."""
    kv = await nc.jetstream(timeout=5).key_value(KV_EXECUTIONS)
    sem = asyncio.Semaphore(64)

    async def one(st: CidState) -> None:
        async with sem:
            try:
                entry = await kv.get(st.cid)
            except Exception:
                return
        if entry.value:
            st.record = decode(entry.value, ExecutionRecord)

    await asyncio.gather(*(one(st) for st in sts.values() if st.record is None))
    return sts


def compare_books(live: PositionBook, replayed: PositionBook) -> list[str]:
    """Differences between two books, field by field (empty when identical)."""
    diffs = []
    for key in sorted(set(live.positions) | set(replayed.positions)):
        a, b = live.positions.get(key), replayed.positions.get(key)
        if a is None or b is None:
            diffs.append(f"{key}: only in {'replay' if a is None else 'live'}")
            continue
        for f in Position.__struct_fields__:
            if getattr(a, f) != getattr(b, f):
                diffs.append(f"{key}: {f} live {getattr(a, f)} != replay {getattr(b, f)}")
    return diffs


__all__ = [
    "all_orders",
    "audit_entries",
    "audit_high_water",
    "compare_books",
    "facts",
    "order_json",
    "orders",
    "position_book",
    "position_rows",
    "positions",
    "rebuild_state",
    "replay_positions",
    "replay_stream",
    "slots",
    "states",
]
