"""Split planning: turn one intent into a schedule of child orders 

Pure: no I/O, no clock, no randomness. ``now`` is a parameter, ids come from
:func:`core.ids.client_order_id`, so a redelivered split command yields the identical plan and the
same client order ids reach the venue at most once.

All sizing is done in whole **lots** (``qty / lot_size`` rounded down) with exact integer/rational
arithmetic; only the final child quantity is converted back to units (``lots × lot_size``). That is
what makes "children sum exactly to the lot-rounded quantity" hold for BTC-USD (lot 0.001) as well as
for equities.

Strategies:

* SINGLE — one child for the whole quantity, due now.
* TWAP — ``n = min(twap_buckets, lots)`` equal buckets, the remainder spread one lot each over the
  first buckets, bucket ``i`` due at ``now + i × horizon / n``.
* VWAP — buckets proportional to a volume profile (given, else :func:`u_shaped_profile`), rounded with
  the **largest-remainder** method (rather than giving the whole rounding residue to the last bucket, which
  can overload it, largest-remainder keeps every bucket within one lot of its exact share while the sum
  stays exact). Zero-lot buckets are dropped but the others keep their bucket time.
* ICEBERG — slices of ``visible = max(1, floor(lots × iceberg_visible_pct))`` lots, last one smaller,
  all due now, released SEQUENTIAL: the coordinator sends the next slice when the previous one
  closes (filled, or cancelled/rejected/expired).

Each strategy is one :class:`Strategy` entry in :data:`STRATEGIES` (its planner, whether it needs the
venue's volume profile, its release policy, which travels on ``SplitDone``): a new one is a planner
and an entry here, plus its ``SplitStrategy`` value.
* GR060 — more than ``max_children`` children: alert and rebuild exactly ``max_children`` TWAP-sized
  children over the total, keeping the strategy label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import NamedTuple

import msgspec

from core.ids import client_order_id
from core.symbols import SymbolSpec, lots, round_to_tick
from schemas.enums import AlertCode, OrderType, ReleasePolicy, Severity, Side, SplitStrategy, Urgency
from schemas.messages import Alert, ChildOrder, Intent

__all__ = [
    "SplitConfig",
    "SplitPlan",
    "apportion",
    "choose_strategy",
    "STRATEGIES",
    "Strategy",
    "needs_profile",
    "plan_split",
    "u_shaped_profile",
]

STAGE = "SPLITTING"

# Precision of the default profile's weights; fine enough that rounding never moves a lot on any
# realistic order, coarse enough to read in a log.
_PROFILE_PLACES = 12


class SplitConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Split tuning. Quantities are in lots so one config fits every symbol regardless of lot size."""

    min_split_qty: int = 100  # in lots; at or below this an AUTO intent goes out as one child
    max_children: int = 20  # GR060
    twap_buckets: int = 5
    iceberg_visible_pct: Decimal = Decimal("0.3")
    default_horizon_s: int = 60  # TWAP/VWAP horizon when the intent has none

    def __post_init__(self) -> None:
        # Reject a bad config where it is built (worker start-up), not mid-execution.
        if self.min_split_qty < 0:
            raise ValueError("min_split_qty must be >= 0")
        if self.max_children < 1:
            raise ValueError("max_children must be >= 1")
        if self.twap_buckets < 1:
            raise ValueError("twap_buckets must be >= 1")
        pct = self.iceberg_visible_pct
        if not pct.is_finite() or not (0 < pct <= 1):
            raise ValueError("iceberg_visible_pct must be in (0, 1]")
        if self.default_horizon_s < 0:
            raise ValueError("default_horizon_s must be >= 0")


class SplitPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The split decision. No children means nothing to trade: the caller fails with SPLIT_EMPTY."""

    strategy: SplitStrategy
    children: tuple[ChildOrder, ...]
    alerts: tuple[Alert, ...]
    release: ReleasePolicy = ReleasePolicy.SCHEDULED


# --------------------------------------------------------------------------------------------
# Strategy choice
# --------------------------------------------------------------------------------------------


def choose_strategy(intent: Intent, qty_lots: int, config: SplitConfig) -> SplitStrategy:
    """The strategy for ``qty_lots`` lots. An explicit ``intent.split`` wins over AUTO.

    AUTO never picks VWAP: without a trusted volume profile it would only be a reshaped TWAP, so it
    must be asked for.
    """
    if intent.split is not SplitStrategy.AUTO:
        return intent.split
    if qty_lots <= config.min_split_qty:
        return SplitStrategy.SINGLE
    if intent.urgency is Urgency.URGENT:
        return SplitStrategy.TWAP  # urgent: get all of it working now-ish, never hide behind slices
    if qty_lots > 10 * config.min_split_qty:
        return SplitStrategy.ICEBERG
    return SplitStrategy.TWAP


# --------------------------------------------------------------------------------------------
# Sizing helpers (integers only)
# --------------------------------------------------------------------------------------------


def _even_sizes(total: int, n: int) -> list[int]:
    """TWAP rule: ``total // n`` each, the first ``total % n`` get one more (101/5 → 21,20,20,20,20)."""
    base, extra = divmod(total, n)
    return [base + 1] * extra + [base] * (n - extra)


