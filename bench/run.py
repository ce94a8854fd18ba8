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
from bus.server import EmbeddedServer, free_port
from jetexec.supervisor import run_up

FULL = {"chain_n": 20000, "saturation_n": 3000, "paced_rate": 200.0, "paced_low_rate": 50.0, "paced_s": 10.0, "escape_samples": 60, "backlog_n": 20000}
QUICK = {"chain_n": 1000, "saturation_n": 100, "paced_rate": 50.0, "paced_low_rate": 20.0, "paced_s": 2.0, "escape_samples": 5, "backlog_n": 500}


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
        server = EmbeddedServer(tmp / "chain", port=free_port()).start()
        try:
            out |= await chain.measure(server.url, n=cfg["chain_n"], warmup=min(500, cfg["chain_n"] // 4))
        finally:
            server.stop()

        stop = asyncio.Event()
        errors: list[BaseException] = []

        async def scenario(url: str, _sup) -> None:
            from jetexec.client import JetexecClient

            try:
                client = await JetexecClient.open(url)
                out.update(await pipeline.saturation(client, cfg["saturation_n"]))
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
    a, b = out.get("raw_chain_per_s") or 0, out.get("executions_per_s") or 0
    out["executions_vs_raw"] = round(b / a, 3) if a else None
    idle, busy = out.get("escape_idle_p99_ms"), out.get("escape_backlog_p99_ms")
    out["escape_backlog_vs_idle_p99"] = round(busy / idle, 2) if idle else None
    out["targets"] = {
        "executions_per_s>=1000": b >= 1000,
        "executions_vs_raw>=0.3": (out["executions_vs_raw"] or 0) >= 0.3,
        "ack_p99_ms<=15": (out.get("ack_p99_ms") or 1e9) <= 15,
        "escape_backlog_p99_ms<=10": (busy or 1e9) <= 10,
        "escape_backlog_vs_idle<=1.5": (out["escape_backlog_vs_idle_p99"] or 1e9) <= 1.5,
    }
    out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def render(result: dict) -> str:
    rows = [
        ("(a) raw 6-hop chain", f"{result['raw_chain_per_s']} msg/s"),
        ("(b) SINGLE executions at saturation", f"{result['executions_per_s']} /s ({result['executions_vs_raw']} × raw)"),
        ("(c) intent → venue ack p50 / p99", f"{result['ack_p50_ms']} / {result['ack_p99_ms']} ms @ {result['paced_rate_per_s']}/s"),
        ("(c) intent → COMPLETE p50 / p99", f"{result['complete_p50_ms']} / {result['complete_p99_ms']} ms"),
        ("    below saturation: ack p50 / p99", " / ".join(str(v) for k, v in result.items() if k.startswith("ack_p") and "_at_" in k) + " ms"),
        ("(d) escape idle p50 / p99", f"{result['escape_idle_p50_ms']} / {result['escape_idle_p99_ms']} ms"),
        ("(d) escape under backlog p50 / p99", f"{result['escape_backlog_p50_ms']} / {result['escape_backlog_p99_ms']} ms ({result['escape_backlog_vs_idle_p99']} × idle)"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in result["targets"].items()))
    m = result["machine"]
    lines.append(f"machine: {m['cpus']} cpus, {m['cpu']}, Python {m['python']}")
    return "\n".join(lines)

