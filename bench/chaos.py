"""The chaos suite: thousands of intents while a driver SIGKILLs random workers (every kind, the
coordinator and escape included) and stops/restarts the nats-server once on the same data directory.
Afterwards it checks what users of every execution engine ask for first: nothing lost, nothing
duplicated.

    jetexec chaos            # full: 2,000 intents, 20 kills, one server restart
    jetexec chaos --small    # what CI runs (tests/chaos)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats

from bench.pipeline import BENCH_ENV
from bus.server import EmbeddedServer, free_port
from jetexec.supervisor import DEFAULT_WORKERS, Supervisor, provision

TERMINAL = {"COMPLETE", "ESCAPED", "FAILED"}


@dataclass
class ChaosConfig:
    intents: int = 2000
    kills: int = 20
    server_restarts: int = 1
    seed: int = 20261123
    timeout_s: float = 600.0


SMALL = ChaosConfig(intents=150, kills=8, server_restarts=1, timeout_s=150)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ChaosReport:
    config: ChaosConfig
    checks: list[Check] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    states: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def render(self) -> str:
        lines = [f"chaos: {self.config.intents} intents, {len(self.kills)} kills ({', '.join(self.kills)}), {self.config.server_restarts} server restart(s), {self.elapsed_s:.0f}s"]
        lines.append("final states: " + ", ".join(f"{k} {v}" for k, v in sorted(self.states.items())))
        for c in self.checks:
            lines.append(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        return "\n".join(lines)


def intent_mix(n: int, seed: int) -> list[dict]:
    """A mix of strategies: SINGLE market, TWAP, ICEBERG (large), marketable LIMIT, SELLs."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        sym = rnd.choice(["AAPL", "MSFT", "TSLA"])
        kind = rnd.random()
        base = {"symbol": sym, "side": rnd.choice(["BUY", "SELL"]), "strategy_id": f"chaos-{i % 32}", "client_key": f"chaos-{seed}-{i}"}
        if kind < 0.55:
            out.append(base | {"qty": rnd.randint(1, 50), "order_type": "MARKET"})
        elif kind < 0.75:
            out.append(base | {"qty": rnd.randint(101, 400), "order_type": "MARKET", "split": "TWAP", "horizon_s": rnd.randint(1, 4)})
        elif kind < 0.85:
            out.append(base | {"qty": rnd.randint(1001, 1500), "order_type": "MARKET"})
        else:
            out.append(base | {"qty": rnd.randint(1, 80), "order_type": "MARKET", "urgency": "HIGH"})
    return out


async def _js_state(url: str) -> dict:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    try:
        state = {}
        for stream in ("EXEC_CMD", "VENUE_RPT", "EXEC_ESCAPE"):
            state[f"{stream}.messages"] = (await js.stream_info(stream)).state.messages
        for stream, durable in (("EXEC_EVT", "coordinator"), ("EXEC_EVT", "ledger"), ("EXEC_CMD", "precheck"), ("EXEC_CMD", "split"), ("EXEC_CMD", "send"), ("EXEC_CMD", "adjust"), ("VENUE_RPT", "monitor"), ("EXEC_ESCAPE", "escape")):
            try:
                info = await js.consumer_info(stream, durable)
                state[f"{durable}.pending"] = info.num_pending
                state[f"{durable}.ack_pending"] = info.num_ack_pending
            except Exception:
                pass
        state["dlq.messages"] = (await js.stream_info("EXEC_DLQ")).state.messages
        msg = await nc.request("venue.api.stats", b"{}", timeout=5)
        state["venue"] = json.loads(msg.data)
        return state
    finally:
        await nc.drain()


