"""Venue operations the ledger needs beyond the existing protocol — both sides in one place.

Every call goes through the one venue client (``bus/venue_client.py``: traced, metered), at the
order's venue (``venue=None``: the default venue). Ops used: ``query`` (QueryOrder → OrderStatus),
``stats`` (the paper exchange's own), ``quote``.

Two optional ops of the venue protocol (``core/venue_protocol.py``), answered by the paper exchange
(its side is ``workers/paper_exchange/replies.py``; see docs/ledger.md, "Venue operations"):

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

from typing import Any

import msgspec
from nats.aio.client import Client

from bus.venue_client import VenueClient, VenueOpError, VenueUnavailable
from schemas.venue import OrderStatus, SymbolInfo


class OpUnavailable(Exception):
    """The venue does not serve this op (no responders, ``UNKNOWN_OP``) or did not answer."""


async def _guard(coro):
    try:
        return await coro
    except (VenueUnavailable, VenueOpError) as exc:
        raise OpUnavailable(str(exc)) from None


def _client(nc: Client, venue: str | None, timeout: float) -> VenueClient:
    return VenueClient(nc, timeout=timeout).at(venue)


async def query(nc: Client, client_order_id: str, timeout: float = 2.0, venue: str | None = None) -> OrderStatus:
    return await _guard(_client(nc, venue, timeout).query(client_order_id))


async def fills(nc: Client, client_order_id: str, timeout: float = 2.0, venue: str | None = None) -> dict[str, Any]:
    return msgspec.to_builtins(await _guard(_client(nc, venue, timeout).fills(client_order_id)))


async def tape(nc: Client, symbol: str, t0: float, t1: float, timeout: float = 2.0, venue: str | None = None) -> dict[str, Any]:
    return msgspec.to_builtins(await _guard(_client(nc, venue, timeout).tape(symbol, t0, t1)))


async def stats(nc: Client, timeout: float = 2.0, venue: str | None = None) -> dict[str, Any]:
    return await _guard(_client(nc, venue, timeout).raw("stats"))


async def quote(nc: Client, symbol: str, timeout: float = 2.0, venue: str | None = None) -> SymbolInfo:
    return await _guard(_client(nc, venue, timeout).quote(symbol))
