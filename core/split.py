"""Split planning: turn one intent into a schedule of child orders (seed 000, B4; VWAP from C1).

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
  the **largest-remainder** method (seed C1 gives the whole rounding residue to the last bucket, which
  can overload it; largest-remainder keeps every bucket within one lot of its exact share while the sum
  stays exact). Zero-lot buckets are dropped but the others keep their bucket time.
* ICEBERG — slices of ``visible = max(1, floor(lots × iceberg_visible_pct))`` lots, last one smaller,
  all due now; the coordinator releases them one at a time (see :func:`iceberg_next_release`).
* GR060 — more than ``max_children`` children: alert and rebuild exactly ``max_children`` TWAP-sized
  children over the total, keeping the strategy label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction

import msgspec

from core.ids import client_order_id
from core.symbols import SymbolSpec, lots, round_to_tick
from schemas.enums import AlertCode, OrderState, OrderType, Severity, Side, SplitStrategy, Urgency
from schemas.messages import Alert, ChildOrder, Intent

__all__ = [
    "SplitConfig",
    "SplitPlan",
    "apportion",
    "choose_strategy",
    "iceberg_next_release",
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


# --------------------------------------------------------------------------------------------
# Strategy choice
# --------------------------------------------------------------------------------------------


def choose_strategy(intent: Intent, qty_lots: int, config: SplitConfig) -> SplitStrategy:
    """The strategy for ``qty_lots`` lots (seed B4). An explicit ``intent.split`` wins over AUTO.

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

    # (lots, scheduled_at) per child, or the would-be count when it is too large to materialise.
    sized: list[tuple[int, float]] | None = None
    count: int
    if strategy is SplitStrategy.SINGLE:
        sized = [(qty_lots, now)]
        count = 1
    elif strategy is SplitStrategy.TWAP:
        n = min(config.twap_buckets, qty_lots)
        sized = list(zip(_even_sizes(qty_lots, n), _slot_times(n, now, horizon)))
        count = n
    elif strategy is SplitStrategy.VWAP:
        if volume_profile is None:
            profile: Sequence[Decimal | Fraction] = u_shaped_profile(min(config.twap_buckets, config.max_children))
        else:
            profile = [_to_fraction(w) for w in volume_profile]
        parts = apportion(qty_lots, profile)
        times = _slot_times(len(parts), now, horizon)
        # Zero-lot buckets drop out; the rest keep their own bucket time so the volume curve holds.
        sized = [(p, t) for p, t in zip(parts, times) if p > 0]
        count = len(sized)
    elif strategy is SplitStrategy.ICEBERG:
        visible = max(1, math.floor(qty_lots * Fraction(config.iceberg_visible_pct)))
        count = -(-qty_lots // visible)
        if count <= config.max_children:  # else GR060 below; never build a huge list just to drop it
            full, rest = divmod(qty_lots, visible)
            sized = [(visible, now)] * full + ([(rest, now)] if rest else [])
    else:  # AUTO is resolved by choose_strategy; anything else is a new enum member we do not know
        raise ValueError(f"unsupported split strategy {strategy}")

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
        # Iceberg slices stay "all at now" (release is sequential anyway); the others re-spread.
        times = [now] * m if strategy is SplitStrategy.ICEBERG else _slot_times(m, now, horizon)
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
    return SplitPlan(strategy=strategy, children=children, alerts=alerts)


# --------------------------------------------------------------------------------------------
# Iceberg release policy (applied by the coordinator)
# --------------------------------------------------------------------------------------------


def iceberg_next_release(
    states: Sequence[OrderState],
    dispatched: Sequence[bool] | None = None,
) -> int | None:
    """Index of the iceberg slice to send now, or None.

    An iceberg shows one slice at a time: slice ``k`` is released only once every slice before it
    is FILLED. ``states`` are the slices' order states in index order; a slice counts as released
    when its state is past CREATED or ``dispatched[k]`` is true (sent, no ack yet). Returns None
    while a slice is live, when all are filled, or when an earlier slice ended without filling
    (cancelled, rejected, expired, failed): that is the adjust/escape path's call, not a reason to
    show more size.
    """
    if dispatched is not None and len(dispatched) != len(states):
        raise ValueError("states and dispatched must have the same length")
    for k, state in enumerate(states):
        released = state is not OrderState.CREATED or (dispatched is not None and dispatched[k])
        if not released:
            return k
        if state is not OrderState.FILLED:
            return None
    return None
