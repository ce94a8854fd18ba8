"""Binance spot payloads from ccxt's own static response fixtures, through ccxt's own parser, into
core/ccxt_mapping.py. The payloads and expected parsed fields are transcribed from
``ts/src/test/static/response/binance.json`` in github.com/ccxt/ccxt (MIT), at commit
05776890e288bf88d1aeba7b62da9e697d3e37f5: createOrder "spot +selfTradePrevention +iceberg",
fetchOrder "Fetch spot closed order", fetchOpenOrders "Fetch spot open orders". The first assertion
pins that the installed ccxt parses them as the fixtures say; the rest that the mapping reads that shape.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import ccxt_mapping as cm
from schemas.enums import OrderState

ccxt = pytest.importorskip("ccxt", reason="the ccxt extra (pip install -e '.[ccxt]'; scripts/_env.sh installs it)")

FIXTURES = {
    "createOrder spot limit NEW": (
        {"symbol": "SOLUSDT", "orderId": "9780331417", "orderListId": "-1", "clientOrderId": "x-R4BD3S824d31be3228a348eaa0a303", "transactTime": "1737635557417", "price": "241.00000000", "origQty": "0.05000000", "executedQty": "0.00000000", "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": "0.00000000", "status": "NEW", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY", "workingTime": "1737635557417", "icebergQty": "0.03000000", "fills": [], "selfTradePreventionMode": "EXPIRE_MAKER"},
        {"id": "9780331417", "clientOrderId": "x-R4BD3S824d31be3228a348eaa0a303", "status": "open", "type": "limit", "side": "buy", "price": 241, "amount": 0.05, "filled": 0, "remaining": 0.05, "timestamp": 1737635557417},
    ),
    "fetchOrder spot market FILLED": (
        {"symbol": "LTCUSDT", "orderId": "3397148653", "orderListId": "-1", "clientOrderId": "x-R4BD3S825806ed40c861260428a48c", "price": "0.00000000", "origQty": "0.10000000", "executedQty": "0.10000000", "cummulativeQuoteQty": "9.08000000", "status": "FILLED", "timeInForce": "GTC", "type": "MARKET", "side": "SELL", "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": "1679571174472", "updateTime": "1679571174472", "isWorking": True, "workingTime": "1679571174472", "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "NONE"},
        {"id": "3397148653", "clientOrderId": "x-R4BD3S825806ed40c861260428a48c", "status": "closed", "type": "market", "side": "sell", "price": 90.8, "average": 90.8, "cost": 9.08, "amount": 0.1, "filled": 0.1, "remaining": 0, "timestamp": 1679571174472},
    ),
    "fetchOpenOrders spot LIMIT_MAKER": (
        {"symbol": "LTCUSDT", "orderId": "3811057334", "orderListId": "-1", "clientOrderId": "x-R4BD3S82102a551f8c1642bba06728", "price": "50.00000000", "origQty": "0.20000000", "executedQty": "0.00000000", "cummulativeQuoteQty": "0.00000000", "status": "NEW", "timeInForce": "GTC", "type": "LIMIT_MAKER", "side": "BUY", "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": "1699380855570", "updateTime": "1699380855570", "isWorking": True, "workingTime": "1699380855570", "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER"},
        {"id": "3811057334", "clientOrderId": "x-R4BD3S82102a551f8c1642bba06728", "status": "open", "type": "limit", "postOnly": True, "side": "buy", "price": 50, "amount": 0.2, "filled": 0, "remaining": 0.2, "timestamp": 1699380855570},
    ),
}


@pytest.mark.parametrize("case", FIXTURES)
def test_ccxt_parses_the_fixture_as_the_fixture_says_and_the_mapping_reads_it(case):
    raw, expected = FIXTURES[case]
    parsed = ccxt.binance().parse_order(raw)
    assert {k: parsed[k] for k in expected} == expected, "the installed ccxt parses Binance as its fixtures do"
    qty = Decimal(str(parsed["amount"]))
    filled = Decimal(str(parsed["filled"]))
    # counted fills decide FILLED; the exchange's status decides open vs closed otherwise
    assert cm.order_state(parsed, qty, filled) is (OrderState.FILLED if filled >= qty else OrderState.ACKNOWLEDGED)
    assert cm.order_state(parsed, qty, Decimal(0)) is OrderState.ACKNOWLEDGED, "no trade counted yet: not FILLED"
    assert cm.child_of(parsed["clientOrderId"]) == parsed["clientOrderId"], "an exchange-made id is its own child"
