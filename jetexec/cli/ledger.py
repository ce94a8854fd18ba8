"""Commands of the ledgers, the audit log, reconciliation and the TCA report::

    jetexec ledger positions [--json] [--no-marks]
    jetexec ledger orders [--json] [--correlation-id ID] [--client-order-id ID] [--symbol S]
                          [--state STATE ...] [--since TS] [--until TS] [--history]
    jetexec ledger verify [--json]           # replay EXEC_EVT and compare with the live ledger
    jetexec audit [--correlation-id ID] [--client-order-id ID] [--event-type T] [--code C]
                  [--since TS] [--until TS] [--json] [--export FILE]
    jetexec recon [--json] [--snapshot] [--snapshot-file FILE] [--all-orders] [--grace S]
                  [--correlation-id ID] [--dry-run] [--fail-on-issues]
    jetexec report [CORRELATION_ID] [--batch IDS|FILE|all] [--since TS] [--until TS]
                   [--html FILE] [--json] [--wide]

JSON output is one object a line, decimals as strings (exact). Times (``--since``/``--until``) are
epoch seconds, ISO-8601 (UTC when naive) or relative (``-15m``, ``-2h``). See docs/ledger.md.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from core import audit
from core.audit import parse_ts
from core.ledger import orders_by_state, orders_by_symbol, orders_in_time_range
from jetexec import views
from jetexec.cli.common import CliError, ConfigPath, ExitCode, NatsUrl, connected, correlation_id, err, fail, json_line, run, show
from jetexec.cli.executions import symbol_specs
from jetexec.report import UnknownExecutions, build_report
from jetexec.report_html import render
from schemas.enums import OrderState
from workers.ledger import query, venue_ops
from workers.ledger.recon import Reconciler, take_snapshot

ledger_app = typer.Typer(no_args_is_help=True, help="Order and position ledgers")


def _ts(text: str | None) -> float | None:
    try:
        return parse_ts(text, now=time.time())
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def _dec(text: Any) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


async def _marks(nc, symbols) -> dict[str, Decimal]:
    marks: dict[str, Decimal] = {}
    for sym in sorted(set(symbols)):
        try:
            marks[sym] = (await venue_ops.quote(nc, sym, timeout=1.0)).reference_price
        except Exception:
            continue
    return marks


# ---- ledger positions | orders | verify ------------------------------------------------------


@ledger_app.command("positions")
def positions_cmd(
    as_json: bool = typer.Option(False, "--json", help="one position object a line (exact decimals)"),
    no_marks: bool = typer.Option(False, "--no-marks", help="do not ask the venue for marks (unrealized PnL null for open positions)"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Positions per symbol and strategy (signed qty, VWAP entry, realized/unrealized PnL, fees, cash).

    The table rounds prices to the symbol's tick, quantities to its lot and money to the cent."""

    async def main() -> None:
        async with connected(nats_url, config) as client:
            book = await query.position_book(client.nc)
            marks = {} if no_marks else await _marks(client.nc, [k[0] for k in book.positions])
            rows = query.position_rows(book, marks)
            specs = {} if as_json else await symbol_specs(client)
        if as_json:
            for r in rows:
                json_line(r)
            return
        table = Table(title=f"{len(rows)} positions")
        kinds = {"symbol": "", "strategy_id": "", "qty": "qty", "avg_entry_price": "price", "realized_pnl": "money", "unrealized_pnl": "money", "fees": "money", "cash": "money", "mark": "price"}
        for col in kinds:
            table.add_column(col, no_wrap=True, justify="left" if not kinds[col] else "right")
        for r in rows:
            cells = []
            for col, kind in kinds.items():
                value = r.get(col)
                if kind == "qty":
                    cells.append(views.qty(_dec(value), r["symbol"], specs))
                elif kind == "price":
                    cells.append(views.price(_dec(value), r["symbol"], specs))
                elif kind == "money":
                    cells.append(views.money(_dec(value)))
                else:
                    cells.append("" if value is None else str(value))
            table.add_row(*cells)
        show(table)

    run(main())


