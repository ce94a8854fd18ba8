"""What every command shares: exit codes, the one-line error contract, the connection, output.

The error contract (README): a failure is ONE line on stderr (``error: …``) and a documented exit
code, never a traceback. NATS's own errors are translated here into what the operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any, NoReturn, Optional
from urllib.parse import urlsplit

import typer
from nats.errors import (
    AuthorizationError,
    ConnectionClosedError,
    NoRespondersError,
    NoServersError,
    TimeoutError as NatsTimeout,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError, ServiceUnavailableError
from rich.console import Console, RenderableType
from rich.markup import escape as plain_markup

from bus.settings import DEFAULT_URL, NatsSettings
from jetexec import config as jconfig
from jetexec.client import JetexecClient
from schemas.codec import is_id


class ExitCode(enum.IntEnum):
    """Exit codes of every command (README "Exit codes"). Scripts may rely on them."""

    OK = 0
    ERROR = 1  # the command failed (the message says why)
    USAGE = 2  # bad arguments, a malformed id or URL, an invalid configuration
    RECON_ISSUES = 3  # recon --fail-on-issues: discrepancies remain
    TIMEOUT = 4  # --timeout ran out before every execution was terminal
    FAILED_RESULTS = 5  # --fail-on: at least one result in a state it names (FAILED, ESCAPED)
    NOT_FOUND = 6  # an id no execution has
    UNREACHABLE = 7  # cannot connect to NATS, or no jetexec topology on that server
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # stdout closed by the reader (… | head): nothing more is printed


class CliError(Exception):
    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code = code


# An error is one line however long, on any terminal; stdout on a pipe is never wrapped or cut.
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(width=None if sys.stdout.isatty() else 100_000, soft_wrap=not sys.stdout.isatty(), highlight=False)

NatsUrl = typer.Option(None, "--nats-url", envvar="JETEXEC_NATS_URL", help=f"NATS server URL (default: nats.url in jetexec.toml, else {DEFAULT_URL})", show_default=False)
ConfigPath = typer.Option(None, "--config", envvar="JETEXEC_CONFIG", help="configuration file (default ./jetexec.toml when it exists; see docs/config.md)", show_default=False)
_url_shown: list[str] = [DEFAULT_URL]  # the server the running command talks to, for messages


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    err.print(f"[red]error:[/red] {plain_markup(message)}")
    raise typer.Exit(int(code))


def run(coro: Coroutine[Any, Any, Any]) -> None:
    """Run one command's coroutine under the error contract."""
    # asyncio's SSL transport warns once per failed TLS read ("eof_received() has no effect"):
    # noise around the one line the user needs.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    try:
        asyncio.run(coro)
        sys.stdout.flush()
    except typer.Exit:
        raise
    except BrokenPipeError:
        broken_pipe()
    except CliError as exc:
        fail(str(exc), exc.code)
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except jconfig.ConfigError as exc:
        fail(f"invalid configuration: {exc}", ExitCode.USAGE)
    except Exception as exc:  # noqa: BLE001 - the CLI contract: one line, never a traceback
        if os.environ.get("JETEXEC_DEBUG"):
            raise
        message, code = describe(exc, _url_shown[0])
        fail(message, code)


