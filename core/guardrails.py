"""Guardrail and fail-safe checks (FS090–FS095, GR060–GR064), as small pure functions.

Each ``check_*`` returns an :class:`~schemas.messages.Alert` when its rule fires, else ``None``.
Time is a parameter (``ts``, epoch seconds); nothing here reads a clock.

The boundaries (where they differ from the seed's: docs/seeds.md):

* ONE slippage threshold set for the whole system: :data:`SLIPPAGE_WARN_PCT` (GR063, 0.3 %) and
  :data:`SLIPPAGE_MAX_PCT` (FS094, 0.5 %). :mod:`core.adjust` uses the same constants.
* GR064 is always WARNING severity (the seed's monitor used GUARDRAIL, its helper WARNING).
* Every comparison is strict "greater than", so the exact threshold does not fire
  (75000 -> 75225 is exactly 0.3 % and does not raise GR063).
* Fill delays are in seconds (the seed used milliseconds).

FS090 is still used both for "every send failed" and for a FAIL/LOCKDOWN safety block at precheck
(the seed does both; kept so dashboards keyed on FS090 keep working).
"""

from __future__ import annotations

from collections.abc import Collection, Sized
from decimal import Decimal

from schemas.enums import AlertCode, ExecutionState, Severity
from schemas.messages import Alert

SLIPPAGE_WARN_PCT = Decimal("0.003")  # GR063: stop improving, wait
SLIPPAGE_MAX_PCT = Decimal("0.005")  # FS094: stop adjusting, escape
MAX_SPLITS = 20  # GR060
DAILY_TRADE_LIMIT = 100  # GR062
FILL_DELAY_S = 30.0  # GR064

#: Escape reasons that also raise FS095 ("suspend recommended"). The seed had SAFETY_FAIL and
#: BROKER_DISCONNECT; ours names the venue, and adds lane overflow (FS095 also covers the lane's own overflow)
#: and an operator HALT.
FS095_REASONS: frozenset[str] = frozenset({"SAFETY_FAIL", "VENUE_DISCONNECT", "ESCAPE_LANE_OVERFLOW", "HALT"})


def severity_for(code: AlertCode) -> Severity:
    """FS* -> FAIL_SAFE, GR064 -> WARNING, any other GR* -> GUARDRAIL."""
    code = AlertCode(code)
    if code.value.startswith("FS"):
        return Severity.FAIL_SAFE
    if code is AlertCode.GR064:
        return Severity.WARNING
    return Severity.GUARDRAIL


def alert(code: AlertCode, stage: ExecutionState | str, message: str, ts: float = 0.0) -> Alert:
    """Build an Alert whose severity follows from its code (see :func:`severity_for`)."""
    code = AlertCode(code)
    stage_s = stage.value if isinstance(stage, ExecutionState) else str(stage)
    return Alert(code=code, severity=severity_for(code), stage=stage_s, message=message, ts=ts)


def _d(x: Decimal | int | float | str) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(x)


def slippage_pct(orig: Decimal | int | float | str, fill: Decimal | int | float | str) -> Decimal | None:
    """|fill - orig| / orig, or ``None`` when ``orig`` is not positive (no meaningful reference)."""
    o = _d(orig)
    if o <= 0:
        return None
    return abs(_d(fill) - o) / o


# --------------------------------------------------------------------------------------------
# PRECHECK
# --------------------------------------------------------------------------------------------


def check_insufficient_balance(
    required: Decimal | int, available: Decimal | int, *, ts: float = 0.0
) -> Alert | None:
    """GR061 when ``required > available``. Differs from the seed only for ``required == 0`` with
    ``available <= 0``: nothing to pay for, so no alert (the seed alerted)."""
    req, avail = _d(required), _d(available)
    if req > 0 and req > avail:
        msg = f"insufficient capital: required {req}, available {avail}"
        return alert(AlertCode.GR061, ExecutionState.PRECHECK, msg, ts)
    return None


def check_daily_trade_limit(count: int, limit: int = DAILY_TRADE_LIMIT, *, ts: float = 0.0) -> Alert | None:
    """GR062 when ``count >= limit`` (100 of 100 alerts, 50 does not)."""
    if count >= limit:
        return alert(AlertCode.GR062, ExecutionState.PRECHECK, f"daily trade limit reached ({count}/{limit})", ts)
    return None


