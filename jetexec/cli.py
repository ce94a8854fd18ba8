"""The ``jetexec`` command line. Its JSON input and output are a public contract (README)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape as _plain
from rich.table import Table

from bus.settings import DEFAULT_URL, NatsSettings
from schemas.codec import encode

app = typer.Typer(add_completion=False, no_args_is_help=True, help="jetexec — order execution on NATS JetStream")
console = Console(stderr=True, soft_wrap=True)  # an error is one line, however long, on any terminal
logging.getLogger("nats").addHandler(logging.NullHandler())  # nats-py's default error callback: no tracebacks
out = Console(width=None if sys.stdout.isatty() else 140)  # pipes and logs: no mid-word wrapping

NatsUrl = typer.Option(None, "--nats-url", envvar="JETEXEC_NATS_URL", help=f"NATS server URL (default {DEFAULT_URL})")


class CliError(Exception):
    pass


def _run(coro) -> None:
    """Run a command; any failure is one clear line on stderr and exit code 1 (no traceback)."""
    # asyncio's SSL transport warns once per failed TLS read ("eof_received() has no effect"):
    # noise around the one line the user needs.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    try:
        asyncio.run(coro)
    except CliError as exc:
        console.print(f"[red]error:[/red] {_plain(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except (ConnectionRefusedError, OSError) as exc:
        console.print(f"[red]error:[/red] cannot reach NATS: {exc.__class__.__name__}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI contract: one line, never a traceback
        if os.environ.get("JETEXEC_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        console.print(f"[red]error:[/red] {exc.__class__.__name__}: {_plain(msg)}", highlight=False)
        raise typer.Exit(1) from None


def _correlation_id(value: str) -> str:
    from schemas.codec import is_id

    if not is_id(value):
        raise CliError(f"{value[:60]!r} is not a correlation id (1..128 of A-Z a-z 0-9 _ -)")
    return value


async def _client(url: str | None):
    from jetexec.client import JetexecClient

    settings = NatsSettings.from_env(url)
    try:
        return await JetexecClient.open(settings=settings)
    except Exception as exc:
        raise CliError(f"cannot connect to NATS at {settings.redacted_url()}: {exc.__class__.__name__}") from None


def _result_line(res) -> str:
    return encode(res).decode()


def _receipt_result(receipt):
    from schemas.messages import ExecutionResult

    from decimal import Decimal

    return ExecutionResult(
        correlation_id=receipt.correlation_id,
        idempotency_key=receipt.idempotency_key,
        state=receipt.state,
        filled_qty=Decimal(0),
        avg_fill_price=None,
        fill_rate=Decimal(0),
        reason_code=receipt.reason_code,
        alerts=list(receipt.alerts),
        children=[],
        detail=receipt.detail,
    )


def _print_results(results, as_json: bool) -> None:
    if as_json:
        for r in results:
            print(_result_line(r), flush=False)  # plain stdout: JSON lines must never be wrapped
        return
    table = Table(title=f"{len(results)} executions", padding=(0, 1))
    table.add_column("correlation_id", no_wrap=True)
    table.add_column("order", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("filled", no_wrap=True, justify="right")
    table.add_column("avg price", no_wrap=True, justify="right")
    table.add_column("reason / alerts", min_width=26, overflow="fold")
    for r in results:
        order = f"{r.side.value} {r.qty} {r.symbol}" if r.side else "(invalid intent)"
        why = " ".join(x for x in ((r.reason_code.value if r.reason_code else ""), ",".join(a.value for a in r.alerts)) if x)
        table.add_row(r.correlation_id[:11], order, r.state.value, str(r.filled_qty), str(r.avg_fill_price or ""), why)
    out.print(table)


async def submit_lines(client, lines: list[bytes], wait: bool, timeout: float, concurrency: int = 64, on_update=None):
    """Submit raw intent lines concurrently; results in input order."""
    sem = asyncio.Semaphore(concurrency)

    from nats.errors import MaxPayloadError

    unsent: set[str] = set()

    async def one(raw: bytes):
        async with sem:
            try:
                return await client.submit(raw, timeout=timeout)
            except MaxPayloadError:  # bad input is a FAILED result, never a failed batch
                return _too_large(raw, client.nc.max_payload, unsent)

    receipts = await asyncio.gather(*(one(raw) for raw in lines))
    if not wait:
        return [_receipt_result(r) for r in receipts]
    results = await client.wait_many({r.correlation_id for r in receipts} - unsent, timeout=timeout, on_update=on_update)
    return [results.get(r.correlation_id) or _receipt_result(r) for r in receipts]


def _too_large(raw: bytes, limit: int, unsent: set[str]):
    """The receipt of a line the server cannot even carry (over its max payload): FAILED, as the
    gateway would answer (its own limit is far lower), with the id the gateway would have given it."""
    from core.ids import rejection_id
    from schemas.enums import ExecutionState, ReasonCode
    from workers.gateway.handler import IntakeReceipt

    key, cid = rejection_id(raw)
    unsent.add(cid)
    detail = f"intent is {len(raw)} bytes, more than the server carries ({limit})"
    return IntakeReceipt(accepted=False, correlation_id=cid, idempotency_key=key, state=ExecutionState.FAILED, reason_code=ReasonCode.VALIDATION_TOO_LARGE, detail=detail)


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
        except OSError as exc:  # not "cannot reach NATS" (what _run says of an OSError)
            raise CliError(f"cannot read {source}: {exc.strerror or exc.__class__.__name__}") from None
    return [line.strip() for line in data.splitlines() if line.strip()]


@app.command()
def submit(
    file: str = typer.Argument("-", help="JSON-lines file of intents, or - for stdin"),
    wait: bool = typer.Option(False, "--wait", help="return when every execution reaches a terminal state"),
    as_json: bool = typer.Option(False, "--json", help="one result object a line, in input order"),
    timeout: float = typer.Option(120.0, "--timeout", help="seconds to wait"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Submit order intents (JSON lines)."""

    async def main() -> None:
        lines = _read_lines(file)
        client = await _client(nats_url)
        try:
            results = await submit_lines(client, lines, wait, timeout)
        finally:
            await client.close()
        _print_results(results, as_json)

    _run(main())