@ledger_app.command("orders")
def orders_cmd(
    as_json: bool = typer.Option(False, "--json", help="one order object a line"),
    cid: Optional[str] = typer.Option(None, "--correlation-id"),
    client_order_id: Optional[str] = typer.Option(None, "--client-order-id"),
    symbol: Optional[str] = typer.Option(None, "--symbol"),
    state: Optional[list[str]] = typer.Option(None, "--state", help="repeatable: ACKNOWLEDGED, FILLED, ..."),
    since: Optional[str] = typer.Option(None, "--since", help="created at or after (epoch, ISO-8601, -15m)"),
    until: Optional[str] = typer.Option(None, "--until"),
    history: bool = typer.Option(False, "--history", help="include each order's full history"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Every order with its state and fills (look-ups by id, symbol, state, time range)."""

    async def main() -> None:
        if cid:
            correlation_id(cid)
        if client_order_id:
            correlation_id(client_order_id, "client order id")
        try:
            states = [OrderState(s.upper()) for s in state or []]
        except ValueError as exc:
            raise CliError(f"unknown order state: {exc}", ExitCode.USAGE) from None
        t0, t1 = _ts(since), _ts(until)
        async with connected(nats_url, config) as client:
            sts = await query.states(client.nc, [cid] if cid else None)
            specs = {} if as_json else await symbol_specs(client)
        rows = query.all_orders(sts)
        if client_order_id:
            rows = [o for o in rows if o.client_order_id == client_order_id]
        if symbol:
            rows = orders_by_symbol(rows, symbol)
        if states:
            rows = orders_by_state(rows, *states)
        if t0 is not None or t1 is not None:
            rows = orders_in_time_range(rows, t0 if t0 is not None else float("-inf"), t1 if t1 is not None else float("inf"))
        if as_json:
            for o in rows:
                json_line(query.order_json(o, history))
            return
        table = Table(title=f"{len(rows)} orders")
        for col in ("client_order_id", "correlation_id", "symbol", "side", "qty", "filled", "avg price", "state", "price"):
            table.add_column(col, no_wrap=col.endswith("_id") or col == "state")
        for o in rows:
            table.add_row(
                o.client_order_id, o.correlation_id, o.symbol, o.side.value, views.qty(o.qty, o.symbol, specs), views.qty(o.filled_qty, o.symbol, specs),
                views.price(o.avg_fill_price, o.symbol, specs), views.styled_state(o.state.value), views.price(o.price, o.symbol, specs),
            )
        show(table)

    run(main())


@ledger_app.command("verify")
def verify_cmd(as_json: bool = typer.Option(False, "--json"), nats_url: Optional[str] = NatsUrl, config: Optional[str] = ConfigPath) -> None:
    """Rebuild the ledger from the fact log and compare it with the live one (exit 1 on any difference)."""

    async def main() -> None:
        async with connected(nats_url, config) as client:
            nc = client.nc
            r = await query.replay_stream(nc)
            live_book = await query.position_book(nc)
            live_states = await query.states(nc)
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
            json_line(report)
        else:
            show(f"{'ok' if not diffs else 'DIFFERENT'}: {len(r.states)} executions, {len(r.fills)} fills, {len(live_book.positions)} positions")
            for d in diffs:
                show(f"  {d}")
        if diffs:
            raise typer.Exit(int(ExitCode.ERROR))

    run(main())


# ---- audit -------------------------------------------------------------------------------------


def audit_cmd(
    cid: Optional[str] = typer.Option(None, "--correlation-id"),
    client_order_id: Optional[str] = typer.Option(None, "--client-order-id"),
    event_type: Optional[str] = typer.Option(None, "--event-type", help="EXECUTION_TRANSITION, ORDER_TRANSITION, ORDER_REPLACED, ALERT, OPERATOR_ACTION, RECON_*"),
    code: Optional[str] = typer.Option(None, "--code", help="alert / action code, e.g. FS092, HALT"),
    since: Optional[str] = typer.Option(None, "--since", help="epoch seconds, ISO-8601 or -15m"),
    until: Optional[str] = typer.Option(None, "--until"),
    as_json: bool = typer.Option(False, "--json", help="one entry object a line"),
    export: Optional[Path] = typer.Option(None, "--export", help="write a deterministic JSON export to FILE"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Query the audit log (AUDIT stream), or export it deterministically."""

    async def main() -> None:
        if cid:
            correlation_id(cid)  # before it becomes a subject the server refuses
        if client_order_id:
            correlation_id(client_order_id, "client order id")
        t0, t1 = _ts(since), _ts(until)
        async with connected(nats_url, config) as client:
            entries = await query.audit_entries(client.nc, cid, since=t0)
        rows = audit.filter_entries(entries, correlation_id=cid, client_order_id=client_order_id, event_type=event_type, since=t0, until=t1, code=code)
        if export is not None:
            filters = {"correlation_id": cid, "client_order_id": client_order_id, "event_type": event_type.upper() if event_type else None, "code": code, "since": t0, "until": t1}
            export.write_bytes(audit.export_bytes(rows, filters))
            err.print(f"exported {len(rows)} entries to {export}")
            return
        if as_json:
            for e in rows:
                json_line(audit.entry_json(e))
            return
        table = Table(title=f"{len(rows)} audit entries")
        for col in ("seq", "ts", "correlation_id", "event_type", "from → to", "code", "client_order_id", "detail"):
            table.add_column(col, no_wrap=col != "detail", overflow="fold")
        for e in rows:
            detail = e.payload.get("reason") or e.payload.get("message") or e.payload.get("event") or e.payload.get("detail") or ""
            move = f"{e.from_state or ''} → {e.to_state or ''}" if (e.from_state or e.to_state) else ""
            table.add_row(str(e.seq), time.strftime("%H:%M:%S", time.gmtime(e.ts)) + f".{int(e.ts * 1000) % 1000:03d}", e.correlation_id, e.event_type, move, e.code or "", e.client_order_id or "", str(detail))
        show(table)

    run(main())


# ---- recon -------------------------------------------------------------------------------------


def recon_cmd(
    as_json: bool = typer.Option(False, "--json", help="the reconciliation report as one JSON object"),
    snapshot: bool = typer.Option(False, "--snapshot", help="also take a snapshot of orders, positions and the audit high-water mark"),
    snapshot_file: Optional[Path] = typer.Option(None, "--snapshot-file", help="write the snapshot JSON to FILE (implies --snapshot)"),
    all_orders: bool = typer.Option(False, "--all-orders", help="snapshot every order, not only open ones"),
    grace: float = typer.Option(2.0, "--grace", help="seconds a discrepancy must persist before it is acted on"),
    cids: Optional[list[str]] = typer.Option(None, "--correlation-id", help="only these executions (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only: no back-fill, no audit entries"),
    fail_on_issues: bool = typer.Option(False, "--fail-on-issues", help="exit 3 when discrepancies remain"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Reconcile the ledger with the venue: back-fill missed fills, alert on discrepancies."""

    async def main() -> None:
        for c in cids or []:
            correlation_id(c)
        async with connected(nats_url, config) as client:
            nc = client.nc
            report = await Reconciler(nc, grace_s=grace, publish=not dry_run, cids=list(cids) if cids else None).run()
            snap = await take_snapshot(nc, store_it=not dry_run, include_all_orders=all_orders) if (snapshot or snapshot_file) else None
        if snap is not None and snapshot_file is not None:
            snapshot_file.write_text(json.dumps(snap, indent=1, sort_keys=True, default=str))
        if as_json:
            if snap is not None and snapshot_file is None:
                report = {**report, "snapshot": snap}
            json_line(report)
        else:
            show(f"reconciled {report['orders_checked']} orders in {report['duration_s']}s: {len(report['issues'])} discrepancies, {len(report['backfilled_fills'])} fills and {len(report['backfilled_closes'])} closes back-filled" + ("" if report.get("venue_fills_op") else " (venue has no fills op: quantities compared, no fill back-fill)"))
            if report.get("executions_lagging"):
                show(f"skipped {len(report['executions_lagging'])} executions the ledger has not caught up with")
            if report["issues"]:
                table = Table(title="discrepancies")
                for col in ("code", "correlation_id", "client_order_id", "message"):
                    table.add_column(col, no_wrap=col != "message", overflow="fold")
                for i in report["issues"]:
                    table.add_row(i["code"], i["correlation_id"], i["client_order_id"] or "", i["message"])
                show(table)
            if snap is not None:
                show(f"snapshot: {len(snap['positions'])} positions, {len(snap['orders'])} orders, audit high-water {snap['audit_high_water']}, EXEC_EVT high-water {snap['exec_evt_high_water']}" + (f" → {snapshot_file}" if snapshot_file else ""))
        if fail_on_issues and report["issues"] and not all(i["details"].get("backfilled") for i in report["issues"]):
            raise typer.Exit(int(ExitCode.RECON_ISSUES))

    run(main())


# ---- report ------------------------------------------------------------------------------------


def batch_ids(spec: str) -> list[str] | None:
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


def report_cmd(
    cid: Optional[str] = typer.Argument(None, metavar="[CORRELATION_ID]", help="one execution"),
    batch: Optional[str] = typer.Option(None, "--batch", help="comma-separated ids, a file (ids or `jetexec submit --json` lines), or all"),
    since: Optional[str] = typer.Option(None, "--since", help="with --batch all: executions created at or after"),
    until: Optional[str] = typer.Option(None, "--until"),
    html_file: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page with charts"),
    as_json: bool = typer.Option(False, "--json", help="one object a line: each execution (type=execution), then the batch (type=batch)"),
    wide: bool = typer.Option(False, "--wide", help="every column (needs about 175 columns)"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Transaction-cost report for one execution or a batch."""
    if cid is None and batch is None:
        fail("give a CORRELATION_ID or --batch", ExitCode.USAGE)

    async def main() -> None:
        ids = [cid] if cid else batch_ids(batch or "all")
        for i in ids or []:
            correlation_id(i)
        async with connected(nats_url, config) as client:
            specs = {} if as_json else await symbol_specs(client)
            try:
                doc = await build_report(client.nc, ids, since=_ts(since), until=_ts(until))
            except UnknownExecutions as exc:
                raise CliError(str(exc), ExitCode.NOT_FOUND) from None
        if not doc["executions"]:
            raise CliError("no executions to report", ExitCode.NOT_FOUND)
        if html_file is not None:
            html_file.write_text(render(doc))
            err.print(f"report written to {html_file}")
        if as_json:
            for i in doc["executions"]:
                json_line({"type": "execution", **i["tca"]})
            if cid is None:
                json_line({"type": "batch", **doc["batch"]})
            return
        print_report(doc, single=cid is not None, wide=wide, specs=specs)

    run(main())


def _cell(v: Any) -> str:
    return "" if v is None else str(v)


def print_report(doc: dict[str, Any], single: bool, wide: bool = False, specs: dict | None = None) -> None:
    if single and not wide:
        t = doc["executions"][0]["tca"]
        grid = Table(title=f"transaction costs of {t['correlation_id']} (bps: + = cost)", show_header=False)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        lat = t.get("latency_ms") or {}
        for label, value in (
            ("order", f"{t['side']} {t['target_qty']} {t['symbol']}  ({t.get('strategy') or ''} · {t.get('strategy_id') or ''})"),
            ("state", t["state"] + (f" ({t['reason_code']})" if t.get("reason_code") else "")),
            ("filled / target", f"{t['filled_qty']} / {t['target_qty']}  (fill rate {t['fill_rate']})"),
            ("avg price / arrival", f"{views.price(_dec(t.get('avg_price')), t['symbol'], specs)} / {views.price(_dec(t.get('arrival_price')), t['symbol'], specs)}"),
            ("arrival slippage bps", _cell(t.get("arrival_slippage_bps"))),
            (f"interval VWAP ({t.get('vwap_source') or 'n/a'})", f"{views.price(_dec(t.get('interval_vwap')), t['symbol'], specs)}  ({_cell(t.get('vwap_slippage_bps'))} bps)"),
            ("participation", _cell(t.get("participation_rate"))),
            ("completion s", _cell(t.get("completion_s"))),
            ("children / sent / fills", f"{t['children']} / {t['orders_sent']} / {t['fills']}"),
            ("cancel/replace ratio", _cell(t.get("cancel_replace_ratio"))),
            ("rejects", ", ".join(f"{k}: {v}" for k, v in t["rejects"].items()) or "none"),
            ("latency ms", " → ".join(f"{k} {_cell(lat.get(k))}" for k in ("intent_to_ack", "ack_to_first_fill", "first_fill_to_done")) + f" (intent→done {_cell(lat.get('intent_to_done'))})"),
        ):
            grid.add_row(label, value)
        show(grid)
        return
    table = Table(title="transaction costs (bps: + = cost)")
    columns = ("correlation_id", "symbol", "side", "state", "filled/target", "avg", "arrival", "arr bps", "VWAP", "vwap bps", "particip.", "secs", "children", "c/r", "rejects")
    compact = ("correlation_id", "symbol", "side", "state", "filled/target", "avg", "arr bps", "vwap bps", "secs")
    shown = columns if wide else compact
    for col in shown:
        table.add_column(col, no_wrap=True, justify="left" if col in ("correlation_id", "symbol", "side", "state", "rejects") else "right")
    for i in doc["executions"]:
        t = i["tca"]
        sym = t["symbol"]
        cells = {
            "correlation_id": t["correlation_id"], "symbol": sym, "side": t["side"], "state": t["state"], "filled/target": f'{t["filled_qty"]}/{t["target_qty"]}',
            "avg": views.price(_dec(t.get("avg_price")), sym, specs), "arrival": views.price(_dec(t.get("arrival_price")), sym, specs), "arr bps": _cell(t.get("arrival_slippage_bps")),
            "VWAP": views.price(_dec(t.get("interval_vwap")), sym, specs), "vwap bps": _cell(t.get("vwap_slippage_bps")), "particip.": _cell(t.get("participation_rate")),
            "secs": _cell(t.get("completion_s")), "children": str(t["children"]), "c/r": _cell(t.get("cancel_replace_ratio")), "rejects": ",".join(f"{k}:{v}" for k, v in t["rejects"].items()),
        }
        table.add_row(*(cells[c] for c in shown))
    show(table)
    if not single:
        b = doc["batch"]
        show(f'batch: {b["executions"]} executions {b["states"]}; notional {views.money(_dec(b["filled_notional"]))}, fees {views.money(_dec(b["fees"]))}; arrival {b["arrival_slippage_bps"]} bps, VWAP {b["vwap_slippage_bps"]} bps (notional-weighted); fill rate {b["fill_rate_mean"]}; cancel/replace {b["cancel_replace_ratio"]}; rejects {b["rejects"]}')
        show("latency ms p50/p90/p99: " + "; ".join(f'{k} {v["p50"]}/{v["p90"]}/{v["p99"]}' for k, v in b["latency_ms"].items()))


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.command("audit")(audit_cmd)
    app.command("recon")(recon_cmd)
    app.command("report")(report_cmd)
