"""Where the CPU goes at saturation: py-spy samples of every process that ``jetexec up`` started.

    python -m bench.profile --seconds 10 --out /tmp/prof

Runs the system on an embedded server, drives SINGLE intents in waves (the bench's saturation load),
and while it is saturated samples every worker and the load generator with ``py-spy record`` (the
server is measured for CPU only). Prints CPU per execution by process and, per process, the
functions with the most samples (self and inclusive). Raw collapsed stacks stay in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.cpu import CpuMeter
from bench.pipeline import BENCH_ENV, _intent
from bus.server import free_port
from jetexec.supervisor import run_up


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "jetexec", "bus", "core", "workers", "schemas", "bench"):
        if anchor in parts:
            i = parts.index(anchor)
            path = "/".join(parts[i + 1 :] if anchor == "site-packages" else parts[i:])
            break
    return f"{path}:{name}"


def summarise(raw: Path, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return total, own.most_common(top), incl.most_common(top)


async def main(seconds: float, out: Path, top: int, wave: int) -> None:
    from jetexec.client import JetexecClient

    tmp = Path(tempfile.mkdtemp(prefix="jetexec-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    report: dict = {}

    async def scenario(url: str, sup) -> None:
        try:
            client = await JetexecClient.open(url)
            done = 0
            measuring = asyncio.Event()
            finished = asyncio.Event()

            tag = f"prof-{time.time_ns()}"
            counter = iter(range(10**9))

            async def load() -> None:
                # A closed loop of `wave` in flight, as the bench's saturation run.
                nonlocal done
                while not finished.is_set():
                    await client.execute(_intent(next(counter), tag), timeout=120)
                    if measuring.is_set():
                        done += 1

            tasks = [asyncio.create_task(load()) for _ in range(wave)]
            task = asyncio.gather(*tasks)
            await asyncio.sleep(3.0)  # warm-up: let queues reach their saturated shape
            pids = sup.pids()
            pids["load-generator"] = [os.getpid()]
            spies = {}
            for label, plist in pids.items():
                if label == "nats-server":
                    continue
                for pid in plist:
                    spies[f"{label}-{pid}"] = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out / f"{label}-{pid}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
            meter = CpuMeter(pids).start()
            measuring.set()
            start_done = done
            t0 = time.monotonic()
            await asyncio.sleep(seconds)  # the sampling window (py-spy runs for exactly this long)
            meter.stop()
            executions = done - start_done
            finished.set()
            report["executions"] = executions
            report["window_s"] = time.monotonic() - t0
            report["cpu_ms"] = meter.per_unit_ms(executions)
            for p in spies.values():
                p.wait(timeout=seconds + 30)
            await asyncio.wait_for(task, 120)
            await client.close()
        finally:
            stop.set()

    try:
        await run_up(tmp / "system", free_port(), env=BENCH_ENV, ready_cb=scenario, stop_event=stop, quiet=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = report.get("executions", 0)
    print(f"{n} executions in {report.get('window_s', 0):.1f} s = {n / max(report.get('window_s', 1), 1e-9):.1f}/s")
    cpu = report.get("cpu_ms", {})
    print(f"CPU per execution: {sum(cpu.values()):.2f} ms — " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    for raw in sorted(out.glob("*.txt")):
        total, own, incl = summarise(raw, top)
        if not total:
            continue
        print(f"\n== {raw.stem}: {total} samples")
        print("  self:")
        for name, c in own:
            print(f"    {100 * c / total:5.1f}%  {name}")
        print("  inclusive:")
        for name, c in incl:
            print(f"    {100 * c / total:5.1f}%  {name}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/jetexec-profile"))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--wave", type=int, default=200)
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.out, a.top, a.wave))