@app.command()
def status(correlation_id: str, as_json: bool = typer.Option(False, "--json"), nats_url: Optional[str] = NatsUrl) -> None:
    """Show one execution."""

    async def main() -> None:
        _correlation_id(correlation_id)
        client = await _client(nats_url)
        try:
            res = await client.status(correlation_id)
        finally:
            await client.close()
        if res is None:
            raise CliError(f"no execution {correlation_id}")
        _print_results([res], as_json)

    _run(main())


@app.command()
def symbols(as_json: bool = typer.Option(False, "--json"), nats_url: Optional[str] = NatsUrl) -> None:
    """What the venue trades."""

    async def main() -> None:
        from workers.common import VenueClient

        client = await _client(nats_url)
        try:
            infos = await VenueClient(client.nc).symbols()
        except Exception as exc:
            raise CliError(f"the venue did not answer ({exc.__class__.__name__}): is `jetexec up` running?") from None
        finally:
            await client.close()
        if as_json:
            for i in infos:
                print(json.dumps({"symbol": i.symbol, "reference_price": str(i.reference_price), "lot_size": str(i.lot_size), "tick_size": str(i.tick_size), "bid": str(i.bid), "ask": str(i.ask)}))
            return
        table = Table(title="symbols")
        for col in ("symbol", "reference_price", "lot_size", "tick_size", "bid", "ask"):
            table.add_column(col)
        for i in infos:
            table.add_row(i.symbol, str(i.reference_price), str(i.lot_size), str(i.tick_size), str(i.bid), str(i.ask))
        out.print(table)

    _run(main())


@app.command()
def escape(correlation_id: str, flatten: bool = typer.Option(False, "--flatten", help="unwind the filled quantity with a MARKET order"), nats_url: Optional[str] = NatsUrl) -> None:
    """Emergency-cancel every live child of one execution."""

    async def main() -> None:
        _correlation_id(correlation_id)
        client = await _client(nats_url)
        try:
            await client.escape(correlation_id, flatten=flatten)
        finally:
            await client.close()
        out.print(f"escape requested for {correlation_id}")

    _run(main())


@app.command()
def halt(nats_url: Optional[str] = NatsUrl) -> None:
    """LOCKDOWN: cancel everything live and refuse new intents until `jetexec resume`."""

    async def main() -> None:
        client = await _client(nats_url)
        try:
            await client.halt()
        finally:
            await client.close()
        out.print("halted (LOCKDOWN)")

    _run(main())


@app.command()
def resume(nats_url: Optional[str] = NatsUrl) -> None:
    """Back to NORMAL after a halt."""

    async def main() -> None:
        client = await _client(nats_url)
        try:
            await client.resume()
        finally:
            await client.close()
        out.print("resumed (NORMAL)")

    _run(main())


