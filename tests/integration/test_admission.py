"""Admission control on a real server: while a coordinator reports pressure, the gateway refuses
new intents with OVERLOADED and a retry-after, stores nothing for them, and accepts the same
intent once the pressure is gone; a client that holds waits the refusals out."""

import asyncio
import time

import pytest

from bus.settings import NatsSettings
from bus.topology import LOAD_SUBJECT
from core.admission import LoadReport
from jetexec.client import JetexecClient
from schemas.codec import encode
from schemas.enums import ReasonCode
from tests.conftest import wait_for
from workers import load_worker


@pytest.fixture
async def gateway(nats_server, js_ready):
    apps = []
    for name in ("paper-exchange", "gateway"):
        app = load_worker(name)(NatsSettings(url=nats_server.url))
        await app.start()
        apps.append(app)
    yield apps[1]
    for app in reversed(apps):
        await app.stop()


async def report(nc, pressure: float) -> None:
    await nc.publish(LOAD_SUBJECT, encode(LoadReport(instance="coordinator-under-test", pressure=pressure, at=time.time())))
    await nc.flush()


async def test_saturated_intake_refuses_with_a_retry_after_and_stores_nothing(gateway, js_ready, nats_server):
    nc, js = js_ready
    intent = {"symbol": "AAPL", "side": "BUY", "qty": 3, "strategy_id": "adm", "client_key": "adm-1"}
    client = await JetexecClient.open(nats_server.url)
    client.hold_when_overloaded = False
    try:
        await report(nc, 0.9)
        await wait_for(lambda: gateway.loads, what="the gateway heard the load report")
        receipt = await client.submit(intent)
        assert not receipt.accepted and receipt.reason_code is ReasonCode.OVERLOADED
        assert receipt.retry_after_ms and receipt.retry_after_ms >= 100 and "saturated" in receipt.detail
        assert (await js.stream_info("EXEC_EVT")).state.messages == 0  # refused, so never accepted
        # the pressure is gone: the same intent is accepted, as its first try
        await report(nc, 0.0)
        await wait_for(lambda: all(r.pressure == 0.0 for r in gateway.loads.values()), what="the low report")
        again = await client.submit(intent)
        assert again.accepted and again.correlation_id == receipt.correlation_id
        assert (await js.stream_info("EXEC_EVT")).state.messages == 1
    finally:
        await client.close()


async def test_a_holding_client_waits_the_refusals_out(gateway, js_ready, nats_server):
    nc, js = js_ready
    client = await JetexecClient.open(nats_server.url)
    try:
        await report(nc, 0.9)
        await wait_for(lambda: gateway.loads, what="the gateway heard the load report")
        pending = asyncio.create_task(client.submit({"symbol": "AAPL", "side": "SELL", "qty": 1, "strategy_id": "adm", "client_key": "adm-2"}, timeout=30))
        await wait_for(lambda: client.refusals >= 1, what="a refusal")
        assert not pending.done()
        await report(nc, 0.0)
        receipt = await asyncio.wait_for(pending, 30)
        assert receipt.accepted and client.refusals >= 1
    finally:
        await client.close()
