"""``jetexec demo``: the whole system on an embedded server — a mixed batch with live progress, an
emergency escape of resting orders, a halt that refuses new intents, a resume, and a summary."""

from __future__ import annotations

import asyncio
import sys
import shutil
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from bus.server import free_port
from jetexec import views
from jetexec.client import JetexecClient
from jetexec.report import write_report
from jetexec.supervisor import run_up

console = Console(width=None if sys.stdout.isatty() else 140)
TERMINAL = ("COMPLETE", "FAILED", "ESCAPED")


class DemoFailed(RuntimeError):
    """The demo ran but did not end as it should (the tables printed above show where)."""


def sample_lines() -> list[bytes]:
    text = resources.files("jetexec").joinpath("data/demo_intents.jsonl").read_bytes()
    return [line for line in text.splitlines() if line.strip()]


async def _until(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise TimeoutError("demo step did not finish in time")
        await asyncio.sleep(0.05)


def _print_results(results, specs) -> None:
    console.print(views.results_table(results, specs))


async def _batch(client: JetexecClient, lines: list[bytes]):
    seen: dict[str, str] = {}

    def on_update(update) -> None:
        seen[getattr(update, "cid", None) or update.correlation_id] = update.state.value

    task = asyncio.create_task(client.submit_batch(lines, wait=True, timeout=90, on_update=on_update))
    with Live(console=console, refresh_per_second=8, transient=True) as live:
        while not task.done():
            states = Counter(seen.values())
            live.update(f"{len(lines)} intents · " + " · ".join(f"{k} {v}" for k, v in sorted(states.items())))
            await asyncio.sleep(0.1)
    return task.result()


async def _resting(client: JetexecClient, key: str, qty: int = 30, split: str | None = None) -> str:
    """A BUY limit 1 % under the market: it rests (collar-safe) until something cancels it."""
    quote = next(q for q in await client.symbols() if q.symbol == "AAPL")
    price = (quote.reference_price * 99 / 100).quantize(quote.tick_size)
    intent = {"symbol": "AAPL", "side": "BUY", "qty": qty, "order_type": "LIMIT", "price": str(price), "strategy_id": "demo-resting", "client_key": key}
    if split:
        intent |= {"split": split, "horizon_s": 1}
    receipt = await client.submit(intent)

    async def resting() -> bool:
        rec = await client.record(receipt.correlation_id)
        return bool(rec and rec.children and all(c.state.value == "ACKNOWLEDGED" for c in rec.children))

    await _until(resting)
    return receipt.correlation_id


async def _ledger_caught_up(client, timeout: float = 30.0) -> None:
    """The report reads the ledger: wait until the ledger consumer has taken every fact."""
    js = client.nc.jetstream()

    async def caught_up() -> bool:
        info = await js.consumer_info("EXEC_EVT", "ledger")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await _until(caught_up, timeout)


async def run_demo(keep: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="jetexec-demo-"))
    stop = asyncio.Event()
    outcome: dict = {}

    async def scenario(url: str, _sup) -> None:
        try:
            console.print(f"[bold]jetexec demo[/bold] — nats-server at {url}, {len(_sup.children)} worker processes, data in {tmp}")
            client = await JetexecClient.open(url)
            specs = {s.symbol: s for s in await client.symbols()}
            started = time.monotonic()

            console.rule("1. a mixed batch: SINGLE, TWAP, ICEBERG, LIMIT, bad input, a repeated intent")
            lines = sample_lines()
            results = await _batch(client, lines)
            _print_results(results, specs)
            console.print(f"{len(results)} results for {len(set(r.correlation_id for r in results))} executions: the repeated intent was de-duplicated")

            console.rule("2. emergency escape of an execution resting at the venue")
            cid = await _resting(client, "demo-escape", qty=50, split="TWAP")
            await client.escape(cid)
            escaped = await client.wait(cid, timeout=30)
            _print_results([escaped], specs)

            console.rule("3. halt: LOCKDOWN cancels everything live and refuses new intents")
            live_cid = await _resting(client, "demo-halt")
            await client.halt()
            halted = await client.wait(live_cid, timeout=30)
            refused = await client.wait((await client.submit({"symbol": "MSFT", "side": "BUY", "qty": 1, "strategy_id": "demo-halt", "client_key": "during-halt"})).correlation_id, timeout=30)
            _print_results([halted, refused], specs)

            console.rule("4. resume")
            await client.resume()
            after = await client.wait((await client.submit({"symbol": "MSFT", "side": "BUY", "qty": 1, "strategy_id": "demo-halt", "client_key": "after-resume"})).correlation_id, timeout=30)
            _print_results([after], specs)

            every = results + [escaped, halted, refused, after]
            final = Counter(r.state.value for r in every)
            table = Table(title="summary")
            table.add_column("state")
            table.add_column("executions")
            for k, v in sorted(final.items()):
                table.add_row(k, str(v))
            console.print(table)
            alerts = Counter(a.value for r in every for a in r.alerts)
            console.print("alerts raised: " + (", ".join(f"{k}×{v}" for k, v in sorted(alerts.items())) or "none"))
            console.rule("5. transaction-cost report")
            await _ledger_caught_up(client)
            report_path = await write_report(client.nc, list(dict.fromkeys(r.correlation_id for r in every)), Path.cwd() / "jetexec-demo-report.html")
            console.print(f"report: {report_path.resolve()}")
            console.print(f"done in {time.monotonic() - started:.1f}s")
            outcome["ok"] = (
                all(r.state.value in TERMINAL for r in every)
                and escaped.state.value == "ESCAPED"
                and halted.state.value == "ESCAPED"
                and refused.state.value == "FAILED"
                and after.state.value == "COMPLETE"
            )
            await client.close()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            stop.set()

    try:
        await run_up(tmp, free_port(), ready_cb=scenario, stop_event=stop, quiet=True)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if "error" in outcome:
        raise outcome["error"]
    if not outcome.get("ok"):
        raise DemoFailed("the demo did not end as expected (see the tables above)")
