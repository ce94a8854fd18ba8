"""Contract validation at the edge: every bad input maps to a reason code; identity is canonical."""

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.intake import IntentError, intent_identity, parse_intent
from schemas.enums import OrderType, ReasonCode, Side, SplitStrategy

GOOD = {"symbol": "AAPL", "side": "BUY", "qty": 10, "order_type": "MARKET", "strategy_id": "s1"}


def raw(**over):
    d = {**GOOD, **over}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def test_good_intent_parses_with_defaults():
    i = parse_intent(raw())
    assert (i.symbol, i.side, i.qty, i.order_type, i.split) == ("AAPL", Side.BUY, Decimal(10), OrderType.MARKET, SplitStrategy.AUTO)


def test_numbers_and_decimal_strings_are_exact():
    assert parse_intent(raw(qty=0.1)).qty == Decimal("0.1")
    assert parse_intent(raw(qty="0.1")).qty == Decimal("0.1")
    assert parse_intent(raw(order_type="LIMIT", price="190.05")).price == Decimal("190.05")


@pytest.mark.parametrize(
    "data, code",
    [
        (b"not json", ReasonCode.VALIDATION_MALFORMED),
        (b"[1,2]", ReasonCode.VALIDATION_MALFORMED),
        (raw(side="HOLD"), ReasonCode.VALIDATION_INVALID_SIDE),
        (raw(side=...), ReasonCode.VALIDATION_INVALID_SIDE),
        (raw(qty=0), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty=-5), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty="abc"), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty=True), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty="1e400"), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty="NaN"), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(qty=...), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (raw(order_type="LIMIT"), ReasonCode.VALIDATION_INVALID_PRICE),
        (raw(order_type="LIMIT", price=-1), ReasonCode.VALIDATION_INVALID_PRICE),
        (raw(price=5), ReasonCode.VALIDATION_INVALID_PRICE),
        (raw(order_type="STOP"), ReasonCode.VALIDATION_INVALID_ORDER_TYPE),
        (raw(symbol=""), ReasonCode.VALIDATION_INVALID_SYMBOL),
        (raw(symbol=...), ReasonCode.VALIDATION_INVALID_SYMBOL),
        (raw(symbol=42), ReasonCode.VALIDATION_INVALID_SYMBOL),
        (raw(symbol="A B"), ReasonCode.VALIDATION_INVALID_SYMBOL),
        (raw(urgency="NOW"), ReasonCode.VALIDATION_INVALID_FIELD),
        (raw(split="POV"), ReasonCode.VALIDATION_INVALID_FIELD),
        (raw(horizon_s=-1), ReasonCode.VALIDATION_INVALID_FIELD),
        (raw(horizon_s=1.5), ReasonCode.VALIDATION_INVALID_FIELD),
        (b"{" + b" " * 20000 + b"}", ReasonCode.VALIDATION_TOO_LARGE),
    ],
)
def test_bad_input_has_reason_code(data, code):
    with pytest.raises(IntentError) as err:
        parse_intent(data)
    assert err.value.reason_code is code
    assert err.value.detail


def test_unknown_symbol_against_the_venue_list():
    with pytest.raises(IntentError) as err:
        parse_intent(raw(symbol="NOPE"), known_symbols={"AAPL"})
    assert err.value.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL


def test_identity_is_canonical_and_covers_client_key():
    a = intent_identity(parse_intent(raw(qty=1)))
    assert a == intent_identity(parse_intent(raw(qty="1.00")))
    assert a == intent_identity(parse_intent(json.dumps(dict(reversed(list(GOOD.items()))) | {"qty": 1.0}).encode()))
    assert a != intent_identity(parse_intent(raw(qty=2)))
    assert a != intent_identity(parse_intent(raw(qty=1, client_key="k1")))
    key, cid = a
    assert key.startswith("ik-") and cid.startswith("x") and len(cid) == 24


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(st.dictionaries(st.sampled_from(["symbol", "side", "qty", "order_type", "price", "strategy_id", "urgency", "split", "horizon_s", "client_key", "x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12), st.lists(st.integers(), max_size=2)), max_size=8))
def test_arbitrary_objects_never_raise_anything_else(d):
    try:
        parse_intent(json.dumps(d).encode())
    except IntentError as err:
        assert isinstance(err.reason_code, ReasonCode)


@pytest.mark.parametrize("field, near", [("urgncy", "urgency"), ("Qty", "qty"), ("stratgy_id", "strategy_id"), ("note", None)])
def test_unknown_fields_are_refused_with_the_closest_name(field, near):
    with pytest.raises(IntentError) as err:
        parse_intent(json.dumps({**GOOD, field: "HIGH"}).encode())
    assert err.value.reason_code is ReasonCode.VALIDATION_INVALID_FIELD
    assert f"unknown field {field!r}" in err.value.detail
    if near:
        assert f"did you mean {near!r}" in err.value.detail


@pytest.mark.parametrize("qty", ["1e3", "1E+3", "1e-2", ".5", "+5", "1_000", "5.", " 1e3 "])
def test_only_plain_decimal_notation_is_a_quantity(qty):
    for doc in (raw(qty=qty), raw(qty=...)[:-1] + f', "qty": {qty.strip()}}}'.encode()):
        try:
            json.loads(doc)
        except ValueError:
            continue  # not JSON as a number (".5", "+5"): the string form is checked
        with pytest.raises(IntentError) as err:
            parse_intent(doc)
        assert err.value.reason_code is ReasonCode.VALIDATION_INVALID_QUANTITY, (doc, err.value)
    with pytest.raises(IntentError) as err:
        parse_intent(raw(order_type="LIMIT", price="1.9e2"))
    assert err.value.reason_code is ReasonCode.VALIDATION_INVALID_PRICE and "exponent" in err.value.detail


@pytest.mark.parametrize("qty, exact", [(10, "10"), (1.5, "1.5"), ("0.05", "0.05"), (" 12.50 ", "12.50"), (1.0, "1.0")])
def test_plain_decimals_still_parse_exactly(qty, exact):
    assert parse_intent(raw(qty=qty)).qty == Decimal(exact)
