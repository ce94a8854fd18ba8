"""Commands that run jetexec: up, worker, provision, demo."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from bus.server import ServerError
from bus.settings import NatsSettings
from jetexec import config as jconfig
from jetexec.cli.common import CliError, ConfigPath, ExitCode, NatsUrl, connected, fail, run, settings, show
from jetexec.demo import DemoFailed, run_demo
from jetexec.supervisor import DEFAULT_WORKERS, StartupFailed, provision as do_provision, run_up
from workers import ALL_WORKERS as WORKERS, load_worker

UP_HELP = """Start nats-server and every worker, supervised. Ctrl-C (or SIGTERM) stops everything.

Prints `ready nats://HOST:PORT` once every worker is consuming. A worker that dies is restarted;
one that keeps dying during start-up makes `up` fail with its last log line (logs in DATA_DIR/logs).

\b
The configuration (risk limits per strategy and symbol, stage timeouts, venues, mode, ports) is
read from jetexec.toml (--config, $JETEXEC_CONFIG, else ./jetexec.toml), with environment
overrides such as JETEXEC__RISK__DAILY_TRADE_LIMIT=50, and validated before anything starts: a
bad value is one error naming the key, the value and where it came from (exit code 2).
`jetexec config show` prints the effective configuration; docs/config.md lists every key.
Defaults: 100 trades and 10,000,000 notional per strategy a day, |position| <= 10,000 per symbol
and strategy, a 5 % price collar on LIMIT orders.

\b
Modes: paper (the simulated exchange), shadow (the whole pipeline, nothing routed), live (refused
unless a live venue is configured AND the operator sets JETEXEC_LIVE_ENABLED=yes).
"""


def up(
    config: Optional[str] = ConfigPath,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="JetStream storage and worker logs  (default: server.data_dir, else .jetexec)", show_default=False),
    port: Optional[int] = typer.Option(None, "--port", help="client port of the embedded nats-server  (default: server.port, else 4222)", show_default=False),
    host: Optional[str] = typer.Option(None, "--host", help="address nats-server listens on  (default: server.host, else 127.0.0.1)", show_default=False),
    mode: Optional[str] = typer.Option(None, "--mode", help="paper | shadow | live  (default: mode, else paper)", show_default=False),
) -> None:
    if mode is not None and mode.lower() not in jconfig.MODES:
        fail(f"--mode must be one of {', '.join(jconfig.MODES)}", ExitCode.USAGE)
    flags = {"server.data_dir": str(data_dir) if data_dir else None, "server.port": port, "server.host": host, "mode": mode}
    try:
        cfg = jconfig.load(jconfig.find_path(config, os.environ), os.environ, flags)
    except jconfig.ConfigError as exc:
        fail(f"invalid configuration: {exc}", ExitCode.USAGE)
    server = cfg.file.server

    async def main() -> None:
        try:
            await run_up(Path(server.data_dir), server.port, host=server.host, mode=cfg.mode, env=jconfig.worker_env(cfg), workers=cfg.workers(DEFAULT_WORKERS))
        except StartupFailed as exc:
            raise CliError(f"start-up failed: {exc}") from None
        except ServerError as exc:
            raise CliError(f"nats-server: {exc}") from None

    run(main())


up.__doc__ = UP_HELP


def worker(
    name: str = typer.Argument(..., help=f"one of: {', '.join(WORKERS)}"),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", envvar="JETEXEC_METRICS_PORT", help="serve /metrics, /healthz, /readyz on this port"),
    nats_url: Optional[str] = NatsUrl,
) -> None:
    """Run one worker (what each Kubernetes Deployment runs). Its settings come from the environment
    (JETEXEC_PRECHECK_CONFIG …, see docs/config.md) and are validated before it connects."""
    if name not in WORKERS:
        fail(f"unknown worker {name!r}; one of: {', '.join(WORKERS)}", ExitCode.USAGE)
    try:
        jconfig.load(None, {k: v for k, v in os.environ.items() if k != "JETEXEC_CONFIG"})
    except jconfig.ConfigError as exc:
        fail(f"invalid configuration: {exc}", ExitCode.USAGE)
    logging.basicConfig(level=os.environ.get("JETEXEC_LOG_LEVEL", "WARNING"), format=f"%(asctime)s {name} %(levelname)s %(message)s")
    cls = load_worker(name)
    run(cls(NatsSettings.from_env(nats_url)).serve(metrics_port))


def provision(
    mode: Optional[str] = typer.Option(None, "--mode", help="also set the execution mode in KV SAFETY (paper | shadow | live)"),
    nats_url: Optional[str] = NatsUrl,
    config: Optional[str] = ConfigPath,
) -> None:
    """Create or update every stream, consumer and KV bucket (idempotent)."""
    if mode is not None and mode.lower() not in jconfig.MODES:
        fail(f"--mode must be one of {', '.join(jconfig.MODES)}", ExitCode.USAGE)

    async def main() -> None:
        async with connected(nats_url, config):  # unreachable: the usual one-line error, not a long retry loop
            pass
        await do_provision(settings(nats_url, config), mode)
        show("topology provisioned")

    run(main())


def demo(keep: bool = typer.Option(False, "--keep", help="keep the temporary data directory")) -> None:
    """Start everything in a temporary directory, run a sample batch, print a summary."""

    async def main() -> None:
        try:
            await run_demo(keep=keep)
        except DemoFailed as exc:
            raise CliError(str(exc)) from None

    run(main())


def register(app: typer.Typer) -> None:
    for command in (up, worker, provision, demo):
        app.command(command.__name__)(command)
