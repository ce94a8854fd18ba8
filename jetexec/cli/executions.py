"""Commands about executions: submit, status, executions, escape, halt, resume, symbols."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.audit import parse_ts
from core.coordinator import to_result
from core.execution_fsm import TERMINAL
from jetexec import views
from jetexec.cli.common import CliError, ConfigPath, ExitCode, NatsUrl, connected, correlation_id, err, json_line, run, show
from jetexec.client import JetexecClient, JetexecError
from schemas.codec import encode
from schemas.enums import ExecutionState
from schemas.messages import ExecutionResult

INTENT_HELP = """Submit order intents: one JSON object a line, from FILE or stdin.

\b
Fields (README "Intent"):
  symbol       required  a symbol the venue trades (`jetexec symbols`)
  side         required  BUY | SELL
  qty          required  > 0: digits with an optional decimal point, as a number or a
                         string (10, "0.05"); no exponent (1e3 is refused), no sign
  order_type   MARKET (default) | LIMIT
  price        LIMIT only, > 0, same notation as qty
  strategy_id  default "default"; [A-Za-z0-9-_./:], at most 64
  urgency      LOW | NORMAL (default) | HIGH | URGENT
  split        AUTO (default) | SINGLE | TWAP | VWAP | ICEBERG
  horizon_s    TWAP/VWAP horizon in seconds, 1..86400 (default 60)
  client_key   your idempotency key, at most 128 characters
Any other field is refused (VALIDATION_INVALID_FIELD).

\b
Example:
  echo '{"symbol":"AAPL","side":"BUY","qty":10,"strategy_id":"s1"}' | jetexec submit --wait

Exit codes: 0 ok, 4 --timeout ran out, 5 --fail-on matched, 7 cannot connect.
"""


def _read_lines(source: str) -> list[bytes]:
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.exists():
            raise CliError(f"no such file: {source}")
        if path.is_dir():
            raise CliError(f"{source} is a directory, not a file of JSON lines")
        try:
            data = path.read_bytes()
        except OSError as exc:  # not "cannot reach NATS" (what an OSError means elsewhere)
            raise CliError(f"cannot read {source}: {exc.strerror or exc.__class__.__name__}") from None
    return [line.strip() for line in data.splitlines() if line.strip()]


def _fail_on(spec: Optional[str]) -> set[ExecutionState]:
    if not spec:
        return set()
    states = set()
    for name in (s.strip().upper() for s in spec.split(",") if s.strip()):
        if name not in ("FAILED", "ESCAPED"):
            raise CliError(f"--fail-on takes FAILED and/or ESCAPED (comma-separated), not {name!r}", ExitCode.USAGE)
        states.add(ExecutionState(name))
    return states


async def symbol_specs(client: JetexecClient) -> dict:
    """Tick and lot sizes for the human views; without an answer from the venue, exact decimals."""
    try:
        return {s.symbol: s for s in await client.symbols()}
    except Exception:
        return {}


def print_results(results: list[ExecutionResult], as_json: bool, specs: dict | None = None) -> None:
    if as_json:
        for r in results:
            print(encode(r).decode())  # plain stdout: JSON lines are never wrapped
        return
    show(views.results_table(results, specs))


class _Progress:
    """``submit --wait`` on a terminal: how many intents were accepted, then how many executions
    are terminal and in which states the others are. Nothing at all on a pipe."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.receipts = 0
        self.states: dict[str, str] = {}
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)
        self.task = self.bar.add_task("submitting", total=total)
        self.started = time.monotonic()

    def on_receipt(self, _receipt) -> None:
        # The bar counts terminal executions; receipts are counted in the text (a bar that filled
        # up with receipts would count as finished and stop its clock).
        self.receipts += 1
        self.bar.update(self.task, description=f"submitted {self.receipts}/{self.total}")

    def on_update(self, update) -> None:
        cid = getattr(update, "cid", None) or getattr(update, "correlation_id", None)
        state = getattr(update, "state", None)
        if cid and state is not None:
            self.states[cid] = state.value
        done = sum(1 for s in self.states.values() if s in ("COMPLETE", "FAILED", "ESCAPED"))
        live = Counter(s for s in self.states.values() if s not in ("COMPLETE", "FAILED", "ESCAPED"))
        label = "waiting " + " ".join(f"{k} {v}" for k, v in sorted(live.items())) if live else "waiting"
        self.bar.update(self.task, completed=done, description=label)

    async def tick(self) -> None:
        if self.receipts == 0 and time.monotonic() - self.started > 2:
            self.bar.update(self.task, description="no gateway has answered yet (retrying until --timeout)")