def apportion(total: int, weights: Sequence[Decimal | int | Fraction]) -> list[int]:
    """Split ``total`` integer units in proportion to ``weights`` (largest-remainder method).

    Each part is its exact share rounded down; the units left over go one each to the parts with
    the largest fractional remainders (earlier index first on ties). So the parts sum exactly to
    ``total`` and none is more than one unit away from its exact share. Arithmetic is exact
    (``Fraction``): no float, no Decimal context rounding.
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    fw = [Fraction(w) for w in weights]
    if not fw:
        raise ValueError("weights must not be empty")
    if any(w < 0 for w in fw):
        raise ValueError("weights must be >= 0")
    s = sum(fw)
    if s <= 0:
        raise ValueError("weights must not all be zero")
    exact = [total * w / s for w in fw]
    parts = [math.floor(x) for x in exact]
    left = total - sum(parts)
    by_remainder = sorted(range(len(fw)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts


def u_shaped_profile(n: int) -> tuple[Decimal, ...]:
    """A default intraday volume profile over ``n`` buckets, summing exactly to 1.

    Intraday volume is typically heavy at the open and the close and thin at midday; without a
    measured profile, that U shape is a better prior than a flat one. Weight ``1 + 2x²`` with ``x``
    running from -1 to 1, so the end buckets weigh 3× the middle one.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if n == 1:
        return (Decimal(1),)
    weights = [1 + 2 * Fraction(2 * i - (n - 1), n - 1) ** 2 for i in range(n)]
    units = apportion(10**_PROFILE_PLACES, weights)
    return tuple(Decimal(u).scaleb(-_PROFILE_PLACES) for u in units)


def _to_fraction(w: Decimal | int | Fraction | float) -> Fraction:
    if isinstance(w, Decimal) and not w.is_finite():
        raise ValueError(f"volume profile weight {w} is not finite")
    if isinstance(w, float) and not math.isfinite(w):
        raise ValueError(f"volume profile weight {w} is not finite")
    return Fraction(w)


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def _child_price(intent: Intent, spec: SymbolSpec) -> Decimal | None:
    """LIMIT price on the symbol's tick grid, rounded *inside* the intent's limit.

    A BUY limit rounds down and a SELL limit rounds up: rounding half-up could lift a buy above the
    price the strategy asked for. MARKET passes the intent's price through untouched.
    """
    if intent.order_type is not OrderType.LIMIT:
        return intent.price
    if intent.price is None:
        raise ValueError("a LIMIT intent needs a price")
    rounding = ROUND_FLOOR if intent.side is Side.BUY else ROUND_CEILING
    return round_to_tick(intent.price, spec.tick_size, rounding)


def _horizon(intent: Intent, config: SplitConfig) -> int:
    """The intent's horizon, else the default. An explicit 0 means "all now"; negatives clamp to 0."""
    h = intent.horizon_s if intent.horizon_s is not None else config.default_horizon_s
    return max(0, h)


def _slot_times(n: int, now: float, horizon: int) -> list[float]:
    """``now + i × horizon / n`` for i in 0..n-1: first at ``now``, all strictly before the end."""
    return [now + horizon * i / n for i in range(n)]


