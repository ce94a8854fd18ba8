"""(b) executions per second at saturation, (c) paced latency, (d) escape latency idle and under a
20,000-command backlog — all against the real system (`jetexec up`: embedded nats-server, every
worker a separate process)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal


from bench.cpu import CpuMeter
from core.ids import correlation_id
from jetexec.client import JetexecClient
from schemas.codec import decode_fact, encode
from schemas.enums import ExecutionMode, OrderType, Side
from schemas.messages import EscapeDone, Intent, PrecheckCommand

BENCH_ENV = {
    # The bench measures the pipeline, not the default risk limits: thousands of trades a strategy.
    "JETEXEC_PRECHECK_CONFIG": json.dumps({"daily_trade_limit": 10_000_000, "daily_notional_limit": "1e15", "max_position_qty": "1e12"}),
}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def _intent(i: int, tag: str) -> dict:
    sym = ("AAPL", "MSFT", "TSLA")[i % 3]
    return {"symbol": sym, "side": "BUY" if i % 2 else "SELL", "qty": 1 + i % 5, "order_type": "MARKET", "strategy_id": f"bench-{i % 64}", "client_key": f"{tag}-{i}"}


async def saturation(client: JetexecClient, n: int, pids: dict[str, list[int]] | None = None) -> dict:
    """``n`` SINGLE intents as fast as the system takes them; CPU per execution from ``/proc`` over
    the window, for every process ``up`` started (``pids``) and, separately, this load generator."""
    sem = asyncio.Semaphore(200)  # a strategy-side in-flight cap: past it, intents only queue (and meet stage deadlines)

    async def one(i: int):
        async with sem:
            return await client.submit(_intent(i, f"sat-{time.time_ns()}"), timeout=120)

    meter = CpuMeter({**(pids or {}), "load-generator": [os.getpid()]}).start()
    t0 = time.time()
    receipts = await asyncio.gather(*(one(i) for i in range(n)))
    results = await client.wait_many([r.correlation_id for r in receipts], timeout=300)
    meter.stop()
    complete = [r for r in results.values() if r.state.value == "COMPLETE"]
    others: dict[str, int] = {}
    for r in results.values():
        if r.state.value != "COMPLETE":
            key = f"{r.state.value}:{r.reason_code.value if r.reason_code else ''}"
            others[key] = others.get(key, 0) + 1
    t_end = max(r.updated_at for r in complete) if complete else time.time()
    by_process = meter.per_unit_ms(len(complete))
    load_gen = by_process.pop("load-generator", None)
    return {
        "executions": n,
        "executions_complete": len(complete),
        "executions_not_complete": others,
        "executions_escaped_on_deadline": sum(v for k, v in others.items() if k.endswith(":STAGE_TIMEOUT")),
        "executions_per_s": round(len(complete) / (t_end - t0), 1),
        "cpu_ms_per_execution": round(sum(by_process.values()), 2),
        "cpu_ms_by_process": by_process,
        "cpu_ms_load_generator": load_gen,
    }


async def paced(client: JetexecClient, rate: float, seconds: float) -> dict:
    n = int(rate * seconds)
    submitted: dict[str, float] = {}
    tasks = []
    t0 = time.perf_counter()
    wall0 = time.time()

    async def one(i: int, t_submit: float) -> None:
        r = await client.submit(_intent(i, f"pace-{wall0}"), timeout=60)
        submitted[r.correlation_id] = t_submit

    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load generator, not waiting for a condition
        tasks.append(asyncio.create_task(one(i, time.time())))
    await asyncio.gather(*tasks)
    await client.wait_many(list(submitted), timeout=120)
    acks, completes = [], []
    for cid, t_sub in submitted.items():
        rec = await client.record(cid)
        if rec is None or rec.state.value != "COMPLETE":
            continue
        acked = [c.acked_at for c in rec.children if c.acked_at]
        if acked:
            acks.append((min(acked) - t_sub) * 1000)
        completes.append((rec.completed_at - t_sub) * 1000)
    return {
        "paced_rate_per_s": rate,
        "paced_executions": len(completes),
        "ack_p50_ms": round(pct(acks, 50), 2),
        "ack_p99_ms": round(pct(acks, 99), 2),
        "complete_p50_ms": round(pct(completes, 50), 2),
        "complete_p99_ms": round(pct(completes, 99), 2),
    }


async def _resting_executions(client: JetexecClient, k: int, tag: str) -> list[str]:
    from workers.common import VenueClient

    quotes = {q.symbol: q for q in await VenueClient(client.nc).symbols()}
    q = quotes["MSFT"]
    price = str((q.reference_price * Decimal("0.99")).quantize(q.tick_size))
    receipts = await asyncio.gather(*(
        client.submit({"symbol": "MSFT", "side": "BUY", "qty": 5, "order_type": "LIMIT", "price": price, "strategy_id": "bench-esc", "client_key": f"{tag}-{i}"})
        for i in range(k)
    ))
    cids = [r.correlation_id for r in receipts]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        recs = await asyncio.gather(*(client.record(c) for c in cids))
        if all(r and r.children and all(ch.state.value == "ACKNOWLEDGED" for ch in r.children) for r in recs):
            return cids
        await asyncio.sleep(0.05)
    raise TimeoutError("resting executions never acknowledged")


async def escape_latency(client: JetexecClient, cids: list[str], interval_s: float = 0.05) -> list[float]:
    """Request → EscapeDone (every child's CancelAck in hand), measured from the requester."""
    done: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {c: asyncio.Event() for c in cids}

    async def on_fact(msg) -> None:
        try:
            fact = decode_fact(msg.data)
        except Exception:
            return
        if isinstance(fact, EscapeDone) and fact.cid in waiters and fact.cid not in done:
            done[fact.cid] = time.perf_counter()
            waiters[fact.cid].set()

    sub = await client.nc.subscribe("exec.evt.*", cb=on_fact)
    lat = []
    try:
        for cid in cids:
            t0 = time.perf_counter()
            await client.escape(cid, reason="BENCH")
            await asyncio.wait_for(waiters[cid].wait(), 30)
            lat.append((done[cid] - t0) * 1000)
            await asyncio.sleep(interval_s)  # pacing between samples, as in the research probe
    finally:
        await sub.unsubscribe()
    return lat


async def backlog(js, n: int) -> None:
    """Queue n precheck commands (for executions that do not exist: the coordinator ignores their
    results) so the command workers and the coordinator are busy while escapes are measured."""
    intent = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(1), order_type=OrderType.MARKET, strategy_id="backlog")
    for i in range(n):
        cid = correlation_id(f"backlog-{i}-{time.time_ns()}")
        cmd = PrecheckCommand(cid=cid, step=1, intent=intent, mode=ExecutionMode.PAPER, issued_at=time.time())
        await js.publish_async(f"exec.cmd.precheck.{cid}", encode(cmd), headers={"Nats-Msg-Id": f"bl.{cid}"})
        if i % 1000 == 999:
            await js.publish_async_completed()
    await js.publish_async_completed()


async def escapes(client: JetexecClient, samples: int, backlog_n: int) -> dict:
    idle_cids = await _resting_executions(client, samples, f"esc-idle-{time.time_ns()}")
    idle = await escape_latency(client, idle_cids)
    busy_cids = await _resting_executions(client, samples, f"esc-busy-{time.time_ns()}")
    js = client.nc.jetstream(timeout=30)
    await backlog(js, backlog_n)
    pending_at_start = (await js.stream_info("EXEC_CMD")).state.messages
    busy = await escape_latency(client, busy_cids)
    pending_at_end = (await js.stream_info("EXEC_CMD")).state.messages
    return {
        "escape_samples": samples,
        "escape_idle_p50_ms": round(pct(idle, 50), 2),
        "escape_idle_p99_ms": round(pct(idle, 99), 2),
        "escape_backlog_p50_ms": round(pct(busy, 50), 2),
        "escape_backlog_p99_ms": round(pct(busy, 99), 2),
        "escape_backlog_commands": backlog_n,
        "escape_backlog_pending_at_start": pending_at_start,
        "escape_backlog_pending_at_end": pending_at_end,
    }

