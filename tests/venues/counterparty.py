"""The FIX counterparty of the venue tests, driven from Python.

:class:`Counterparty` runs ``tests/fix_counterparty/venue.js`` — a FIX 4.4 acceptor on jspurefix (a
TypeScript engine independent of QuickFIX) around a small matching executor — as a real process on
loopback, and talks to its control port. :class:`DropProxy` sits between the venue worker and the
acceptor so a test can swallow traffic and cut the TCP connection mid-order.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bus.server import free_port

HERE = Path(__file__).resolve().parent
COUNTERPARTY_DIR = HERE.parent / "fix_counterparty"
SENDER, TARGET = "VENUE", "JETEXEC"  # the acceptor's comp ids (ours are the other way round)
PRICES = {"AAPL.OQ": "190.00", "MSFT.OQ": "410.00"}  # the venue's own symbols


def require_fix_stack() -> None:
    """Skip (with the reason) where the FIX stack is not installed; in CI it must be: fail there."""
    problems = []
    try:
        import quickfix  # noqa: F401
    except ImportError:
        problems.append("the quickfix package (pip install -e '.[fix]')")
    if shutil.which("node") is None:
        problems.append("Node.js")
    if not (COUNTERPARTY_DIR / "node_modules" / "jspurefix").is_dir():
        problems.append("the counterparty's npm packages (cd tests/fix_counterparty && npm ci)")
    if problems:
        message = "FIX venue tests need " + ", ".join(problems) + " — scripts/_env.sh installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def fix_venue_config(port: int, store_dir: Path, *, heartbeat_s: int = 30, reconnect_s: int = 1) -> dict:
    """A ``kind: fix`` venue definition that trades AAPL and MSFT at the counterparty."""
    return {
        "kind": "fix",
        "symbols": [
            {"symbol": "AAPL", "venue_symbol": "AAPL.OQ", "reference_price": "190.00", "lot_size": "1", "tick_size": "0.01", "min_price": "1", "max_price": "10000", "max_qty": "100000"},
            {"symbol": "MSFT", "venue_symbol": "MSFT.OQ", "reference_price": "410.00", "lot_size": "1", "tick_size": "0.01"},
        ],
        "fix": {"host": "127.0.0.1", "port": port, "sender_comp_id": TARGET, "target_comp_id": SENDER, "heartbeat_s": heartbeat_s, "reconnect_s": reconnect_s, "store_dir": str(store_dir), "reply_timeout_s": 1.5},
    }


class Counterparty:
    def __init__(self, work: Path, heartbeat_s: int = 30) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.work = work
        self.heartbeat_s = heartbeat_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Counterparty":
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(self.work / "counterparty.log", "ab")
        self.proc = subprocess.Popen(
            ["node", str(COUNTERPARTY_DIR / "venue.js"), "--port", str(self.port), "--control-port", str(self.control_port), "--store", str(self.work / "store"), "--sender", SENDER, "--target", TARGET, "--symbols", json.dumps(PRICES), "--heartbeat", str(self.heartbeat_s)],
            cwd=COUNTERPARTY_DIR, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"counterparty exited {self.proc.returncode}: {(self.work / 'counterparty.log').read_text()[-2000:]}")
            if _listening(self.port) and _listening(self.control_port):
                return self
            time.sleep(0.05)
        raise RuntimeError("counterparty did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def control(self, cmd: str, **kw) -> dict:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as s:
            s.sendall((json.dumps({"cmd": cmd, **kw}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    async def acontrol(self, cmd: str, **kw) -> dict:
        return await asyncio.to_thread(self.control, cmd, **kw)

    def messages(self) -> str:
        p = self.work / "store" / "messages.log"
        return p.read_text() if p.exists() else ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class DropProxy:
    """A TCP relay on loopback between the venue worker and the counterparty.

    ``blackhole(True)`` swallows what the counterparty sends (as a network that lost it would);
    ``cut()`` closes every connection at once (a dropped TCP connection); ``refuse(True)`` refuses
    new connections until lifted (the venue unreachable)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.swallow = False
        self.refusing = False
        self.conns: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.connections = 0
        self.swallowed = 0

    async def start(self) -> "DropProxy":
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self.conns.append(pair)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_venue: bool) -> None:
            try:
                while data := await src.read(65536):
                    if from_venue and self.swallow:
                        self.swallowed += len(data)
                        continue
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                for w in pair:
                    w.close()

        asyncio.create_task(pump(reader, up_writer, False))
        asyncio.create_task(pump(up_reader, writer, True))

    def blackhole(self, on: bool) -> None:
        self.swallow = on

    def refuse(self, on: bool) -> None:
        self.refusing = on

    def cut(self) -> None:
        for pair in self.conns:
            for w in pair:
                try:
                    w.transport.abort()
                except Exception:
                    pass
        self.conns.clear()

    async def stop(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


class ThreadedProxy:
    """A :class:`DropProxy` on its own event loop thread, for tests that are not async."""

    def __init__(self, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = DropProxy(target_port)
        self._run(self.proxy.start())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def port(self) -> int:
        return self.proxy.port

    def blackhole(self, on: bool) -> None:
        self.loop.call_soon_threadsafe(self.proxy.blackhole, on)

    def refuse(self, on: bool) -> None:
        self.loop.call_soon_threadsafe(self.proxy.refuse, on)

    def cut(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.cut)

    @property
    def connections(self) -> int:
        return self.proxy.connections

    def stop(self) -> None:
        self._run(self.proxy.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
