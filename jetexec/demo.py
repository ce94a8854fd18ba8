"""``jetexec demo``: the whole system on an embedded server, a sample batch, live progress, a summary."""

from __future__ import annotations

import asyncio
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
from jetexec.supervisor import run_up

console = Console()


def sample_lines() -> list[bytes]:
    text = resources.files("jetexec").joinpath("data/demo_intents.jsonl").read_bytes()
    return [line for line in text.splitlines() if line.strip()]


async def run_demo(keep: bool = False) -> None:
    from jetexec.cli import CliError, _print_results, submit_lines
    from jetexec.client import JetexecClient

    tmp = Path(tempfile.mkdtemp(prefix="jetexec-demo-"))
    stop = asyncio.Event()
    outcome: dict = {}

    async def scenario(url: str, _sup) -> None:
        try:
            console.print(f"[bold]jetexec demo[/bold] — nats-server at {url}, data in {tmp}")
            client = await JetexecClient.open(url)
            lines = sample_lines()
            states: Counter = Counter()
            seen: dict[str, str] = {}

            def on_update(rec) -> None:
                seen[rec.cid] = rec.state.value

            started = time.monotonic()
            task = asyncio.create_task(submit_lines(client, lines, wait=True, timeout=90, on_update=on_update))
            with Live(console=console, refresh_per_second=8, transient=True) as live:
                while not task.done():
                    states = Counter(seen.values())
                    live.update(f"{len(lines)} intents submitted · " + " · ".join(f"{k} {v}" for k, v in sorted(states.items())))
                    await asyncio.sleep(0.1)
            results = task.result()
            elapsed = time.monotonic() - started
            _print_results(results, as_json=False)
            final = Counter(r.state.value for r in results)
            table = Table(title="summary")
            table.add_column("state")
            table.add_column("executions")
            for k, v in sorted(final.items()):
                table.add_row(k, str(v))
            console.print(table)
            console.print(f"{len(results)} results ({len(set(r.correlation_id for r in results))} executions: the repeated intent was de-duplicated) in {elapsed:.1f}s")
            outcome["ok"] = all(r.state.value in ("COMPLETE", "FAILED", "ESCAPED") for r in results)
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
        raise CliError("some executions did not reach a terminal state")
