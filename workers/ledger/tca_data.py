"""From the ledger's state of one execution (+ captured market data) to TCA input and chart data.

Pure. Times come from the ledger's own copy of the execution record (fact stream timestamps), so
the report agrees with the audit log: ``completed_at`` is the ``ts`` of the terminal transition entry.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core.tca import MarketWindow, TcaChild, TcaExecution, TcaFill
from schemas.enums import ExecutionState, OrderState
from core.ledger_fold import CidState

IOC_PREFIX = "IOC remainder"


def market_window(doc: dict[str, Any] | None, t0: float, t1: float) -> MarketWindow | None:
    if not doc:
        return None
    tape = doc.get("tape") or {}
    mids = tuple((float(r[0]), Decimal(r[1])) for r in doc.get("mids") or [] if r[1] is not None)
    return MarketWindow(
        t0=float(doc.get("t0", t0)),
        t1=float(doc.get("t1", t1)),
        vwap=Decimal(tape["vwap"]) if tape.get("vwap") else None,
        volume=Decimal(tape["volume"]) if tape.get("volume") is not None else None,
        prints=int(tape.get("prints") or 0),
        tape_from=tape.get("tape_from"),
        mids=mids,
    )


def split_ts(st: CidState) -> float:
    rec = st.record
    if rec is None:
        return st.created_ts
    for t in rec.transitions:
        if t.to_state is ExecutionState.SENDING:
            return t.ts
    return rec.created_at


def tca_input(st: CidState, mkt_doc: dict[str, Any] | None = None) -> TcaExecution:
    rec = st.record
    reasons = {c.client_order_id: c.reason_code.value for c in rec.children if c.reason_code} if rec else {}
    sched = {c.client_order_id: c.scheduled_at for c in rec.children} if rec else {}
    children = []
    for o in sorted(st.orders.values(), key=lambda o: (o.created_at, o.client_order_id)):
        events = [h.event for h in o.history]
        sent = "ORDER_SUBMITTED" in events
        client_cancel = o.state is OrderState.CANCELLED and sent and not o.reason.startswith(IOC_PREFIX)
        children.append(
            TcaChild(
                client_order_id=o.client_order_id,
                qty=o.qty,
                state=o.state.value,
                sent=sent,
                client_cancelled=client_cancel,
                replaces=events.count("ORDER_REPLACED"),
                reject_reason=reasons.get(o.client_order_id) or (o.reason or None) if o.state in (OrderState.REJECTED, OrderState.FAILED) else None,
                price=o.price,
                scheduled_at=sched.get(o.client_order_id, 0.0),
            )
        )
    created = rec.created_at if rec else st.created_ts
    completed = rec.completed_at if rec else 0.0
    return TcaExecution(
        correlation_id=st.cid,
        symbol=st.symbol or "",
        side=st.side or "BUY",
        strategy_id=st.strategy_id or "",
        state=rec.state.value if rec else "",
        target_qty=st.intent_qty or Decimal(0),
        arrival_price=st.arrival_price,
        created_at=created,
        first_ack_at=rec.first_ack_at if rec else 0.0,
        first_fill_at=rec.first_fill_at if rec else 0.0,
        completed_at=completed,
        children=tuple(children),
        fills=tuple(TcaFill(ts=f.ts or f.stream_ts, qty=f.qty, price=f.price, fee=f.fee, client_order_id=f.client_order_id) for f in sorted(st.fills, key=lambda f: f.seq)),
        market=market_window(mkt_doc, created, completed),
        reason_code=rec.reason_code.value if rec and rec.reason_code else None,
        strategy=rec.strategy.value if rec and rec.strategy else None,
    )


def chart_data(st: CidState, mkt_doc: dict[str, Any] | None, tca: Any) -> dict[str, Any]:
    """Everything the SVG chart draws, as plain numbers (floats for drawing; exact values live in
    the TCA table)."""
    rec = st.record
    t_start = st.created_ts or (rec.created_at if rec else 0.0)
    t_end = (rec.completed_at if rec and rec.completed_at else 0.0) or max([f.ts or f.stream_ts for f in st.fills] + [t_start])
    market: list[list[float]] = []
    band: list[list[float]] = []
    if mkt_doc:
        for r in mkt_doc.get("mids") or []:
            market.append([float(r[0]), float(r[1])])
            if r[2] is not None and r[3] is not None:
                band.append([float(r[0]), float(r[2]), float(r[3])])
        tape_pts = ((mkt_doc.get("tape") or {}).get("points")) or []
    else:
        tape_pts = []
    prints = [[float(p[0]), float(p[1]), float(p[2])] for p in tape_pts]
    # child order price paths: initial price, then every re-price, until the order closed
    reprices: dict[str, list] = {}
    for rp in st.reprices:
        reprices.setdefault(rp.client_order_id, []).append(rp)
    orders = []
    for o in sorted(st.orders.values(), key=lambda o: (o.created_at, o.client_order_id)):
        start = next((h.ts for h in o.history if h.event == "ORDER_SUBMITTED"), None)
        if start is None:
            continue
        end = next((h.ts for h in o.history if h.state.value in ("FILLED", "CANCELLED", "REJECTED", "EXPIRED", "FAILED")), t_end)
        rps = reprices.get(o.client_order_id, [])
        price0 = rps[0].old_price if rps else o.price
        segs = []
        t, p = start, price0
        for rp in rps:
            if p is not None:
                segs.append([t, rp.ts, float(p)])
            t, p = rp.ts, rp.new_price
        if p is not None:
            segs.append([t, max(end, t), float(p)])
        orders.append({"client_order_id": o.client_order_id, "side": o.side.value, "state": o.state.value, "segments": segs, "qty": float(o.qty), "filled": float(o.filled_qty), "start": start, "end": max(end, start)})
    fills = [[f.ts or f.stream_ts, float(f.price), float(f.qty), f.client_order_id] for f in sorted(st.fills, key=lambda f: f.seq)]
    # planned schedule vs cumulative fills
    planned: list[list[float]] = []
    if rec is not None and rec.children:
        t_split = split_ts(st)
        cum = 0.0
        for c in sorted(rec.children, key=lambda c: (c.scheduled_at or t_split, c.index)):
            cum += float(c.qty)
            planned.append([max(c.scheduled_at or t_split, t_split), cum])
    filled_cum: list[list[float]] = []
    cum = 0.0
    for f in sorted(fills, key=lambda r: r[0]):
        cum += f[2]
        filled_cum.append([f[0], cum])
    times = [t for t in (t_start, t_end) if t] + [f[0] for f in fills] + [p[0] for p in planned] + [s[1] for o in orders for s in o["segments"]]
    t0 = min(times) if times else 0.0
    t1 = max(times) if times else 1.0
    pad = max(0.5, (t1 - t0) * 0.05)
    return {
        "correlation_id": st.cid,
        "symbol": st.symbol,
        "side": st.side.value if st.side else None,
        "t0": t0 - pad,
        "t1": t1 + pad,
        "t_start": t_start,
        "t_end": t_end,
        "market": [m for m in market if t0 - pad <= m[0] <= t1 + pad],
        "band": [b for b in band if t0 - pad <= b[0] <= t1 + pad],
        "prints": prints,
        "arrival": float(st.arrival_price) if st.arrival_price else None,
        "vwap": float(tca.interval_vwap) if tca.interval_vwap else None,
        "vwap_source": tca.vwap_source,
        "avg": float(tca.avg_price) if tca.avg_price else None,
        "orders": orders,
        "fills": fills,
        "planned": planned,
        "filled_cum": filled_cum,
        "target_qty": float(st.intent_qty or 0),
    }
