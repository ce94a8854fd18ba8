"""PRECHECK decisions. Pure: every input is in the arguments.

:func:`run_precheck` runs the checks below in this order; the first failure wins. Alerts raised
before a failure (GR061) are kept on the outcome.

0. execution mode: LIVE needs BOTH switches (config flag and environment variable) and a
   live-capable venue among the configured ones (the paper exchange is not one)
   -> POLICY_LIVE_NOT_ENABLED.
1. safety FAIL / LOCKDOWN -> SAFETY_BLOCKED + FS090 (FAIL_SAFE). NORMAL and WARNING pass.
2. position limit: the order may not take |position| above the symbol's max (the symbol's own
   limit, else the default; a strategy's limit caps it further). Equal passes
   (9900 + 100 passes, 9950 + 100 fails) -> POSITION_LIMIT_EXCEEDED.
   Deliberate difference: an order that only *reduces* an existing over-limit position (same side
   of zero, smaller magnitude) passes — blocking risk-reducing orders helps nobody. The seed
   added qty to the position regardless of side; we sign it by side.
3. capital (GR061): cost = qty x price, price = the LIMIT price, else the live reference price,
   else the symbol's reference-data price (market orders are not exempt, unlike the seed).

   * BUY: the whole cost must be covered. If not, the qty is reduced to the largest lot multiple
     that is affordable, with GR061 "qty reduced q → a"; 0 affordable -> INSUFFICIENT_CAPITAL.
   * SELL: the part that closes an existing long needs no capital. The part that opens or extends
     a short is charged its full notional (conservative 100 % collateral); a shortfall reduces
     the qty the same way (down to the long-closing part at least).
   * Capital <= 0 with something to pay for -> INSUFFICIENT_CAPITAL (or a reduction to the
     long-closing part for a SELL).
   * No price known at all (no limit, no reference, no symbol spec) -> the check is skipped;
     this only happens for an unknown symbol, which fails at step 5.
4. venue connected, else VENUE_DISCONNECTED.
5. market open: no spec (or a spec for another symbol) -> VALIDATION_INVALID_SYMBOL + FS091;
   halted -> SYMBOL_HALTED; session closed at ``minute_of_day`` -> MARKET_CLOSED.
6. daily limits (GR062), per strategy (a strategy's own limits replace the defaults): count >=
   limit, or today's notional + this cost > notional limit -> DAILY_LIMIT_REACHED + GR062.
7. price collar, LIMIT only: |price - ref| / ref > collar (the symbol's own collar, else the
   default) -> PRICE_COLLAR. ref = live reference price, else the spec's reference price. Exactly
   at the collar passes.
8. risk hook (evaluated by the caller, see :mod:`core.risk`): BLOCK -> RISK_BLOCKED (detail = the
   hook's reason); PAUSE -> ``passed=False, pause=True, reason_code=None``: the worker retries until
   the PRECHECK deadline, then fails with RISK_PAUSE_TIMEOUT.

The outcome's ``qty`` is the quantity to split: never above the intent's, a lot multiple when
it was reduced.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

import msgspec

from core.guardrails import alert
from core.risk import RiskResult
from core.symbols import SymbolSpec, round_to_lot
from schemas.enums import (
    AlertCode,
    ExecutionMode,
    ExecutionState,
    OrderType,
    ReasonCode,
    RiskDecision,
    SafetyState,
    Side,
)
from schemas.messages import Alert, Intent

LIVE_NOT_ENABLED_DETAIL = (
    "live execution is governance-blocked: set both the config flag and the environment variable"
)
LIVE_NO_VENUE_DETAIL = "live execution refused: no live venue is configured (the paper exchange is simulated)"
_STAGE = ExecutionState.PRECHECK


class StrategyLimits(msgspec.Struct, frozen=True, kw_only=True):
    """One strategy's own limits; ``None`` keeps the default."""

    max_position_qty: Decimal | None = None  # caps |position| in every symbol, with the symbol's limit
    daily_trade_limit: int | None = None  # replaces the default
    daily_notional_limit: Decimal | None = None  # replaces the default


