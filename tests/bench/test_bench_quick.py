"""`jetexec bench --quick` in CI: the bench runs end to end and reports every figure. Correctness
only — the targets are judged by the full bench (docs/bench.md), never by a timed test."""

import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

KEYS = (
    "ref_chain_per_s", "ref_chain_200_p50_ms", "ref_chain_200_p99_ms", "chain_200_p50_ms", "chain_200_p99_ms",
    "cpu_ms_per_execution", "cpu_ms_load_generator", "chain_vs_ref", "executions_vs_ref", "ack_p50_vs_ref_p50",
    "ack_p99_vs_ref_p99", "escape_backlog_vs_idle_p99", "escape_idle_p99_vs_ref_p99",
    "raw_chain_per_s", "executions_per_s", "ack_p50_ms", "ack_p99_ms", "complete_p50_ms", "complete_p99_ms",
    "escape_idle_p50_ms", "escape_idle_p99_ms", "escape_backlog_p50_ms", "escape_backlog_p99_ms",
)


def test_bench_quick_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "jetexec.cli", "bench", "--quick", "--json", "--output", str(out)], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    result = json.loads(res.stdout)
    assert json.loads(out.read_text()) == result
    for key in KEYS:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    assert result["executions_complete"] == result["executions"]
    assert result["escape_backlog_commands"] > 0 and result["escape_backlog_pending_at_start"] > 0
    assert result["ack_p50_ms"] <= result["ack_p99_ms"] and result["escape_idle_p50_ms"] <= result["escape_idle_p99_ms"]
    assert set(result["targets"]) == {
        "chain_vs_ref>=0.9", "executions_vs_ref>=0.25", "ack_p50_vs_ref_p50<=3", "ack_p99_vs_ref_p99<=3",
        "escape_backlog_vs_idle_p99<=1.5", "escape_idle_p99_vs_ref_p99<=2", "no_deadline_escapes_at_saturation",
    }
    # CPU per execution covers every process `up` started (the server included), the load generator apart
    by_process = result["cpu_ms_by_process"]
    assert {"nats-server", "coordinator", "gateway", "precheck", "split", "send", "monitor", "ledger", "paper-exchange"} <= set(by_process)
    assert "load-generator" not in by_process
    assert math.isclose(result["cpu_ms_per_execution"], sum(by_process.values()), abs_tol=0.05)
    assert result["executions_escaped_on_deadline"] == 0


def test_reference_copy_is_identical_to_the_shared_script():
    """The bench falls back to bench/jetstream_limit.py when ../shared is absent: it must be the same chain."""
    from bench.reference import COPY, SHARED

    if not SHARED.is_file():
        pytest.skip("../shared/bench/jetstream_limit.py is not next to this checkout")
    assert COPY.read_bytes() == SHARED.read_bytes()
