"""The venue protocol's wire messages: request/reply over core NATS (``venue.<id>.api.<op>``, and
``venue.api.<op>`` for the default venue) and execution reports on JetStream
(``venue.<id>.report.<cid>``; ``venue.report.<cid>`` = the default venue).

Seed 000's broker protocol, completed: ``send_order → OrderAck``, ``modify_order → ModifyAck``,
``cancel_order → CancelAck``, plus query by client order id. Which ops a venue must serve, which
are optional and what replaces a missing one: :mod:`core.venue_protocol`.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from schemas.enums import ErrorClass, ExecutionMode, OrderState, OrderType, ReasonCode, Side
from schemas.messages import SCHEMA_VERSION


class NewOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    cid: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    price: Decimal | None = None
    v: int = SCHEMA_VERSION
    # The execution's mode: a live venue refuses anything but LIVE (None = not stated = refused there).
    mode: ExecutionMode | None = None


class ModifyOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    new_price: Decimal | None = None
    new_qty: Decimal | None = None
    v: int = SCHEMA_VERSION


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    v: int = SCHEMA_VERSION


class QueryOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    v: int = SCHEMA_VERSION


class _Ack(msgspec.Struct, frozen=True, kw_only=True):
    accepted: bool
    client_order_id: str
    venue_order_id: str = ""
    reject_reason: str = ""
    reason_code: ReasonCode | None = None
    error_class: ErrorClass | None = None


class OrderAck(_Ack, frozen=True):
    pass


class ModifyAck(_Ack, frozen=True):
    new_price: Decimal | None = None
    new_qty: Decimal | None = None


class CancelAck(_Ack, frozen=True):
    leaves_qty: Decimal = Decimal(0)


class OrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to a query by client order id."""

    found: bool
    client_order_id: str
    venue_order_id: str = ""
    state: OrderState | None = None
    qty: Decimal = Decimal(0)
    filled_qty: Decimal = Decimal(0)
    price: Decimal | None = None


class SymbolInfo(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    reference_price: Decimal
    lot_size: Decimal
    tick_size: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the venue reports about an order after its ack: fills and closes."""

    kind: str  # FILL | CANCELLED | EXPIRED | REJECTED
    cid: str
    client_order_id: str
    venue_order_id: str
    trade_id: str = ""
    qty: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    cum_qty: Decimal = Decimal(0)
    leaves_qty: Decimal = Decimal(0)
    ts: float = 0.0
    reason: str = ""
    v: int = SCHEMA_VERSION
    venue: str = ""  # the venue id that reported it ("" = the default venue)


# ---- reference and market data requests (all optional fields: ``{}`` is a valid request) ----------


class SymbolRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``quote``: one symbol's current quote."""

    symbol: str = ""


class ProfileRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``profile``: the intraday volume share per bucket (reply: ``list[Decimal]`` summing to 1)."""

    symbol: str = ""
    buckets: int = 10


class FillsRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str = ""


class TapeRequest(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str = ""
    t0: float = 0.0
    t1: float = 0.0


class FillRow(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    ts: float = 0.0
    cum_qty: Decimal = Decimal(0)


class FillsReply(msgspec.Struct, frozen=True, kw_only=True):
    """``fills``: every fill the venue made for one order (reconciliation back-fills from it)."""

    found: bool
    client_order_id: str
    fills: list[FillRow] = []
    cid: str = ""
    state: OrderState | None = None
    qty: Decimal = Decimal(0)
    filled_qty: Decimal = Decimal(0)
    fill_count: int = 0


class TapeReply(msgspec.Struct, frozen=True, kw_only=True):
    """``tape``: the market's prints in a window (TCA's interval VWAP and participation)."""

    symbol: str
    t0: float
    t1: float
    vwap: Decimal | None = None
    volume: Decimal = Decimal(0)
    prints: int = 0
    tape_from: float | None = None
    points: list[tuple[float, Decimal, Decimal]] = []


class VenueError(msgspec.Struct, frozen=True, kw_only=True):
    """What a venue answers instead of a reply it cannot give: ``{"error": CODE, "detail": ...}``.
    ``UNKNOWN_OP`` means the venue does not serve the op (the caller takes the op's fallback)."""

    error: str
    detail: str = ""
