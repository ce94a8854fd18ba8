"""Runs ``jetexec up`` as a real subprocess tree and drives it through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bus.server import free_port

PY = sys.executable


class Up:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.args = args
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Up":
        self.proc = subprocess.Popen(
            [PY, "-m", "jetexec.cli", "up", "--data-dir", str(self.tmp / "data"), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        deadline = time.monotonic() + 90
        assert self.proc.stdout is not None
        said: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            said = (said + [line.rstrip()])[-5:] if line.strip() else said
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"jetexec up exited {self.proc.returncode}: " + " | ".join(said))
            if line.startswith("ready "):
                assert line.strip() == f"ready {self.url}"
                return self
        raise RuntimeError("jetexec up never printed ready")

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "jetexec.cli", *args, "--nats-url", self.url], input=input, capture_output=True, timeout=timeout, env=self.env)

    def submit(self, intents: list[dict | str], timeout: float = 120) -> list[dict]:
        lines = "\n".join(i if isinstance(i, str) else json.dumps(i) for i in intents).encode() + b"\n"
        res = self.cli("submit", "-", "--wait", "--json", "--timeout", str(timeout), input=lines, timeout=timeout + 60)
        assert res.returncode == 0, res.stderr.decode()
        return [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]

    def worker_pids(self, name: str) -> list[int]:
        """PIDs of `jetexec worker NAME` processes that belong to this `up`."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
                stat = (d / "stat").read_text().split()
            except OSError:
                continue
            if b"worker" in cmd and name.encode() in cmd and int(stat[3]) == self.proc.pid:
                pids.append(int(d.name))
        return pids

    def request(self, subject: str, payload: dict) -> dict:
        import asyncio

        import nats

        async def go():
            nc = await nats.connect(self.url)
            try:
                msg = await nc.request(subject, json.dumps(payload).encode(), timeout=5)
                return json.loads(msg.data)
            finally:
                await nc.close()

        return asyncio.run(go())

    def venue_stats(self) -> dict:
        return self.request("venue.api.stats", {})

    def venue_faults(self, faults: list[str], reject_rate: str = "0") -> dict:
        return self.request("venue.api.faults", {"faults": faults, "reject_rate": reject_rate})

    def kv(self, bucket: str, key: str, value: str | None) -> None:
        """Put (or delete, when value is None) one KV entry: the operator's knobs live in KV SAFETY."""
        import asyncio

        import nats

        async def go():
            nc = await nats.connect(self.url)
            try:
                kv = await nc.jetstream().key_value(bucket)
                if value is None:
                    await kv.delete(key)
                else:
                    await kv.put(key, value.encode())
            finally:
                await nc.close()

        asyncio.run(go())

    def status(self, cid: str) -> dict:
        res = self.cli("status", cid, "--json")
        assert res.returncode == 0, res.stderr.decode()
        return json.loads(res.stdout)

    def submit_nowait(self, intents: list[dict]) -> list[dict]:
        lines = "\n".join(json.dumps(i) for i in intents).encode() + b"\n"
        res = self.cli("submit", "-", "--json", input=lines)
        assert res.returncode == 0, res.stderr.decode()
        return [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]


def market_intents(n: int, prefix: str, **extra) -> list[dict]:
    symbols = ["AAPL", "MSFT", "TSLA"]
    return [
        {"symbol": symbols[i % 3], "side": "BUY" if i % 2 else "SELL", "qty": 5 + i % 20, "order_type": "MARKET",
         "strategy_id": f"{prefix}-{i % 10}", "client_key": f"{prefix}-{i}", **extra}
        for i in range(n)
    ]
