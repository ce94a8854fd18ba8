"""`jetexec bench --quick` in CI: the bench runs end to end and reports every figure. Correctness
only — the targets are judged by the full bench (docs/bench.md), never by a timed test."""

import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

KEYS = (
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
    assert set(result["targets"]) == {"executions_per_s>=1000", "executions_vs_raw>=0.3", "ack_p99_ms<=15", "escape_backlog_p99_ms<=10", "escape_backlog_vs_idle<=1.5"}
