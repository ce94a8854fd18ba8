"""Pure mapping between ccxt's unified structures and jetexec's venue protocol (issue 11, part 2 of
the real venues). No ccxt import: the CCXT venue worker hands in plain dicts (ccxt's unified order and
trade dicts) and exception class MROs (``[c.__name__ for c in type(exc).__mro__]``).

Error mapping (ccxt exception class -> what jetexec does), first match along the exception's MRO:

=================================== ========== ================================= =====================
ccxt class                          action     reason code                       retry class
=================================== ========== ================================= =====================
RateLimitExceeded, DDoSProtection   BACKOFF    VENUE_TIMEOUT                     RETRYABLE
RequestTimeout, ExchangeNotAvailable QUERY     VENUE_TIMEOUT / VENUE_DISCONNECTED RETRYABLE
(OnMaintenance), NetworkError,
InvalidNonce
InsufficientFunds                   REJECT     INSUFFICIENT_CAPITAL              NON_RETRYABLE
OrderNotFound                       REJECT     UNKNOWN_ORDER                     NON_RETRYABLE
DuplicateOrderId                    REJECT     DUPLICATE_CLIENT_ORDER_ID         NON_RETRYABLE
BadSymbol                           REJECT     VALIDATION_INVALID_SYMBOL         NON_RETRYABLE
InvalidOrder, BadRequest,           REJECT     VENUE_REJECTED                    NON_RETRYABLE
ExchangeError (any other answer)
AuthenticationError, PermissionDenied, FATAL   VENUE_FATAL                       FATAL
AccountSuspended
=================================== ========== ================================= =====================

BACKOFF: the exchange refused the request unprocessed, so it is sent again after a backoff. QUERY: the
outcome is unknown, so the order is looked up by its client order id before anything is re-sent.
An exception outside ccxt's hierarchy is QUERY (unknown outcome: never assume it was not sent).

Client order ids: generation 0 carries the child's id itself; a cancel/replace generation ``g`` gets
``<child id>.<g>`` (a new id per generation, as exchanges refuse to reuse one), and :func:`child_of`
maps any of them back to the child. Fills are keyed by the exchange's trade id: a trade seen twice
(polling and a websocket, or two polls) counts once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from schemas.enums import ErrorClass, OrderState, ReasonCode


class Action(str, enum.Enum):
    REJECT = "REJECT"  # definitive answer: not retried
    QUERY = "QUERY"  # ambiguous: query by client order id before any resend
    BACKOFF = "BACKOFF"  # rate limited: back off, then send again
    FATAL = "FATAL"  # credentials / account: stop sending


@dataclass(frozen=True)
class ErrorMapping:
    action: Action
    reason_code: ReasonCode
    error_class: ErrorClass


_R, _E = ReasonCode, ErrorClass
ERROR_TABLE: tuple[tuple[str, ErrorMapping], ...] = (
    # most specific first: the first class of the exception's MRO found here decides
    ("RateLimitExceeded", ErrorMapping(Action.BACKOFF, _R.VENUE_TIMEOUT, _E.RETRYABLE)),
    ("DDoSProtection", ErrorMapping(Action.BACKOFF, _R.VENUE_TIMEOUT, _E.RETRYABLE)),
    ("RequestTimeout", ErrorMapping(Action.QUERY, _R.VENUE_TIMEOUT, _E.RETRYABLE)),
    ("OnMaintenance", ErrorMapping(Action.QUERY, _R.VENUE_DISCONNECTED, _E.RETRYABLE)),
    ("ExchangeNotAvailable", ErrorMapping(Action.QUERY, _R.VENUE_DISCONNECTED, _E.RETRYABLE)),
    ("InvalidNonce", ErrorMapping(Action.QUERY, _R.VENUE_TIMEOUT, _E.RETRYABLE)),
    ("NetworkError", ErrorMapping(Action.QUERY, _R.VENUE_DISCONNECTED, _E.RETRYABLE)),
    ("InsufficientFunds", ErrorMapping(Action.REJECT, _R.INSUFFICIENT_CAPITAL, _E.NON_RETRYABLE)),
    ("OrderNotFound", ErrorMapping(Action.REJECT, _R.UNKNOWN_ORDER, _E.NON_RETRYABLE)),
    ("DuplicateOrderId", ErrorMapping(Action.REJECT, _R.DUPLICATE_CLIENT_ORDER_ID, _E.NON_RETRYABLE)),
    ("BadSymbol", ErrorMapping(Action.REJECT, _R.VALIDATION_INVALID_SYMBOL, _E.NON_RETRYABLE)),
    ("PermissionDenied", ErrorMapping(Action.FATAL, _R.VENUE_FATAL, _E.FATAL)),
    ("AccountSuspended", ErrorMapping(Action.FATAL, _R.VENUE_FATAL, _E.FATAL)),
    ("AuthenticationError", ErrorMapping(Action.FATAL, _R.VENUE_FATAL, _E.FATAL)),
    ("InvalidOrder", ErrorMapping(Action.REJECT, _R.VENUE_REJECTED, _E.NON_RETRYABLE)),
    ("BadRequest", ErrorMapping(Action.REJECT, _R.VENUE_REJECTED, _E.NON_RETRYABLE)),
    ("ExchangeError", ErrorMapping(Action.REJECT, _R.VENUE_REJECTED, _E.NON_RETRYABLE)),
)
_BY_NAME = dict(ERROR_TABLE)
UNKNOWN_ERROR = ErrorMapping(Action.QUERY, _R.VENUE_TIMEOUT, _E.RETRYABLE)
del _R, _E


def map_error(mro_names: list[str] | tuple[str, ...]) -> ErrorMapping:
    """What to do about a ccxt exception, given its class names along the MRO (most derived first)."""
    for name in mro_names:
        hit = _BY_NAME.get(name)
        if hit is not None:
            return hit
    return UNKNOWN_ERROR


# ---- client order ids ----------------------------------------------------------------------------

def exchange_client_id(child_id: str, generation: int) -> str:
    if generation < 0:
        raise ValueError("generation must be >= 0")
    return child_id if generation == 0 else f"{child_id}.{generation}"


def child_of(client_id: str) -> str:
    head, sep, tail = client_id.rpartition(".")
    return head if sep and tail.isdigit() and head else client_id


# ---- orders and trades ---------------------------------------------------------------------------

_CLOSED = {"canceled": OrderState.CANCELLED, "cancelled": OrderState.CANCELLED, "expired": OrderState.EXPIRED, "rejected": OrderState.REJECTED}


def _dec(value: object) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return Decimal(str(value))


def order_state(order: dict, qty: Decimal, cum_qty: Decimal) -> OrderState:
    """jetexec's state of a child from a ccxt unified order and the fills counted so far. FILLED only
    from counted fills (trade ids), never from the exchange's ``filled`` field alone."""
    status = (order.get("status") or "").lower()
    if cum_qty >= qty > 0:
        return OrderState.FILLED
    if status in _CLOSED:
        return _CLOSED[status]
    return OrderState.PARTIALLY_FILLED if cum_qty > 0 else OrderState.ACKNOWLEDGED


@dataclass(frozen=True)
class Fill:
    trade_id: str
    order_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: float


def new_fills(trades: list[dict], order_ids: set[str], seen: set[str]) -> list[Fill]:
    """The trades of ``order_ids`` (every generation of one child) not yet counted, each once, by the
    exchange's trade id, in the exchange's order. Trades without an id, a quantity or a price are not
    fills (the worker keeps them as notices)."""
    out: list[Fill] = []
    taken = set(seen)
    for t in trades:
        tid = str(t.get("id") or "")
        oid = str(t.get("order") or "")
        qty, px = _dec(t.get("amount")), _dec(t.get("price"))
        if not tid or tid in taken or oid not in order_ids or qty <= 0 or px <= 0:
            continue
        taken.add(tid)
        fee = _dec((t.get("fee") or {}).get("cost"))
        out.append(Fill(trade_id=tid, order_id=oid, qty=qty, price=px, fee=fee, ts=(t.get("timestamp") or 0) / 1000))
    return out
