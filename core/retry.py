"""Retry taxonomy (seed 002, A6) and a tenacity policy for venue calls.

:func:`classify` maps a reason code and/or an exception class name to an :class:`ErrorClass`:

* RETRYABLE     — transient venue trouble: timeouts, disconnects, unavailable, rate limits.
* NON_RETRYABLE — the request itself is wrong or refused: validation, invalid order/price,
  insufficient balance, unknown symbol, duplicate client order id, business rejects.
* FATAL         — retrying cannot help and the caller should stop sending: authentication /
  authorization, disabled account, VENUE_FATAL. (Seed 002 never produced FATAL.)

When both arguments are known, the more severe class wins (FATAL > NON_RETRYABLE > RETRYABLE).
When neither is known (including ``classify(None, None)``) the answer is RETRYABLE — seed 002's
choice, kept on purpose: an unknown failure is retried at most ``max_attempts`` times in total, so
a persistent bug costs two extra calls, while treating an unknown transient error as final would
fail orders that would have gone through. Exception names may be qualified
(``"nats.errors.TimeoutError"``); only the last dotted part counts.

A DUPLICATE_CLIENT_ORDER_ID on a *retry* usually means the first attempt reached the venue; the
send worker should query the order rather than treat the child as failed. That is its decision —
here it is simply NON_RETRYABLE (sending again cannot help).

:class:`RetryPolicy` counts attempts in total (3 = one call and two retries; seed 000's send stage
also made 3 calls; seed 002's RetryConfig made 1 + max_retries). :func:`tenacity_kwargs` turns it
into ``tenacity.AsyncRetrying(**kw)`` arguments: exponential backoff capped at ``max_delay_s``
plus uniform jitter in ``[0, jitter_s]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import tenacity

from schemas.enums import ErrorClass, ReasonCode

R = ReasonCode
_REASON_CLASS: dict[ReasonCode, ErrorClass] = {
    # transient venue / infrastructure trouble
    R.VENUE_TIMEOUT: ErrorClass.RETRYABLE,
    R.VENUE_DISCONNECTED: ErrorClass.RETRYABLE,
    R.STAGE_TIMEOUT: ErrorClass.RETRYABLE,
    # fatal
    R.VENUE_FATAL: ErrorClass.FATAL,
    # everything else is a definitive answer about this request
    R.VALIDATION_MALFORMED: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_MISSING_FIELD: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_SIDE: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_QUANTITY: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_PRICE: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_ORDER_TYPE: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_FIELD: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_SYMBOL: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_SCHEMA_VERSION: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_TOO_LARGE: ErrorClass.NON_RETRYABLE,
    R.VALIDATION_INVALID_VENUE: ErrorClass.NON_RETRYABLE,
    R.IDEMPOTENCY_CONFLICT: ErrorClass.NON_RETRYABLE,
    R.SAFETY_BLOCKED: ErrorClass.NON_RETRYABLE,
    R.POSITION_LIMIT_EXCEEDED: ErrorClass.NON_RETRYABLE,
    R.INSUFFICIENT_CAPITAL: ErrorClass.NON_RETRYABLE,
    R.MARKET_CLOSED: ErrorClass.NON_RETRYABLE,
    R.SYMBOL_HALTED: ErrorClass.NON_RETRYABLE,
    R.DAILY_LIMIT_REACHED: ErrorClass.NON_RETRYABLE,
    R.PRICE_COLLAR: ErrorClass.NON_RETRYABLE,
    R.RISK_BLOCKED: ErrorClass.NON_RETRYABLE,
    R.RISK_PAUSE_TIMEOUT: ErrorClass.NON_RETRYABLE,
    R.POLICY_LIVE_NOT_ENABLED: ErrorClass.NON_RETRYABLE,
    R.SPLIT_EMPTY: ErrorClass.NON_RETRYABLE,
    R.VENUE_REJECTED: ErrorClass.NON_RETRYABLE,
    R.DUPLICATE_CLIENT_ORDER_ID: ErrorClass.NON_RETRYABLE,
    R.UNKNOWN_ORDER: ErrorClass.NON_RETRYABLE,
    R.ALL_SENDS_FAILED: ErrorClass.NON_RETRYABLE,
    R.HALTED: ErrorClass.NON_RETRYABLE,
    R.FILL_TIMEOUT: ErrorClass.NON_RETRYABLE,
    R.SLIPPAGE_EXCEEDED: ErrorClass.NON_RETRYABLE,
    R.ESCAPE_REQUESTED: ErrorClass.NON_RETRYABLE,
    R.POISON_MESSAGE: ErrorClass.NON_RETRYABLE,
    R.MAX_DELIVERIES: ErrorClass.NON_RETRYABLE,
}
del R

RETRYABLE_EXCEPTIONS: frozenset[str] = frozenset(
    {
        # seed 002
        "NetworkError", "TimeoutError", "ConnectionError", "ServiceUnavailable", "TooManyRequests",
        "RateLimitExceeded",
        # stdlib / asyncio / nats-py transient failures
        "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
        "BrokenPipeError", "NoRespondersError", "NoServersError", "ConnectionClosedError",
        "StaleConnectionError", "OutboundBufferLimitError", "FlushTimeoutError",
        # our venue names
        "VenueTimeout", "VenueDisconnected", "VenueUnavailable", "RateLimited",
        # ccxt (core/ccxt_mapping.py has the venue worker's full table)
        "RequestTimeout", "ExchangeNotAvailable", "OnMaintenance", "DDoSProtection", "InvalidNonce",
    }
)  # fmt: skip
NON_RETRYABLE_EXCEPTIONS: frozenset[str] = frozenset(
    {
        # seed 002
        "ValidationError", "ValueError", "InvalidOrder", "InsufficientBalance", "SymbolNotFound",
        "InvalidPrice", "OrderRejected",
        # ours
        "DecodeError", "TypeError", "InsufficientFunds", "InvalidSymbol", "DuplicateOrderId",
        "DuplicateClientOrderId", "OrderNotFound", "UnknownOrder",
        # ccxt
        "BadSymbol", "BadRequest",
    }
)  # fmt: skip
FATAL_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "AuthenticationError", "AuthorizationError", "PermissionError", "PermissionDenied",
        "AccountDisabled", "AccountSuspended", "AccountLocked", "VenueFatal",
    }
)  # fmt: skip

_SEVERITY = {ErrorClass.RETRYABLE: 0, ErrorClass.NON_RETRYABLE: 1, ErrorClass.FATAL: 2}


def classify_reason(reason_code: ReasonCode | str | None) -> ErrorClass | None:
    """The class of a reason code, or None when there is none / it is unknown."""
    if reason_code is None:
        return None
    try:
        return _REASON_CLASS.get(ReasonCode(reason_code))
    except ValueError:
        return None


def classify_exception_name(exc_name: str | None) -> ErrorClass | None:
    """The class of an exception class name (qualified names allowed), or None when unknown."""
    if not exc_name:
        return None
    name = exc_name.rsplit(".", 1)[-1]
    if name in FATAL_EXCEPTIONS:
        return ErrorClass.FATAL
    if name in NON_RETRYABLE_EXCEPTIONS:
        return ErrorClass.NON_RETRYABLE
    if name in RETRYABLE_EXCEPTIONS:
        return ErrorClass.RETRYABLE
    return None


def classify(reason_code: ReasonCode | None, exc_name: str | None) -> ErrorClass:
    """The retry class of a failure; see the module doc for the rules and the unknown default."""
    known = [c for c in (classify_reason(reason_code), classify_exception_name(exc_name)) if c is not None]
    if not known:
        return ErrorClass.RETRYABLE
    return max(known, key=_SEVERITY.__getitem__)


def classify_exception(exc: BaseException) -> ErrorClass:
    """Classify a live exception: its ``reason_code`` attribute if any, then the first class name
    in its MRO that is known (so subclasses of ConnectionError are RETRYABLE), else RETRYABLE.

    Exceptions that are not ``Exception`` (CancelledError, KeyboardInterrupt, SystemExit) are
    NON_RETRYABLE: a cancellation must never be retried.
    """
    if not isinstance(exc, Exception):
        return ErrorClass.NON_RETRYABLE
    rc = getattr(exc, "reason_code", None)
    name_class: str | None = None
    for cls in type(exc).__mro__:
        if classify_exception_name(cls.__name__) is not None:
            name_class = cls.__name__
            break
    return classify(rc if isinstance(rc, (ReasonCode, str)) else None, name_class)


def is_retryable(exc: BaseException) -> bool:
    """Default ``retry_if`` predicate: retry exactly the RETRYABLE class."""
    return classify_exception(exc) is ErrorClass.RETRYABLE


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int = 3  # calls in total, first one included
    initial_delay_s: float = 0.05
    max_delay_s: float = 1.0
    multiplier: float = 2.0  # exponential base
    jitter_s: float = 0.05

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if min(self.initial_delay_s, self.max_delay_s, self.jitter_s) < 0 or self.multiplier < 1:
            raise ValueError("delays and jitter must be >= 0 and multiplier >= 1")

    def base_delay(self, attempt: int) -> float:
        """Backoff after failed attempt ``attempt`` (1-based), before jitter: initial × mult^(a-1), capped."""
        return min(self.initial_delay_s * self.multiplier ** (attempt - 1), self.max_delay_s)


def tenacity_kwargs(
    policy: RetryPolicy, retry_if: Callable[[BaseException], bool] | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.AsyncRetrying(**kw)`` (or ``Retrying``).

    ``retry_if`` defaults to :func:`is_retryable`. ``reraise=True``: after the last attempt the
    original exception propagates (not ``tenacity.RetryError``). The caller may add ``sleep``,
    ``before_sleep`` etc. to the dict.
    """
    return {
        "stop": tenacity.stop_after_attempt(policy.max_attempts),
        "wait": tenacity.wait_exponential(
            multiplier=policy.initial_delay_s, max=policy.max_delay_s, exp_base=policy.multiplier
        )
        + tenacity.wait_random(0, policy.jitter_s),
        "retry": tenacity.retry_if_exception(retry_if if retry_if is not None else is_retryable),
        "reraise": True,
    }
