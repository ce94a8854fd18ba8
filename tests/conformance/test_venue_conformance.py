"""The venue conformance suite: what every venue must do, checked over the bus, the same way for each
(``conftest.py`` lists the venues; today the paper exchange and the FIX venue against an independent
FIX acceptor). The contract is ``core/venue_protocol.py``; a new venue passes this before it trades.
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import pytest

from bus.venue_client import OpUnavailable
from core.symbols import SymbolSpec
from core.venue_protocol import OPTIONAL_OPS, PROTOCOL, REQUIRED_OPS
from schemas.enums import OrderState, OrderType, ReasonCode, Side
from schemas.venue import CancelAck, CancelOrder, ModifyAck, ModifyOrder, NewOrder, OrderAck, SymbolInfo

pytestmark = pytest.mark.timeout(120)
_ids = itertools.count()


def coid(tag: str) -> str:
    return f"conf-{tag}-{int(time.time() * 1000) % 10**9}-{next(_ids)}"


def order(venue, oid: str, qty: str, order_type: OrderType = OrderType.MARKET, price: Decimal | None = None, side: Side = Side.BUY) -> NewOrder:
    return NewOrder(client_order_id=oid, cid=f"cid{oid.replace('-', '')}"[:40], symbol=venue.symbol, side=side, qty=Decimal(qty), order_type=order_type, price=price, mode=venue.mode)


async def test_protocol_table_names_every_op_once():
    assert set(REQUIRED_OPS) == {"new", "modify", "cancel", "query", "specs", "symbols"}
    assert set(OPTIONAL_OPS) == {"profile", "fills", "tape", "quote"}
    assert all(PROTOCOL[op].fallback for op in OPTIONAL_OPS), "every optional op documents its fallback"


async def test_reference_data(venue):
    specs = await venue.client.specs()
    assert venue.symbol in specs
    spec = specs[venue.symbol]
    assert isinstance(spec, SymbolSpec) and spec.lot_size > 0 and spec.tick_size > 0 and spec.reference_price > 0
    infos = await venue.client.symbols()
    assert all(isinstance(i, SymbolInfo) for i in infos)
    assert {i.symbol for i in infos} == set(specs)


async def test_market_order_fills_with_unique_trade_ids(venue):
    oid = coid("mkt")
    ack = await venue.client.call("new", order(venue, oid, "10"), OrderAck)
    assert ack.accepted and ack.client_order_id == oid and ack.venue_order_id
    fills = await venue.wait_reports(oid, lambda rs: sum((r.qty for r in rs if r.kind == "FILL"), Decimal(0)) >= 10, "MARKET fills")
    fills = [r for r in fills if r.kind == "FILL"]
    assert len({r.trade_id for r in fills}) == len(fills), "a trade id is never reused"
    assert sum(r.qty for r in fills) == Decimal(10)
    assert all(r.cum_qty + r.leaves_qty == Decimal(10) for r in fills)
    assert all(r.price > 0 and r.cid == order(venue, oid, "10").cid for r in fills)
    status = await venue.client.query(oid)
    assert status.found and status.state is OrderState.FILLED and status.filled_qty == Decimal(10)
    try:
        detail = await venue.client.fills(oid)
    except OpUnavailable:
        return  # optional: recon then compares quantities only
    assert detail.found and sorted(f.trade_id for f in detail.fills) == sorted(r.trade_id for r in fills)


async def test_repeated_client_order_id_is_refused(venue):
    oid = coid("dup")
    assert (await venue.client.call("new", order(venue, oid, "3"), OrderAck)).accepted
    again = await venue.client.call("new", order(venue, oid, "3"), OrderAck)
    assert not again.accepted and again.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID
    await venue.wait_reports(oid, lambda rs: sum((r.qty for r in rs if r.kind == "FILL"), Decimal(0)) >= 3, "fills of the first")
    await venue.client.query(oid)
    assert sum(r.qty for r in venue.reports[oid] if r.kind == "FILL") == Decimal(3), "the repeat filled nothing"


async def test_limit_rests_then_modify_then_cancel(venue):
    oid = coid("lmt")
    ack = await venue.client.call("new", order(venue, oid, "5", OrderType.LIMIT, venue.passive_buy), OrderAck)
    assert ack.accepted
    status = await venue.client.query(oid)
    assert status.found and status.state is OrderState.ACKNOWLEDGED and status.filled_qty == 0 and status.price == venue.passive_buy
    new_price = venue.passive_buy + Decimal("0.50")
    mod = await venue.client.call("modify", ModifyOrder(client_order_id=oid, new_price=new_price), ModifyAck)
    assert mod.accepted and mod.client_order_id == oid and mod.new_price == new_price
    status = await venue.client.query(oid)
    assert status.state is OrderState.ACKNOWLEDGED and status.price == new_price, "the child keeps its id across a modify"
    cancel = await venue.client.call("cancel", CancelOrder(client_order_id=oid), CancelAck)
    assert cancel.accepted and cancel.leaves_qty == Decimal(5)
    closed = await venue.wait_reports(oid, lambda rs: any(r.kind == "CANCELLED" for r in rs), "CANCELLED report")
    rep = next(r for r in closed if r.kind == "CANCELLED")
    assert rep.qty == Decimal(5) and rep.cum_qty + rep.leaves_qty == Decimal(5)
    assert (await venue.client.query(oid)).state is OrderState.CANCELLED
    again = await venue.client.call("cancel", CancelOrder(client_order_id=oid), CancelAck)
    assert again.accepted, "cancelling a cancelled order is idempotent"
    late = await venue.client.call("modify", ModifyOrder(client_order_id=oid, new_price=new_price + 1), ModifyAck)
    assert not late.accepted


async def test_marketable_modify_fills_the_resting_order(venue):
    oid = coid("cross")
    assert (await venue.client.call("new", order(venue, oid, "4", OrderType.LIMIT, venue.passive_buy), OrderAck)).accepted
    mod = await venue.client.call("modify", ModifyOrder(client_order_id=oid, new_price=venue.aggressive_buy), ModifyAck)
    assert mod.accepted
    await venue.wait_reports(oid, lambda rs: sum((r.qty for r in rs if r.kind == "FILL"), Decimal(0)) >= 4, "fills after the re-price")
    status = await venue.client.query(oid)
    assert status.state is OrderState.FILLED and status.filled_qty == Decimal(4)
    refused = await venue.client.call("cancel", CancelOrder(client_order_id=oid), CancelAck)
    assert not refused.accepted and "closed" in refused.reject_reason


async def test_cancel_before_arrival_leaves_a_tombstone(venue):
    oid = coid("tomb")
    cancel = await venue.client.call("cancel", CancelOrder(client_order_id=oid), CancelAck)
    assert not cancel.accepted and cancel.reason_code is ReasonCode.UNKNOWN_ORDER
    late = await venue.client.call("new", order(venue, oid, "2"), OrderAck)
    assert not late.accepted, "an order that arrives after its own cancel is refused"
    status = await venue.client.query(oid)
    assert not status.found or (status.state is OrderState.CANCELLED and status.filled_qty == 0), "nothing live"


async def test_unknown_order_and_bad_quantity(venue):
    assert not (await venue.client.query(coid("never"))).found
    bad = await venue.client.call("new", order(venue, coid("bad"), "0.5"), OrderAck)
    assert not bad.accepted and bad.reason_code is ReasonCode.VALIDATION_INVALID_QUANTITY
    mod = await venue.client.call("modify", ModifyOrder(client_order_id=coid("ghost"), new_price=Decimal(1)), ModifyAck)
    assert not mod.accepted and mod.reason_code is ReasonCode.UNKNOWN_ORDER


@pytest.mark.parametrize("op", OPTIONAL_OPS)
async def test_optional_op_answers_or_says_it_is_not_served(venue, op):
    """An optional op answers its typed reply, or ``UNKNOWN_OP`` (the caller's fallback) — at once."""
    calls = {
        "profile": lambda: venue.client.profile(venue.symbol, 4),
        "fills": lambda: venue.client.fills(coid("none")),
        "tape": lambda: venue.client.tape(venue.symbol, time.time() - 60, time.time()),
        "quote": lambda: venue.client.quote(venue.symbol),
    }
    started = time.monotonic()
    try:
        reply = await calls[op]()
    except OpUnavailable:
        assert time.monotonic() - started < 2.0, "a venue that lacks an op says so, it does not time out"
        return
    if op == "profile":
        assert len(reply) == 4 and sum(reply) == Decimal(1)
    elif op == "quote":
        assert reply.symbol == venue.symbol and reply.reference_price > 0
    elif op == "fills":
        assert not reply.found