@app.command()
def provision(mode: Optional[str] = typer.Option(None, "--mode"), nats_url: Optional[str] = NatsUrl) -> None:
    """Create or update every stream, consumer and KV bucket (idempotent)."""
    from jetexec.supervisor import provision as do_provision

    async def main() -> None:
        settings = NatsSettings.from_env(nats_url)
        await (await _client(nats_url)).close()  # unreachable: the usual one-line error, not a long retry loop
        await do_provision(settings, mode)
        out.print("topology provisioned")

    _run(main())


@app.command()
def worker(
    name: str,
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", envvar="JETEXEC_METRICS_PORT", help="serve /metrics, /healthz, /readyz"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Run one worker (what each Kubernetes Deployment runs)."""
    from workers import ALL_WORKERS as WORKERS, load_worker

    if name not in WORKERS:
        console.print(f"[red]error:[/red] unknown worker {_plain(repr(name))}; one of: {', '.join(WORKERS)}", highlight=False)
        raise typer.Exit(2)
    import logging

    logging.basicConfig(level=os.environ.get("JETEXEC_LOG_LEVEL", "WARNING"), format=f"%(asctime)s {name} %(levelname)s %(message)s")
    cls = load_worker(name)
    _run(cls(NatsSettings.from_env(nats_url)).serve(metrics_port))


MODES = ("paper", "shadow", "live")


@app.command()
def up(
    data_dir: Path = typer.Option(Path(".jetexec"), "--data-dir"),
    port: int = typer.Option(4222, "--port"),
    mode: str = typer.Option("paper", "--mode", help="paper | shadow | live (live also needs JETEXEC_LIVE_ENABLED=yes)"),
) -> None:
    """Start nats-server and every worker, supervised. Ctrl-C stops everything."""
    from jetexec.supervisor import run_up

    if mode.lower() not in MODES:
        console.print(f"[red]error:[/red] --mode must be one of {', '.join(MODES)}", highlight=False)
        raise typer.Exit(2)
    env = {"JETEXEC_LIVE_CONFIG_FLAG": "1"} if mode.lower() == "live" else {}
    _run(run_up(data_dir, port, mode=mode, env=env))


@app.command()
def demo(keep: bool = typer.Option(False, "--keep", help="keep the temporary data directory")) -> None:
    """Start everything in a temporary directory, run a sample batch, print a summary."""
    from jetexec.demo import run_demo

    _run(run_demo(keep=keep))


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="small sizes: checks the bench works (CI), not the targets"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Optional[Path] = typer.Option(None, "--output", help="also write the JSON here"),
    soak: Optional[int] = typer.Option(None, "--soak", help="instead: push N intents and report each worker's memory growth"),
) -> None:
    """Measure the bus ceiling, executions/s, latency and escape latency on an embedded server."""
    from bench.run import render, run

    async def main() -> None:
        if soak:
            from bench.soak import soak as run_soak

            result = await run_soak(soak, log=lambda line: console.print(line, highlight=False))
            if output:
                output.write_text(json.dumps(result, indent=2))
            print(json.dumps(result) if as_json else json.dumps(result, indent=2))
            return
        result = await run(quick=quick)
        if output:
            output.write_text(json.dumps(result, indent=2))
        if as_json:
            print(json.dumps(result))
        else:
            out.print(render(result), highlight=False)

    _run(main())


@app.command()
def chaos(
    small: bool = typer.Option(False, "--small", help="the CI size: 150 intents, 8 kills"),
    intents: Optional[int] = typer.Option(None, "--intents"),
    kills: Optional[int] = typer.Option(None, "--kills"),
    seed: Optional[int] = typer.Option(None, "--seed"),
) -> None:
    """Kill workers and restart nats-server under load; print the no-loss / no-duplicate checks."""
    from bench.chaos import SMALL, ChaosConfig, run_chaos

    cfg = SMALL if small else ChaosConfig()
    if intents is not None:
        cfg.intents = intents
    if kills is not None:
        cfg.kills = kills
    if seed is not None:
        cfg.seed = seed

    async def main() -> None:
        report = await run_chaos(cfg, log=lambda line: console.print(line, highlight=False))
        out.print(report.render(), highlight=False)
        if not report.ok:
            raise CliError("chaos checks failed")

    _run(main())


from jetexec.cli_ledger import register as _register_ledger  # noqa: E402 - ledger/audit/recon/report commands

_register_ledger(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