def plan_split(
    intent: Intent,
    qty: Decimal,
    idempotency_key: str,
    spec: SymbolSpec,
    config: SplitConfig,
    now: float,
    volume_profile: Sequence[Decimal] | None = None,
) -> SplitPlan:
    """Plan the children for ``qty`` (the precheck quantity, maybe reduced by GR061, not intent.qty).

    Quantity below one lot yields a plan with no children. ``volume_profile`` is only used by VWAP;
    it is renormalised, so percentages or raw volumes both work. Raises ``ValueError`` for inputs
    intake must already have refused (LIMIT without price, spec of another symbol, a negative or
    all-zero profile), because guessing there would trade something nobody asked for.
    """
    if spec.symbol != intent.symbol:
        raise ValueError(f"spec is for {spec.symbol}, intent is for {intent.symbol}")
    if not spec.lot_size.is_finite() or spec.lot_size <= 0:
        raise ValueError(f"lot_size of {spec.symbol} must be > 0")

    qty_lots = lots(qty, spec.lot_size) if qty.is_finite() and qty > 0 else 0
    strategy = choose_strategy(intent, qty_lots, config)
    if qty_lots < 1:
        return SplitPlan(strategy=strategy, children=(), alerts=())

    price = _child_price(intent, spec)
    horizon = _horizon(intent, config)
    entry = STRATEGIES.get(strategy)
    if entry is None:  # AUTO is resolved by choose_strategy; anything else is not registered
        raise ValueError(f"unsupported split strategy {strategy}")
    sized, count = entry.plan(qty_lots, Window(now, horizon), config, volume_profile)
    alerts: tuple[Alert, ...] = ()
    if count > config.max_children:
        m = config.max_children
        alerts = (
            Alert(
                code=AlertCode.GR060,
                severity=Severity.GUARDRAIL,
                stage=STAGE,
                message=f"{strategy.value} plan has {count} children, more than max {m}: consolidating {count} → {m}",
                ts=now,
            ),
        )
        # Sequentially released slices stay "all at now"; scheduled ones re-spread over the horizon.
        times = [now] * m if entry.release is ReleasePolicy.SEQUENTIAL else _slot_times(m, now, horizon)
        sized = list(zip(_even_sizes(qty_lots, m), times))

    assert sized is not None
    children = tuple(
        ChildOrder(
            client_order_id=client_order_id(idempotency_key, i, 0),
            index=i,
            symbol=intent.symbol,
            side=intent.side,
            qty=Decimal(n_lots) * spec.lot_size,
            order_type=intent.order_type,
            price=price,
            scheduled_at=at,
        )
        for i, (n_lots, at) in enumerate(sized)
    )
    return SplitPlan(strategy=strategy, children=children, alerts=alerts, release=entry.release)


# --------------------------------------------------------------------------------------------
# The strategies: one entry each (add a strategy here, with its SplitStrategy value)
# --------------------------------------------------------------------------------------------


class Window(NamedTuple):
    now: float
    horizon: int  # seconds


Sized = list[tuple[int, float]]  # (lots, scheduled_at) per child
Planner = Callable[[int, Window, SplitConfig, Sequence[Decimal] | None], tuple[Sized | None, int]]
"""``(lots, window, config, volume profile) -> (children, count)``; ``children`` may be None when
``count`` is over ``max_children`` (the plan is rebuilt by GR060 instead of materialised)."""


@dataclass(frozen=True)
class Strategy:
    """A split strategy: how it sizes and times the children, what it needs, how they are released."""

    plan: Planner
    release: ReleasePolicy = ReleasePolicy.SCHEDULED  # SEQUENTIAL: the next child when the last closes
    needs_profile: bool = False  # the venue's volume profile (the split worker fetches it)


def _plan_single(qty_lots: int, w: Window, config: SplitConfig, profile) -> tuple[Sized, int]:
    return [(qty_lots, w.now)], 1


def _plan_twap(qty_lots: int, w: Window, config: SplitConfig, profile) -> tuple[Sized, int]:
    n = min(config.twap_buckets, qty_lots)
    return list(zip(_even_sizes(qty_lots, n), _slot_times(n, w.now, w.horizon))), n


def _plan_vwap(qty_lots: int, w: Window, config: SplitConfig, volume_profile) -> tuple[Sized, int]:
    if volume_profile is None:
        profile: Sequence[Decimal | Fraction] = u_shaped_profile(min(config.twap_buckets, config.max_children))
    else:
        profile = [_to_fraction(x) for x in volume_profile]
    parts = apportion(qty_lots, profile)
    times = _slot_times(len(parts), w.now, w.horizon)
    # Zero-lot buckets drop out; the rest keep their own bucket time so the volume curve holds.
    sized = [(p, t) for p, t in zip(parts, times) if p > 0]
    return sized, len(sized)


def _plan_iceberg(qty_lots: int, w: Window, config: SplitConfig, profile) -> tuple[Sized | None, int]:
    visible = max(1, math.floor(qty_lots * Fraction(config.iceberg_visible_pct)))
    count = -(-qty_lots // visible)
    if count > config.max_children:
        return None, count  # GR060 rebuilds it; never build a huge list just to drop it
    full, rest = divmod(qty_lots, visible)
    return [(visible, w.now)] * full + ([(rest, w.now)] if rest else []), count


STRATEGIES: dict[SplitStrategy, Strategy] = {
    SplitStrategy.SINGLE: Strategy(_plan_single),
    SplitStrategy.TWAP: Strategy(_plan_twap),
    SplitStrategy.VWAP: Strategy(_plan_vwap, needs_profile=True),
    SplitStrategy.ICEBERG: Strategy(_plan_iceberg, release=ReleasePolicy.SEQUENTIAL),
}


def needs_profile(strategy: SplitStrategy) -> bool:
    entry = STRATEGIES.get(strategy)
    return entry is not None and entry.needs_profile
