"""core.retry: the error taxonomy and the tenacity policy, run through a real AsyncRetrying."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from core.retry import (
    FATAL_EXCEPTIONS,
    NON_RETRYABLE_EXCEPTIONS,
    RETRYABLE_EXCEPTIONS,
    RetryPolicy,
    classify,
    classify_exception,
    is_retryable,
    tenacity_kwargs,
)
from schemas.enums import ErrorClass, ReasonCode

R = ReasonCode
E = ErrorClass


# ------------------------------------------------------------------ classify: reason codes


@pytest.mark.parametrize("rc", [R.VENUE_TIMEOUT, R.VENUE_DISCONNECTED, R.STAGE_TIMEOUT])
def test_transient_reasons_are_retryable(rc: ReasonCode) -> None:
    assert classify(rc, None) is E.RETRYABLE


@pytest.mark.parametrize(
    "rc",
    [
        R.VALIDATION_INVALID_PRICE,
        R.VALIDATION_INVALID_SYMBOL,
        R.VALIDATION_MALFORMED,
        R.VENUE_REJECTED,
        R.INSUFFICIENT_CAPITAL,
        R.DUPLICATE_CLIENT_ORDER_ID,
        R.UNKNOWN_ORDER,
        R.SYMBOL_HALTED,
        R.MARKET_CLOSED,
        R.RISK_BLOCKED,
        R.HALTED,
    ],
)
def test_definitive_reasons_are_non_retryable(rc: ReasonCode) -> None:
    assert classify(rc, None) is E.NON_RETRYABLE


def test_venue_fatal_is_fatal() -> None:
    assert classify(R.VENUE_FATAL, None) is E.FATAL


@pytest.mark.parametrize("rc", list(ReasonCode))
def test_every_reason_code_is_classified(rc: ReasonCode) -> None:
    assert classify(rc, None) in set(ErrorClass)
    assert classify(rc.value, None) is classify(rc, None)  # type: ignore[arg-type]


def test_every_validation_reason_is_non_retryable() -> None:
    for rc in ReasonCode:
        if rc.value.startswith("VALIDATION_"):
            assert classify(rc, None) is E.NON_RETRYABLE, rc


# ------------------------------------------------------------------ classify: exception names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TimeoutError", E.RETRYABLE),
        ("ConnectionError", E.RETRYABLE),
        ("NetworkError", E.RETRYABLE),
        ("ServiceUnavailable", E.RETRYABLE),
        ("TooManyRequests", E.RETRYABLE),
        ("RateLimitExceeded", E.RETRYABLE),
        ("NoRespondersError", E.RETRYABLE),
        ("nats.errors.TimeoutError", E.RETRYABLE),
        ("ValidationError", E.NON_RETRYABLE),
        ("ValueError", E.NON_RETRYABLE),
        ("InvalidOrder", E.NON_RETRYABLE),
        ("InsufficientBalance", E.NON_RETRYABLE),
        ("SymbolNotFound", E.NON_RETRYABLE),
        ("InvalidPrice", E.NON_RETRYABLE),
        ("OrderRejected", E.NON_RETRYABLE),
        ("DuplicateClientOrderId", E.NON_RETRYABLE),
        ("AuthenticationError", E.FATAL),
        ("AccountDisabled", E.FATAL),
        ("VenueFatal", E.FATAL),
        ("pkg.AuthorizationError", E.FATAL),
    ],
)
def test_exception_names(name: str, expected: ErrorClass) -> None:
    assert classify(None, name) is expected


@pytest.mark.parametrize("name", ["SomethingOdd", "RuntimeError", "KeyError", "", None])
def test_unknown_defaults_to_retryable(name: str | None) -> None:
    """Seed 002's choice, kept: unknown failures are retried (bounded by max_attempts)."""
    assert classify(None, name) is E.RETRYABLE


def test_nothing_known_is_retryable() -> None:
    assert classify(None, None) is E.RETRYABLE


def test_most_severe_wins() -> None:
    assert classify(R.VENUE_TIMEOUT, "ValueError") is E.NON_RETRYABLE
    assert classify(R.VALIDATION_INVALID_PRICE, "TimeoutError") is E.NON_RETRYABLE
    assert classify(R.VENUE_TIMEOUT, "AuthenticationError") is E.FATAL
    assert classify(R.VENUE_FATAL, "TimeoutError") is E.FATAL
    assert classify(R.VENUE_TIMEOUT, "Weird") is E.RETRYABLE
    assert classify(R.VENUE_REJECTED, "Weird") is E.NON_RETRYABLE


def test_name_sets_are_disjoint() -> None:
    assert not (RETRYABLE_EXCEPTIONS & NON_RETRYABLE_EXCEPTIONS)
    assert not (RETRYABLE_EXCEPTIONS & FATAL_EXCEPTIONS)
    assert not (NON_RETRYABLE_EXCEPTIONS & FATAL_EXCEPTIONS)


@given(rc=st.none() | st.sampled_from(list(ReasonCode)), name=st.none() | st.text(max_size=30))
def test_classify_is_total(rc: ReasonCode | None, name: str | None) -> None:
    assert classify(rc, name) in set(ErrorClass)


# ------------------------------------------------------------------ classify_exception


class VenueGlitch(ConnectionResetError):
    pass


