"""Shared fixtures: a real nats-server with JetStream on a free port and a temporary data dir.

Never a mocked bus. ``wait_for`` polls a condition with a deadline (no sleep stands in for one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import nats
import pytest

from bus.server import EmbeddedServer, free_port
from bus.topology import ensure_topology


@pytest.fixture
def nats_server(tmp_path):
    server = EmbeddedServer(tmp_path / "nats", port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def js_ready(nats_server):
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await ensure_topology(js)
    yield nc, js
    await nc.drain()


async def wait_for(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"):
    """Poll until ``predicate`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def wait_for_sync(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
