"""The worker runtime against a real nats-server: publish-then-ack, dedupe, retry, dead letters."""

import asyncio

import pytest

from bus.runtime import Out, Poison, Retry
from workers.common import StageWorker
from bus.settings import NatsSettings
from bus.topology import ensure_topology
from schemas.codec import decode, decode_command, encode
from schemas.enums import ExecutionMode, OrderType, ReasonCode, Side
from schemas.messages import Intent, PrecheckCommand, StageFailed
from tests.conftest import wait_for

INTENT = Intent(symbol="AAPL", side=Side.BUY, qty=1, order_type=OrderType.MARKET, strategy_id="s")


class EchoWorker(StageWorker):
    """Consumes precheck commands; behaviour chosen by the intent's strategy_id."""

    name = "echo"

    def __init__(self, settings):
        super().__init__(settings)
        self.seen: list[tuple[str, int]] = []

    def consumers(self):
        return [("precheck", self.handle)]

    async def handle(self, d):
        cmd = decode_command(d.data)
        self.seen.append((cmd.cid, d.num_delivered))
        if cmd.intent.strategy_id == "poison":
            raise Poison("POISON_MESSAGE", "bad on purpose")
        if cmd.intent.strategy_id == "flaky" and d.num_delivered < 3:
            raise Retry("try again", delay=0.05)
        return [Out(f"exec.evt.{cmd.cid}", b'{"echo":1}', f"{cmd.cid}.echo")]


def cmd(cid, strategy="ok"):
    return encode(PrecheckCommand(cid=cid, step=1, intent=Intent(symbol="AAPL", side=Side.BUY, qty=1, order_type=OrderType.MARKET, strategy_id=strategy), mode=ExecutionMode.PAPER))


@pytest.fixture
async def worker(nats_server, js_ready):
    w = EchoWorker(NatsSettings(url=nats_server.url))
    await w.start()
    yield w
    await w.stop()


async def test_outputs_published_once_and_commands_acked(worker, js_ready):
    nc, js = js_ready
    for i in range(50):
        await js.publish(f"exec.cmd.precheck.c{i}", cmd(f"c{i}"), headers={"Nats-Msg-Id": f"cmd-{i}"})
    await js.publish("exec.cmd.precheck.c0", cmd("c0"), headers={"Nats-Msg-Id": "cmd-0"})  # duplicate: dropped
    await wait_for(lambda: len(worker.seen) >= 50, what="50 commands handled")

    async def evt_count():
        return (await js.stream_info("EXEC_EVT")).state.messages

    await wait_for(lambda: evt_count(), what="outputs")
    await wait_for(lambda: _eq(evt_count(), 50), what="50 outputs")
    await wait_for(lambda: _eq(_pending(js, "EXEC_CMD"), 0), what="work queue drained")
    assert sorted(c for c, _ in worker.seen) == sorted(f"c{i}" for i in range(50))


async def _eq(coro, n):
    return (await coro) == n


async def _pending(js, stream):
    return (await js.stream_info(stream)).state.messages


async def test_transient_errors_are_redelivered(worker, js_ready):
    _, js = js_ready
    await js.publish("exec.cmd.precheck.flaky1", cmd("flaky1", "flaky"))
    await wait_for(lambda: ("flaky1", 3) in worker.seen, what="third delivery")
    await wait_for(lambda: _eq(_pending(js, "EXEC_CMD"), 0), what="acked after success")


async def test_poison_is_dead_lettered_with_reason_and_reported(worker, js_ready):
    nc, js = js_ready
    await js.publish("exec.cmd.precheck.bad1", cmd("bad1", "poison"))
    await js.publish("exec.cmd.precheck.bad2", b"\x00garbage")
    await wait_for(lambda: _eq(_pending(js, "EXEC_DLQ"), 2), what="two dead letters")
    sub = await js.pull_subscribe("exec.dlq.precheck", durable="dlq-reader", stream="EXEC_DLQ")
    msgs = await sub.fetch(2, timeout=5)
    reasons = sorted(m.headers["Jetexec-Reason"] for m in msgs)
    assert reasons == ["POISON_MESSAGE", "VALIDATION_MALFORMED"]
    assert all(m.headers["Jetexec-Subject"].startswith("exec.cmd.precheck.") for m in msgs)
    # Each dead-lettered command becomes a StageFailed fact so its execution never hangs.
    evt = await js.pull_subscribe("exec.evt.>", durable="evt-reader", stream="EXEC_EVT")
    facts = [decode(m.data, StageFailed) for m in await evt.fetch(2, timeout=5)]
    assert {f.cid for f in facts} == {"bad1", "bad2"} and all(f.reason_code in (ReasonCode.POISON_MESSAGE,) for f in facts)
    await wait_for(lambda: _eq(_pending(js, "EXEC_CMD"), 0), what="poison removed from the work queue")


async def test_topology_is_idempotent(js_ready):
    _, js = js_ready
    await ensure_topology(js)
    await ensure_topology(js)
    assert (await js.stream_info("AUDIT")).config.deny_purge is True


async def test_pull_loop_survives_server_restart(nats_server, tmp_path):
    w = EchoWorker(NatsSettings(url=nats_server.url))
    await w.start()
    try:
        nats_server.stop()
        nats_server.start()
        import nats

        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await wait_for(lambda: w.nc.is_connected, what="worker reconnected")
        await js.publish("exec.cmd.precheck.after", cmd("after"))
        await wait_for(lambda: any(c == "after" for c, _ in w.seen), timeout=30, what="delivery after restart")
        await nc.drain()
    finally:
        await w.stop()


_ = asyncio