class VenueError(Exception):
    def __init__(self, reason_code: ReasonCode) -> None:
        super().__init__(reason_code.value)
        self.reason_code = reason_code


def test_classify_exception_walks_the_mro() -> None:
    assert classify_exception(VenueGlitch()) is E.RETRYABLE
    assert classify_exception(asyncio.TimeoutError()) is E.RETRYABLE
    assert classify_exception(ValueError("x")) is E.NON_RETRYABLE
    assert classify_exception(PermissionError()) is E.FATAL
    assert classify_exception(RuntimeError()) is E.RETRYABLE


def test_classify_exception_uses_reason_code_attribute() -> None:
    assert classify_exception(VenueError(R.VENUE_REJECTED)) is E.NON_RETRYABLE
    assert classify_exception(VenueError(R.VENUE_TIMEOUT)) is E.RETRYABLE
    assert classify_exception(VenueError(R.VENUE_FATAL)) is E.FATAL


def test_cancellation_is_never_retried() -> None:
    assert classify_exception(asyncio.CancelledError()) is E.NON_RETRYABLE
    assert not is_retryable(asyncio.CancelledError())
    assert not is_retryable(KeyboardInterrupt())
    assert is_retryable(TimeoutError())
    assert not is_retryable(ValueError())


# ------------------------------------------------------------------ RetryPolicy


def test_policy_defaults_and_backoff() -> None:
    p = RetryPolicy()
    assert (p.max_attempts, p.initial_delay_s, p.max_delay_s, p.multiplier, p.jitter_s) == (3, 0.05, 1.0, 2.0, 0.05)
    assert [p.base_delay(a) for a in (1, 2, 3, 5, 6, 10)] == [0.05, 0.1, 0.2, 0.8, 1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_delay_s": -1}, {"max_delay_s": -1}, {"jitter_s": -0.1}, {"multiplier": 0.5}],
)
def test_policy_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_wait_is_capped_exponential_plus_jitter() -> None:
    p = RetryPolicy()
    wait = tenacity_kwargs(p, is_retryable)["wait"]
    for attempt in range(1, 10):
        for _ in range(20):
            w = wait(SimpleNamespace(attempt_number=attempt))
            base = p.base_delay(attempt)
            assert base <= w <= base + p.jitter_s + 1e-12


def test_kwargs_shape() -> None:
    kw = tenacity_kwargs(RetryPolicy())
    assert set(kw) == {"stop", "wait", "retry", "reraise"}
    assert kw["reraise"] is True
    tenacity.AsyncRetrying(**kw)  # accepted as-is


# ------------------------------------------------------------------ a real AsyncRetrying

FAST = RetryPolicy(max_attempts=3, initial_delay_s=0.0, max_delay_s=0.0, jitter_s=0.0)


class Flaky:
    """A fake venue call: raises the given exceptions in order, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def call_with(
    policy: RetryPolicy, op: Flaky, retry_if: Callable[[BaseException], bool] = is_retryable
) -> tuple[str, list[float]]:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    kw = tenacity_kwargs(policy, retry_if) | {"sleep": fake_sleep}
    async for attempt in tenacity.AsyncRetrying(**kw):
        with attempt:
            result = await op()
    return result, slept


async def test_retryable_errors_then_success() -> None:
    op = Flaky(ConnectionError(), TimeoutError())
    result, slept = await call_with(FAST, op)
    assert result == "ok" and op.calls == 3 and slept == [0.0, 0.0]


async def test_success_first_time_makes_one_call() -> None:
    op = Flaky()
    assert (await call_with(FAST, op))[0] == "ok" and op.calls == 1


async def test_non_retryable_raises_after_one_call() -> None:
    op = Flaky(ValueError("bad price"))
    with pytest.raises(ValueError, match="bad price"):
        await call_with(FAST, op)
    assert op.calls == 1


async def test_fatal_raises_after_one_call() -> None:
    op = Flaky(VenueError(R.VENUE_FATAL))
    with pytest.raises(VenueError):
        await call_with(FAST, op)
    assert op.calls == 1


async def test_exhaustion_reraises_the_original_error() -> None:
    op = Flaky(*(TimeoutError(f"t{i}") for i in range(10)))
    with pytest.raises(TimeoutError, match="t2"):
        await call_with(FAST, op)
    assert op.calls == 3  # max_attempts in total, not 1 + retries


async def test_max_attempts_one_means_no_retry() -> None:
    op = Flaky(TimeoutError())
    with pytest.raises(TimeoutError):
        await call_with(RetryPolicy(max_attempts=1, initial_delay_s=0, max_delay_s=0, jitter_s=0), op)
    assert op.calls == 1


async def test_custom_retry_predicate() -> None:
    op = Flaky(ValueError(), ValueError())
    result, _ = await call_with(FAST, op, retry_if=lambda e: isinstance(e, ValueError))
    assert result == "ok" and op.calls == 3


async def test_backoff_values_passed_to_sleep() -> None:
    p = RetryPolicy(max_attempts=4, initial_delay_s=0.05, max_delay_s=0.15, multiplier=2.0, jitter_s=0.0)
    op = Flaky(TimeoutError(), TimeoutError(), TimeoutError())
    result, slept = await call_with(p, op)
    assert result == "ok" and slept == pytest.approx([0.05, 0.1, 0.15])
