"""Venue operations the ledger needs beyond the existing protocol — both sides in one place.

Existing ops used: ``venue.api.query`` (QueryOrder → OrderStatus), ``venue.api.stats``,
``venue.api.quote``.

Two **proposed** ops (request/reply, JSON), answered by the paper exchange once it wires the
venue-side helpers below (see docs/ledger.md, "Venue operations"):

``venue.api.fills``  ``{"client_order_id": ID}`` →
    ``{"found": bool, "client_order_id", "cid", "state", "qty", "filled_qty",
    "fills": [{"trade_id", "qty", "price", "fee", "ts", "cum_qty"}]}``
    Every fill the venue made for one order: what reconciliation needs to back-fill a missed
    ChildFill exactly (trade id, quantity, price, fee).
``venue.api.tape``   ``{"symbol": S, "t0": float, "t1": float}`` →
    ``{"symbol", "t0", "t1", "vwap": str|null, "volume": str, "prints": int, "tape_from": float|null,
    "points": [[ts, price, qty], ...]}`` (``points`` capped at 2000, evenly thinned)
    The market's interval VWAP and volume from the venue tape (``core.paper_venue.interval_vwap``), for
    TCA (VWAP slippage, participation) and the report chart.

Without them the ledger still works: reconciliation compares quantities and states through
``query`` (discrepancies alerted, no back-fill), TCA uses the quote mids it recorded.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from bus.topology import venue_api
from schemas.codec import decode, encode
from schemas.venue import ExecutionReport, OrderStatus, QueryOrder, SymbolInfo

TAPE_POINTS_MAX = 2000


class OpUnavailable(Exception):
    """The venue does not serve this op (no responders) or did not answer."""


async def _request(nc: Client, op: str, payload: bytes, timeout: float) -> bytes:
    try:
        msg = await nc.request(venue_api(op), payload, timeout=timeout)
    except (NoRespondersError, NatsTimeout, asyncio.TimeoutError) as exc:
        raise OpUnavailable(f"venue.api.{op}: {type(exc).__name__}") from None
    if msg.headers and msg.headers.get("Status") == "503":
        raise OpUnavailable(f"venue.api.{op}: no responders")
    return msg.data


async def query(nc: Client, client_order_id: str, timeout: float = 2.0) -> OrderStatus:
    data = await _request(nc, "query", encode(QueryOrder(client_order_id=client_order_id)), timeout)
    return decode(data, OrderStatus)


async def fills(nc: Client, client_order_id: str, timeout: float = 2.0) -> dict[str, Any]:
    data = await _request(nc, "fills", json.dumps({"client_order_id": client_order_id}).encode(), timeout)
    body = json.loads(data)
    if "error" in body:
        raise OpUnavailable(f"venue.api.fills: {body['error']}")
    return body


async def tape(nc: Client, symbol: str, t0: float, t1: float, timeout: float = 2.0) -> dict[str, Any]:
    data = await _request(nc, "tape", json.dumps({"symbol": symbol, "t0": t0, "t1": t1}).encode(), timeout)
    body = json.loads(data)
    if "error" in body:
        raise OpUnavailable(f"venue.api.tape: {body['error']}")
    return body


async def stats(nc: Client, timeout: float = 2.0) -> dict[str, Any]:
    return json.loads(await _request(nc, "stats", b"{}", timeout))


async def quote(nc: Client, symbol: str, timeout: float = 2.0) -> SymbolInfo:
    data = await _request(nc, "quote", json.dumps({"symbol": symbol}).encode(), timeout)
    return decode(data, SymbolInfo)


# ---------------------------------------------------------------------------------------------
# venue side: what the paper exchange calls to answer the two proposed ops
# ---------------------------------------------------------------------------------------------


class FillIndex:
    """Every FILL report the venue emitted, by client order id (feed it the reports the paper
    exchange publishes; persist ``to_json(coid)`` under ``f.<coid>`` if fills must survive a venue
    restart)."""

    def __init__(self) -> None:
        self.by_order: dict[str, list[dict[str, Any]]] = {}

    def add(self, reports: list[ExecutionReport]) -> None:
        for r in reports:
            if r.kind != "FILL":
                continue
            rows = self.by_order.setdefault(r.client_order_id, [])
            if any(x["trade_id"] == r.trade_id for x in rows):
                continue
            rows.append({"trade_id": r.trade_id, "qty": str(r.qty), "price": str(r.price), "fee": str(r.fee), "ts": r.ts, "cum_qty": str(r.cum_qty)})

    def reply(self, order: Any | None, client_order_id: str) -> bytes:
        """The ``venue.api.fills`` answer; ``order`` is the venue's RestingOrder (or None)."""
        rows = self.by_order.get(client_order_id, [])
        if order is None:
            return json.dumps({"found": False, "client_order_id": client_order_id, "fills": rows}).encode()
        return json.dumps(
            {
                "found": True,
                "client_order_id": client_order_id,
                "cid": order.cid,
                "state": order.state.value,
                "qty": str(order.qty),
                "filled_qty": str(order.filled_qty),
                "fill_count": order.fill_count,
                "fills": rows,
            }
        ).encode()


def tape_reply(state: Any, symbol: str, t0: float, t1: float) -> bytes:
    """The ``venue.api.tape`` answer from a ``core.paper_venue.VenueState``."""
    from core.paper_venue import interval_vwap

    prints = [p for p in state.tape if p.symbol == symbol]
    inside = [p for p in prints if t0 <= p.ts <= t1]
    volume = sum((p.qty for p in inside), Decimal(0))
    vwap = interval_vwap(state, symbol, t0, t1)
    step = max(1, -(-len(inside) // TAPE_POINTS_MAX))
    points = [[p.ts, str(p.price), str(p.qty)] for p in inside[::step]]
    return json.dumps(
        {
            "symbol": symbol,
            "t0": t0,
            "t1": t1,
            "vwap": None if vwap is None else str(vwap),
            "volume": str(volume),
            "prints": len(inside),
            "tape_from": prints[0].ts if prints else None,
            "points": points,
        }
    ).encode()