class PrecheckConfig(msgspec.Struct, frozen=True, kw_only=True):
    max_position_qty: Decimal = Decimal(10000)
    max_position_overrides: dict[str, Decimal] = {}  # symbol -> max |position|
    daily_trade_limit: int = 100  # per strategy and UTC day
    daily_notional_limit: Decimal = Decimal(10_000_000)  # per strategy and UTC day
    price_collar_pct: Decimal = Decimal("0.05")
    price_collar_overrides: dict[str, Decimal] = {}  # symbol -> collar
    available_capital: Decimal = Decimal(100_000_000)  # used when the context gives none
    strategy_limits: dict[str, StrategyLimits] = {}  # strategy_id -> its own limits

    def __post_init__(self) -> None:
        caps = [s.max_position_qty for s in self.strategy_limits.values() if s.max_position_qty is not None]
        if self.max_position_qty < 0 or any(v < 0 for v in self.max_position_overrides.values()) or any(v < 0 for v in caps):
            raise ValueError("max position quantities must be >= 0")
        counts = [s.daily_trade_limit for s in self.strategy_limits.values() if s.daily_trade_limit is not None]
        notionals = [s.daily_notional_limit for s in self.strategy_limits.values() if s.daily_notional_limit is not None]
        if self.daily_trade_limit < 0 or self.daily_notional_limit < 0 or any(v < 0 for v in counts + notionals):
            raise ValueError("daily limits must be >= 0")
        if self.price_collar_pct < 0 or any(v < 0 for v in self.price_collar_overrides.values()):
            raise ValueError("price_collar_pct must be >= 0")

    def max_position_for(self, symbol: str, strategy_id: str | None = None) -> Decimal:
        limit = self.max_position_overrides.get(symbol, self.max_position_qty)
        own = self.strategy_limits.get(strategy_id) if strategy_id is not None else None
        return min(limit, own.max_position_qty) if own is not None and own.max_position_qty is not None else limit

    def daily_limits_for(self, strategy_id: str) -> tuple[int, Decimal]:
        """(trades, notional) a strategy may send per UTC day."""
        own = self.strategy_limits.get(strategy_id)
        count = own.daily_trade_limit if own is not None and own.daily_trade_limit is not None else self.daily_trade_limit
        notional = own.daily_notional_limit if own is not None and own.daily_notional_limit is not None else self.daily_notional_limit
        return count, notional

    def price_collar_for(self, symbol: str) -> Decimal:
        return self.price_collar_overrides.get(symbol, self.price_collar_pct)


class PrecheckContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the checks need to know about the world, gathered by the worker."""

    safety_state: SafetyState
    mode: ExecutionMode
    venue_connected: bool
    spec: SymbolSpec | None
    minute_of_day: int  # UTC minutes after midnight, see :func:`minute_of_day_utc`
    risk: RiskResult
    live_switches: tuple[bool, bool] = (False, False)  # (config flag, environment variable)
    live_venue: bool = False  # a live-capable venue is configured (the paper exchange is not one)
    position_qty: Decimal = Decimal(0)  # signed, this symbol and strategy
    available_capital: Decimal | None = None  # None = PrecheckConfig.available_capital
    reference_price: Decimal | None = None  # live mid / last; None = not known
    daily_count: int = 0
    daily_notional: Decimal = Decimal(0)
    now: float = 0.0  # epoch seconds, stamped on alerts


class PrecheckOutcome(msgspec.Struct, frozen=True, kw_only=True):
    passed: bool
    reason_code: ReasonCode | None
    detail: str
    qty: Decimal
    alerts: tuple[Alert, ...] = ()
    pause: bool = False


def _price_for_cost(intent: Intent, ctx: PrecheckContext) -> Decimal | None:
    if intent.order_type is OrderType.LIMIT and intent.price is not None:
        return intent.price
    if ctx.reference_price is not None and ctx.reference_price > 0:
        return ctx.reference_price
    if ctx.spec is not None and ctx.spec.symbol == intent.symbol and ctx.spec.reference_price > 0:
        return ctx.spec.reference_price
    return None


def _position_ok(position: Decimal, signed_qty: Decimal, max_pos: Decimal) -> bool:
    new = position + signed_qty
    if abs(new) <= max_pos:
        return True
    # Pure reduction of an existing position (no flip through zero) is always allowed.
    same_side = (new > 0 and position > 0) or (new < 0 and position < 0)
    return same_side and abs(new) < abs(position)


class Failure(NamedTuple):
    """Why a check refused the intent: the reason code, a sentence, and the alert it raises (if any)."""

    code: ReasonCode
    detail: str
    alert: Alert | None = None


Check = Callable[[Intent, Decimal, PrecheckContext, PrecheckConfig], "Failure | None"]


def run_precheck(intent: Intent, ctx: PrecheckContext, config: PrecheckConfig | None = None) -> PrecheckOutcome:
    """The checks in order; the first failure wins. Capital (GR061) may reduce the quantity the
    later checks see; its alert stays on the outcome whatever follows."""
    cfg = config if config is not None else PrecheckConfig()
    qty = intent.qty
    alerts: list[Alert] = []

    def outcome(failure: Failure) -> PrecheckOutcome:
        extra = (failure.alert,) if failure.alert is not None else ()
        return PrecheckOutcome(passed=False, reason_code=failure.code, detail=failure.detail, qty=qty, alerts=(*alerts, *extra))

    for check in (check_mode, check_safety, check_position):
        if (failure := check(intent, qty, ctx, cfg)) is not None:
            return outcome(failure)
    qty, reduced, failure = check_capital(intent, qty, ctx, cfg)
    if failure is not None:
        return outcome(failure)
    if reduced is not None:
        alerts.append(reduced)
    for check in (check_venue, check_symbol, check_daily_limits, check_price_collar, check_risk_block):
        if (failure := check(intent, qty, ctx, cfg)) is not None:
            return outcome(failure)
    if ctx.risk.decision is RiskDecision.PAUSE:
        return PrecheckOutcome(passed=False, reason_code=None, detail=ctx.risk.reason, qty=qty, alerts=tuple(alerts), pause=True)
    return PrecheckOutcome(passed=True, reason_code=None, detail="", qty=qty, alerts=tuple(alerts))


def check_mode(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """0) execution mode governance: LIVE needs both switches and a live venue."""
    if ctx.mode is ExecutionMode.LIVE and not (ctx.live_switches[0] and ctx.live_switches[1]):
        return Failure(ReasonCode.POLICY_LIVE_NOT_ENABLED, LIVE_NOT_ENABLED_DETAIL)
    if ctx.mode is ExecutionMode.LIVE and not ctx.live_venue:
        return Failure(ReasonCode.POLICY_LIVE_NOT_ENABLED, LIVE_NO_VENUE_DETAIL)
    return None


def check_safety(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """1) safety state: FAIL or LOCKDOWN blocks new executions (FS090)."""
    if ctx.safety_state in (SafetyState.FAIL, SafetyState.LOCKDOWN):
        msg = f"safety state {ctx.safety_state.value} blocks new executions"
        return Failure(ReasonCode.SAFETY_BLOCKED, msg, alert(AlertCode.FS090, _STAGE, msg, ctx.now))
    return None


def check_position(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """2) position limit: |position after the trade| within the symbol's (or strategy's) maximum."""
    max_pos = cfg.max_position_for(intent.symbol, intent.strategy_id)
    signed = qty * intent.side.sign
    if _position_ok(ctx.position_qty, signed, max_pos):
        return None
    return Failure(
        ReasonCode.POSITION_LIMIT_EXCEEDED,
        f"position {ctx.position_qty} after {intent.side.value} {qty} would be {ctx.position_qty + signed}: exceeds max |position| {max_pos}",
    )


def check_capital(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> tuple[Decimal, Alert | None, Failure | None]:
    """3) capital (GR061): what costs more than the available capital is reduced to what it buys
    (in whole lots; closing a long costs nothing), or refused when not one lot is affordable."""
    price = _price_for_cost(intent, ctx)
    if price is None:
        return qty, None, None
    lot = ctx.spec.lot_size if ctx.spec is not None and ctx.spec.lot_size > 0 else Decimal(1)
    capital = ctx.available_capital if ctx.available_capital is not None else cfg.available_capital
    free_qty = Decimal(0) if intent.side is Side.BUY else min(qty, max(ctx.position_qty, Decimal(0)))
    cost = (qty - free_qty) * price
    if cost <= 0 or cost <= capital:
        return qty, None, None
    affordable_lots = capital // (price * lot) if capital > 0 else Decimal(0)
    reduced = min(round_to_lot(free_qty + max(affordable_lots, Decimal(0)) * lot, lot), qty)
    if reduced <= 0 or reduced >= qty:
        return qty, None, Failure(ReasonCode.INSUFFICIENT_CAPITAL, f"cost {cost} exceeds available capital {capital}; affordable qty 0 (lot {lot})")
    return reduced, alert(AlertCode.GR061, _STAGE, f"qty reduced {qty} → {reduced}", ctx.now), None


def check_venue(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """4) venue connected."""
    return None if ctx.venue_connected else Failure(ReasonCode.VENUE_DISCONNECTED, "venue is disconnected")


def check_symbol(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """5) a symbol the venue trades (FS091), not halted, its market open."""
    spec = ctx.spec
    if spec is None or spec.symbol != intent.symbol:
        msg = f"invalid symbol {intent.symbol!r}: no reference data"
        return Failure(ReasonCode.VALIDATION_INVALID_SYMBOL, msg, alert(AlertCode.FS091, _STAGE, msg, ctx.now))
    if spec.halted:
        return Failure(ReasonCode.SYMBOL_HALTED, f"symbol {intent.symbol} is halted")
    if not spec.session.is_open(ctx.minute_of_day):
        return Failure(
            ReasonCode.MARKET_CLOSED,
            f"market closed for {intent.symbol} at minute {ctx.minute_of_day} (session {spec.session.open_minute}-{spec.session.close_minute})",
        )
    return None


def check_daily_limits(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """6) daily limits (GR062): trades and notional of the strategy today, this trade included."""
    price = _price_for_cost(intent, ctx)  # the symbol is known now, so a price always exists
    cost = qty * price if price is not None else Decimal(0)
    trade_limit, notional_limit = cfg.daily_limits_for(intent.strategy_id)
    if ctx.daily_count >= trade_limit:
        msg = f"daily trade limit reached ({ctx.daily_count}/{trade_limit})"
        return Failure(ReasonCode.DAILY_LIMIT_REACHED, msg, alert(AlertCode.GR062, _STAGE, msg, ctx.now))
    if ctx.daily_notional + cost > notional_limit:
        msg = f"daily notional limit reached ({ctx.daily_notional} + {cost} > {notional_limit})"
        return Failure(ReasonCode.DAILY_LIMIT_REACHED, msg, alert(AlertCode.GR062, _STAGE, msg, ctx.now))
    return None


def check_price_collar(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """7) price collar (LIMIT only): the limit within the collar of the reference price."""
    if intent.order_type is not OrderType.LIMIT or intent.price is None:
        return None
    ref = ctx.reference_price if ctx.reference_price is not None and ctx.reference_price > 0 else None
    if ref is None and ctx.spec is not None and ctx.spec.reference_price > 0:
        ref = ctx.spec.reference_price
    if ref is None:
        return None
    dev = abs(intent.price - ref) / ref
    collar = cfg.price_collar_for(intent.symbol)
    if dev > collar:
        return Failure(ReasonCode.PRICE_COLLAR, f"limit {intent.price} is {dev:.4%} from reference {ref} (collar {collar:%})")
    return None


def check_risk_block(intent: Intent, qty: Decimal, ctx: PrecheckContext, cfg: PrecheckConfig) -> Failure | None:
    """8) the risk hook's BLOCK (its PAUSE is answered by :func:`run_precheck`: retried, not failed)."""
    return Failure(ReasonCode.RISK_BLOCKED, ctx.risk.reason) if ctx.risk.decision is RiskDecision.BLOCK else None