def broken_pipe() -> NoReturn:
    """The reader went away (``… | head``): print nothing more, not even at interpreter exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(int(ExitCode.BROKEN_PIPE))


def describe(exc: BaseException, url: str) -> tuple[str, ExitCode]:
    """What a NATS (or other) exception means to an operator: one line and an exit code."""
    if isinstance(exc, BucketNotFoundError) or (isinstance(exc, NotFoundError) and "stream" in str(exc.description or "").lower()):
        return f"no jetexec topology on the NATS server at {url} (a stream or KV bucket is missing): run `jetexec provision`, or `jetexec up`", ExitCode.UNREACHABLE
    if isinstance(exc, ServiceUnavailableError):
        return f"JetStream is not enabled on the NATS server at {url}", ExitCode.UNREACHABLE
    if isinstance(exc, NoRespondersError):
        return f"nothing answers on that subject at {url}: is `jetexec up` running?", ExitCode.UNREACHABLE
    if isinstance(exc, AuthorizationError):
        return f"the NATS server at {url} refused the credentials (JETEXEC_NATS_USER/PASSWORD/TOKEN/CREDS)", ExitCode.UNREACHABLE
    if isinstance(exc, APIError):
        what = exc.description or type(exc).__name__
        return f"the NATS server at {url} refused the request: {what}", ExitCode.ERROR
    if isinstance(exc, (NatsTimeout, asyncio.TimeoutError)):
        return f"the NATS server at {url} did not answer in time", ExitCode.ERROR
    if isinstance(exc, (NoServersError, ConnectionClosedError, ConnectionRefusedError)):
        return f"cannot connect to NATS at {url}: {type(exc).__name__}", ExitCode.UNREACHABLE
    if isinstance(exc, OSError):  # a local resource (a port to bind, a file), not the NATS server
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}", ExitCode.ERROR
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__, ExitCode.ERROR


# ---- arguments ---------------------------------------------------------------------------------

URL_SCHEMES = ("nats", "tls", "ws", "wss")


def check_url(url: str) -> str:
    """Refuse a URL nats-py cannot use, before connecting (``garbage://nope`` is not "cannot connect")."""
    for one in (u.strip() for u in url.split(",")):
        parts = urlsplit(one if "://" in one else f"nats://{one}")
        try:
            parts.port
        except ValueError:
            raise CliError(f"invalid NATS URL {safe_url(one)!r}: bad port", ExitCode.USAGE) from None
        if parts.scheme not in URL_SCHEMES or not parts.hostname:
            raise CliError(f"invalid NATS URL {safe_url(one)!r}: expected {' | '.join(s + '://HOST[:PORT]' for s in URL_SCHEMES)}", ExitCode.USAGE)
    return url


def safe_url(url: str) -> str:
    return NatsSettings(url=url).redacted_url() if "@" in url else url[:80]


def correlation_id(value: str, what: str = "correlation id") -> str:
    if not is_id(value):
        raise CliError(f"{value[:60]!r} is not a {what} (1..128 of A-Z a-z 0-9 _ -)", ExitCode.USAGE)
    return value


def settings(url: Optional[str], config_path: Optional[str] = None) -> NatsSettings:
    """Connection settings: --nats-url / JETEXEC_NATS_URL, else jetexec.toml's [nats], else the default."""
    cfg = jconfig.load(jconfig.find_path(config_path, os.environ), os.environ)
    env = {**jconfig.nats_env(cfg), **{k: v for k, v in os.environ.items() if k.startswith("JETEXEC_NATS_")}}
    s = NatsSettings.from_env(check_url(url) if url else None, env=env)
    check_url(s.url)
    _url_shown[0] = s.redacted_url()
    return s


@contextlib.asynccontextmanager
async def connected(url: Optional[str], config_path: Optional[str] = None) -> AsyncIterator[JetexecClient]:
    """A connected client, closed afterwards; unreachable is one line and exit code 7."""
    s = settings(url, config_path)
    try:
        client = await JetexecClient.open(settings=s)
    except Exception as exc:
        if isinstance(exc, AuthorizationError):
            raise CliError(describe(exc, s.redacted_url())[0], ExitCode.UNREACHABLE) from None
        raise CliError(f"cannot connect to NATS at {s.redacted_url()}: {exc.__class__.__name__}", ExitCode.UNREACHABLE) from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.close()


# ---- output ------------------------------------------------------------------------------------


def json_line(obj: Any) -> None:
    """One JSON object a line on stdout (never wrapped; decimals as strings)."""
    print(json.dumps(obj, separators=(",", ":"), default=str))


def show(renderable: RenderableType) -> None:
    out.print(renderable)
