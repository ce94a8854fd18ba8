"""(a) The raw ceiling: a 6-hop JetStream chain, each hop a separate process running the same
continuous-pull runtime and pipelined publishing the workers use, with no business logic."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from bus.metrics import Health
from bus.runtime import ConsumerLoop, Out
from bus.topology import ConsumerSpec

HOPS = 6
STREAM = "BENCH_CHAIN"


def _hop_main(url: str, hop: int, ready) -> None:
    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=10)
        spec = ConsumerSpec(STREAM, f"hop{hop}", f"bench.h{hop}.*", ack_wait_s=30, max_deliver=5, max_ack_pending=20000)
        from bus.topology import _consumer_config

        await js.add_consumer(STREAM, _consumer_config(spec))

        async def handle(d):
            return [Out(f"bench.h{hop + 1}.{d.cid}", d.data, f"h{hop + 1}.{d.cid}")]

        loop = ConsumerLoop(nc, js, spec, handle, f"hop{hop}", Health(f"hop{hop}"), concurrency=256, ordered_by_key=False)
        ready.set()
        await loop.run()

    asyncio.run(main())


async def measure(url: str, n: int = 20000, warmup: int = 500) -> dict:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    try:
        await js.delete_stream(STREAM)
    except Exception:
        pass
    subjects = [f"bench.h{i}.*" for i in range(HOPS + 1)]
    await js.add_stream(StreamConfig(name=STREAM, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, duplicate_window=120))
    ctx = mp.get_context("spawn")
    procs, events = [], []
    for hop in range(HOPS):
        ev = ctx.Event()
        p = ctx.Process(target=_hop_main, args=(url, hop, ev), daemon=True)
        p.start()
        procs.append(p)
        events.append(ev)
    for ev in events:
        ev.wait(60)
    done = 0
    first_done = None
    finished = asyncio.Event()
    target = n + warmup

    async def sink(msg) -> None:
        nonlocal done, first_done
        done += 1
        if done == warmup:
            first_done = time.perf_counter()
        if done >= target:
            finished.set()

    # The final hop's output is read by a plain subscription (the end of the chain).
    await nc.subscribe(f"bench.h{HOPS}.*", cb=sink)
    payload = b"x" * 256
    for i in range(target):
        await js.publish_async(f"bench.h0.m{i}", payload, headers={"Nats-Msg-Id": f"h0.m{i}"})
        if i % 1000 == 999:
            await js.publish_async_completed()
    await js.publish_async_completed()
    await asyncio.wait_for(finished.wait(), 300)
    elapsed = time.perf_counter() - (first_done or time.perf_counter())
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)
    await js.delete_stream(STREAM)
    await nc.drain()
    return {"raw_chain_per_s": round(n / elapsed, 1) if elapsed > 0 else 0.0, "raw_chain_messages": n, "raw_chain_hops": HOPS}
