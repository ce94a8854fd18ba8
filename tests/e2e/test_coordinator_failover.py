"""Two coordinator replicas under load; the one that owns the partitions is SIGKILLed.

The other (or the restarted one) takes the partitions over — the pin moves once the dead owner
stops pulling — rebuilds them from their checkpoints and the fact log, and finishes every
execution. Two replicas never both advance one execution: every execution's audited transitions
are exactly its record's, once each, and no child reaches the venue twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import nats
import pytest

from bench.chaos import _audit_check
from jetexec.client import JetexecClient
from tests.conftest import wait_for_sync
from tests.e2e.harness import Up, market_intents

pytestmark = pytest.mark.e2e


async def _owners(url: str) -> list[dict]:
    """Every coordinator replica's answer: the partitions it owns, its pid."""
    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        replies: list[dict] = []

        async def on_reply(msg) -> None:
            replies.append(json.loads(msg.data))

        sub = await nc.subscribe(inbox, cb=on_reply)
        await nc.publish("exec.ctl.live", b"", reply=inbox)
        await nc.flush()
        await asyncio.sleep(0.5)  # a scatter-gather window: every replica answers within it
        await sub.unsubscribe()
        return replies
    finally:
        await nc.drain()


async def _audit(url: str, cids: list[str]):
    async with JetexecClient.connect(url) as client:
        return await _audit_check(client, cids)


def test_killing_the_owning_coordinator_of_two_loses_and_repeats_nothing(tmp_path):
    with Up(tmp_path, env={"JETEXEC_REPLICAS": "coordinator=2"}) as system:
        assert len(system.worker_pids("coordinator")) == 2
        intents = market_intents(60, "fo") + market_intents(30, "fo-twap", split="TWAP", horizon_s=3)
        before = system.venue_stats()["orders"]
        batch = tmp_path / "intents.jsonl"
        batch.write_text("\n".join(json.dumps(i) for i in intents))
        proc = subprocess.Popen([sys.executable, "-m", "jetexec.cli", "submit", str(batch), "--wait", "--json", "--timeout", "150", "--nats-url", system.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=system.env)
        wait_for_sync(lambda: system.venue_stats()["orders"] > before + 20, what="children reaching the venue")
        owners = [r for r in asyncio.run(_owners(system.url)) if r["partitions"]]
        assert owners, "no coordinator owns a partition under load"
        victim = max(owners, key=lambda r: len(r["partitions"]))
        assert victim["pid"] in system.worker_pids("coordinator")
        os.kill(victim["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, err.decode()
        results = [json.loads(line) for line in out.decode().splitlines()]
        assert len(results) == len(intents)
        assert all(r["state"] == "COMPLETE" for r in results), sorted({r["state"] for r in results})
        assert all(str(i["qty"]) == r["filled_qty"] for i, r in zip(intents, results))
        stats = system.venue_stats()
        assert stats["duplicate_attempts"] == 0
        assert stats["orders"] - before == sum(len(r["children"]) for r in results)  # each child once
        # every partition has an owner again, and the dead one is not among them
        owners_after = asyncio.run(_owners(system.url))
        assert sorted(p for r in owners_after for p in r["partitions"]) == list(range(8))
        assert victim["pid"] not in {r["pid"] for r in owners_after}
        # each execution's transitions: audited once each, the same as its record (no second history)
        check = asyncio.run(_audit(system.url, [r["correlation_id"] for r in results]))
        assert check.ok, check.detail
