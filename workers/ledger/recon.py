"""Reconciliation against the venue, and snapshots — the I/O around :mod:`core.recon`.

Used by the ledger worker (at start-up and every ``JETEXEC_RECON_INTERVAL_S``) and by ``jetexec
recon`` (the same code; both may run, every write is idempotent).

One pass:

1. Read every execution's ledger state (KV ``LEDGER`` ``x.*``). Orders to check: every live one, and
   every one updated within ``lookback_s``. Executions the ledger has not caught up with (its
   ``last_seq`` is below the last fact on ``exec.evt.<cid>``) are skipped this pass.
2. Ask the venue: ``venue.api.query`` per order, ``venue.api.fills`` when served (per-trade detail),
   ``venue.api.stats`` (open-order count).
3. :func:`core.recon.reconcile`; if anything is found, wait ``grace_s`` and do 1–3 again for the
   affected executions, keep what persists (:func:`core.recon.persistent`).
4. Publish back-filled facts (``ChildFill`` / ``ChildClosed`` with the monitor's ids), audit
   ``RECON_BACKFILL`` / ``RECON_DISCREPANCY`` (new issues only) / ``RECON_RESOLVED``, store the open
   issues (``recon.issues``) and the report (``recon.last``).
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from bus.runtime import Out, Publisher
from bus.topology import CONSUMERS, KV_LEDGER, audit_subject, evt_stored, evt_subject
from core import audit, recon
from core.ledger import OrderLedgerEntry
from schemas.codec import encode
from schemas.messages import ChildClosed, ChildFill
from bus.venue_client import venues_from_env
from workers.ledger import query, store, venue_ops
from core.ledger_fold import CidState

DEFAULT_LOOKBACK_S = 7200.0
CONCURRENCY = 16


async def last_seq_on(nc: Client, subject: str) -> int:
    req = json.dumps({"last_by_subj": subject}).encode()
    resp = await nc.request(f"$JS.API.STREAM.MSG.GET.{store.EVT_STREAM}", req, timeout=5)
    body = json.loads(resp.data)
    if "error" in body:
        return 0
    return int(body["message"]["seq"])


class Reconciler:
    def __init__(self, nc: Client, *, grace_s: float = 2.0, lookback_s: float = DEFAULT_LOOKBACK_S, publish: bool = True, cids: list[str] | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5)
        self.grace_s = grace_s
        self.lookback_s = lookback_s
        self.publish = publish
        self.cids = cids
        self.fills_op: bool | None = None  # unknown until the first call
        self.default_venue = venues_from_env().default

    # ---- gathering -----------------------------------------------------------------------------
    async def _states(self, cids: list[str] | None) -> dict[str, CidState]:
        return await query.states(self.nc, cids)

    async def _venue_order(self, o: OrderLedgerEntry) -> recon.VenueOrder | None:
        venue = o.venue or None  # each order is reconciled with the venue it went to
        try:
            status = await venue_ops.query(self.nc, o.client_order_id, venue=venue)
        except venue_ops.OpUnavailable:
            return None
        fills = None
        if status.found and self.fills_op is not False:
            try:
                body = await venue_ops.fills(self.nc, o.client_order_id, venue=venue)
                self.fills_op = True
                fills = tuple(recon.VenueFill(trade_id=f["trade_id"], qty=Decimal(f["qty"]), price=Decimal(f["price"]), fee=Decimal(f.get("fee", "0")), ts=float(f.get("ts", 0.0))) for f in body.get("fills", []))
            except venue_ops.OpUnavailable:
                self.fills_op = False
        return recon.VenueOrder(client_order_id=o.client_order_id, found=status.found, state=status.state, qty=status.qty, filled_qty=status.filled_qty, fills=fills)

    async def _pass(self, cids: list[str] | None) -> tuple[recon.ReconResult, dict[str, Any]]:
        states = await self._states(cids)
        now = time.time()
        candidates: list[OrderLedgerEntry] = []
        lagging: list[str] = []
        estimates: list[str] = []
        for cid, st in sorted(states.items()):
            picked = [o for o in st.orders.values() if o.state in recon.LEDGER_LIVE or now - o.updated_at <= self.lookback_s]
            if not picked:
                continue
            if await last_seq_on(self.nc, evt_stored(cid)) > st.last_seq:
                lagging.append(cid)
                continue
            candidates += picked
            if st.flatten_id in st.orders:
                estimates.append(st.flatten_id)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(o):
            async with sem:
                return o.client_order_id, await self._venue_order(o)

        views = {k: v for k, v in await asyncio.gather(*(one(o) for o in candidates)) if v is not None}
        venue_open = None
        ledger_open = None
        if cids is None:
            try:
                venue_open = int((await venue_ops.stats(self.nc))["open"])  # the default venue's (when it serves stats)
                default = self.default_venue
                ledger_open = sum(1 for st in states.values() for o in st.orders.values() if o.state in recon.LEDGER_LIVE and (o.venue or default) == default)
            except (venue_ops.OpUnavailable, KeyError, ValueError):
                pass
        result = recon.reconcile(candidates, views, venue_open=venue_open, ledger_open_total=ledger_open, estimates=estimates)
        meta = {"orders_checked": result.checked, "venue_answered": len(views), "executions_lagging": lagging, "venue_fills_op": self.fills_op, "venue_open": venue_open, "ledger_open": ledger_open}
        return result, meta

    # ---- one pass ------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        started = time.time()
        first, meta = await self._pass(self.cids)
        result = first
        if not first.clean and self.grace_s > 0:
            await asyncio.sleep(self.grace_s)
            affected = sorted({i.correlation_id for i in first.issues if i.correlation_id != "system"} | {b.correlation_id for b in first.backfills} | {c.correlation_id for c in first.closes})
            if self.cids is None and any(i.correlation_id == "system" for i in first.issues):
                second, meta = await self._pass(None)
            else:
                second, meta2 = await self._pass(affected)
                meta = {**meta, **{k: v for k, v in meta2.items() if k in ("venue_fills_op",)}}
            result = recon.persistent(first, second)
        report = {
            "ts": started,
            "duration_s": round(time.time() - started, 3),
            **meta,
            "issues": [{"key": i.key, "code": i.code, "correlation_id": i.correlation_id, "client_order_id": i.client_order_id, "message": i.message, "details": i.details} for i in result.issues],
            "backfilled_fills": [{"correlation_id": b.correlation_id, "client_order_id": b.client_order_id, "trade_id": b.fill.trade_id, "qty": str(b.fill.qty), "price": str(b.fill.price), "fee": str(b.fill.fee)} for b in result.backfills],
            "backfilled_closes": [{"correlation_id": c.correlation_id, "client_order_id": c.client_order_id, "state": c.state.value} for c in result.closes],
        }
        if self.publish:
            await self._act(result, report)
        return report

    async def _act(self, result: recon.ReconResult, report: dict[str, Any]) -> None:
        pub = Publisher(self.js)
        outs: list[Out] = []
        now = time.time()
        for b in result.backfills:
            f = b.fill
            fact = ChildFill(cid=b.correlation_id, client_order_id=b.client_order_id, trade_id=f.trade_id, qty=f.qty, price=f.price, fee=f.fee, ts=f.ts or now)
            outs.append(Out(evt_subject(b.correlation_id), encode(fact), f"{b.correlation_id}.fill.{f.trade_id}"))
            e = audit.AuditEntry(ts=now, correlation_id=b.correlation_id, event_type=audit.RECON_BACKFILL, code="RECON_FILL_BACKFILLED", client_order_id=b.client_order_id, payload={"trade_id": f.trade_id, "qty": str(f.qty), "price": str(f.price), "fee": str(f.fee), "venue_ts": f.ts}, source=f"recon:{audit.digest('fill', f.trade_id)}")
            outs.append(Out(audit_subject(e.correlation_id), audit.encode_entry(e), audit.msg_id(e.source, 0)))
        for c in result.closes:
            fact = ChildClosed(cid=c.correlation_id, client_order_id=c.client_order_id, state=c.state, reason=c.reason, ts=now)
            outs.append(Out(evt_subject(c.correlation_id), encode(fact), f"{c.correlation_id}.close.{c.client_order_id}.{c.state.value}"))
            e = audit.AuditEntry(ts=now, correlation_id=c.correlation_id, event_type=audit.RECON_BACKFILL, code="RECON_CLOSE_BACKFILLED", client_order_id=c.client_order_id, to_state=c.state.value, payload={"reason": c.reason}, source=f"recon:{audit.digest('close', c.client_order_id, c.state.value)}")
            outs.append(Out(audit_subject(e.correlation_id), audit.encode_entry(e), audit.msg_id(e.source, 0)))
        kv = await self.js.key_value(KV_LEDGER)
        try:
            previous = json.loads((await kv.get("recon.issues")).value)
        except (KeyNotFoundError, Exception):
            previous = {}
        scope_all = self.cids is None
        relevant_prev = previous if scope_all else {k: v for k, v in previous.items() if v.get("correlation_id") in set(self.cids or [])}
        new, resolved = recon.issue_changes(relevant_prev, result.issues)
        for i in new:
            e = audit.AuditEntry(ts=now, correlation_id=i.correlation_id, event_type=audit.RECON_DISCREPANCY, code=i.code, client_order_id=i.client_order_id, payload={"message": i.message, "details": i.details, "issue": i.key}, source=f"recon:{i.key}")
            outs.append(Out(audit_subject(e.correlation_id), audit.encode_entry(e), audit.msg_id(e.source, 0)))
        for k in resolved:
            old = relevant_prev[k]
            e = audit.AuditEntry(ts=now, correlation_id=old.get("correlation_id", "system"), event_type=audit.RECON_RESOLVED, code=old.get("code"), client_order_id=old.get("client_order_id"), payload={"issue": k, "first_seen": old.get("first_seen")}, source=f"recon-resolved:{k}.{audit.digest(str(old.get('first_seen')))}")
            outs.append(Out(audit_subject(e.correlation_id), audit.encode_entry(e), audit.msg_id(e.source, 0)))
        await pub.publish(outs)
        current = {k: v for k, v in previous.items() if k not in relevant_prev}
        for i in result.issues:
            first_seen = previous.get(i.key, {}).get("first_seen", now)
            current[i.key] = {"code": i.code, "correlation_id": i.correlation_id, "client_order_id": i.client_order_id, "message": i.message, "first_seen": first_seen}
        await kv.put("recon.issues", json.dumps(current, sort_keys=True).encode())
        report["new_issues"] = [i.key for i in new]
        report["resolved_issues"] = resolved
        report["open_issues"] = len(current)
        await kv.put("recon.last", json.dumps(report, sort_keys=True, default=str).encode())


async def take_snapshot(nc: Client, *, store_it: bool = True, include_all_orders: bool = False, marks: dict[str, Decimal] | None = None) -> dict[str, Any]:
    """Orders, positions and the audit high-water mark (``snap.latest`` in KV ``LEDGER``)."""
    js = nc.jetstream(timeout=5)
    audit_hw = await query.audit_high_water(nc)
    evt_hw = (await js.stream_info(store.EVT_STREAM)).state.last_seq
    try:
        floor = (await js.consumer_info(store.EVT_STREAM, CONSUMERS["ledger"].durable)).ack_floor.stream_seq
    except Exception:
        floor = 0
    book = await query.position_book(nc)
    if marks is None:
        marks = {}
        for sym in sorted({k[0] for k in book.positions}):
            try:
                marks[sym] = (await venue_ops.quote(nc, sym)).reference_price
            except Exception:
                pass
    sts = await query.states(nc)
    snap = recon.build_snapshot(
        ts=time.time(),
        positions=query.position_rows(book, marks),
        orders=query.all_orders(sts),
        order_row=query.order_json,
        audit_high_water=audit_hw,
        evt_high_water=evt_hw,
        ledger_ack_floor=floor,
        include_all_orders=include_all_orders,
    )
    if store_it:
        kv = await js.key_value(KV_LEDGER)
        stored = snap if include_all_orders is False else {**snap, "orders": [o for o in snap["orders"] if o["state"] in {s.value for s in recon.LEDGER_LIVE}]}
        await kv.put("snap.latest", json.dumps(stored, sort_keys=True).encode())
    return snap

