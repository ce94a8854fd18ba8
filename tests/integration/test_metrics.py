"""Metrics and probes of every worker, on real worker processes and a real nats-server.

* One worker process started before the topology exists (``JETEXEC_SKIP_PROVISION=1``, as in
  compose and Kubernetes, where a separate identity provisions): alive (/healthz 200) but not ready
  (/readyz 503, saying what is missing) and not consuming — until the topology is provisioned, then
  ready (200) without a restart. Traffic then shows on /metrics: ``jetexec_messages_total`` by subject
  template and outcome, ``jetexec_handler_seconds``, and a dead-lettered message in
  ``jetexec_dead_letters_total`` (the same reason as the DLQ message's header).
* ``jetexec up`` with ``JETEXEC_METRICS_PORT_BASE``: every worker serves /metrics, /healthz, /readyz on
  its own port; after one order each stage's counters moved, the coordinator counted the execution's
  states, and /healthz stays 200 through idle time longer than the liveness window (the gateway has no
  pull loop: its event loop is the heartbeat).
* The probe logic itself: /healthz 503 when progress stops, /readyz reasons.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import metrics
from bus.server import free_port
from bus.topology import ensure_topology
from schemas.codec import encode
from schemas.venue import ExecutionReport
from tests.conftest import wait_for, wait_for_sync
from tests.e2e.harness import Up

pytestmark = pytest.mark.timeout(120)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(port: int, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one metric's samples (``name`` as exposed, e.g. ``..._total``)."""
    _, text = get(port, "/metrics")
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(port: int, name: str, **labels: str) -> float:
    return sum(v for k, v in samples(port, name).items() if labels.items() <= dict(k).items())


# ------------------------------------------------------------------------------------------------
# One worker process: not ready before the topology exists, ready after, counters after traffic
# ------------------------------------------------------------------------------------------------


def test_worker_waits_unready_for_topology_then_counts_outcomes_and_dead_letters(nats_server, tmp_path):
    port = free_port()
    out, err = tmp_path / "monitor.out", tmp_path / "monitor.err"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JETEXEC_NATS_URL": nats_server.url, "JETEXEC_SKIP_PROVISION": "1", "JETEXEC_METRICS_PORT": str(port)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    proc = subprocess.Popen([sys.executable, "-m", "jetexec.cli", "worker", "monitor"], stdout=open(out, "wb"), stderr=open(err, "wb"), stdin=subprocess.DEVNULL, env=env)
    try:
        # Before the topology exists: alive, not ready, says why, not consuming.
        def probe_up() -> bool:
            try:
                return get(port, "/healthz")[0] == 200
            except OSError:
                assert proc.poll() is None, err.read_text()[-2000:]
                return False

        wait_for_sync(probe_up, timeout=30, what="the metrics server")
        wait_for_sync(lambda: "topology not provisioned" in get(port, "/readyz")[1], timeout=10, what="the readiness reason")
        status, body = get(port, "/readyz")
        assert status == 503 and "stream EXEC_EVT" in body and "consumer VENUE_RPT/monitor" in body, body
        assert get(port, "/healthz")[0] == 200
        assert value(port, "jetexec_ready", worker="monitor") == 0
        assert proc.poll() is None and b"consuming" not in out.read_bytes()

        # Provisioned by someone else: ready without a restart.
        async def provision() -> None:
            nc = await nats.connect(nats_server.url)
            try:
                await ensure_topology(nc.jetstream(timeout=10))
            finally:
                await nc.drain()

        asyncio.run(provision())
        wait_for_sync(lambda: get(port, "/readyz")[0] == 200, timeout=15, what="/readyz 200 after provisioning")
        wait_for_sync(lambda: b"worker monitor consuming" in out.read_bytes(), timeout=5, what="consuming")
        assert proc.poll() is None
        assert get(port, "/readyz")[1].strip() == "ready"
        assert value(port, "jetexec_ready", worker="monitor") == 1
        assert value(port, "jetexec_nats_connected", worker="monitor") == 1

        # Traffic: one good report, one that can never decode (dead-lettered at once).
        good_cid, bad_cid = "x" + "a" * 23, "x" + "b" * 23
        fill = ExecutionReport(kind="FILL", cid=good_cid, client_order_id="c1", venue_order_id="V1", trade_id="T1", qty=Decimal(2), price=Decimal("190.01"), cum_qty=Decimal(2), ts=time.time())

        async def traffic() -> dict:
            nc = await nats.connect(nats_server.url)
            try:
                js = nc.jetstream(timeout=5)
                await js.publish(f"venue.report.{good_cid}", encode(fill), headers={"Nats-Msg-Id": "m-good"})
                await js.publish(f"venue.report.{bad_cid}", b"{not json", headers={"Nats-Msg-Id": "m-bad"})
                sub = await js.subscribe("exec.dlq.monitor", durable=None, ordered_consumer=True)
                msg = await sub.next_msg(timeout=15)
                return dict(msg.headers or {})
            finally:
                await nc.drain()

        dlq = asyncio.run(traffic())
        assert dlq["Jetexec-Subject"] == f"venue.report.{bad_cid}"
        template = "venue.report.{cid}"
        wait_for_sync(lambda: value(port, "jetexec_messages_total", worker="monitor", subject=template, outcome="ok") == 1
                      and value(port, "jetexec_messages_total", worker="monitor", subject=template, outcome="dead_lettered") == 1,
                      timeout=10, what="message counters")
        assert value(port, "jetexec_dead_letters_total", worker="monitor", subject=template) == 1
        assert value(port, "jetexec_dead_letters_total", worker="monitor", subject=template, reason=dlq["Jetexec-Reason"]) == 1
        assert value(port, "jetexec_messages_total", worker="monitor", outcome="error") == 0
        assert value(port, "jetexec_handler_seconds_count", worker="monitor", subject=template) == 2
        assert value(port, "jetexec_pull_loop_last_progress_seconds", worker="monitor") > time.time() - 30
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/nope")[0] == 404
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, err.read_text()[-2000:]
    assert "Traceback" not in err.read_text()


