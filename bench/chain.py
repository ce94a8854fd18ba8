"""(a) The runtime's own ceiling: the reference 6-hop chain, run through ``bus/runtime.py``.

The same shape as ``../shared/bench/jetstream_limit.py --reference`` (its "tuned" 6-process chain):
one work-queue stream per hop, one worker process per hop, the last hop publishing to an output
stream that the driver watches with a plain subscription, and a burst injected with acked publishes
in groups of 256. The difference is what each hop runs: here the worker runtime the stage workers
use (continuous pull, ``Nats-Msg-Id`` on every output, publish-then-ack, metrics), with a handler
that only forwards. ``chain_vs_ref`` in ``jetexec bench`` is this rate over the reference's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from bus.metrics import Health
from bus.runtime import ConsumerLoop, Out
from bus.topology import ConsumerSpec, _consumer_config

HOPS = 6
OUT_SUBJECT = "bchain.out"


def _stream(k: int) -> str:
    return f"BCHAIN{k}"


def _subject(k: int, mid: str) -> str:
    return f"bchain.{k}.{mid}" if k <= HOPS else f"{OUT_SUBJECT}.{mid}"


def _hop_main(url: str, hop: int, ready) -> None:
    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=10)
        spec = ConsumerSpec(_stream(hop), f"hop{hop}", f"bchain.{hop}.*", ack_wait_s=30, max_deliver=5, max_ack_pending=20000)
        await js.add_consumer(spec.stream, _consumer_config(spec))

        def forward(d):  # no I/O: the runtime's batched path, like the coordinator's
            return [Out(_subject(hop + 1, d.cid), d.data, f"h{hop + 1}.{d.cid}")]

        loop = ConsumerLoop(nc, js, spec, forward, f"hop{hop}", Health(f"hop{hop}"), concurrency=256, ordered_by_key=False)
        ready.set()
        await loop.run()

    asyncio.run(main())


async def measure(url: str, n: int = 5000, rate: float | None = None) -> dict:
    """A burst of ``n`` (``rate`` None: orders/s first injection → last arrival) or ``n`` paced at
    ``rate``/s (latency p50/p99 injection → arrival)."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    for k in range(1, HOPS + 2):
        name = _stream(k) if k <= HOPS else "BCHAINOUT"
        try:
            await js.delete_stream(name)
        except Exception:
            pass
        subject = f"bchain.{k}.*" if k <= HOPS else f"{OUT_SUBJECT}.*"
        await js.add_stream(StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE if k <= HOPS else RetentionPolicy.LIMITS, storage=StorageType.FILE, duplicate_window=120))
    ctx = mp.get_context("spawn")
    procs, events = [], []
    for hop in range(1, HOPS + 1):
        ev = ctx.Event()
        p = ctx.Process(target=_hop_main, args=(url, hop, ev), daemon=True)
        p.start()
        procs.append(p)
        events.append(ev)
    for ev in events:
        ev.wait(60)
    sent_at: dict[str, float] = {}
    lat: list[float] = []
    finished = asyncio.Event()
    last = [0.0]

    async def sink(msg) -> None:
        now = time.perf_counter()
        mid = msg.subject.rsplit(".", 1)[-1]
        t = sent_at.pop(mid, None)
        if t is None:
            return
        lat.append((now - t) * 1000)
        last[0] = now
        if len(lat) >= n:
            finished.set()

    await nc.subscribe(f"{OUT_SUBJECT}.*", cb=sink)
    await nc.flush()
    await asyncio.sleep(0.2)  # let every hop's first pull request reach the server
    payload = b"x" * 200
    t0 = time.perf_counter()
    if rate is None:
        for i in range(0, n, 256):
            batch = [f"m{j}" for j in range(i, min(n, i + 256))]
            now = time.perf_counter()
            for mid in batch:
                sent_at[mid] = now
            await asyncio.gather(*(js.publish(_subject(1, mid), payload) for mid in batch))
    else:
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the injection, not waiting for a condition
            mid = f"m{i}"
            sent_at[mid] = time.perf_counter()
            await js.publish(_subject(1, mid), payload)
    try:
        await asyncio.wait_for(finished.wait(), 120)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)
        for k in range(1, HOPS + 1):
            await js.delete_stream(_stream(k))
        await js.delete_stream("BCHAINOUT")
        await nc.drain()
    if rate is None:
        return {"chain_per_s": round(n / (last[0] - t0), 1), "chain_messages": n, "chain_hops": HOPS}
    s = sorted(lat)
    return {"chain_paced_rate_per_s": rate, "chain_p50_ms": round(s[len(s) // 2], 2), "chain_p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))], 2)}
