"""The ``jetexec`` Typer application: every command group registered once, in one place.

Each group lives in its own module (``executions``, ``watch``, ``ledger``, ``config_cmd``, ``system``,
``bench``) and shares only :mod:`jetexec.cli.common`; no module imports this one, so the CLI has no
import cycle (``tests/unit/test_import_graph.py``).
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version as dist_version

import typer

from jetexec.cli import bench, config_cmd, executions, ledger, system, watch
from jetexec.cli.common import CliError, ExitCode, broken_pipe, fail

app = typer.Typer(
    no_args_is_help=True,
    help="jetexec — order execution on NATS JetStream. Exit codes: 0 ok, 1 error, 2 usage or configuration, "
    "3 recon issues, 4 timed out, 5 --fail-on matched, 6 unknown id, 7 cannot connect (README \"Exit codes\").",
    context_settings={"help_option_names": ["-h", "--help"]},
)
logging.getLogger("nats").addHandler(logging.NullHandler())  # nats-py's default error callback: no tracebacks


def version() -> str:
    try:
        return dist_version("jetexec")
    except PackageNotFoundError:
        return "unknown"


def _version(value: bool) -> None:
    if value:
        print(f"jetexec {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="print the version and exit"),
) -> None:
    """jetexec — order execution on NATS JetStream."""


for group in (executions, watch, ledger, config_cmd, system, bench):
    group.register(app)


def main() -> None:
    try:
        app(prog_name="jetexec")  # also when run as `python -m jetexec.cli` (completion: _JETEXEC_COMPLETE)
    except CliError as exc:  # raised while checking arguments, before a command's run()
        try:
            fail(str(exc), exc.code)
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except BrokenPipeError:  # a synchronous command's print after the reader went away
        try:
            broken_pipe()
        except typer.Exit:
            sys.exit(int(ExitCode.BROKEN_PIPE))
