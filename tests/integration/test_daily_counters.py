"""GR062 daily limits with JetStream counters: two precheck workers, a burst over the limit, and
exactly the limit passes — no lock, no read-modify-write, and the totals in the counter stream agree."""

import asyncio
import json
import time
from decimal import Decimal

import pytest

from bus.settings import NatsSettings
from bus.topology import count_subject
from core.precheck import daily_bucket, units_notional
from schemas.codec import decode_fact, encode
from schemas.enums import ExecutionMode, OrderType, ReasonCode, Side
from schemas.messages import Intent, PrecheckCommand, PrecheckDone
from tests.conftest import wait_for
from workers import load_worker

LIMIT = 15


@pytest.fixture
async def workers(nats_server, js_ready, monkeypatch):
    monkeypatch.setenv("JETEXEC_PRECHECK_CONFIG", json.dumps({"daily_trade_limit": LIMIT, "max_position_qty": "1e9"}))
    apps = []
    for name in ("paper-exchange", "precheck", "precheck"):
        app = load_worker(name)(NatsSettings(url=nats_server.url))
        await app.start()
        apps.append(app)
    yield apps
    for app in reversed(apps):
        await app.stop()


async def _total(nc, subject: str) -> int:
    msg = await nc.request("$JS.API.DIRECT.GET.EXEC_COUNTERS", json.dumps({"last_by_subj": subject}).encode(), timeout=5)
    return int(json.loads(msg.data)["val"])


async def test_a_burst_over_the_daily_limit_passes_exactly_the_limit(workers, js_ready):
    nc, js = js_ready
    intent = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(2), order_type=OrderType.MARKET, strategy_id="burst")
    n = 40
    cids = [f"xburst{i:03d}" for i in range(n)]
    await asyncio.gather(*(js.publish(f"exec.cmd.precheck.{c}", encode(PrecheckCommand(cid=c, step=1, intent=intent, mode=ExecutionMode.PAPER, issued_at=time.time())), headers={"Nats-Msg-Id": f"{c}.cmd"}) for c in cids))

    async def answers() -> list[PrecheckDone]:
        out = []
        for c in cids:
            try:
                m = await js.get_last_msg("EXEC_EVT", f"exec.evt.*.{c}")
            except Exception:
                continue
            out.append(decode_fact(m.data))
        return out if len(out) == n else []

    done = await wait_for(answers, timeout=30, what="every command answered")
    passed = [f for f in done if f.passed]
    refused = [f for f in done if not f.passed]
    assert len(passed) == LIMIT
    assert {f.reason_code for f in refused} == {ReasonCode.DAILY_LIMIT_REACHED}
    assert all(any(a.code.value == "GR062" for a in f.alerts) for f in refused)
    # the counters hold exactly what passed: refused intents were counted and taken back
    bucket = daily_bucket("burst", time.time())
    assert await _total(nc, count_subject("trades", bucket)) == LIMIT
    notional = units_notional(await _total(nc, count_subject("notional", bucket)))
    assert notional > 0
