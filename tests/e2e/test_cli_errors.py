"""The CLI's error contract (README): an error is ONE line on stderr and a non-zero exit code, never a
traceback. Bad *input lines* are not CLI errors: each comes back as a FAILED result with a reason code
and the rest of the batch goes through.

Typer's own usage errors (unknown option, missing argument, bad value) print its usage box; those only
have to exit non-zero without a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bus.server import free_port
from tests.e2e.harness import Up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if not k.startswith("JETEXEC_")} | {"PYTHONUNBUFFERED": "1", "COLUMNS": "60"}
CID = "x0123456789abcdef0123456"  # a well-formed correlation id


def jetexec(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "jetexec.cli", *args], input=input, capture_output=True, timeout=timeout, env=ENV)


def jetexec_many(*argsets: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Several invocations at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(len(argsets)) as pool:
        return list(pool.map(lambda a: jetexec(*a, input=b""), argsets))


def closed_url(secret: str = "") -> str:
    """A port nothing listens on (bound and released)."""
    return f"nats://{secret + '@' if secret else ''}127.0.0.1:{free_port()}"


def one_line_error(res: subprocess.CompletedProcess, *fragments: str, code: int | None = None) -> str:
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    assert res.returncode != 0, (out, err)
    if code is not None:
        assert res.returncode == code, (res.returncode, err)
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_bad_files_are_one_line_errors(tmp_path):
    url = closed_url()  # a file error is reported before (and without) connecting
    started = time.monotonic()
    missing, directory, markup, unreadable = jetexec_many(
        ("submit", str(tmp_path / "missing.jsonl"), "--nats-url", url),
        ("submit", str(tmp_path), "--nats-url", url),
        ("submit", str(tmp_path / "[/red]"), "--nats-url", url),  # rich markup in a message is text
        ("submit", "/proc/self/mem", "--nats-url", url),  # exists, cannot be read (even by root)
    )
    one_line_error(missing, "no such file", "missing.jsonl", code=1)
    one_line_error(directory, "is a directory", code=1)
    one_line_error(markup, "no such file", "[/red]", code=1)
    if Path("/proc/self/mem").exists():
        assert "NATS" not in one_line_error(unreadable, "cannot read /proc/self/mem", code=1)
    assert time.monotonic() - started < 30  # no connection attempt (that takes ~16 s)


def test_bad_flags_exit_nonzero_without_traceback():
    argsets = [
        ("submit", "--bogus"),
        ("submit", "-", "--timeout", "abc"),
        ("status",),
        ("escape",),
        ("worker",),
        ("no-such-command",),
        ("status", CID, "--json=maybe"),
    ]
    for args, res in zip(argsets, jetexec_many(*argsets)):
        err = res.stderr.decode(errors="replace")
        assert res.returncode != 0 and "Traceback" not in err + res.stdout.decode(errors="replace"), (args, err)


def test_own_argument_errors_are_one_line():
    bad_ids = [("status", "a b"), ("status", "[/x]"), ("escape", "a.b"), ("escape", "a!b"), ("escape", "x" * 5000)]
    worker, mode, *ids = jetexec_many(
        ("worker", "no-such-worker-with-a-name-long-enough-to-wrap-a-narrow-terminal"),
        ("up", "--mode", "yolo"),
        *((cmd, bad, "--nats-url", closed_url()) for cmd, bad in bad_ids),  # refused before connecting
    )
    line = one_line_error(worker, "unknown worker", code=2)
    assert "coordinator" in line and "paper-exchange" in line  # lists the valid names, on the same line
    one_line_error(mode, "--mode must be one of", code=2)
    for res in ids:  # never sent: a subject or KV key it would break (or a connection the server closes)
        one_line_error(res, "is not a correlation id", code=2)


def test_unreachable_server_is_one_line_without_secrets():
    """Every command that talks to NATS, against a closed port; the URL's password never shows."""
    commands = [
        ("submit", "-"),
        ("status", CID),
        ("symbols",),
        ("escape", CID),
        ("halt",),
        ("resume",),
        ("provision",),
    ]
    intent = json.dumps({"symbol": "AAPL", "side": "BUY", "qty": 1, "strategy_id": "s"}).encode()
    procs = []
    for args in commands:  # in parallel: each one gives up after the client's reconnect attempts
        p = subprocess.Popen([PY, "-m", "jetexec.cli", *args, "--nats-url", closed_url("user:s3cret")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        procs.append((args, p))
    for args, p in procs:
        out, err = p.communicate(intent if args[0] == "submit" else b"", timeout=90)
        res = subprocess.CompletedProcess(args, p.returncode, out, err)
        line = one_line_error(res, "cannot connect to NATS at nats://127.0.0.1:", code=7)
        assert "s3cret" not in line and "user" not in line, line


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with Up(tmp_path_factory.mktemp("cli")) as up:
        yield up


def test_garbage_lines_are_failed_results_and_the_batch_goes_through(system, tmp_path):
    good = json.dumps({"symbol": "AAPL", "side": "BUY", "qty": 2, "strategy_id": "cli-errors", "client_key": "good-after-garbage"}).encode()
    noise = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"")
    lines = [
        b"\x00\x01\x02\xff\xfe\x00",  # binary, NULs
        noise,  # every byte value
        b"\xc3\x28\xa0\xa1 not utf-8",  # invalid UTF-8
        b'{"symbol": "AAPL", "side": "BUY", "qty": 1\x00}',  # a NUL inside JSON
        b"\x89PNG\x1a\x0a".replace(b"\n", b"") + noise[:50],
        b'{"symbol": "AAPL", "side": "BUY", "qty": "' + b"9" * (300 * 1024) + b'"}',  # over the gateway's 16 KiB
        b"[" + b"1," * (1024 * 1024) + b"1]",  # 2 MiB: over the server's max payload, never sent
        good,
    ]
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = system.cli("submit", str(path), "--wait", "--json", "--timeout", "60", timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert "Traceback" not in res.stderr.decode(errors="replace")
    results = [json.loads(x) for x in res.stdout.decode().splitlines() if x.strip()]
    assert len(results) == len(lines)  # one result a line, in input order
    for r in results[:5]:
        assert r["state"] == "FAILED" and r["reason_code"] == "VALIDATION_MALFORMED", r
    for r in results[5:7]:
        assert r["state"] == "FAILED" and r["reason_code"] == "VALIDATION_TOO_LARGE", r
    assert "max payload" in results[6]["detail"] or "carries" in results[6]["detail"], results[6]
    assert results[7]["state"] == "COMPLETE" and results[7]["filled_qty"] == "2", results[7]
    assert len({r["correlation_id"] for r in results}) == len(lines)
    # the gateway recorded its rejections: they are executions one can look up
    shown = system.status(results[0]["correlation_id"])
    assert shown["state"] == "FAILED" and shown["reason_code"] == "VALIDATION_MALFORMED"


def test_status_of_an_unknown_execution(system):
    one_line_error(system.cli("status", CID), f"no execution {CID}", code=6)
    one_line_error(system.cli("status", CID, "--json"), f"no execution {CID}", code=6)
