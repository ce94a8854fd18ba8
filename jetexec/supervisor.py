"""``jetexec up``: the embedded nats-server plus every worker as a supervised child process.

Prints ``ready nats://HOST:PORT`` once every worker reports that it is consuming (the venue adapters
the venues configuration names included, e.g. ``venue-fix``); restarts a worker
that dies (with backoff); on SIGINT/SIGTERM stops the workers (SIGTERM → drain), then the server.
A worker that dies during start-up is restarted too, with its last log line on stderr; one that
keeps dying (``STARTUP_ATTEMPTS``) or never gets ready makes start-up fail with :class:`StartupFailed`
naming the worker, its exit code and its last log line — never a silent wait.

Metrics and probes: with ``JETEXEC_METRICS_PORT_BASE=P`` every child serves /metrics, /healthz and
/readyz on its own port, ``P + i`` for the i-th child in :data:`DEFAULT_WORKERS` order (replicas
counted), also written to ``<data-dir>/metrics-ports.json``; one ``JETEXEC_METRICS_PORT`` for all the
children would collide, so it is not passed down.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


from bus.server import EmbeddedServer
from bus.settings import NatsSettings, connect
from bus.topology import KV_SAFETY, ensure_topology

DEFAULT_WORKERS: tuple[tuple[str, int], ...] = (
    ("paper-exchange", 1),
    ("gateway", 1),
    ("coordinator", 1),
    ("precheck", 1),
    ("split", 1),
    ("send", 1),
    ("monitor", 1),
    ("adjust", 1),
    ("escape", 1),
    ("ledger", 1),
)


STARTUP_ATTEMPTS = 3  # a worker that exits this many times before it is ready fails `up`


class StartupFailed(RuntimeError):
    """A worker kept dying during start-up, or did not get ready in time (the message says which)."""


# The escape lane and the venues' cancel path keep their CPU when the bulk workers saturate it
# (what a PriorityClass does on Kubernetes): they run at a higher priority than the rest. Without
# the right to raise a priority (not root), the bulk workers are lowered instead.
LANE_PRIORITY = {"escape": -5, "paper-exchange": -5, "venue-fix": -5}
BULK_NICE_WITHOUT_PRIVILEGE = 5


def set_priority(worker: str) -> None:
    """Runs in the child before exec: its scheduling priority (``nice``)."""
    try:
        if worker in LANE_PRIORITY:
            if os.geteuid() == 0:
                os.setpriority(os.PRIO_PROCESS, 0, LANE_PRIORITY[worker])
        elif os.geteuid() != 0:
            os.setpriority(os.PRIO_PROCESS, 0, BULK_NICE_WITHOUT_PRIVILEGE)
    except OSError:
        pass  # a priority is a preference: the worker runs either way


@dataclass
class Child:
    name: str
    replica: int
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    startup_failures: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0


def with_replicas(workers: tuple[tuple[str, int], ...], spec: str) -> tuple[tuple[str, int], ...]:
    """``"coordinator=2,split=3"`` → the same workers with those replica counts (``JETEXEC_REPLICAS``)."""
    counts = dict(workers)
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, sep, n = item.partition("=")
        if not sep or name not in counts or not n.isdigit() or int(n) < 1:
            raise ValueError(f"JETEXEC_REPLICAS: {item!r} is not WORKER=N with a known worker and N >= 1")
        counts[name] = int(n)
    return tuple((name, counts[name]) for name, _ in workers)


def venue_workers(env: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """The adapter workers the venues configuration (``JETEXEC_VENUES``) asks for: one
    ``venue-fix`` for all FIX venues. It connects only when both live switches are set."""
    from bus.venue_client import venues_from_env
    from workers import VENUE_WORKER_OF_KIND

    saved = {k: os.environ.get(k) for k in ("JETEXEC_VENUES", "JETEXEC_VENUES_FILE")}
    try:
        for k in saved:
            if k in env:
                os.environ[k] = env[k]
        kinds = {v.kind for v in venues_from_env().venues.values()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return tuple((VENUE_WORKER_OF_KIND[k], 1) for k in sorted(kinds) if k in VENUE_WORKER_OF_KIND)


class Supervisor:
    def __init__(self, url: str, data_dir: Path, workers=DEFAULT_WORKERS, env: dict[str, str] | None = None, log_dir: Path | None = None, quiet: bool = False) -> None:
        self.url = url
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {}), "JETEXEC_NATS_URL": url, "PYTHONUNBUFFERED": "1"}
        have = {name for name, _ in workers}
        workers = tuple(workers) + tuple(w for w in venue_workers(self.env) if w[0] not in have)  # the venues' adapters
        replicas = self.env.get("JETEXEC_REPLICAS")
        if replicas:
            workers = with_replicas(workers, replicas)
        self.children = [Child(name, i) for name, n in workers for i in range(n)]
        self.metrics_ports: dict[str, int] = {}  # "<worker>-<replica>" → port
        self.env.pop("JETEXEC_METRICS_PORT", None)
        base = self.env.get("JETEXEC_METRICS_PORT_BASE")
        if base:
            self.metrics_ports = {f"{c.name}-{c.replica}": int(base) + i for i, c in enumerate(self.children)}
        self.log_dir = log_dir or data_dir / "logs"
        self.stopping = False
        self.quiet = quiet
        self.restart_log: list[tuple[float, str]] = []
        self.server_pid: int | None = None

    def pids(self) -> dict[str, list[int]]:
        """Process ids by worker name (replicas together), plus ``nats-server`` when embedded."""
        out: dict[str, list[int]] = {}
        for c in self.children:
            if c.proc is not None and c.proc.returncode is None:
                out.setdefault(c.name, []).append(c.proc.pid)
        if self.server_pid:
            out["nats-server"] = [self.server_pid]
        return out

    def log_path(self, child: Child) -> Path:
        return self.log_dir / f"{child.name}-{child.replica}.log"

    def last_log_line(self, child: Child) -> str:
        """The worker's last words (its one-line error, when it failed)."""
        try:
            with open(self.log_path(child), "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    async def start_child(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(child), "ab")
        child.ready.clear()
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jetexec.cli", "worker", child.name,
            stdout=asyncio.subprocess.PIPE, stderr=log, stdin=asyncio.subprocess.DEVNULL, env=self.child_env(child),
            preexec_fn=functools.partial(set_priority, child.name),
        )
        child.started_at = time.monotonic()
        asyncio.create_task(self._pump(child, log))

    def child_env(self, child: Child) -> dict[str, str]:
        port = self.metrics_ports.get(f"{child.name}-{child.replica}")
        return {**self.env, "JETEXEC_METRICS_PORT": str(port)} if port else self.env

    async def _pump(self, child: Child, log) -> None:
        proc = child.proc
        assert proc is not None and proc.stdout is not None
        async for line in proc.stdout:
            log.write(line)
            log.flush()
            if line.startswith(b"worker ") and b"consuming" in line:
                child.ready.set()
        log.close()

    async def watch(self) -> None:
        """Restart any worker that exits while we are not stopping."""
        while not self.stopping:
            for child in self.children:
                if child.proc is not None and child.proc.returncode is not None and not self.stopping:
                    child.restarts += 1
                    self.restart_log.append((time.time(), child.name))
                    if not self.quiet:
                        print(f"worker {child.name} exited ({child.proc.returncode}); restarting", flush=True)
                    await asyncio.sleep(min(0.2 * child.restarts, 2.0) if time.monotonic() - child.started_at < 5 else 0.05)
                    await self.start_child(child)
            await asyncio.sleep(0.05)

    async def start_all(self, timeout: float = 60.0) -> None:
        """Start every worker and wait until each is consuming. A worker that exits first is restarted
        (and said so on stderr); :class:`StartupFailed` after ``STARTUP_ATTEMPTS`` exits of one
        worker, or when ``timeout`` passes."""
        if self.metrics_ports:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "metrics-ports.json").write_text(json.dumps(self.metrics_ports, indent=1))
        for child in self.children:
            await self.start_child(child)
        deadline = time.monotonic() + timeout
        while not all(c.ready.is_set() for c in self.children):
            for child in self.children:
                if not child.ready.is_set() and child.proc is not None and child.proc.returncode is not None:
                    await self._startup_exit(child)
            if time.monotonic() > deadline:
                slow = [c for c in self.children if not c.ready.is_set()]
                said = "; ".join(f"{c.name}: {self.last_log_line(c) or 'no output'}" for c in slow)
                raise StartupFailed(f"not ready after {timeout:g} s: {said} (logs in {self.log_dir})")
            await asyncio.sleep(0.05)

    async def _startup_exit(self, child: Child) -> None:
        assert child.proc is not None
        child.startup_failures += 1
        rc, why = child.proc.returncode, self.last_log_line(child) or "no output"
        if child.startup_failures >= STARTUP_ATTEMPTS:
            raise StartupFailed(f"worker {child.name} exited during start-up {child.startup_failures} times (exit code {rc}): {why} (log: {self.log_path(child)})")
        print(f"worker {child.name} exited during start-up (exit code {rc}): {why}; restarting ({child.startup_failures}/{STARTUP_ATTEMPTS - 1})", file=sys.stderr, flush=True)
        await asyncio.sleep(0.2 * child.startup_failures)
        await self.start_child(child)

    async def stop_all(self, grace: float = 15.0) -> None:
        self.stopping = True
        for child in self.children:
            if child.proc and child.proc.returncode is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.proc:
                try:
                    await asyncio.wait_for(child.proc.wait(), grace)
                except asyncio.TimeoutError:
                    child.proc.kill()
                    await child.proc.wait()


