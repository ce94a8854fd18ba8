"""CLI commands of the ledger, audit log, reconciliation and TCA report.

``register(app)`` adds to the ``jetexec`` Typer app::

    jetexec ledger positions [--json] [--no-marks]
    jetexec ledger orders [--json] [--correlation-id ID] [--client-order-id ID] [--symbol S]
                          [--state STATE ...] [--since TS] [--until TS] [--history]
    jetexec ledger verify [--json]           # replay EXEC_EVT and compare with the live ledger
    jetexec audit [--correlation-id ID] [--client-order-id ID] [--event-type T] [--code C]
                  [--since TS] [--until TS] [--json] [--export FILE]
    jetexec recon [--json] [--snapshot] [--snapshot-file FILE] [--all-orders] [--grace S]
                  [--correlation-id ID] [--dry-run] [--fail-on-issues]
    jetexec report [CORRELATION_ID] [--batch IDS|FILE|all] [--since TS] [--until TS]
                   [--html FILE] [--json]

JSON output is one object a line, decimals as strings. Times (``--since``/``--until``) are epoch
seconds, ISO-8601 (UTC when naive) or relative (``-15m``, ``-2h``). See docs/ledger.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from bus.settings import DEFAULT_URL, NatsSettings, connect

console = Console(stderr=True)
out = Console()

NatsUrl = typer.Option(None, "--nats-url", envvar="JETEXEC_NATS_URL", help=f"NATS server URL (default {DEFAULT_URL})")


class CliError(Exception):
    pass


def _run(coro) -> None:
    """One clear line on stderr and exit 1 for any failure (the CLI contract), like jetexec.cli."""
    try:
        asyncio.run(coro)
    except typer.Exit:
        raise
    except CliError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("JETEXEC_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        console.print(f"[red]error:[/red] {exc.__class__.__name__}: {msg}", highlight=False)
        raise typer.Exit(1) from None


async def _connect(url: str | None):
    settings = NatsSettings.from_env(url)
    try:
        return await connect(settings, "jetexec-cli-ledger", max_reconnect=5)
    except Exception as exc:
        raise CliError(f"cannot connect to NATS at {settings.redacted_url()}: {exc.__class__.__name__}") from None


def _ts(text: str | None) -> float | None:
    from core.audit import parse_ts

    try:
        return parse_ts(text, now=time.time())
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _line(obj: Any) -> None:
    print(json.dumps(obj, separators=(",", ":"), default=str))


async def _marks(nc, symbols) -> dict[str, Decimal]:
    from workers.ledger import venue_ops

    marks: dict[str, Decimal] = {}
    for sym in sorted(set(symbols)):
        try:
            marks[sym] = (await venue_ops.quote(nc, sym, timeout=1.0)).reference_price
        except Exception:
            continue
    return marks


# ------------------------------------------------------------------------------------------------
# ledger positions | orders | verify
# ------------------------------------------------------------------------------------------------


def positions_cmd(
    as_json: bool = typer.Option(False, "--json", help="one position object a line"),
    no_marks: bool = typer.Option(False, "--no-marks", help="do not ask the venue for marks (unrealized PnL null for open positions)"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Positions per symbol and strategy (signed qty, VWAP entry, realized/unrealized PnL, fees, cash)."""

    async def main() -> None:
        from workers.ledger import query

        nc = await _connect(nats_url)
        try:
            book = await query.position_book(nc)
            marks = {} if no_marks else await _marks(nc, [k[0] for k in book.positions])
            rows = query.position_rows(book, marks)
        finally:
            await nc.drain()
        if as_json:
            for r in rows:
                _line(r)
            return
        table = Table(title=f"{len(rows)} positions")
        for col in ("symbol", "strategy_id", "qty", "avg_entry_price", "realized_pnl", "unrealized_pnl", "fees", "cash", "mark"):
            table.add_column(col)
        for r in rows:
            table.add_row(*(str(r.get(c) if r.get(c) is not None else "") for c in ("symbol", "strategy_id", "qty", "avg_entry_price", "realized_pnl", "unrealized_pnl", "fees", "cash", "mark")))
        out.print(table)

    _run(main())