def check_invalid_symbol(symbol: str, valid: Collection[str] | None = None, *, ts: float = 0.0) -> Alert | None:
    """FS091 when the symbol is empty, or not in ``valid`` when a set is given."""
    if not symbol or (valid is not None and symbol not in valid):
        return alert(AlertCode.FS091, ExecutionState.PRECHECK, f"invalid symbol {symbol!r}", ts)
    return None


# --------------------------------------------------------------------------------------------
# SPLITTING / SENDING
# --------------------------------------------------------------------------------------------


def check_split_count(splits: int | Sized, max_splits: int = MAX_SPLITS, *, ts: float = 0.0) -> Alert | None:
    """GR060 when there are more than ``max_splits`` children (20 ok, 25 alerts)."""
    n = splits if isinstance(splits, int) else len(splits)
    if n > max_splits:
        return alert(
            AlertCode.GR060, ExecutionState.SPLITTING, f"split count {n} exceeds max {max_splits}: consolidating", ts
        )
    return None


def check_all_sends_failed(sent: int, failed: int, *, ts: float = 0.0) -> Alert | None:
    """FS090 when nothing was sent and something failed ((0,3) yes, (1,2) no, (0,0) no)."""
    if sent == 0 and failed > 0:
        return alert(AlertCode.FS090, ExecutionState.SENDING, f"All {failed} orders failed to send", ts)
    return None


# --------------------------------------------------------------------------------------------
# MONITORING / ADJUSTING
# --------------------------------------------------------------------------------------------


def check_fill_delay(elapsed_s: float, threshold_s: float = FILL_DELAY_S, *, ts: float = 0.0) -> Alert | None:
    """GR064 (WARNING) when a live child has had no fill for more than ``threshold_s`` seconds."""
    if elapsed_s > threshold_s:
        return alert(
            AlertCode.GR064, ExecutionState.MONITORING, f"no fill for {elapsed_s:g}s (threshold {threshold_s:g}s)", ts
        )
    return None


def check_fill_timeout(filled: Decimal | int, total: Decimal | int, *, ts: float = 0.0) -> Alert | None:
    """FS093 when the fill window closed with ``filled < total``: the unfilled rest is cancelled."""
    f, t = _d(filled), _d(total)
    if f < t:
        msg = f"fill timeout: {f} of {t} filled, cancelling {t - f}"
        return alert(AlertCode.FS093, ExecutionState.MONITORING, msg, ts)
    return None


def check_slippage(
    orig: Decimal | int | float | str,
    fill: Decimal | int | float | str,
    threshold: Decimal = SLIPPAGE_WARN_PCT,
    *,
    ts: float = 0.0,
) -> Alert | None:
    """GR063 when |fill - orig| / orig > threshold; ``orig <= 0`` never alerts.

    75000 -> 75100 no, -> 75225 no (exactly 0.3 %), -> 75500 yes.
    """
    s = slippage_pct(orig, fill)
    if s is not None and s > threshold:
        return alert(
            AlertCode.GR063, ExecutionState.MONITORING, f"slippage {s:.6f} exceeds warning threshold {threshold}", ts
        )
    return None


def check_slippage_exceeded(
    orig: Decimal | int | float | str,
    fill: Decimal | int | float | str,
    max_pct: Decimal = SLIPPAGE_MAX_PCT,
    *,
    ts: float = 0.0,
) -> Alert | None:
    """FS094 when |fill - orig| / orig > max_pct (75000 -> 76000 yes, -> 75100 no); ``orig <= 0`` never."""
    s = slippage_pct(orig, fill)
    if s is not None and s > max_pct:
        return alert(AlertCode.FS094, ExecutionState.ADJUSTING, f"slippage {s:.6f} exceeds max {max_pct}: escaping", ts)
    return None


# --------------------------------------------------------------------------------------------
# ESCAPING
# --------------------------------------------------------------------------------------------


def escape_alerts(reason: str, *, ts: float = 0.0) -> tuple[Alert, ...]:
    """FS092 always; FS095 too when ``reason`` is exactly one of :data:`FS095_REASONS`."""
    out = [alert(AlertCode.FS092, ExecutionState.ESCAPING, f"Emergency escape triggered: {reason}", ts)]
    if reason in FS095_REASONS:
        msg = f"escape caused by {reason}: suspend recommended"
        out.append(alert(AlertCode.FS095, ExecutionState.ESCAPING, msg, ts))
    return tuple(out)