async def provision(url: str | NatsSettings, mode: str | None = None) -> None:
    """Create or update the topology (and set the mode). Uses the full connection settings —
    credentials and TLS — when given ``NatsSettings``; a bare URL is for the embedded server."""
    settings = url if isinstance(url, NatsSettings) else NatsSettings(url=url)
    nc = await connect(settings, "jetexec-provision", connect_timeout=5, max_reconnect=3)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_topology(js)
        if mode:
            kv = await js.key_value(KV_SAFETY)
            await kv.put("mode", mode.upper().encode())
    finally:
        await nc.drain()


async def run_up(data_dir: Path, port: int, host: str = "127.0.0.1", mode: str = "paper", env: dict[str, str] | None = None, ready_cb=None, stop_event: asyncio.Event | None = None, quiet: bool = False, workers=DEFAULT_WORKERS) -> int:
    server = EmbeddedServer(data_dir, port=port, host=host)
    server.start()
    sup = Supervisor(server.url, data_dir, workers=workers, env=env, quiet=quiet)
    sup.server_pid = server.proc.pid if server.proc else None  # for CPU accounting (bench)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await provision(server.url, mode)
        await sup.start_all()
        watcher = asyncio.create_task(sup.watch())
        if ready_cb:
            await ready_cb(server.url, sup)
        else:
            print(f"ready {server.url}", flush=True)
        await stop.wait()
        watcher.cancel()
        return 0
    finally:
        await sup.stop_all()
        server.stop()
