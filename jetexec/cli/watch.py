"""``jetexec watch``: a live terminal view of executions, fills and the safety state.

The view is a fold of KV ``EXECUTIONS`` updates (:class:`WatchModel`, pure) rendered by
:func:`frame`; the command feeds it from :meth:`JetexecClient.watch_records` and polls the safety
state once a second. Fills are the increases of each child's filled quantity between two records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.coordinator import to_result
from core.execution_fsm import TERMINAL
from core.order_fsm import ORDER_TERMINAL
from jetexec import views
from jetexec.cli.common import ConfigPath, NatsUrl, connected, out, run
from jetexec.cli.executions import parse_states, symbol_specs
from jetexec.client import SafetyStatus, record_matches
from schemas.codec import encode
from schemas.enums import ExecutionState
from schemas.messages import ExecutionRecord


@dataclass(frozen=True)
class FillRow:
    ts: float
    cid: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal


class WatchModel:
    """What the view shows: the matching executions and the fills seen since the view started."""

    def __init__(self, strategy_id: str | None = None, symbol: str | None = None, states: set[ExecutionState] | None = None, max_fills: int = 200) -> None:
        self.strategy_id, self.symbol, self.states = strategy_id, symbol, states
        self.records: dict[str, ExecutionRecord] = {}
        self.fills: deque[FillRow] = deque(maxlen=max_fills)
        self.synced = False
        self.safety = SafetyStatus()

    def apply(self, rec: ExecutionRecord | None) -> None:
        if rec is None:  # every current record has been seen
            self.synced = True
            return
        if not record_matches(rec, strategy_id=self.strategy_id, symbol=self.symbol):
            return
        before = self.records.get(rec.cid)
        if before is not None and rec.version < before.version:
            return  # an older revision arriving late never rolls the view back
        if self.synced:
            self._fills(before, rec)
        self.records[rec.cid] = rec

    def _fills(self, before: ExecutionRecord | None, rec: ExecutionRecord) -> None:
        old = {c.client_order_id: c for c in before.children} if before else {}
        for c in rec.children:
            prev = old.get(c.client_order_id)
            q0, n0 = (prev.filled_qty, prev.notional) if prev else (Decimal(0), Decimal(0))
            if c.filled_qty > q0:
                dq = c.filled_qty - q0
                self.fills.append(FillRow(c.last_fill_at or rec.updated_at, rec.cid, c.client_order_id, rec.intent.symbol if rec.intent else "", rec.intent.side.value if rec.intent else "", dq, (c.notional - n0) / dq))

    def shown(self, limit: int) -> list[ExecutionRecord]:
        """Live executions first (most recently updated first), then the most recent terminal ones."""
        rows = [r for r in self.records.values() if self.states is None or r.state in self.states]
        rows.sort(key=lambda r: (r.state not in TERMINAL, r.updated_at), reverse=True)
        return rows[:limit]

    def counts(self) -> Counter:
        return Counter(r.state.value for r in self.records.values())


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}" if ts else ""


def frame(model: WatchModel, url: str, specs: dict | None = None, rows: int = 20, fills: int = 8, now: float | None = None) -> RenderableType:
    """One screen: the safety line, the executions table and the latest fills."""
    now = time.time() if now is None else now
    s = model.safety
    head = Text.assemble(
        ("jetexec watch ", "bold"), (url, "dim"), "  safety ", views.styled_state(s.state.value),
        f"  mode {s.mode.value if s.mode else '?'}", "  halts ", ("ALL" if "ALL" in s.halted else "none", "bold red" if "ALL" in s.halted else ""),
        (f" ({fences} execution fence{'s' if fences != 1 else ''})" if (fences := len([h for h in s.halted if h != "ALL"])) else ""),
        ("  risk hook override" if s.risk_hook_override else ""), f"  {_clock(now)}Z",
    )
    counts = model.counts()
    live = sum(v for k, v in counts.items() if ExecutionState(k) not in TERMINAL)
    filters = " ".join(f"{k}={v}" for k, v in (("strategy", model.strategy_id), ("symbol", model.symbol)) if v)
    if model.states:
        filters += (" " if filters else "") + "state=" + ",".join(sorted(x.value for x in model.states))
    summary = Text(f"{len(model.records)} executions, {live} live: " + " · ".join(f"{k} {v}" for k, v in sorted(counts.items())) + (f"   filter {filters}" if filters else "") + ("" if model.synced else "   (loading…)"))

    table = Table(padding=(0, 1), expand=False)
    table.add_column("correlation_id", no_wrap=True, min_width=views.ID_WIDTH)
    table.add_column("strategy", overflow="fold")
    table.add_column("order", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("filled/qty", justify="right", no_wrap=True)
    table.add_column("open/children", justify="right", no_wrap=True)
    table.add_column("alerts", overflow="fold")
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("reason / detail", overflow="fold", ratio=1)
    for r in model.shown(rows):
        res = to_result(r)
        open_children = sum(1 for c in r.children if c.state not in ORDER_TERMINAL)
        sym = res.symbol
        target = views.qty(res.qty, sym, specs) if res.qty is not None else ""
        age = f"{max(0.0, (r.completed_at or now) - r.created_at):.1f}s" if r.created_at else ""
        reason = " ".join(x for x in (res.reason_code.value if res.reason_code else "", res.detail) if x)
        table.add_row(
            r.cid, res.strategy_id or "", views.order_label(res, specs), views.styled_state(r.state.value), views.qty(res.filled_qty, sym, specs) + (f"/{target}" if target else ""),
            f"{open_children}/{len(r.children)}", ",".join(a.value for a in res.alerts), age, reason,
        )
    parts: list[RenderableType] = [head, summary, table]
    recent = list(model.fills)[-fills:][::-1]
    if recent:
        ft = Table(title="latest fills", title_justify="left", padding=(0, 1))
        for col in ("time", "correlation_id", "client_order_id", "fill"):
            ft.add_column(col, no_wrap=True)
        for f in recent:
            ft.add_row(_clock(f.ts), f.cid, f.client_order_id, f"{f.side} {views.qty(f.qty, f.symbol, specs)} {f.symbol} @ {views.price(f.price, f.symbol, specs)}")
        parts.append(ft)
    else:
        parts.append(Text("no fills since the view started", style="dim"))
    return Group(*parts)


def watch(
    strategy: Optional[str] = typer.Option(None, "--strategy", help="only this strategy_id"),
    symbol: Optional[str] = typer.Option(None, "--symbol", help="only this symbol"),
    state: Optional[list[str]] = typer.Option(None, "--state", help="only these states (repeatable; LIVE = not terminal)"),
    rows: int = typer.Option(0, "--rows", help="executions shown (default: what fits the terminal)"),
    once: bool = typer.Option(False, "--once", help="print one frame and exit (for scripts; the default on a pipe)"),
    as_json: bool = typer.Option(False, "--json", help="instead: one result object a line for every update (like a tail), until Ctrl-C"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Live view of executions (state, filled/qty, children, alerts), fills and the safety state.

    Ctrl-C ends it. Reads KV EXECUTIONS (kept fresh by the coordinator) and KV SAFETY."""
    states = parse_states(state)

    async def main() -> None:
        model = WatchModel(strategy, symbol, states)
        async with connected(nats_url, config) as client:
            url = client.nc.connected_url.netloc if client.nc.connected_url else ""
            if as_json:
                await _tail(client, model)
                return
            specs = await symbol_specs(client)
            model.safety = await client.safety()
            if once or not out.is_terminal:
                async with contextlib.aclosing(client.watch_records()) as records:
                    async for rec in records:
                        model.apply(rec)
                        if rec is None:
                            break
                out.print(frame(model, url, specs, rows=rows or 50))
                return
            await _live(client, model, url, specs, rows)

    run(main())


async def _tail(client, model: WatchModel) -> None:
    async with contextlib.aclosing(client.watch_records()) as records:
        async for rec in records:
            if rec is None or not record_matches(rec, strategy_id=model.strategy_id, symbol=model.symbol, states=model.states):
                continue
            print(encode(to_result(rec)).decode(), flush=True)


async def _live(client, model: WatchModel, url: str, specs: dict, rows: int) -> None:
    async def feed() -> None:
        async with contextlib.aclosing(client.watch_records()) as records:
            async for rec in records:
                model.apply(rec)

    async def safety() -> None:
        while True:
            try:
                model.safety = await client.safety()
            except Exception:
                pass  # a restarting server: keep the last state on screen
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(feed()), asyncio.create_task(safety())]
    try:
        with Live(console=out, refresh_per_second=4, screen=False, transient=False) as live:
            while not any(t.done() for t in tasks):
                fit = rows or max(5, out.size.height - 16)
                live.update(frame(model, url, specs, rows=fit))
                await asyncio.sleep(0.25)
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
