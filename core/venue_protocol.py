"""The venue protocol: what every venue serves, what each op answers, and what replaces an optional
op a venue lacks. Pure (no bus): the client (``bus/venue_client.py``), every venue worker and the
conformance suite (``tests/conformance/``) read this table.

A venue is a worker that answers request/reply on ``venue.<id>.api.<op>`` (the default venue also on
the original ``venue.api.<op>``) and publishes :class:`~schemas.venue.ExecutionReport` to JetStream on
``venue.<id>.report.<cid>``. Its id is in every subject, on every child order, in the ledger and the
audit.

Required ops (a venue without one of them cannot trade):

======== ========================= ======================= =============================================
op       request                   reply                   meaning
======== ========================= ======================= =============================================
new      NewOrder                  OrderAck                place; a repeated client order id is refused
                                                           (``DUPLICATE_CLIENT_ORDER_ID``, original venue id)
modify   ModifyOrder               ModifyAck               re-price / re-size a live LIMIT (cancel/replace
                                                           at venues without in-place amend); the client
                                                           order id stays the child's
cancel   CancelOrder               CancelAck               cancel; a cancel of an order the venue never saw
                                                           is refused ``UNKNOWN_ORDER``
query    QueryOrder                OrderStatus             by client order id; ``found=False`` only when the
                                                           venue never received it (send re-sends only then)
specs    ``{}``                    list[SymbolSpec]        lot, tick, reference price per jetexec symbol
symbols  ``{}``                    list[SymbolInfo]        the same plus bid/ask when the venue knows them
======== ========================= ======================= =============================================

Optional ops, each with the fallback its callers take when the venue answers ``UNKNOWN_OP`` or
nobody answers (``OpUnavailable`` in the client):

======== ========================= ======================= =============================================
op       request                   reply                   fallback
======== ========================= ======================= =============================================
profile  ProfileRequest            list[Decimal]           split: the profile file, else the built-in
                                                           U-shaped intraday curve
fills    FillsRequest              FillsReply              recon: compare quantities and states through
                                                           ``query`` (a discrepancy is alerted, nothing is
                                                           back-filled)
tape     TapeRequest               TapeReply               TCA: the quote mids the ledger recorded
quote    SymbolRequest             SymbolInfo              the latest ``venue.md.<symbol>`` quote, else the
                                                           spec's reference price
======== ========================= ======================= =============================================

Anything else a venue serves (the paper exchange's ``stats``, ``orders``, ``faults``) is that venue's
own and never needed by the pipeline. Errors are :class:`~schemas.venue.VenueError`
(``{"error": CODE, "detail": ...}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from core.precheck import LIVE_NOT_ENABLED_DETAIL
from core.symbols import SymbolSpec
from schemas.enums import ExecutionMode, ReasonCode
from schemas.venue import (
    CancelAck,
    CancelOrder,
    FillsReply,
    FillsRequest,
    ModifyAck,
    ModifyOrder,
    NewOrder,
    OrderAck,
    OrderStatus,
    ProfileRequest,
    QueryOrder,
    SymbolInfo,
    SymbolRequest,
    TapeReply,
    TapeRequest,
)

DEFAULT_VENUE = "paper"
_VENUE_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # one subject token, lower case


def is_venue_id(value: object) -> bool:
    return isinstance(value, str) and _VENUE_ID.match(value) is not None


@dataclass(frozen=True)
class OpSpec:
    op: str
    request: type | None  # None: the request is ``{}``
    reply: object  # a msgspec-decodable type
    required: bool
    fallback: str = ""


PROTOCOL: dict[str, OpSpec] = {
    s.op: s
    for s in (
        OpSpec("new", NewOrder, OrderAck, True),
        OpSpec("modify", ModifyOrder, ModifyAck, True),
        OpSpec("cancel", CancelOrder, CancelAck, True),
        OpSpec("query", QueryOrder, OrderStatus, True),
        OpSpec("specs", None, list[SymbolSpec], True),
        OpSpec("symbols", None, list[SymbolInfo], True),
        OpSpec("profile", ProfileRequest, list[Decimal], False, "split uses the profile file, else the built-in intraday curve"),
        OpSpec("fills", FillsRequest, FillsReply, False, "recon compares quantities through query; nothing is back-filled"),
        OpSpec("tape", TapeRequest, TapeReply, False, "TCA uses the quote mids the ledger recorded"),
        OpSpec("quote", SymbolRequest, SymbolInfo, False, "the latest venue.md quote, else the spec's reference price"),
    )
}
REQUIRED_OPS: tuple[str, ...] = tuple(op for op, s in PROTOCOL.items() if s.required)
OPTIONAL_OPS: tuple[str, ...] = tuple(op for op, s in PROTOCOL.items() if not s.required)
UNKNOWN_OP = "UNKNOWN_OP"


# ---- mode × venue × the two live switches --------------------------------------------------------

LIVE_VENUE_REFUSED_DETAIL = "venue {venue} is a live venue: only a LIVE execution (both live switches set) may route to it"
LIVE_NEEDS_LIVE_VENUE_DETAIL = "live mode needs a live default venue; {venue} is simulated"


def route_refusal(mode: ExecutionMode, venue: str, venue_is_live: bool, live_switches: tuple[bool, bool], default_is_live: bool) -> str | None:
    """Why an execution in ``mode`` may not route to ``venue`` (None: it may). The one table:

    ======== ====================================== ==============================================
    mode     simulated venue (paper)                live venue (FIX)
    ======== ====================================== ==============================================
    PAPER    routes                                 refused
    SHADOW   nothing routed, simulated fill         nothing routed, simulated fill
    LIVE     routes when named by the intent; the   routes, only with both switches (the precheck
             default venue must be live             refuses LIVE without them before this)
    ======== ====================================== ==============================================
    """
    if mode is ExecutionMode.SHADOW:
        return None
    if mode is ExecutionMode.PAPER:
        return LIVE_VENUE_REFUSED_DETAIL.format(venue=venue) if venue_is_live else None
    if not (live_switches[0] and live_switches[1]):
        return LIVE_NOT_ENABLED_DETAIL
    if not default_is_live:
        return LIVE_NEEDS_LIVE_VENUE_DETAIL.format(venue=venue)
    return None


def order_refusal(spec: SymbolSpec, limits: "SymbolLimits | None", qty: Decimal, price: Decimal | None) -> tuple[ReasonCode, str] | None:
    """A venue's own lot, tick and price limits, checked before anything is sent to it."""
    if not qty.is_finite() or qty <= 0:
        return ReasonCode.VALIDATION_INVALID_QUANTITY, "qty must be > 0"
    if (qty / spec.lot_size) != (qty / spec.lot_size).to_integral_value():
        return ReasonCode.VALIDATION_INVALID_QUANTITY, f"qty {qty} not a multiple of lot {spec.lot_size}"
    if limits is not None and limits.max_qty is not None and qty > limits.max_qty:
        return ReasonCode.VALIDATION_INVALID_QUANTITY, f"qty {qty} above the venue's limit {limits.max_qty}"
    if price is not None:
        if not price.is_finite() or price <= 0:
            return ReasonCode.VALIDATION_INVALID_PRICE, "price must be > 0"
        if (price / spec.tick_size) != (price / spec.tick_size).to_integral_value():
            return ReasonCode.VALIDATION_INVALID_PRICE, f"price {price} not a multiple of tick {spec.tick_size}"
        if limits is not None and limits.min_price is not None and price < limits.min_price:
            return ReasonCode.VALIDATION_INVALID_PRICE, f"price {price} below the venue's limit {limits.min_price}"
        if limits is not None and limits.max_price is not None and price > limits.max_price:
            return ReasonCode.VALIDATION_INVALID_PRICE, f"price {price} above the venue's limit {limits.max_price}"
    return None


@dataclass(frozen=True)
class SymbolLimits:
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    max_qty: Decimal | None = None
