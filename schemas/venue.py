"""The venue protocol: request/reply over core NATS (``venue.api.<op>``) and execution reports on
JetStream (``venue.report.<cid>``).

Seed 000's broker protocol, completed: ``send_order → OrderAck``, ``modify_order → ModifyAck``,
``cancel_order → CancelAck``, plus query by client order id.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from schemas.enums import ErrorClass, OrderState, OrderType, ReasonCode, Side
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
