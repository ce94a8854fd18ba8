"""Transaction-cost analysis, pure: per execution and per batch.

No I/O. Inputs are plain structs (:class:`TcaExecution`, built by ``workers.ledger.tca_data`` from
the ledger's state and the market data it captured). Money and prices are Decimal; times are epoch
seconds (floats), latencies are reported in milliseconds.

Definitions (sign convention: **positive = cost**, for both sides)
------------------------------------------------------------------
* ``avg_price`` = Σ qty·price / Σ qty over the execution's fills (fees excluded).
* ``arrival_slippage_bps`` = s · (avg_price − arrival) / arrival · 10⁴, s = +1 BUY, −1 SELL, where
  ``arrival`` is the venue mid when the intent was accepted (``ExecutionCreated.arrival_price``).
* ``vwap_slippage_bps`` = s · (avg_price − VWAP) / VWAP · 10⁴, VWAP = the market's interval VWAP over
  [created_at, completed_at] from the venue tape (``vwap_source = "venue_tape"``). Without the tape,
  the time-weighted mid of the recorded quotes stands in (``vwap_source = "quote_twap"``).
* ``fill_rate`` = filled / target quantity (target = the intent's quantity).
* ``participation_rate`` = filled / (market volume + filled) over the same window — the paper venue's
  tape does not contain our own trades, so they are added to the denominator. None without the tape
  or when the market printed nothing in the window (very short executions).
* ``completion_s`` = completed_at − created_at (None while the execution is live).
* ``children``: planned child orders; ``orders_sent``: orders that reached SUBMITTED;
  ``cancel_replace_ratio`` = (client cancels + replaces) / orders_sent. IOC remainders cancelled by
  the venue and never-sent children cancelled by an escape are not client cancels.
* ``rejects``: rejected/failed orders by reason code.
* Latencies: intent→ack (``first_ack_at − created_at``), ack→first fill, first fill→done,
  intent→first fill, intent→done, in ms (``ack_to_first_fill`` is None when a fill overtook its ack,
  which the order state machine allows). Per batch: nearest-rank percentiles p50/p90/p99 and max.
* Fees in bps of filled notional: ``fees_bps`` = fees / notional · 10⁴ (not in the slippage figures).
* Batch slippage figures are notional-weighted averages over the executions that have them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from schemas.enums import Side

__all__ = [
    "BatchTca",
    "ExecutionTca",
    "MarketWindow",
    "TcaChild",
    "TcaExecution",
    "TcaFill",
    "batch_tca",
    "bps",
    "execution_tca",
    "percentile",
    "plain",
    "time_weighted_mid",
    "to_json",
]

BPS = Decimal(10000)
BPS_QUANTUM = Decimal("0.0001")
RATE_QUANTUM = Decimal("0.000001")
PRICE_QUANTUM = Decimal("0.00000001")


class TcaFill(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    client_order_id: str = ""


class TcaChild(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    qty: Decimal
    state: str
    sent: bool = False
    client_cancelled: bool = False
    replaces: int = 0
    reject_reason: str | None = None
    price: Decimal | None = None
    scheduled_at: float = 0.0


class MarketWindow(msgspec.Struct, frozen=True, kw_only=True):
    t0: float
    t1: float
    vwap: Decimal | None = None
    volume: Decimal | None = None
    prints: int = 0
    tape_from: float | None = None
    mids: tuple[tuple[float, Decimal], ...] = ()


class TcaExecution(msgspec.Struct, frozen=True, kw_only=True):
    correlation_id: str
    symbol: str
    side: Side
    strategy_id: str = ""
    state: str = ""
    target_qty: Decimal = Decimal(0)
    arrival_price: Decimal | None = None
    created_at: float = 0.0
    first_ack_at: float = 0.0
    first_fill_at: float = 0.0
    completed_at: float = 0.0
    children: tuple[TcaChild, ...] = ()
    fills: tuple[TcaFill, ...] = ()
    market: MarketWindow | None = None
    reason_code: str | None = None
    strategy: str | None = None


class ExecutionTca(msgspec.Struct, frozen=True, kw_only=True):
    correlation_id: str
    symbol: str
    side: str
    strategy_id: str
    strategy: str | None
    state: str
    reason_code: str | None
    target_qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal | None
    notional: Decimal
    fees: Decimal
    fees_bps: Decimal | None
    fill_rate: Decimal
    arrival_price: Decimal | None
    arrival_slippage_bps: Decimal | None
    arrival_cost: Decimal | None  # money: s · (avg − arrival) · filled
    interval_vwap: Decimal | None
    vwap_source: str | None
    vwap_slippage_bps: Decimal | None
    market_volume: Decimal | None
    market_prints: int
    participation_rate: Decimal | None
    completion_s: float | None
    children: int
    orders_sent: int
    fills: int
    client_cancels: int
    replaces: int
    cancel_replace_ratio: Decimal | None
    rejects: dict[str, int]
    latency_ms: dict[str, float | None]
    window: tuple[float, float]


class BatchTca(msgspec.Struct, frozen=True, kw_only=True):
    executions: int
    states: dict[str, int]
    filled_notional: Decimal
    fees: Decimal
    arrival_slippage_bps: Decimal | None  # notional-weighted
    vwap_slippage_bps: Decimal | None  # notional-weighted, executions with a VWAP
    arrival_cost: Decimal
    fill_rate_mean: Decimal | None
    fully_filled: int
    participation_rate_mean: Decimal | None
    children: int
    orders_sent: int
    client_cancels: int
    replaces: int
    cancel_replace_ratio: Decimal | None
    rejects: dict[str, int]
    failed_by_reason: dict[str, int]  # executions that FAILED (intent rejected, precheck, ...), by reason code
    completion_s: dict[str, float | None]
    latency_ms: dict[str, dict[str, float | None]]


def plain(d: Decimal | None) -> Decimal | None:
    """At most 8 decimal places, trailing zeros dropped, never exponent notation."""
    if d is None:
        return None
    return Decimal(format(d.quantize(PRICE_QUANTUM).normalize(), "f"))


def _sign(side: Side | str) -> int:
    return 1 if Side(side) is Side.BUY else -1


def bps(side: Side | str, price: Decimal, reference: Decimal) -> Decimal:
    """Signed cost in basis points of ``price`` against ``reference`` (positive = worse)."""
    return (_sign(side) * (price - reference) / reference * BPS).quantize(BPS_QUANTUM)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in (0, 100]); None for no values."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(vals)))
    return vals[min(rank, len(vals)) - 1]


def time_weighted_mid(mids: Sequence[tuple[float, Decimal]], t0: float, t1: float) -> Decimal | None:
    """Mean of the mid over [t0, t1], each sample holding until the next (step function); the last
    sample before t0 counts from t0. None without a sample at or before t1."""
    pts = sorted(mids)
    if not pts or t1 < t0:
        return None
    before = [p for p in pts if p[0] <= t0]
    inside = [p for p in pts if t0 < p[0] <= t1]
    seq = ([(t0, before[-1][1])] if before else []) + inside
    if not seq:
        return None
    if t1 == t0 or len(seq) == 1:
        return seq[-1][1]
    total = Decimal(0)
    span = Decimal(0)
    for (ta, pa), (tb, _pb) in zip(seq, seq[1:] + [(t1, seq[-1][1])]):
        dt = Decimal(repr(max(0.0, tb - ta)))
        total += pa * dt
        span += dt
    return (total / span).quantize(PRICE_QUANTUM) if span > 0 else seq[-1][1]


def _ms(a: float, b: float) -> float | None:
    if not a or not b or b < a:
        return None
    return round((b - a) * 1000.0, 3)


def execution_tca(x: TcaExecution) -> ExecutionTca:
    filled = sum((f.qty for f in x.fills), Decimal(0))
    notional = sum((f.qty * f.price for f in x.fills), Decimal(0))
    fees = sum((f.fee for f in x.fills), Decimal(0))
    avg = plain(notional / filled) if filled > 0 else None
    exact_avg = notional / filled if filled > 0 else None
    s = _sign(x.side)
    arrival_bps = bps(x.side, exact_avg, x.arrival_price) if exact_avg is not None and x.arrival_price else None
    arrival_cost = plain(s * (notional - x.arrival_price * filled)) if filled > 0 and x.arrival_price else None
    t0 = x.created_at
    t1 = x.completed_at or (max((f.ts for f in x.fills), default=0.0) or x.created_at)
    vwap = None
    source = None
    volume = None
    prints = 0
    m = x.market
    if m is not None:
        if m.vwap is not None:
            vwap, source = m.vwap, "venue_tape"
        elif m.mids:
            vwap = plain(time_weighted_mid(m.mids, t0, t1))
            source = "quote_twap" if vwap is not None else None
        volume = m.volume
        prints = m.prints
    vwap_bps = bps(x.side, exact_avg, vwap) if exact_avg is not None and vwap else None
    participation = None
    if volume is not None and volume > 0:
        participation = (filled / (volume + filled)).quantize(RATE_QUANTUM)
    sent = sum(1 for c in x.children if c.sent)
    cancels = sum(1 for c in x.children if c.client_cancelled)
    replaces = sum(c.replaces for c in x.children)
    rejects: dict[str, int] = {}
    for c in x.children:
        if c.state in ("REJECTED", "FAILED"):
            code = c.reject_reason or "UNKNOWN"
            rejects[code] = rejects.get(code, 0) + 1
    first_fill = x.first_fill_at or (min((f.ts for f in x.fills), default=0.0))
    latency = {
        "intent_to_ack": _ms(x.created_at, x.first_ack_at),
        "ack_to_first_fill": _ms(x.first_ack_at, first_fill),
        "first_fill_to_done": _ms(first_fill, x.completed_at),
        "intent_to_first_fill": _ms(x.created_at, first_fill),
        "intent_to_done": _ms(x.created_at, x.completed_at),
    }
    return ExecutionTca(
        correlation_id=x.correlation_id,
        symbol=x.symbol,
        side=Side(x.side).value,
        strategy_id=x.strategy_id,
        strategy=x.strategy,
        state=x.state,
        reason_code=x.reason_code,
        target_qty=x.target_qty,
        filled_qty=filled,
        avg_price=avg,
        notional=notional,
        fees=fees,
        fees_bps=(fees / notional * BPS).quantize(BPS_QUANTUM) if notional else None,
        fill_rate=(filled / x.target_qty).quantize(RATE_QUANTUM) if x.target_qty > 0 else Decimal(0),
        arrival_price=x.arrival_price,
        arrival_slippage_bps=arrival_bps,
        arrival_cost=arrival_cost,
        interval_vwap=vwap,
        vwap_source=source,
        vwap_slippage_bps=vwap_bps,
        market_volume=volume,
        market_prints=prints,
        participation_rate=participation,
        completion_s=round(x.completed_at - x.created_at, 6) if x.completed_at and x.created_at else None,
        children=len(x.children),
        orders_sent=sent,
        fills=len(x.fills),
        client_cancels=cancels,
        replaces=replaces,
        cancel_replace_ratio=(Decimal(cancels + replaces) / sent).quantize(RATE_QUANTUM) if sent else None,
        rejects=dict(sorted(rejects.items())),
        latency_ms=latency,
        window=(t0, t1),
    )


def _weighted(rows: Iterable[tuple[Decimal | None, Decimal]]) -> Decimal | None:
    num = Decimal(0)
    den = Decimal(0)
    for value, weight in rows:
        if value is None or weight <= 0:
            continue
        num += value * weight
        den += weight
    return (num / den).quantize(BPS_QUANTUM) if den > 0 else None


def _dist(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    return {"n": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90), "p99": percentile(vals, 99), "max": max(vals) if vals else None}


def batch_tca(rows: Sequence[ExecutionTca]) -> BatchTca:
    states: dict[str, int] = {}
    rejects: dict[str, int] = {}
    failed: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
        if r.state == "FAILED":
            failed[r.reason_code or "UNKNOWN"] = failed.get(r.reason_code or "UNKNOWN", 0) + 1
        for k, v in r.rejects.items():
            rejects[k] = rejects.get(k, 0) + v
    sent = sum(r.orders_sent for r in rows)
    cancels = sum(r.client_cancels for r in rows)
    replaces = sum(r.replaces for r in rows)
    rates = [r.fill_rate for r in rows if r.target_qty > 0]
    parts = [r.participation_rate for r in rows if r.participation_rate is not None]
    latency_keys = ("intent_to_ack", "ack_to_first_fill", "first_fill_to_done", "intent_to_first_fill", "intent_to_done")
    return BatchTca(
        executions=len(rows),
        states=dict(sorted(states.items())),
        filled_notional=sum((r.notional for r in rows), Decimal(0)),
        fees=sum((r.fees for r in rows), Decimal(0)),
        arrival_slippage_bps=_weighted((r.arrival_slippage_bps, r.notional) for r in rows),
        vwap_slippage_bps=_weighted((r.vwap_slippage_bps, r.notional) for r in rows),
        arrival_cost=sum((r.arrival_cost for r in rows if r.arrival_cost is not None), Decimal(0)),
        fill_rate_mean=(sum(rates, Decimal(0)) / len(rates)).quantize(RATE_QUANTUM) if rates else None,
        fully_filled=sum(1 for r in rows if r.target_qty > 0 and r.filled_qty >= r.target_qty),
        participation_rate_mean=(sum(parts, Decimal(0)) / len(parts)).quantize(RATE_QUANTUM) if parts else None,
        children=sum(r.children for r in rows),
        orders_sent=sent,
        client_cancels=cancels,
        replaces=replaces,
        cancel_replace_ratio=(Decimal(cancels + replaces) / sent).quantize(RATE_QUANTUM) if sent else None,
        rejects=dict(sorted(rejects.items())),
        failed_by_reason=dict(sorted(failed.items())),
        completion_s=_dist([r.completion_s for r in rows]),
        latency_ms={k: _dist([r.latency_ms.get(k) for r in rows]) for k in latency_keys},
    )


_enc = msgspec.json.Encoder(decimal_format="string")


def to_json(obj: Any) -> Any:
    """Builtins with decimals as strings (the CLI's JSON contract)."""
    return msgspec.json.decode(_enc.encode(obj))