# --------------------------------------------------------------------------------------------
# Daily counters
# --------------------------------------------------------------------------------------------

_KV_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def _utc(epoch_s: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch_s, tz=_dt.timezone.utc)


def daily_bucket(strategy_id: str, epoch_s: float) -> str:
    """Key of a strategy's daily counter for the UTC day of ``epoch_s``: ``"<strategy>.YYYYMMDD"``.

    The separator is ``.``, not ``:``, because ``:`` is not a legal NATS KV key character.
    Strategy ids outside ``[A-Za-z0-9_-]`` are hex-encoded behind a ``=`` marker
    (``"=" + utf8.hex()``), so every id maps to its own legal key and no two ids collide.
    """
    day = _utc(epoch_s).strftime("%Y%m%d")
    sid = strategy_id if _KV_SAFE.fullmatch(strategy_id) else "=" + strategy_id.encode().hex()
    return f"{sid}.{day}"


def minute_of_day_utc(epoch_s: float) -> int:
    """UTC minutes after midnight (0..1439), the unit of :class:`core.symbols.Session`."""
    t = _utc(epoch_s)
    return t.hour * 60 + t.minute


NOTIONAL_UNIT = Decimal("0.00000001")  # a daily notional counter counts in units of 1e-8


def trade_cost(intent: Intent, qty: Decimal, ctx: PrecheckContext) -> Decimal:
    """What this trade adds to the day's notional (the price check 6 uses)."""
    price = _price_for_cost(intent, ctx)
    return qty * price if price is not None else Decimal(0)


def notional_units(notional: Decimal) -> int:
    """A notional as counter units (rounded up: the limit is never under-counted)."""
    return int((notional / NOTIONAL_UNIT).to_integral_value(rounding="ROUND_CEILING"))


def units_notional(units: int) -> Decimal:
    return Decimal(units) * NOTIONAL_UNIT


class DailyCounter(msgspec.Struct, frozen=True, kw_only=True):
    """Trades and notional a strategy has sent today (the value stored under :func:`daily_bucket`)."""

    count: int = 0
    notional: Decimal = Decimal(0)

    def add(self, notional: Decimal) -> "DailyCounter":
        return DailyCounter(count=self.count + 1, notional=self.notional + notional)
