"""AdaptiveAdjust decisions. Pure: quotes, round and time are arguments.

:func:`decide_adjust` looks at the live children of one execution and answers one action:

* ``ESCAPE`` — ``round >= max_rounds`` (FS094 "max adjustment rounds reached"), or the proposed
  prices would slip more than ``slippage_max_pct`` from the arrival price (FS094).
* ``WAIT`` — the proposed prices would slip more than ``slippage_warn_pct`` (GR063; prices stay),
  or there is nothing to re-price (only MARKET children, no quote on the side we move toward,
  or every child already at/through its cap).
* ``PRICE_IMPROVE`` — ``new_prices`` maps client order id -> new limit price.

Price rule, per LIMIT child, with ``steps = (round + 1) * tick_steps_per_round``:

* BUY:  ``new = min(current + steps*tick, ask + tick_steps_per_round*tick)``, rounded DOWN to tick.
  The order walks up toward the ask and may cross it by at most ``tick_steps_per_round`` ticks
  (marketable, but with a bounded price).
* SELL: ``new = max(current - steps*tick, bid - tick_steps_per_round*tick)``, rounded UP to tick,
  and never below one tick.
* A child is re-priced only if that strictly improves it (BUY up, SELL down). A BUY never moves
  down and a SELL never moves up, even if the touch moved away from us.
* No ask (BUY) / no bid (SELL): that child is left alone (no blind chasing).

Slippage is measured for every proposed price against the arrival price, *adverse direction
only*: BUY ``max(0, new - arrival) / arrival``, SELL ``max(0, arrival - new) / arrival``. The
brief's ``|new - arrival|`` would punish a passive order for moving *toward* arrival (a BUY at
74000 with arrival 75000 improving to 74100 is 1.2 % "away" but is not slippage at all). Without an
arrival price the child's current price is the reference (the seed's measure). The worst child
decides. Thresholds are strict (exactly 0.3 % does not warn) and are the ONE system-wide set from
:mod:`core.guardrails`.

Differences from the seed: tick steps instead of a percentage step; a quote on the "wrong" side is
not a GR063 (we simply do not move the price down); MARKET children are never re-priced.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import msgspec

from core.guardrails import SLIPPAGE_MAX_PCT, SLIPPAGE_WARN_PCT, alert
from core.symbols import round_to_tick
from schemas.enums import AdjustAction, AlertCode, ExecutionState, OrderType, Side
from schemas.messages import Alert, ChildOrder


class AdjustConfig(msgspec.Struct, frozen=True, kw_only=True):
    max_rounds: int = 3
    tick_steps_per_round: int = 1
    slippage_warn_pct: Decimal = SLIPPAGE_WARN_PCT  # GR063
    slippage_max_pct: Decimal = SLIPPAGE_MAX_PCT  # FS094

    def __post_init__(self) -> None:
        if self.max_rounds < 0 or self.tick_steps_per_round < 1:
            raise ValueError("max_rounds must be >= 0 and tick_steps_per_round >= 1")
        if not (0 <= self.slippage_warn_pct <= self.slippage_max_pct):
            raise ValueError("need 0 <= slippage_warn_pct <= slippage_max_pct")


class AdjustDecision(msgspec.Struct, frozen=True, kw_only=True):
    action: AdjustAction
    new_prices: dict[str, Decimal] = {}
    alerts: tuple[Alert, ...] = ()
    detail: str = ""


def _proposed_price(
    side: Side, current: Decimal, bid: Decimal | None, ask: Decimal | None, tick: Decimal, steps: int, cross: int
) -> Decimal | None:
    """The improved price for one child, or None when it should stay where it is."""
    if side is Side.BUY:
        if ask is None:
            return None
        new = round_to_tick(min(current + steps * tick, ask + cross * tick), tick, ROUND_FLOOR)
        return new if new > current else None
    if bid is None:
        return None
    new = round_to_tick(max(current - steps * tick, bid - cross * tick), tick, ROUND_CEILING)
    new = max(new, tick)
    return new if new < current else None


def adverse_slippage(side: Side, reference: Decimal, price: Decimal) -> Decimal:
    """How much worse than ``reference`` a fill at ``price`` would be, as a fraction (>= 0)."""
    if reference <= 0:
        return Decimal(0)
    diff = price - reference if side is Side.BUY else reference - price
    return max(diff, Decimal(0)) / reference


def decide_adjust(
    side: Side,
    children: Sequence[ChildOrder],
    arrival_price: Decimal | None,
    bid: Decimal | None,
    ask: Decimal | None,
    tick: Decimal,
    round: int,  # noqa: A002 - the protocol's name (AdjustCommand.round)
    config: AdjustConfig | None = None,
    *,
    now: float = 0.0,
) -> AdjustDecision:
    cfg = config if config is not None else AdjustConfig()
    if tick <= 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    if round < 0:
        raise ValueError(f"round must be >= 0, got {round}")
    side = Side(side)
    stage = ExecutionState.ADJUSTING

    if round >= cfg.max_rounds:
        msg = f"max adjustment rounds reached ({cfg.max_rounds})"
        return AdjustDecision(action=AdjustAction.ESCAPE, alerts=(alert(AlertCode.FS094, stage, msg, now),), detail=msg)

    steps = (round + 1) * cfg.tick_steps_per_round
    proposals: dict[str, Decimal] = {}
    worst = Decimal(0)
    for child in children:
        if child.order_type is not OrderType.LIMIT or child.price is None or child.price <= 0:
            continue
        new = _proposed_price(side, child.price, bid, ask, tick, steps, cfg.tick_steps_per_round)
        if new is None:
            continue
        ref = arrival_price if arrival_price is not None and arrival_price > 0 else child.price
        worst = max(worst, adverse_slippage(side, ref, new))
        proposals[child.client_order_id] = new

    if not proposals:
        return AdjustDecision(action=AdjustAction.WAIT, detail="nothing to re-price")
    if worst > cfg.slippage_max_pct:
        msg = f"slippage {worst:.6f} would exceed max {cfg.slippage_max_pct}: escaping"
        return AdjustDecision(action=AdjustAction.ESCAPE, alerts=(alert(AlertCode.FS094, stage, msg, now),), detail=msg)
    if worst > cfg.slippage_warn_pct:
        msg = f"slippage {worst:.6f} would exceed warning {cfg.slippage_warn_pct}: waiting"
        return AdjustDecision(action=AdjustAction.WAIT, alerts=(alert(AlertCode.GR063, stage, msg, now),), detail=msg)
    detail = f"round {round}: {steps} tick(s)"
    return AdjustDecision(action=AdjustAction.PRICE_IMPROVE, new_prices=proposals, detail=detail)