def submit(
    file: str = typer.Argument("-", help="JSON-lines file of intents, or - for stdin"),
    wait: bool = typer.Option(False, "--wait", help="return when every execution is terminal (COMPLETE, FAILED, ESCAPED)"),
    as_json: bool = typer.Option(False, "--json", help="one result object a line, in input order (README \"Result\")"),
    timeout: float = typer.Option(120.0, "--timeout", help="seconds for the whole batch; when it runs out the current states are printed and the exit code is 4"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="FAILED and/or ESCAPED (comma-separated): exit 5 when a result is in one of them", show_default=False),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar (it is shown only on a terminal, on stderr)"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    failing = _fail_on(fail_on)

    async def main() -> None:
        lines = _read_lines(file)
        async with connected(nats_url, config) as client:
            progress = _Progress(len(lines)) if sys.stderr.isatty() and not no_progress and lines else None
            try:
                if progress is None:
                    results = await client.submit_batch(lines, wait=wait, timeout=timeout)
                else:
                    results = await _with_progress(client, lines, wait, timeout, progress)
            except JetexecError as exc:  # no gateway answered within --timeout
                raise CliError(str(exc), ExitCode.UNREACHABLE) from None
            specs = {} if as_json else await symbol_specs(client)
        print_results(results, as_json, specs)
        pending = [r for r in results if r.state not in TERMINAL] if wait else []
        if pending:
            raise CliError(f"timed out after {timeout:g} s: {len(pending)} of {len(results)} executions not terminal ({', '.join(sorted(set(r.state.value for r in pending)))})", ExitCode.TIMEOUT)
        bad = [r for r in results if r.state in failing]
        if bad:
            raise CliError(f"{len(bad)} of {len(results)} executions {'/'.join(sorted(s.value for s in failing))}: {', '.join(r.correlation_id for r in bad[:3])}{' …' if len(bad) > 3 else ''}", ExitCode.FAILED_RESULTS)

    run(main())


submit.__doc__ = INTENT_HELP


async def _with_progress(client: JetexecClient, lines: list[bytes], wait: bool, timeout: float, progress: _Progress):
    with progress.bar:
        task = asyncio.create_task(client.submit_batch(lines, wait=wait, timeout=timeout, on_receipt=progress.on_receipt, on_update=progress.on_update))
        while not task.done():
            await progress.tick()
            await asyncio.wait({task}, timeout=0.2)
        return task.result()


def status(
    cid: str = typer.Argument(..., metavar="CORRELATION_ID", help="the full correlation id (as `submit` prints it)"),
    as_json: bool = typer.Option(False, "--json", help="the result object (README \"Result\")"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Show one execution: order, state, detail, alerts with their messages, and every child order.

    Exit code 6 when no execution has that id."""

    async def main() -> None:
        correlation_id(cid)
        async with connected(nats_url, config) as client:
            record = await client.record(cid)
            if record is None:
                raise CliError(f"no execution {cid}", ExitCode.NOT_FOUND)
            result = to_result(record)
            specs = {} if as_json else await symbol_specs(client)
        if as_json:
            print(encode(result).decode())
            return
        show(views.execution_detail(result, record, specs))

    run(main())


def executions(
    strategy: Optional[str] = typer.Option(None, "--strategy", help="only this strategy_id"),
    symbol: Optional[str] = typer.Option(None, "--symbol", help="only this symbol"),
    state: Optional[list[str]] = typer.Option(None, "--state", help="only these states (repeatable; also LIVE = not terminal)"),
    since: Optional[str] = typer.Option(None, "--since", help="created at or after: epoch seconds, ISO-8601 or relative (-15m, -2h)"),
    until: Optional[str] = typer.Option(None, "--until", help="created at or before"),
    limit: int = typer.Option(50, "--limit", help="at most this many, newest first (0 = all)"),
    as_json: bool = typer.Option(False, "--json", help="one result object a line (README \"Result\"), newest first"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """List executions, newest first, filtered by strategy, symbol, state and creation time."""
    states = parse_states(state)

    async def main() -> None:
        t0, t1 = _ts(since), _ts(until)
        async with connected(nats_url, config) as client:
            records = await client.executions(strategy_id=strategy, symbol=symbol, states=states, since=t0, until=t1, limit=limit or None)
            specs = {} if as_json else await symbol_specs(client)
        results = [to_result(r) for r in records]
        if as_json:
            print_results(results, True)
            return
        show(views.results_table(results, specs, title=f"{len(results)} executions" + (f" (newest {limit})" if limit and len(results) == limit else "")))

    run(main())


def parse_states(names: Optional[list[str]]) -> set[ExecutionState] | None:
    if not names:
        return None
    out: set[ExecutionState] = set()
    for name in (n.strip().upper() for spec in names for n in spec.split(",") if n.strip()):
        if name == "LIVE":
            out |= {s for s in ExecutionState if s not in TERMINAL}
            continue
        try:
            out.add(ExecutionState(name))
        except ValueError:
            raise CliError(f"unknown state {name!r}; one of {', '.join(s.value for s in ExecutionState)}, LIVE", ExitCode.USAGE) from None
    return out


def _ts(text: Optional[str]) -> float | None:
    try:
        return parse_ts(text, now=time.time())
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def symbols(as_json: bool = typer.Option(False, "--json", help="one object a line: symbol, reference_price, lot_size, tick_size, bid, ask"), nats_url: Optional[str] = NatsUrl, config: Optional[str] = ConfigPath) -> None:
    """What the venue trades: reference price, lot and tick size, bid and ask."""

    async def main() -> None:
        async with connected(nats_url, config) as client:
            try:
                infos = await client.symbols()
            except Exception as exc:
                raise CliError(f"the venue did not answer ({exc.__class__.__name__}): is `jetexec up` running?", ExitCode.UNREACHABLE) from None
        if as_json:
            for i in infos:
                json_line({"symbol": i.symbol, "reference_price": str(i.reference_price), "lot_size": str(i.lot_size), "tick_size": str(i.tick_size), "bid": str(i.bid), "ask": str(i.ask)})
            return
        show(views.symbols_table(infos))

    run(main())


def escape(
    cids: list[str] = typer.Argument(..., metavar="CORRELATION_ID...", help="one or more full correlation ids"),
    flatten: bool = typer.Option(False, "--flatten", help="then unwind the filled quantity with a MARKET order"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for each escape to finish"),
    as_json: bool = typer.Option(False, "--json", help="one outcome object a line (README \"Escape\")"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Emergency-cancel every live child of the given executions, and report what was cancelled.

    Unknown ids are reported and nothing is sent for them (exit code 6); an escape that has not
    finished within --timeout exits 4."""

    async def main() -> None:
        for c in cids:
            correlation_id(c)
        async with connected(nats_url, config) as client:
            outcomes = await asyncio.gather(*(client.escape_and_report(c, flatten=flatten, timeout=timeout) for c in dict.fromkeys(cids)))
        for o in outcomes:
            if as_json:
                print(encode(o).decode())
            else:
                _print_escape(o)
        unknown = [o.correlation_id for o in outcomes if not o.found]
        if unknown:
            raise CliError(f"no execution {', '.join(unknown)}", ExitCode.NOT_FOUND)
        late = [o.correlation_id for o in outcomes if o.timed_out]
        if late:
            raise CliError(f"escape not finished after {timeout:g} s: {', '.join(late)}", ExitCode.TIMEOUT)

    run(main())


def _print_escape(o) -> None:
    if not o.found:
        show(f"{o.correlation_id}: no such execution — nothing sent")
        return
    if o.state_before in TERMINAL:
        show(f"{o.correlation_id}: already {o.state_before.value} — nothing live to cancel")
        return
    state = o.state.value if o.state else "?"
    if o.cancelled:
        at_venue = [c for c in o.cancelled if c.sent]
        lines = [f"{o.correlation_id}: {o.state_before.value} → {state}; cancelled {len(o.cancelled)} child order(s) ({len(at_venue)} at the venue):"]
        lines += [f"  {c.client_order_id}  {views.plain(c.cancelled_qty)} of {views.plain(c.qty)} unfilled{'' if c.sent else ' (never sent)'}" for c in o.cancelled]
    else:
        lines = [f"{o.correlation_id}: {o.state_before.value} → {state}; nothing was live at the venue to cancel"]
    if o.not_cancelled:
        lines.append(f"  not cancelled (filled meanwhile, or still open): {', '.join(o.not_cancelled)}")
    if o.flatten_client_order_id:
        lines.append(f"  flatten order {o.flatten_client_order_id}")
    show("\n".join(lines))


def halt(nats_url: Optional[str] = NatsUrl, config: Optional[str] = ConfigPath) -> None:
    """LOCKDOWN: cancel everything live and refuse new intents until `jetexec resume`."""

    async def main() -> None:
        async with connected(nats_url, config) as client:
            live = await client.executions(states={s for s in ExecutionState if s not in TERMINAL})
            await client.halt()
        show(f"halted (LOCKDOWN): new intents are refused; {len(live)} live execution(s) escaping" + (": " + ", ".join(r.cid for r in live[:10]) + (" …" if len(live) > 10 else "") if live else ""))

    run(main())


def resume(nats_url: Optional[str] = NatsUrl, config: Optional[str] = ConfigPath) -> None:
    """Back to NORMAL after a halt."""

    async def main() -> None:
        async with connected(nats_url, config) as client:
            await client.resume()
        show("resumed (NORMAL)")

    run(main())


def register(app: typer.Typer) -> None:
    for command in (submit, status, executions, symbols, escape, halt, resume):
        app.command(command.__name__)(command)