def orders_cmd(
    as_json: bool = typer.Option(False, "--json", help="one order object a line"),
    correlation_id: Optional[str] = typer.Option(None, "--correlation-id"),
    client_order_id: Optional[str] = typer.Option(None, "--client-order-id"),
    symbol: Optional[str] = typer.Option(None, "--symbol"),
    state: Optional[list[str]] = typer.Option(None, "--state", help="repeatable: ACKNOWLEDGED, FILLED, ..."),
    since: Optional[str] = typer.Option(None, "--since", help="created at or after (epoch, ISO-8601, -15m)"),
    until: Optional[str] = typer.Option(None, "--until"),
    history: bool = typer.Option(False, "--history", help="include each order's full history"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Every order with its state and fills (look-ups by id, symbol, state, time range)."""

    async def main() -> None:
        from core.ledger import orders_by_state, orders_by_symbol, orders_in_time_range
        from schemas.enums import OrderState
        from workers.ledger import query

        nc = await _connect(nats_url)
        try:
            sts = await query.states(nc, [correlation_id] if correlation_id else None)
        finally:
            await nc.drain()
        rows = query.all_orders(sts)
        if client_order_id:
            rows = [o for o in rows if o.client_order_id == client_order_id]
        if symbol:
            rows = orders_by_symbol(rows, symbol)
        if state:
            try:
                rows = orders_by_state(rows, *(OrderState(s.upper()) for s in state))
            except ValueError as exc:
                raise CliError(f"unknown order state: {exc}") from None
        t0, t1 = _ts(since), _ts(until)
        if t0 is not None or t1 is not None:
            rows = orders_in_time_range(rows, t0 if t0 is not None else float("-inf"), t1 if t1 is not None else float("inf"))
        if as_json:
            for o in rows:
                _line(query.order_json(o, history))
            return
        table = Table(title=f"{len(rows)} orders")
        for col in ("client_order_id", "correlation_id", "symbol", "side", "qty", "filled", "avg price", "state", "price"):
            table.add_column(col)
        for o in rows:
            table.add_row(o.client_order_id, o.correlation_id, o.symbol, o.side.value, str(o.qty), str(o.filled_qty), str(o.avg_fill_price or ""), o.state.value, str(o.price or ""))
        out.print(table)

    _run(main())


def verify_cmd(as_json: bool = typer.Option(False, "--json"), nats_url: Optional[str] = NatsUrl) -> None:
    """Rebuild the ledger from the fact log and compare it with the live one (exit 1 on any difference)."""

    async def main() -> None:
        from workers.ledger import query

        nc = await _connect(nats_url)
        try:
            r = await query.replay_stream(nc)
            live_book = await query.position_book(nc)
            live_states = await query.states(nc)
        finally:
            await nc.drain()
        diffs = query.compare_books(live_book, query.replay_positions(r.fills))
        for cid, st in sorted(r.states.items()):
            live = live_states.get(cid)
            if live is None:
                diffs.append(f"{cid}: not in the live ledger (not yet processed?)")
                continue
            if live.last_seq != st.last_seq:
                diffs.append(f"{cid}: live at seq {live.last_seq}, stream at {st.last_seq}")
                continue
            if live.orders != st.orders:
                diffs.append(f"{cid}: orders differ")
            if [f.trade_id for f in live.fills] != [f.trade_id for f in st.fills]:
                diffs.append(f"{cid}: fills differ")
        report = {"ok": not diffs, "executions": len(r.states), "fills": len(r.fills), "positions": len(live_book.positions), "differences": diffs}
        if as_json:
            _line(report)
        else:
            out.print(f"{'ok' if not diffs else 'DIFFERENT'}: {len(r.states)} executions, {len(r.fills)} fills, {len(live_book.positions)} positions")
            for d in diffs:
                out.print(f"  {d}", highlight=False)
        if diffs:
            raise typer.Exit(1)

    _run(main())


# ------------------------------------------------------------------------------------------------
# audit
# ------------------------------------------------------------------------------------------------


def audit_cmd(
    correlation_id: Optional[str] = typer.Option(None, "--correlation-id"),
    client_order_id: Optional[str] = typer.Option(None, "--client-order-id"),
    event_type: Optional[str] = typer.Option(None, "--event-type", help="EXECUTION_TRANSITION, ORDER_TRANSITION, ORDER_REPLACED, ALERT, OPERATOR_ACTION, RECON_*"),
    code: Optional[str] = typer.Option(None, "--code", help="alert / action code, e.g. FS092, HALT"),
    since: Optional[str] = typer.Option(None, "--since", help="epoch seconds, ISO-8601 or -15m"),
    until: Optional[str] = typer.Option(None, "--until"),
    as_json: bool = typer.Option(False, "--json", help="one entry object a line"),
    export: Optional[Path] = typer.Option(None, "--export", help="write a deterministic JSON export to FILE"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Query the audit log (AUDIT stream), or export it deterministically."""

    async def main() -> None:
        from core import audit
        from workers.ledger import query

        t0, t1 = _ts(since), _ts(until)
        nc = await _connect(nats_url)
        try:
            entries = await query.audit_entries(nc, correlation_id, since=t0)
        finally:
            await nc.drain()
        rows = audit.filter_entries(entries, correlation_id=correlation_id, client_order_id=client_order_id, event_type=event_type, since=t0, until=t1, code=code)
        if export is not None:
            filters = {"correlation_id": correlation_id, "client_order_id": client_order_id, "event_type": event_type.upper() if event_type else None, "code": code, "since": t0, "until": t1}
            data = audit.export_bytes(rows, filters)
            export.write_bytes(data)
            console.print(f"exported {len(rows)} entries to {export}", highlight=False)
            return
        if as_json:
            for e in rows:
                _line(audit.entry_json(e))
            return
        table = Table(title=f"{len(rows)} audit entries")
        for col in ("seq", "ts", "correlation_id", "event_type", "from → to", "code", "client_order_id", "detail"):
            table.add_column(col)
        for e in rows:
            detail = e.payload.get("reason") or e.payload.get("message") or e.payload.get("event") or e.payload.get("detail") or ""
            move = f"{e.from_state or ''} → {e.to_state or ''}" if (e.from_state or e.to_state) else ""
            table.add_row(str(e.seq), time.strftime("%H:%M:%S", time.gmtime(e.ts)) + f".{int(e.ts * 1000) % 1000:03d}", e.correlation_id, e.event_type, move, e.code or "", e.client_order_id or "", str(detail)[:60])
        out.print(table)

    _run(main())


# ------------------------------------------------------------------------------------------------
# recon
# ------------------------------------------------------------------------------------------------


def recon_cmd(
    as_json: bool = typer.Option(False, "--json", help="the reconciliation report as one JSON object"),
    snapshot: bool = typer.Option(False, "--snapshot", help="also take a snapshot of orders, positions and the audit high-water mark"),
    snapshot_file: Optional[Path] = typer.Option(None, "--snapshot-file", help="write the snapshot JSON to FILE (implies --snapshot)"),
    all_orders: bool = typer.Option(False, "--all-orders", help="snapshot every order, not only open ones"),
    grace: float = typer.Option(2.0, "--grace", help="seconds a discrepancy must persist before it is acted on"),
    correlation_id: Optional[list[str]] = typer.Option(None, "--correlation-id", help="only these executions (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only: no back-fill, no audit entries"),
    fail_on_issues: bool = typer.Option(False, "--fail-on-issues", help="exit 3 when discrepancies remain"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Reconcile the ledger with the venue: back-fill missed fills, alert on discrepancies."""

    async def main() -> None:
        from workers.ledger.recon import Reconciler, take_snapshot

        nc = await _connect(nats_url)
        try:
            report = await Reconciler(nc, grace_s=grace, publish=not dry_run, cids=list(correlation_id) if correlation_id else None).run()
            snap = await take_snapshot(nc, store_it=not dry_run, include_all_orders=all_orders) if (snapshot or snapshot_file) else None
        finally:
            await nc.drain()
        if snap is not None and snapshot_file is not None:
            snapshot_file.write_text(json.dumps(snap, indent=1, sort_keys=True, default=str))
        if as_json:
            if snap is not None and snapshot_file is None:
                report = {**report, "snapshot": snap}
            _line(report)
        else:
            out.print(f"reconciled {report['orders_checked']} orders in {report['duration_s']}s: {len(report['issues'])} discrepancies, {len(report['backfilled_fills'])} fills and {len(report['backfilled_closes'])} closes back-filled" + ("" if report.get("venue_fills_op") else " (venue has no fills op: quantities compared, no fill back-fill)"), highlight=False)
            if report.get("executions_lagging"):
                out.print(f"skipped {len(report['executions_lagging'])} executions the ledger has not caught up with", highlight=False)
            if report["issues"]:
                table = Table(title="discrepancies")
                for col in ("code", "correlation_id", "client_order_id", "message"):
                    table.add_column(col)
                for i in report["issues"]:
                    table.add_row(i["code"], i["correlation_id"], i["client_order_id"] or "", i["message"])
                out.print(table)
            if snap is not None:
                out.print(f"snapshot: {len(snap['positions'])} positions, {len(snap['orders'])} orders, audit high-water {snap['audit_high_water']}, EXEC_EVT high-water {snap['exec_evt_high_water']}" + (f" → {snapshot_file}" if snapshot_file else ""), highlight=False)
        if fail_on_issues and report["issues"] and not all(i["details"].get("backfilled") for i in report["issues"]):
            raise typer.Exit(3)

    _run(main())


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


def _batch_ids(spec: str) -> list[str] | None:
    """``all`` → None; a file of ids or of JSON lines with ``correlation_id``; or a comma list."""
    if spec.strip().lower() == "all":
        return None
    p = Path(spec)
    if p.exists() and p.is_file():
        ids: list[str] = []
        for line in p.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    cid = json.loads(line).get("correlation_id")
                except ValueError:
                    continue
                if cid:
                    ids.append(cid)
            else:
                ids.append(line)
        return list(dict.fromkeys(ids))
    return [s.strip() for s in spec.split(",") if s.strip()]


async def build_report(nc, cids: list[str] | None, *, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """The report document: per-execution TCA + chart data, and the batch TCA (``None`` = every
    execution the ledger knows, filtered by creation time)."""
    from core.tca import batch_tca, execution_tca, to_json
    from workers.ledger import query, store, venue_ops
    from workers.ledger.tca_data import chart_data, tca_input

    states = await query.states(nc, cids)
    if cids is not None:
        for cid in cids:
            if cid not in states:  # the ledger has not seen it (yet): rebuild from the fact log
                st = await query.rebuild_state(nc, cid)
                if st is not None:
                    states[cid] = st
        missing = [c for c in cids if c not in states]
        if missing:
            raise CliError(f"no execution {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}")
        ordered = [states[c] for c in cids]
    else:
        ordered = sorted(states.values(), key=lambda s: (s.created_ts, s.cid))
    await query.attach_records(nc, {s.cid: s for s in ordered})
    ordered = [s for s in ordered if s.record is not None and (since is None or s.created_ts >= since) and (until is None or s.created_ts <= until)]
    kv = await nc.jetstream(timeout=5).key_value("LEDGER")
    items = []
    rows = []
    for st in ordered:
        doc = None
        try:
            entry = await kv.get(store.mkt_key(st.cid))
            doc = json.loads(entry.value) if entry.value else None
        except Exception:
            doc = None
        if doc is None and st.record is not None and st.symbol:
            t0 = st.created_ts
            t1 = st.record.completed_at or time.time()
            try:
                tape = await venue_ops.tape(nc, st.symbol, t0, t1, timeout=1.0)
                doc = {"symbol": st.symbol, "t0": t0, "t1": t1, "mids": [], "tape": tape}
            except venue_ops.OpUnavailable:
                doc = None
        tca = execution_tca(tca_input(st, doc))
        rows.append(tca)
        items.append({"tca": to_json(tca), "chart": chart_data(st, doc, tca)})
    return {"generated_at": time.time(), "batch": to_json(batch_tca(rows)), "executions": items}


async def write_report(nc_or_url, cids: list[str] | None, path: str | Path, title: str = "jetexec — transaction cost report") -> Path:
    """Build the report for ``cids`` and write the HTML page (``jetexec demo`` calls this)."""
    from jetexec.report_html import render

    nc = nc_or_url if not isinstance(nc_or_url, (str, type(None))) else await _connect(nc_or_url)
    try:
        doc = await build_report(nc, cids)
    finally:
        if nc is not nc_or_url:
            await nc.drain()
    p = Path(path)
    p.write_text(render(doc, title))
    return p


def report_cmd(
    correlation_id: Optional[str] = typer.Argument(None, help="one execution"),
    batch: Optional[str] = typer.Option(None, "--batch", help="comma-separated ids, a file (ids or `jetexec submit --json` lines), or all"),
    since: Optional[str] = typer.Option(None, "--since", help="with --batch all: executions created at or after"),
    until: Optional[str] = typer.Option(None, "--until"),
    html_file: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page with charts"),
    as_json: bool = typer.Option(False, "--json", help="one object a line: each execution (type=execution), then the batch (type=batch)"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Transaction-cost report for one execution or a batch."""
    if correlation_id is None and batch is None:
        console.print("[red]error:[/red] give a CORRELATION_ID or --batch", highlight=False)
        raise typer.Exit(2)

    async def main() -> None:
        from jetexec.report_html import render

        ids = [correlation_id] if correlation_id else _batch_ids(batch or "all")
        nc = await _connect(nats_url)
        try:
            doc = await build_report(nc, ids, since=_ts(since), until=_ts(until))
        finally:
            await nc.drain()
        if not doc["executions"]:
            raise CliError("no executions to report")
        if html_file is not None:
            html_file.write_text(render(doc))
            console.print(f"report written to {html_file}", highlight=False)
        if as_json:
            for i in doc["executions"]:
                _line({"type": "execution", **i["tca"]})
            if correlation_id is None:
                _line({"type": "batch", **doc["batch"]})
            return
        _print_report(doc, single=correlation_id is not None)

    _run(main())


def _print_report(doc: dict[str, Any], single: bool) -> None:
    table = Table(title="transaction costs (bps: + = cost)")
    for col in ("correlation_id", "symbol", "side", "state", "filled/target", "avg", "arrival", "arr bps", "VWAP", "vwap bps", "particip.", "secs", "children", "c/r", "rejects"):
        table.add_column(col)
    for i in doc["executions"]:
        t = i["tca"]
        table.add_row(
            t["correlation_id"], t["symbol"], t["side"], t["state"], f'{t["filled_qty"]}/{t["target_qty"]}', str(t.get("avg_price") or ""), str(t.get("arrival_price") or ""),
            str(t.get("arrival_slippage_bps") or ""), str(t.get("interval_vwap") or ""), str(t.get("vwap_slippage_bps") or ""), str(t.get("participation_rate") or ""),
            str(t.get("completion_s") or ""), str(t["children"]), str(t.get("cancel_replace_ratio") or ""), ",".join(f"{k}:{v}" for k, v in t["rejects"].items()),
        )
    out.print(table)
    if not single:
        b = doc["batch"]
        lat = b["latency_ms"]
        out.print(f'batch: {b["executions"]} executions {b["states"]}; notional {b["filled_notional"]}, fees {b["fees"]}; arrival {b["arrival_slippage_bps"]} bps, VWAP {b["vwap_slippage_bps"]} bps (notional-weighted); fill rate {b["fill_rate_mean"]}; cancel/replace {b["cancel_replace_ratio"]}; rejects {b["rejects"]}', highlight=False)
        out.print("latency ms p50/p90/p99: " + "; ".join(f'{k} {v["p50"]}/{v["p90"]}/{v["p99"]}' for k, v in lat.items()), highlight=False)


# ------------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``ledger positions|orders|verify``, ``audit``, ``recon`` and ``report`` to ``app`` (idempotent)."""
    if getattr(app, "_jetexec_ledger_registered", False):
        return
    app._jetexec_ledger_registered = True  # type: ignore[attr-defined]
    ledger_app = typer.Typer(no_args_is_help=True, help="Order and position ledgers")
    ledger_app.command("positions")(positions_cmd)
    ledger_app.command("orders")(orders_cmd)
    ledger_app.command("verify")(verify_cmd)
    app.add_typer(ledger_app, name="ledger")
    app.command("audit")(audit_cmd)
    app.command("recon")(recon_cmd)
    app.command("report")(report_cmd)


if __name__ == "__main__":  # python -m jetexec.cli_ledger ... (before the line in jetexec/cli.py exists)
    from jetexec.cli import app as _app

    register(_app)
    _app()