def test_worker_stopped_while_waiting_for_topology_exits_cleanly(nats_server, tmp_path):
    port = free_port()
    env = {**os.environ, "JETEXEC_NATS_URL": nats_server.url, "JETEXEC_SKIP_PROVISION": "1", "JETEXEC_METRICS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "jetexec.cli", "worker", "split"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for_sync(lambda: _status(port, "/readyz") == 503, timeout=30, what="not ready")
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"consuming" not in stdout


def _status(port: int, path: str) -> int | None:
    try:
        return get(port, path)[0]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------
# `jetexec up`: every worker, its own port
# ------------------------------------------------------------------------------------------------


def free_range(n: int) -> int:
    """A base port with ``n`` consecutive free ports."""
    for _ in range(200):
        base = free_port()
        if base + n > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def test_up_serves_metrics_and_probes_for_every_worker(tmp_path):
    window = 3.0
    env = {"JETEXEC_METRICS_PORT_BASE": str(free_range(16)), "JETEXEC_METRICS_HOST": "127.0.0.1", "JETEXEC_LIVENESS_WINDOW_S": str(window), "JETEXEC_RECON_INTERVAL_S": "0"}
    with Up(tmp_path, env=env) as up:
        ports: dict[str, int] = json.loads((tmp_path / "data" / "metrics-ports.json").read_text())
        names = {k.rsplit("-", 1)[0] for k in ports}
        assert {"gateway", "coordinator", "precheck", "split", "send", "monitor", "adjust", "escape", "paper-exchange"} <= names
        assert len(set(ports.values())) == len(ports)
        for key, port in ports.items():
            worker = key.rsplit("-", 1)[0]
            assert get(port, "/readyz") == (200, "ready\n"), key
            assert get(port, "/healthz")[0] == 200, key
            assert value(port, "jetexec_ready", worker=worker) == 1, key

        (r,) = up.submit([{"symbol": "AAPL", "side": "BUY", "qty": 3, "order_type": "MARKET", "strategy_id": "metrics", "client_key": "metrics-1"}], timeout=60)
        assert r["state"] == "COMPLETE"
        p = {k.rsplit("-", 1)[0]: v for k, v in ports.items()}
        assert value(p["gateway"], "jetexec_messages_total", worker="gateway", subject="exec.intake", outcome="accepted") == 1
        for worker, subject in (("precheck", "exec.cmd.precheck.{cid}"), ("split", "exec.cmd.split.{cid}"), ("send", "exec.cmd.send.{cid}"), ("monitor", "venue.report.{cid}"), ("coordinator", "exec.evt.{cid}")):
            wait_for_sync(lambda: value(p[worker], "jetexec_messages_total", worker=worker, subject=subject, outcome="ok") >= 1, timeout=10, what=f"{worker} ok count")
        states = {dict(k)["state"]: v for k, v in samples(p["coordinator"], "jetexec_executions_total").items()}
        assert states["PRECHECK"] == states["COMPLETE"] == 1 and len(states) >= 4, states
        assert value(p["send"], "jetexec_venue_call_seconds_count", op="new", outcome="accepted") == 1

        # Liveness through idle time longer than the window, for every worker (pull loop or not).
        until = time.monotonic() + window + 1.0
        while time.monotonic() < until:
            for key, port in ports.items():
                assert get(port, "/healthz")[0] == 200, key
            time.sleep(0.25)  # probe cadence, not a condition


# ------------------------------------------------------------------------------------------------
# The probe logic
# ------------------------------------------------------------------------------------------------


async def test_probe_answers_follow_health_state():
    health = metrics.Health("probe-test", liveness_window_s=0.5)
    port = free_port()
    server = await metrics.serve_http(health, "127.0.0.1", port)

    async def fetch(path: str) -> tuple[int, str]:
        return await asyncio.to_thread(get, port, path)

    try:
        assert await fetch("/readyz") == (503, "starting\n")
        health.not_ready("topology not provisioned: stream EXEC_EVT")
        assert await fetch("/readyz") == (503, "topology not provisioned: stream EXEC_EVT\n")
        health.connected = True
        health.ready = True
        assert await fetch("/readyz") == (200, "ready\n")
        health.connected = False  # a NATS outage: not ready, still alive (the client reconnects)
        assert await fetch("/readyz") == (503, "NATS disconnected\n")
        health.progress()
        assert (await fetch("/healthz"))[0] == 200
        await wait_for(lambda: not health.live, timeout=5, what="the liveness window to pass without progress")
        assert await fetch("/healthz") == (503, "pull loop stalled\n")
        health.progress()
        assert (await fetch("/healthz"))[0] == 200
    finally:
        server.close()
        await server.wait_closed()