async def run_chaos(cfg: ChaosConfig, workdir: Path | None = None, log=print) -> ChaosReport:
    from jetexec.client import JetexecClient

    report = ChaosReport(cfg)
    tmp = workdir or Path(tempfile.mkdtemp(prefix="jetexec-chaos-"))
    rnd = random.Random(cfg.seed)
    server = EmbeddedServer(tmp / "nats", port=free_port()).start()
    workers = list(DEFAULT_WORKERS)
    sup = Supervisor(server.url, tmp, workers=workers, env=BENCH_ENV, quiet=True)
    started = time.monotonic()
    try:
        await provision(server.url)
        await sup.start_all()
        watcher = asyncio.create_task(sup.watch())
        client = await JetexecClient.open(server.url)
        intents = intent_mix(cfg.intents, cfg.seed)
        sem = asyncio.Semaphore(64)
        receipts: list = [None] * len(intents)

        async def submit(i: int, intent: dict) -> None:
            async with sem:
                receipts[i] = await client.submit(intent, timeout=cfg.timeout_s)

        async def submit_all() -> None:
            await asyncio.gather(*(submit(i, x) for i, x in enumerate(intents)))

        submitting = asyncio.create_task(submit_all())

        async def chaos() -> None:
            names = sorted({c.name for c in sup.children})
            kill_plan = names + [rnd.choice(names) for _ in range(max(0, cfg.kills - len(names)))]
            rnd.shuffle(kill_plan)
            kill_plan = kill_plan[: cfg.kills]
            restart_at = {rnd.randrange(len(kill_plan) + 1) for _ in range(cfg.server_restarts)} if kill_plan else {0}
            for step, name in enumerate(kill_plan + [None]):
                await asyncio.sleep(rnd.uniform(0.3, 1.2))  # chaos pacing, not a wait for a condition
                if step in restart_at:
                    log("chaos: stopping nats-server")
                    server.stop()
                    await asyncio.sleep(rnd.uniform(0.5, 1.5))  # the outage itself
                    server.start()
                    log("chaos: nats-server restarted on the same data directory")
                    report.kills.append("nats-server")
                if name is None:
                    break
                child = rnd.choice([c for c in sup.children if c.name == name])
                if child.proc and child.proc.returncode is None:
                    os.kill(child.proc.pid, signal.SIGKILL)
                    report.kills.append(name)
                    log(f"chaos: SIGKILL {name}")

        await chaos()
        await submitting
        cids = [r.correlation_id for r in receipts]
        results = await client.wait_many(cids, timeout=cfg.timeout_s)
        report.states = {}
        for r in results.values():
            key = r.state.value + (f" ({r.reason_code.value})" if r.reason_code else "")
            report.states[key] = report.states.get(key, 0) + 1

        # Settle: workers drain their queues after the last execution turned terminal.
        deadline = time.monotonic() + 60
        while True:
            state = await _js_state(server.url)
            quiet = all(state.get(k, 0) == 0 for k in ("EXEC_CMD.messages", "VENUE_RPT.messages", "EXEC_ESCAPE.messages", "coordinator.pending", "coordinator.ack_pending", "ledger.pending", "ledger.ack_pending"))
            if quiet or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)

        terminal = sum(1 for r in results.values() if r.state.value in TERMINAL)
        report.checks.append(Check("every intent terminal", terminal == len(intents) == len(set(cids)), f"{terminal}/{len(intents)} terminal ({report.states})"))
        venue = state["venue"]
        venue_orders = await _venue_orders(server.url)
        child_ids = {c.client_order_id for r in results.values() for c in r.children}
        flatten_ids = {c for c in venue_orders if "-FL-" in c}
        strangers = set(venue_orders) - child_ids - flatten_ids
        report.checks.append(Check(
            "no client order id reached the venue twice",
            venue["duplicate_attempts"] == 0 and not strangers,
            f"{len(venue_orders)} orders at the venue for {len(child_ids)} children; {venue['duplicate_attempts']} repeated sends; "
            f"{len(strangers)} venue orders that are no child; {venue.get('refused_after_cancel', 0)} sends refused after an escape's cancel"
            + (f"; repeated: {venue.get('duplicate_ids', [])[:5]}" if venue["duplicate_attempts"] else "")))
        report.checks.append(await _audit_check(client, results))
        report.checks.append(await _ledger_check(client))
        leftovers = {k: v for k, v in state.items() if k != "venue" and k != "dlq.messages" and v}
        report.checks.append(Check("nothing left unacknowledged", not leftovers, f"{leftovers or 'all work queues empty, consumers caught up'}; dead letters {state['dlq.messages']}"))
        report.checks.append(Check("no execution stuck or lost after worker restarts", sum(c.restarts for c in sup.children) >= len([k for k in report.kills if k != 'nats-server']), f"{sum(c.restarts for c in sup.children)} worker restarts"))
        await client.close()
        watcher.cancel()
    finally:
        report.elapsed_s = time.monotonic() - started
        await sup.stop_all()
        server.stop()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


async def _venue_orders(url: str) -> dict[str, str]:
    nc = await nats.connect(url)
    try:
        return json.loads((await nc.request("venue.api.orders", b"{}", timeout=10)).data)
    finally:
        await nc.drain()


async def _audit_check(client, results) -> Check:
    """Each execution transition exactly once in the AUDIT stream, and none missing."""
    from core.audit import EXECUTION_TRANSITION
    from workers.ledger.query import audit_entries

    entries = await audit_entries(client.nc)
    audited: dict[str, list[tuple]] = {}

    def fact_order(e) -> tuple:
        # Entries are written per source fact; a ledger restart may append an older fact's entries
        # after newer ones, so order by the fact that produced them, not by position in AUDIT.
        kind, _, seq = e.source.partition(":")
        return (int(seq) if seq.isdigit() else 0, e.n)

    for e in sorted((e for e in entries if e.event_type == EXECUTION_TRANSITION), key=fact_order):
        audited.setdefault(e.correlation_id, []).append((e.from_state, e.to_state))
    expected = duplicated = missing = 0
    examples: list[str] = []
    for cid in results:
        rec = await client.record(cid)
        truth = [(t.from_state.value, t.to_state.value) for t in (rec.transitions if rec else [])]
        got = audited.get(cid, [])
        expected += len(truth)
        # The same (from, to) may legitimately repeat (MONITORING ⇄ ADJUSTING): compare sequences.
        if got != truth:
            if len(examples) < 2:
                examples.append(f"{cid}: coordinator {truth} audit {got}")
            duplicated += max(0, len(got) - len(truth))
            missing += max(0, len(truth) - len(got)) or (1 if len(got) == len(truth) else 0)
    return Check("audit log: each transition exactly once", duplicated == 0 and missing == 0, f"{expected} transitions, {len(entries)} audit entries, {duplicated} extra, {missing} missing or out of order" + (f"; e.g. {examples}" if examples else ""))


async def _ledger_check(client) -> Check:
    from core.ledger import check_invariant
    from workers.ledger import query

    book = await query.position_book(client.nc)
    breaches = [b for b in (check_invariant(p) for p in book.positions.values()) if b]
    replayed = query.replay_positions((await query.replay_stream(client.nc)).fills)
    diffs = query.compare_books(book, replayed)
    return Check(
        "ledger invariant holds (and replay equals live)",
        not breaches and not diffs,
        f"{len(book.positions)} positions; {len(breaches)} invariant breaches; {len(diffs)} live/replay differences" + (f": {(breaches + diffs)[:3]}" if breaches or diffs else ""),
    )
