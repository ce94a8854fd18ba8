"""The venue seam's pure parts: the mode × venue × switches table, venue limits, the venues config,
and the intent's `venue` field."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from core.intake import IntentError, intent_identity, parse_intent
from core.symbols import SymbolSpec
from core.venue_config import DEFAULT_CONFIG, VenueConfigError, parse_venues
from core.venue_protocol import SymbolLimits, is_venue_id, order_refusal, route_refusal
from schemas.enums import ExecutionMode as M, ReasonCode

BOTH, ONE, NONE = (True, True), (True, False), (False, False)


@pytest.mark.parametrize(
    "mode, venue_live, switches, default_live, allowed",
    [
        (M.PAPER, False, NONE, False, True),
        (M.PAPER, True, NONE, False, False),  # paper never reaches a live venue ...
        (M.PAPER, True, BOTH, True, False),  # ... whatever the switches say
        (M.SHADOW, True, NONE, False, True),  # nothing is routed in shadow
        (M.LIVE, True, BOTH, True, True),
        (M.LIVE, True, ONE, True, False),  # one switch is not two
        (M.LIVE, False, BOTH, True, True),  # a named simulated venue in live mode
        (M.LIVE, False, BOTH, False, False),  # live mode with no live default venue refuses
    ],
)
def test_route_refusal_table(mode, venue_live, switches, default_live, allowed):
    assert (route_refusal(mode, "v", venue_live, switches, default_live) is None) is allowed


def test_venue_limits():
    spec = SymbolSpec(symbol="AAPL", reference_price=Decimal(190), lot_size=Decimal(1), tick_size=Decimal("0.01"))
    limits = SymbolLimits(min_price=Decimal(1), max_price=Decimal(1000), max_qty=Decimal(100))
    assert order_refusal(spec, limits, Decimal(10), Decimal("190.01")) is None
    assert order_refusal(spec, limits, Decimal("1.5"), None)[0] is ReasonCode.VALIDATION_INVALID_QUANTITY
    assert order_refusal(spec, limits, Decimal(101), None)[0] is ReasonCode.VALIDATION_INVALID_QUANTITY
    assert order_refusal(spec, limits, Decimal(1), Decimal("190.001"))[0] is ReasonCode.VALIDATION_INVALID_PRICE
    assert order_refusal(spec, limits, Decimal(1), Decimal("1001"))[0] is ReasonCode.VALIDATION_INVALID_PRICE
    assert order_refusal(spec, limits, Decimal(1), Decimal("0.5"))[0] is ReasonCode.VALIDATION_INVALID_PRICE


def fix_def(**kw):
    return {"kind": "fix", "symbols": [{"symbol": "AAPL", "venue_symbol": "AAPL.OQ", "reference_price": "190"}], "fix": {"port": 1, "sender_comp_id": "a", "target_comp_id": "b"}, **kw}


def test_venues_config():
    assert parse_venues(None) is DEFAULT_CONFIG and DEFAULT_CONFIG.default == "paper" and not DEFAULT_CONFIG.is_live("paper")
    cfg = parse_venues({"default": "fix", "venues": {"fix": fix_def(), "paper": {"kind": "paper"}}})
    assert cfg.is_live("fix") and cfg.is_live(None) and not cfg.is_live("paper") and cfg.paper_id == "paper"
    assert cfg.get("fix").by_wire_symbol("AAPL.OQ").symbol == "AAPL" and cfg.resolve(None) == "fix" and cfg.resolve("paper") == "paper"
    for bad, why in (
        ({"default": "x", "venues": {"paper": {"kind": "paper"}}}, "not configured"),
        ({"venues": {"Bad Id": {"kind": "paper"}}}, "venue id"),
        ({"default": "f", "venues": {"f": {"kind": "fix", "symbols": []}}}, "session settings"),
        ({"default": "f", "venues": {"f": fix_def(symbols=[])}}, "symbols"),
        ({"default": "f", "venues": {"f": {**fix_def(), "typo": 1}}}, "typo"),
        ({"default": "a", "venues": {"a": {"kind": "paper"}, "b": {"kind": "paper"}}}, "one paper"),
    ):
        with pytest.raises(VenueConfigError, match=why):
            parse_venues(bad)


def test_intent_venue_field():
    base = {"symbol": "AAPL", "side": "BUY", "qty": 1}
    plain = parse_intent(json.dumps(base).encode())
    named = parse_intent(json.dumps({**base, "venue": "fix"}).encode(), venues={"fix", "paper"}, symbols_at=lambda v: {"AAPL"})
    assert plain.venue is None and named.venue == "fix"
    assert intent_identity(plain) != intent_identity(named), "a named venue is part of the content"
    assert intent_identity(plain) == intent_identity(parse_intent(json.dumps(base).encode())), "an unnamed intent keeps its key"
    for raw, code in (({**base, "venue": "Nope!"}, ReasonCode.VALIDATION_INVALID_VENUE), ({**base, "venue": "other"}, ReasonCode.VALIDATION_INVALID_VENUE), ({**base, "venue": 3}, ReasonCode.VALIDATION_INVALID_VENUE)):
        with pytest.raises(IntentError) as err:
            parse_intent(json.dumps(raw).encode(), venues={"fix", "paper"})
        assert err.value.reason_code is code
    with pytest.raises(IntentError) as err:
        parse_intent(json.dumps({**base, "symbol": "BTC-USD", "venue": "fix"}).encode(), venues={"fix"}, symbols_at=lambda v: {"AAPL"})
    assert err.value.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL and "at venue fix" in err.value.detail
    assert is_venue_id("fix-2") and not is_venue_id("2fix") and not is_venue_id("a" * 33)
