"""Orchestrates one bench run on an embedded server and prints a table plus JSON."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from bench import chain, pipeline
from bench.reference import run_reference
from bus.server import EmbeddedServer, free_port
from jetexec.supervisor import run_up

FULL = {"ref_reps": 3, "chain_n": 5000, "chain_paced_n": 1000, "saturation_n": 3000, "paced_rate": 200.0, "paced_low_rate": 50.0, "paced_s": 10.0, "escape_samples": 60, "backlog_n": 20000}
QUICK = {"ref_reps": 1, "chain_n": 1000, "chain_paced_n": 100, "saturation_n": 100, "paced_rate": 50.0, "paced_low_rate": 20.0, "paced_s": 2.0, "escape_samples": 5, "backlog_n": 500}


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


async def run(quick: bool = False) -> dict:
    cfg = QUICK if quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="jetexec-bench-"))
    out: dict = {"mode": "quick" if quick else "full", "machine": machine()}
    try:
        # Back to back: the reference chain, the same chain through our runtime, then the system.
        out |= await asyncio.to_thread(run_reference, cfg["ref_reps"])
        server = EmbeddedServer(tmp / "chain", port=free_port()).start()
        try:
            burst = await chain.measure(server.url, n=cfg["chain_n"])
            paced200 = await chain.measure(server.url, n=cfg["chain_paced_n"], rate=200.0)
        finally:
            server.stop()
        out["raw_chain_per_s"] = burst["chain_per_s"]
        out["raw_chain_messages"], out["raw_chain_hops"] = burst["chain_messages"], burst["chain_hops"]
        out["chain_200_p50_ms"], out["chain_200_p99_ms"] = paced200["chain_p50_ms"], paced200["chain_p99_ms"]

        stop = asyncio.Event()
        errors: list[BaseException] = []

        async def scenario(url: str, _sup) -> None:
            from jetexec.client import JetexecClient

            try:
                client = await JetexecClient.open(url)
                out.update(await pipeline.saturation(client, cfg["saturation_n"], _sup.pids()))
                out.update(await pipeline.paced(client, cfg["paced_rate"], cfg["paced_s"]))
                # The same latency below saturation, for what a strategy sees when the system keeps up.
                low = await pipeline.paced(client, cfg["paced_low_rate"], cfg["paced_s"])
                out.update({f"{k}_at_{int(cfg['paced_low_rate'])}": v for k, v in low.items() if k.endswith("_ms")})
                out.update(await pipeline.escapes(client, cfg["escape_samples"], cfg["backlog_n"]))
                out["worker_restarts"] = sum(c.restarts for c in _sup.children)
                await client.close()
            except BaseException as exc:  # noqa: BLE001 - reported after shutdown
                errors.append(exc)
            finally:
                stop.set()

        await run_up(tmp / "system", free_port(), env=pipeline.BENCH_ENV, ready_cb=scenario, stop_event=stop, quiet=True)
        if errors:
            raise errors[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out |= ratios(out)
    out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def _ratio(a, b, digits: int = 3):
    return round(a / b, digits) if a and b else None


def ratios(r: dict) -> dict:
    """Every target is a ratio to the reference chain measured in the same run (docs/bench.md)."""
    out = {
        "executions_vs_raw": _ratio(r.get("executions_per_s"), r.get("raw_chain_per_s")),
        "chain_vs_ref": _ratio(r.get("raw_chain_per_s"), r.get("ref_chain_per_s")),
        "executions_vs_ref": _ratio(r.get("executions_per_s"), r.get("ref_chain_per_s")),
        "ack_p50_vs_ref_p50": _ratio(r.get("ack_p50_ms"), r.get("ref_chain_200_p50_ms"), 2),
        "ack_p99_vs_ref_p99": _ratio(r.get("ack_p99_ms"), r.get("ref_chain_200_p99_ms"), 2),
        "escape_backlog_vs_idle_p99": _ratio(r.get("escape_backlog_p99_ms"), r.get("escape_idle_p99_ms"), 2),
        "escape_idle_p99_vs_ref_p99": _ratio(r.get("escape_idle_p99_ms"), r.get("ref_chain_200_p99_ms"), 2),
    }
    big = 1e9
    out["targets"] = {
        "chain_vs_ref>=0.9": (out["chain_vs_ref"] or 0) >= 0.9,
        "executions_vs_ref>=0.25": (out["executions_vs_ref"] or 0) >= 0.25,
        "ack_p50_vs_ref_p50<=3": (out["ack_p50_vs_ref_p50"] or big) <= 3,
        "ack_p99_vs_ref_p99<=3": (out["ack_p99_vs_ref_p99"] or big) <= 3,
        "escape_backlog_vs_idle_p99<=1.5": (out["escape_backlog_vs_idle_p99"] or big) <= 1.5,
        "escape_idle_p99_vs_ref_p99<=2": (out["escape_idle_p99_vs_ref_p99"] or big) <= 2,
        "no_deadline_escapes_at_saturation": r.get("executions_escaped_on_deadline", 1) == 0,
    }
    return out


def render(result: dict) -> str:
    cpu = result.get("cpu_ms_by_process") or {}
    rows = [
        ("reference chain (jetstream_limit.py --reference)", f"{result['ref_chain_per_s']} orders/s; paced 200/s p50 / p99 {result['ref_chain_200_p50_ms']} / {result['ref_chain_200_p99_ms']} ms"),
        ("(a) the same chain through bus/runtime.py", f"{result['raw_chain_per_s']} orders/s ({result['chain_vs_ref']} × ref); paced p50 / p99 {result['chain_200_p50_ms']} / {result['chain_200_p99_ms']} ms"),
        ("(b) SINGLE executions at saturation", f"{result['executions_per_s']} /s ({result['executions_vs_ref']} × ref); refused {result.get('intents_refused', 0)}, deadline escapes {result.get('executions_escaped_on_deadline', 0)}"),
        ("    CPU per execution", f"{result.get('cpu_ms_per_execution')} ms: " + ", ".join(f"{k} {v}" for k, v in cpu.items()) + f"; load generator {result.get('cpu_ms_load_generator')}"),
        ("(c) intent → venue ack p50 / p99", f"{result['ack_p50_ms']} / {result['ack_p99_ms']} ms @ {result['paced_rate_per_s']}/s ({result['ack_p50_vs_ref_p50']} / {result['ack_p99_vs_ref_p99']} × ref)"),
        ("(c) intent → COMPLETE p50 / p99", f"{result['complete_p50_ms']} / {result['complete_p99_ms']} ms"),
        ("    below saturation: ack p50 / p99", " / ".join(str(v) for k, v in result.items() if k.startswith("ack_p") and "_at_" in k) + " ms"),
        ("(d) escape idle p50 / p99", f"{result['escape_idle_p50_ms']} / {result['escape_idle_p99_ms']} ms ({result['escape_idle_p99_vs_ref_p99']} × ref p99)"),
        ("(d) escape under backlog p50 / p99", f"{result['escape_backlog_p50_ms']} / {result['escape_backlog_p99_ms']} ms ({result['escape_backlog_vs_idle_p99']} × idle)"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in result["targets"].items()))
    m = result["machine"]
    lines.append(f"machine: {m['cpus']} cpus, {m['cpu']}, Python {m['python']}")
    return "\n".join(lines)
