"""Intent intake: contract validation at the edge and the deterministic idempotency key.

Input is one JSON object (a line of ``jetexec submit``). Every way it can be wrong maps to a
:class:`~schemas.enums.ReasonCode`; nothing here raises anything but :class:`IntentError`.

Strict on purpose, because a quietly re-read order is worse than a refused one:

* a field the contract does not name is refused (``VALIDATION_INVALID_FIELD``, with the closest
  known name): a misspelt ``"urgncy"`` must not become NORMAL;
* ``qty`` and ``price`` are plain decimal notation — digits with an optional fractional part, as a
  JSON number or a string (``10``, ``1.5``, ``"0.05"``). Exponent notation (``1e3``, ``"1E+3"``),
  a bare ``".5"``, a ``+`` sign or ``_`` separators are refused with the field's code: ``1e3`` buys
  1,000 where a reader may see 1, so the digits must be written out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from core.ids import canonical_json, correlation_id, idempotency_key
from core.venue_protocol import is_venue_id
from schemas.enums import OrderType, ReasonCode, Side, SplitStrategy, Urgency
from schemas.messages import Intent

MAX_INTENT_BYTES = 16 * 1024
MAX_QTY = Decimal("1e12")
MAX_PRICE = Decimal("1e12")
MAX_HORIZON_S = 24 * 3600
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:")
INTENT_FIELDS = ("symbol", "side", "qty", "order_type", "price", "strategy_id", "urgency", "split", "horizon_s", "client_key", "venue")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class IntentError(ValueError):
    def __init__(self, reason_code: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason_code.value}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


def _decimal(raw: msgspec.Raw | None, field: str, code: ReasonCode, limit: Decimal) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise IntentError(code, f"{field} is not valid JSON") from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise IntentError(code, f"{field} must be a number or a decimal string")
    text = value.strip() if isinstance(value, str) else bytes(raw).decode().strip()
    if not _PLAIN_DECIMAL.fullmatch(text):
        if re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", text):
            raise IntentError(code, f"{field} {text[:40]} uses exponent notation: write the digits out (plain decimal notation, like 1000 or 0.05)")
        raise IntentError(code, f"{field} {text[:40]!r} must be digits with an optional decimal point (like 10 or 0.05)")
    try:
        # Decode numbers from their JSON text so 0.1 stays exactly 0.1.
        dec = msgspec.json.decode(raw, type=Decimal) if not isinstance(value, str) else Decimal(value.strip())
    except (msgspec.ValidationError, InvalidOperation, ValueError):
        raise IntentError(code, f"{field} {value!r} is not a decimal number") from None
    if not dec.is_finite():
        raise IntentError(code, f"{field} must be finite")
    if dec <= 0:
        raise IntentError(code, f"{field} must be > 0, got {dec}")
    if dec > limit:
        raise IntentError(code, f"{field} {dec} exceeds {limit}")
    return dec


def _text(fields: dict[str, msgspec.Raw], name: str, required: bool = True, code: ReasonCode = ReasonCode.VALIDATION_INVALID_FIELD) -> str | None:
    raw = fields.get(name)
    value = None if raw is None else msgspec.json.decode(raw)
    if value is None or value == "":
        if required:
            raise IntentError(ReasonCode.VALIDATION_MISSING_FIELD if code is ReasonCode.VALIDATION_INVALID_FIELD else code, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise IntentError(code, f"{name} must be a string")
    return value.strip()


def _enum(fields: dict[str, msgspec.Raw], name: str, enum: type, code: ReasonCode, default: Any = None) -> Any:
    raw = fields.get(name)
    value = None if raw is None else msgspec.json.decode(raw)
    if value is None:
        if default is None:
            raise IntentError(code, f"{name} is required")
        return default
    if not isinstance(value, str):
        raise IntentError(code, f"{name} must be one of {', '.join(m.value for m in enum)}")
    try:
        return enum(value.strip().upper())
    except ValueError:
        raise IntentError(code, f"{name} {value!r} is not one of {', '.join(m.value for m in enum)}") from None


def parse_intent(
    raw: bytes,
    known_symbols: Collection[str] | None = None,
    *,
    venues: Collection[str] | None = None,
    symbols_at: Callable[[str], Collection[str] | None] | None = None,
) -> Intent:
    """Validate one intent. ``known_symbols`` (when given) rejects symbols the venue does not trade;
    ``venues`` (when given) rejects a ``venue`` no one configured, and ``symbols_at(venue)`` gives
    what a named venue trades (None: not known yet)."""
    if len(raw) > MAX_INTENT_BYTES:
        raise IntentError(ReasonCode.VALIDATION_TOO_LARGE, f"intent is {len(raw)} bytes, limit {MAX_INTENT_BYTES}")
    try:
        fields = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise IntentError(ReasonCode.VALIDATION_MALFORMED, "intent must be one JSON object") from None
    unknown = [k for k in fields if k not in INTENT_FIELDS]
    if unknown:
        near = difflib.get_close_matches(unknown[0], INTENT_FIELDS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f"; the fields are {', '.join(INTENT_FIELDS)}"
        raise IntentError(ReasonCode.VALIDATION_INVALID_FIELD, f"unknown field {unknown[0][:40]!r}{hint}")
    try:
        venue = _text(fields, "venue", required=False, code=ReasonCode.VALIDATION_INVALID_VENUE)
        if venue is not None:
            if not is_venue_id(venue):
                raise IntentError(ReasonCode.VALIDATION_INVALID_VENUE, f"venue {venue[:40]!r} is malformed (1..32 of a-z 0-9 -)")
            if venues is not None and venue not in venues:
                raise IntentError(ReasonCode.VALIDATION_INVALID_VENUE, f"unknown venue {venue!r}; configured: {', '.join(sorted(venues))}")
            known_symbols = symbols_at(venue) if symbols_at is not None else None
        symbol = _text(fields, "symbol", code=ReasonCode.VALIDATION_INVALID_SYMBOL)
        assert symbol is not None
        if len(symbol) > 32 or not set(symbol) <= _ID_CHARS:
            raise IntentError(ReasonCode.VALIDATION_INVALID_SYMBOL, f"symbol {symbol[:40]!r} is malformed")
        if known_symbols is not None and symbol not in known_symbols:
            raise IntentError(ReasonCode.VALIDATION_INVALID_SYMBOL, f"unknown symbol {symbol!r}" + (f" at venue {venue}" if venue else ""))
        side = _enum(fields, "side", Side, ReasonCode.VALIDATION_INVALID_SIDE)
        qty = _decimal(fields.get("qty"), "qty", ReasonCode.VALIDATION_INVALID_QUANTITY, MAX_QTY)
        if qty is None:
            raise IntentError(ReasonCode.VALIDATION_INVALID_QUANTITY, "qty is required")
        order_type = _enum(fields, "order_type", OrderType, ReasonCode.VALIDATION_INVALID_ORDER_TYPE, OrderType.MARKET)
        price = _decimal(fields.get("price"), "price", ReasonCode.VALIDATION_INVALID_PRICE, MAX_PRICE)
        if order_type is OrderType.LIMIT and price is None:
            raise IntentError(ReasonCode.VALIDATION_INVALID_PRICE, "LIMIT order requires price")
        if order_type is OrderType.MARKET and price is not None:
            raise IntentError(ReasonCode.VALIDATION_INVALID_PRICE, "MARKET order must not carry a price")
        strategy_id = _text(fields, "strategy_id", required=False) or "default"
        if len(strategy_id) > 64 or not set(strategy_id) <= _ID_CHARS:
            raise IntentError(ReasonCode.VALIDATION_INVALID_FIELD, "strategy_id must be ≤ 64 chars of [A-Za-z0-9-_./:]")
        urgency = _enum(fields, "urgency", Urgency, ReasonCode.VALIDATION_INVALID_FIELD, Urgency.NORMAL)
        split = _enum(fields, "split", SplitStrategy, ReasonCode.VALIDATION_INVALID_FIELD, SplitStrategy.AUTO)
        horizon_raw = fields.get("horizon_s")
        horizon = None if horizon_raw is None else msgspec.json.decode(horizon_raw)
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int) or not 0 < horizon <= MAX_HORIZON_S):
            raise IntentError(ReasonCode.VALIDATION_INVALID_FIELD, f"horizon_s must be an integer in 1..{MAX_HORIZON_S}")
        client_key = _text(fields, "client_key", required=False)
        if client_key is not None and len(client_key) > 128:
            raise IntentError(ReasonCode.VALIDATION_INVALID_FIELD, "client_key longer than 128 characters")
    except msgspec.DecodeError:
        raise IntentError(ReasonCode.VALIDATION_MALFORMED, "intent must be one JSON object") from None
    return Intent(
        symbol=symbol,
        side=side,
        qty=qty,
        order_type=order_type,
        price=price,
        strategy_id=strategy_id,
        urgency=urgency,
        split=split,
        horizon_s=horizon,
        client_key=client_key,
        venue=venue,
    )


def _plain(d: Decimal | None) -> str | None:
    return None if d is None else format(d.normalize(), "f")


def intent_identity(intent: Intent) -> tuple[str, str]:
    """(idempotency key, correlation id). ``1``, ``1.0`` and ``"1.00"`` are the same quantity."""
    canonical = canonical_json(
        {
            "symbol": intent.symbol,
            "side": intent.side.value,
            "qty": _plain(intent.qty),
            "order_type": intent.order_type.value,
            "price": _plain(intent.price),
            "strategy_id": intent.strategy_id,
            "urgency": intent.urgency.value,
            "split": intent.split.value,
            "horizon_s": intent.horizon_s,
            "client_key": intent.client_key,
            # Only when named: an intent without a venue keeps the key it always had.
            **({"venue": intent.venue} if intent.venue else {}),
        }
    )
    key = idempotency_key(canonical)
    return key, correlation_id(key)
