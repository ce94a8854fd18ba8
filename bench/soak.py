"""Soak: many intents through the whole system; each worker's memory (RSS) after warm-up is compared
with its memory at the end. ``jetexec bench --soak 100000``."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from bench.pipeline import BENCH_ENV, _intent
from bus.server import free_port
from jetexec.supervisor import run_up


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(n: int, wave: int = 500, log=print) -> dict:
    from jetexec.client import JetexecClient

    tmp = Path(tempfile.mkdtemp(prefix="jetexec-soak-"))
    stop = asyncio.Event()
    out: dict = {"soak_intents": n}
    errors: list[BaseException] = []

    async def scenario(url: str, sup) -> None:
        try:
            client = await JetexecClient.open(url)
            warm = max(wave, n // 10)
            baseline: dict[str, int] = {}
            done = 0
            started = time.monotonic()
            tag = f"soak-{time.time_ns()}"
            while done < n:
                batch = [_intent(done + i, tag) for i in range(min(wave, n - done))]
                receipts = await asyncio.gather(*(client.submit(x, timeout=120) for x in batch))
                await client.wait_many([r.correlation_id for r in receipts], timeout=300)
                done += len(batch)
                if not baseline and done >= warm:
                    baseline = {c.name: rss_kib(c.proc.pid) for c in sup.children}
                if done % (wave * 20) == 0:
                    log(f"soak: {done}/{n} in {time.monotonic() - started:.0f}s")
            final = {c.name: rss_kib(c.proc.pid) for c in sup.children}
            out["soak_seconds"] = round(time.monotonic() - started, 1)
            out["soak_rss_kib"] = {k: {"after_warmup": baseline.get(k, 0), "end": v, "growth_pct": round((v - baseline.get(k, v)) / max(1, baseline.get(k, v)) * 100, 1)} for k, v in final.items()}
            out["soak_max_growth_pct"] = max(x["growth_pct"] for x in out["soak_rss_kib"].values())
            out["soak_restarts"] = sum(c.restarts for c in sup.children)
            await client.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    try:
        await run_up(tmp, free_port(), env=BENCH_ENV, ready_cb=scenario, stop_event=stop, quiet=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        raise errors[0]
    return out
