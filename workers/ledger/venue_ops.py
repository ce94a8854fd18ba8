"""Venue operations the ledger needs beyond the existing protocol — both sides in one place.

Existing ops used: ``venue.api.query`` (QueryOrder → OrderStatus), ``venue.api.stats``,
``venue.api.quote``.

Two more ops (request/reply, JSON), answered by the paper exchange (its side is
``workers/paper_exchange/replies.py``; see docs/ledger.md, "Venue operations"):

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
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from bus.topology import venue_api
from schemas.codec import decode, encode
from schemas.venue import OrderStatus, QueryOrder, SymbolInfo


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
