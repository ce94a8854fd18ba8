"""Human views of executions, for the CLI and the demo: rich tables, and decimals as a person reads them.

JSON output never comes through here: it stays exact (``schemas.codec.encode``). A human view rounds
prices to the symbol's tick and quantities to its lot (``SymbolInfo`` from the venue), money to the
cent, and never shows exponent notation or a cut id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from schemas.messages import ExecutionRecord, ExecutionResult
from schemas.venue import SymbolInfo

Specs = Mapping[str, SymbolInfo]
CENT = Decimal("0.01")
MAX_PLACES = Decimal("0.00000001")  # without a tick: at most 8 decimal places
ID_WIDTH = 24  # correlation ids are 24 characters ("x" + 23 hex)

STATE_STYLE = {
    "COMPLETE": "green",
    "FAILED": "red",
    "ESCAPED": "yellow",
    "ESCAPING": "yellow",
    "NORMAL": "green",
    "WARNING": "yellow",
    "FAIL": "red",
    "LOCKDOWN": "bold red",
}


def plain(d: Decimal | None) -> str:
    """A decimal in positional notation ("1000", never "1E+3"), at most 8 places, no trailing zeros."""
    if d is None:
        return ""
    if not d.is_finite():
        return str(d)
    try:
        q = d.quantize(MAX_PLACES, rounding=ROUND_HALF_EVEN) if d.as_tuple().exponent < -8 else d  # type: ignore[operator]
    except InvalidOperation:
        q = d
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def to_step(d: Decimal | None, step: Decimal | None) -> str:
    """``d`` rounded to a multiple of ``step`` (a tick or lot size), shown with the step's places."""
    if d is None:
        return ""
    if step is None or step <= 0:
        return plain(d)
    places = max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    rounded = (d / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step
    return f"{rounded:.{places}f}"


def price(d: Decimal | None, symbol: str | None, specs: Specs | None) -> str:
    spec = specs.get(symbol) if specs and symbol else None
    return to_step(d, spec.tick_size if spec else None)


def qty(d: Decimal | None, symbol: str | None, specs: Specs | None) -> str:
    spec = specs.get(symbol) if specs and symbol else None
    if spec is None or d is None:
        return plain(d)
    # A quantity off the lot grid is shown as it is: rounding it would hide what was asked for.
    return to_step(d, spec.lot_size) if (d % spec.lot_size) == 0 else plain(d)


def money(d: Decimal | None) -> str:
    return to_step(d, CENT)


def styled_state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def order_label(r: ExecutionResult, specs: Specs | None = None) -> str:
    """``BUY 50 AAPL`` or ``BUY 80 TSLA @ 260.00`` (LIMIT); ``(invalid intent)`` when the intent
    never parsed (the gateway rejected it: the reason code says why)."""
    if r.side is None or r.symbol is None:
        return "(invalid intent)"
    label = f"{r.side.value} {qty(r.qty, r.symbol, specs)} {r.symbol}"
    if r.price is not None:
        label += f" @ {price(r.price, r.symbol, specs)}"
    return label


def why(r: ExecutionResult) -> str:
    """Reason code, alert codes and the detail text, in that order (what an operator acts on)."""
    parts = [r.reason_code.value if r.reason_code else "", ",".join(a.value for a in r.alerts)]
    text = " ".join(p for p in parts if p)
    if r.detail:
        text = f"{text}: {r.detail}" if text else r.detail
    return text


def results_table(results: list[ExecutionResult], specs: Specs | None = None, title: str | None = None) -> Table:
    table = Table(title=title if title is not None else f"{len(results)} executions", padding=(0, 1))
    table.add_column("correlation_id", no_wrap=True, min_width=ID_WIDTH)
    table.add_column("order", overflow="fold")
    table.add_column("strategy", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("filled", no_wrap=True, justify="right")
    table.add_column("avg price", no_wrap=True, justify="right")
    table.add_column("reason / alerts / detail", overflow="fold", ratio=1)
    for r in results:
        target = r.qty if r.qty is not None else None
        filled = qty(r.filled_qty, r.symbol, specs) + (f"/{qty(target, r.symbol, specs)}" if target is not None else "")
        table.add_row(r.correlation_id, order_label(r, specs), r.strategy_id or "", styled_state(r.state.value), filled, price(r.avg_fill_price, r.symbol, specs), why(r))
    return table


def _ts(epoch: float) -> str:
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def execution_detail(r: ExecutionResult, record: ExecutionRecord | None = None, specs: Specs | None = None) -> RenderableType:
    """One execution for ``jetexec status``: the order, the outcome, every alert with its message,
    and every child order."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("correlation_id", r.correlation_id)
    head.add_row("order", order_label(r, specs) + (f"  ({r.order_type.value})" if r.order_type else ""))
    strategy = r.strategy_id or ""
    if r.strategy:
        strategy += f"  split {r.strategy.value}"
    if record is not None:
        strategy += f"  mode {record.mode.value}"
    head.add_row("strategy", strategy)
    head.add_row("state", styled_state(r.state.value))
    target = f" of {qty(r.qty, r.symbol, specs)}" if r.qty is not None else ""
    avg = f" at avg {price(r.avg_fill_price, r.symbol, specs)}" if r.avg_fill_price is not None else ""
    head.add_row("filled", f"{qty(r.filled_qty, r.symbol, specs)}{target}{avg}  (fill rate {plain(r.fill_rate)})")
    if r.reason_code:
        head.add_row("reason", r.reason_code.value)
    if r.detail:
        head.add_row("detail", r.detail)
    if record is not None and record.arrival_price is not None:
        head.add_row("arrival price", price(record.arrival_price, r.symbol, specs))
    took = f"  ({r.updated_at - r.created_at:.2f} s)" if r.created_at and r.updated_at >= r.created_at else ""
    head.add_row("created / updated", f"{_ts(r.created_at)} / {_ts(r.updated_at)}{took}")
    head.add_row("idempotency_key", r.idempotency_key)
    parts: list[RenderableType] = [head]
    alerts = record.alerts if record is not None else []
    if alerts:
        at = Table(title="alerts", title_justify="left", padding=(0, 1))
        for col in ("code", "severity", "stage", "message"):
            at.add_column(col, overflow="fold", no_wrap=col != "message")
        for a in alerts:
            at.add_row(a.code.value, a.severity.value, a.stage, a.message)
        parts.append(at)
    elif r.alerts:
        head.add_row("alerts", ", ".join(a.value for a in r.alerts))
    parts.append(children_table(r, specs))
    return Group(*parts)


def children_table(r: ExecutionResult, specs: Specs | None = None) -> RenderableType:
    if not r.children:
        return Text("no child orders", style="dim")
    ct = Table(title=f"{len(r.children)} child orders", title_justify="left", padding=(0, 1))
    ct.add_column("client_order_id", no_wrap=True)
    ct.add_column("state", no_wrap=True)
    ct.add_column("qty", justify="right", no_wrap=True)
    ct.add_column("filled", justify="right", no_wrap=True)
    ct.add_column("avg price", justify="right", no_wrap=True)
    ct.add_column("limit", justify="right", no_wrap=True)
    for c in r.children:
        ct.add_row(c.client_order_id, styled_state(c.state.value), qty(c.qty, r.symbol, specs), qty(c.filled_qty, r.symbol, specs), price(c.avg_fill_price, r.symbol, specs), price(c.price, r.symbol, specs))
    return ct


def symbols_table(infos: Iterable[SymbolInfo]) -> Table:
    table = Table(title="symbols")
    for col in ("symbol", "reference_price", "lot_size", "tick_size", "bid", "ask"):
        table.add_column(col, no_wrap=True, justify="left" if col == "symbol" else "right")
    for i in infos:
        table.add_row(i.symbol, to_step(i.reference_price, i.tick_size), plain(i.lot_size), plain(i.tick_size), to_step(i.bid, i.tick_size), to_step(i.ask, i.tick_size))
    return table
