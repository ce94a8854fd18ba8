"""Measurement commands: bench (throughput, latency, escape latency) and chaos (kills under load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from bench.chaos import SMALL, ChaosConfig, run_chaos
from bench.run import render, run as run_bench
from bench.soak import soak as run_soak
from jetexec.cli.common import CliError, err, out, run


def bench(
    quick: bool = typer.Option(False, "--quick", help="small sizes: checks the bench works (CI), not the targets"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Optional[Path] = typer.Option(None, "--output", help="also write the JSON here"),
    soak: Optional[int] = typer.Option(None, "--soak", help="instead: push N intents and report each worker's memory growth"),
) -> None:
    """Measure the bus ceiling, executions/s, latency and escape latency on an embedded server."""

    async def main() -> None:
        if soak:
            result = await run_soak(soak, log=lambda line: err.print(line))
            if output:
                output.write_text(json.dumps(result, indent=2))
            print(json.dumps(result) if as_json else json.dumps(result, indent=2))
            return
        result = await run_bench(quick=quick)
        if output:
            output.write_text(json.dumps(result, indent=2))
        if as_json:
            print(json.dumps(result))
        else:
            out.print(render(result))

    run(main())


def chaos(
    small: bool = typer.Option(False, "--small", help="the CI size: 150 intents, 8 kills"),
    intents: Optional[int] = typer.Option(None, "--intents"),
    kills: Optional[int] = typer.Option(None, "--kills"),
    seed: Optional[int] = typer.Option(None, "--seed"),
) -> None:
    """Kill workers and restart nats-server under load; print the no-loss / no-duplicate checks."""
    cfg = SMALL if small else ChaosConfig()
    if intents is not None:
        cfg.intents = intents
    if kills is not None:
        cfg.kills = kills
    if seed is not None:
        cfg.seed = seed

    async def main() -> None:
        report = await run_chaos(cfg, log=lambda line: err.print(line))
        out.print(report.render())
        if not report.ok:
            raise CliError("chaos checks failed")

    run(main())


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("chaos")(chaos)
