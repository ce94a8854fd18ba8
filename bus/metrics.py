"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints of every worker.

``/healthz``: the pull loops are making progress (a message, a heartbeat or an empty pull within the
liveness window, ``JETEXEC_LIVENESS_WINDOW_S``, default 30 s); a worker without a pull loop (gateway,
paper exchange) proves its event loop turns. It does not fail on a NATS disconnect: the client
reconnects, restarts make it worse. ``/readyz``: connected and the topology verified (503 with the
reason otherwise: starting, topology not provisioned, NATS disconnected, draining).
See docs/observability.md for the metric list.
"""

from __future__ import annotations

import asyncio
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES = Counter("jetexec_messages_total", "Messages handled", ["worker", "subject", "outcome"])
HANDLER_SECONDS = Histogram(
    "jetexec_handler_seconds",
    "Handler latency",
    ["worker", "subject"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDELIVERIES = Counter("jetexec_redeliveries_total", "Messages seen with a delivery count above 1", ["worker", "subject"])
REFUSALS = Counter("jetexec_intake_refused_total", "Intents refused at intake because the pipeline is saturated (OVERLOADED)")
DEAD_LETTERS = Counter("jetexec_dead_letters_total", "Messages dead-lettered", ["worker", "subject", "reason"])
EXECUTIONS = Counter("jetexec_executions_total", "Executions reaching a state", ["state"])
ALERTS = Counter("jetexec_alerts_total", "Alerts raised", ["code"])
VENUE_CALLS = Histogram(
    "jetexec_venue_call_seconds",
    "Venue round trips",
    ["op", "outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAST_PROGRESS = Gauge("jetexec_pull_loop_last_progress_seconds", "Unix time of the last pull-loop progress", ["worker"])
READY = Gauge("jetexec_ready", "1 when the worker is ready (connected, topology verified, consuming)", ["worker"])
CONNECTED = Gauge("jetexec_nats_connected", "1 while the NATS connection is up", ["worker"])


class Health:
    def __init__(self, worker: str, liveness_window_s: float | None = None) -> None:
        self.worker = worker
        self.window = liveness_window_s if liveness_window_s is not None else float(os.environ.get("JETEXEC_LIVENESS_WINDOW_S", "30"))
        self.last_progress = time.time()
        self._ready = False
        self._connected = False
        self.detail = "starting"  # why /readyz says no, while it does
        READY.labels(worker).set(0)
        CONNECTED.labels(worker).set(0)

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        if value:
            self.detail = ""
        READY.labels(self.worker).set(1 if value and self._connected else 0)

    @property
    def connected(self) -> bool:
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        self._connected = value
        CONNECTED.labels(self.worker).set(1 if value else 0)
        READY.labels(self.worker).set(1 if value and self._ready else 0)

    def not_ready(self, detail: str) -> None:
        self.ready = False
        self.detail = detail

    def progress(self) -> None:
        self.last_progress = time.time()
        LAST_PROGRESS.labels(self.worker).set(self.last_progress)

    @property
    def live(self) -> bool:
        return time.time() - self.last_progress < self.window

    def readiness(self) -> tuple[bool, str]:
        if self._ready and self._connected:
            return True, "ready"
        if not self._connected and self._ready:
            return False, "NATS disconnected"
        return False, self.detail or "not ready"


async def serve_http(health: Health, host: str, port: int) -> asyncio.AbstractServer:
    """A tiny HTTP/1.0 server: enough for Prometheus scrapes and Kubernetes probes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "/"
            path = path.split("?")[0]
            if path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest()
            elif path == "/healthz":
                ok = health.live
                status, ctype, body = (200 if ok else 503), "text/plain", (b"ok\n" if ok else b"pull loop stalled\n")
            elif path == "/readyz":
                ok, why = health.readiness()
                status, ctype, body = (200 if ok else 503), "text/plain", f"{why}\n".encode()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
