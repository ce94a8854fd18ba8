"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints of every worker.

``/healthz``: the pull loops are making progress (a message, a heartbeat or an empty pull within the
liveness window). It does not fail on a NATS disconnect: the client reconnects, restarts make it
worse. ``/readyz``: connected and the topology verified.
"""

from __future__ import annotations

import asyncio
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


class Health:
    def __init__(self, worker: str, liveness_window_s: float = 30.0) -> None:
        self.worker = worker
        self.window = liveness_window_s
        self.last_progress = time.time()
        self.ready = False
        self.connected = False

    def progress(self) -> None:
        self.last_progress = time.time()
        LAST_PROGRESS.labels(self.worker).set(self.last_progress)

    @property
    def live(self) -> bool:
        return time.time() - self.last_progress < self.window


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
                ok = health.ready and health.connected
                status, ctype, body = (200 if ok else 503), "text/plain", (b"ready\n" if ok else b"not ready\n")
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
