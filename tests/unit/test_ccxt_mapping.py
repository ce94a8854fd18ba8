"""core/ccxt_mapping.py: the ccxt error table against ccxt's own exception hierarchy, client ids per
generation, states, and trade-id dedupe (hypothesis: a trade counts once however often it is seen)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import ccxt_mapping as cm
from core.retry import classify_exception_name
from schemas.enums import ErrorClass, OrderState, ReasonCode

ccxt = pytest.importorskip("ccxt", reason="the ccxt extra (pip install -e '.[ccxt]'; scripts/_env.sh installs it)")


def mro(name: str) -> list[str]:
    return [c.__name__ for c in getattr(ccxt, name).__mro__]


@pytest.mark.parametrize(
    "name, action, code",
    [
        ("InsufficientFunds", cm.Action.REJECT, ReasonCode.INSUFFICIENT_CAPITAL),
        ("InvalidOrder", cm.Action.REJECT, ReasonCode.VENUE_REJECTED),
        ("OrderNotFound", cm.Action.REJECT, ReasonCode.UNKNOWN_ORDER),
        ("DuplicateOrderId", cm.Action.REJECT, ReasonCode.DUPLICATE_CLIENT_ORDER_ID),
        ("BadSymbol", cm.Action.REJECT, ReasonCode.VALIDATION_INVALID_SYMBOL),
        ("RequestTimeout", cm.Action.QUERY, ReasonCode.VENUE_TIMEOUT),
        ("NetworkError", cm.Action.QUERY, ReasonCode.VENUE_DISCONNECTED),
        ("ExchangeNotAvailable", cm.Action.QUERY, ReasonCode.VENUE_DISCONNECTED),
        ("OnMaintenance", cm.Action.QUERY, ReasonCode.VENUE_DISCONNECTED),
        ("DDoSProtection", cm.Action.BACKOFF, ReasonCode.VENUE_TIMEOUT),
        ("RateLimitExceeded", cm.Action.BACKOFF, ReasonCode.VENUE_TIMEOUT),
        ("AuthenticationError", cm.Action.FATAL, ReasonCode.VENUE_FATAL),
        ("PermissionDenied", cm.Action.FATAL, ReasonCode.VENUE_FATAL),
        ("ExchangeError", cm.Action.REJECT, ReasonCode.VENUE_REJECTED),
    ],
)
def test_error_table_follows_ccxts_hierarchy(name, action, code):
    m = cm.map_error(mro(name))
    assert (m.action, m.reason_code) == (action, code)
    # the pipeline's retry taxonomy agrees with the worker's table for the same class name
    assert classify_exception_name(name) in (m.error_class, None) or name == "ExchangeError"


def test_every_ccxt_exception_maps_and_definitive_rejects_are_never_retried():
    import importlib

    errors = importlib.import_module("ccxt.base.errors")
    checked = 0
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, ccxt.BaseError):
            m = cm.map_error([c.__name__ for c in cls.__mro__])
            if issubclass(cls, ccxt.NetworkError):
                assert m.error_class is ErrorClass.RETRYABLE, name
            elif issubclass(cls, ccxt.ExchangeError):
                assert m.error_class is not ErrorClass.RETRYABLE, name
            checked += 1
    assert checked > 30, "ccxt's hierarchy was walked"
    assert cm.map_error(["ValueError", "Exception"]) is cm.UNKNOWN_ERROR and cm.UNKNOWN_ERROR.action is cm.Action.QUERY


@given(st.from_regex(r"[a-z0-9-]{1,24}", fullmatch=True), st.integers(0, 999))
def test_client_id_per_generation_maps_back_to_the_child(child, g):
    cl = cm.exchange_client_id(child, g)
    assert cm.child_of(cl) == child
    assert len(cl) <= 36, "Binance's newClientOrderId limit"
    assert (cl == child) == (g == 0)


def test_order_state():
    q = Decimal(5)
    assert cm.order_state({"status": "open"}, q, Decimal(0)) is OrderState.ACKNOWLEDGED
    assert cm.order_state({"status": "open"}, q, Decimal(2)) is OrderState.PARTIALLY_FILLED
    assert cm.order_state({"status": "closed"}, q, Decimal(2)) is OrderState.PARTIALLY_FILLED, "FILLED only from counted fills"
    assert cm.order_state({"status": "closed"}, q, q) is OrderState.FILLED
    assert cm.order_state({"status": "canceled"}, q, Decimal(1)) is OrderState.CANCELLED
    assert cm.order_state({"status": "expired"}, q, Decimal(0)) is OrderState.EXPIRED


trade = st.fixed_dictionaries({
    "id": st.sampled_from(["t1", "t2", "t3", "t4", ""]),
    "order": st.sampled_from(["o1", "o2", "other"]),
    "amount": st.sampled_from(["0", "0.5", "1", "2"]),
    "price": st.sampled_from(["0", "100.5", "101"]),
    "timestamp": st.just(1700000000000),
})


@given(st.lists(trade, max_size=30), st.lists(trade, max_size=30))
def test_a_trade_counts_once_whatever_the_repeats(first, second):
    ids = {"o1", "o2"}
    got = cm.new_fills(first, ids, set())
    more = cm.new_fills(second + first, ids, {f.trade_id for f in got})
    all_ids = [f.trade_id for f in got + more]
    assert len(all_ids) == len(set(all_ids)), "a trade id is counted once"
    assert all(f.order_id in ids and f.qty > 0 and f.price > 0 for f in got + more)
    valid = {t["id"] for t in first + second if t["id"] and t["order"] in ids and Decimal(t["amount"]) > 0 and Decimal(t["price"]) > 0}
    # every valid trade id is counted (the first valid occurrence of it)
    assert set(all_ids) <= valid
