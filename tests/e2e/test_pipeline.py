"""End to end: `jetexec up` as a process tree, intents through the CLI, fills at the paper venue."""

import json
import os
import signal

import pytest

from tests.conftest import wait_for_sync
from tests.e2e.harness import Up, market_intents

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with Up(tmp_path_factory.mktemp("up")) as up:
        yield up


def test_hundred_market_intents_complete(system):
    intents = market_intents(100, "e2e")
    results = system.submit(intents)
    assert len(results) == 100
    assert [(r["symbol"], r["side"], r["qty"]) for r in results] == [(i["symbol"], i["side"], str(i["qty"])) for i in intents]  # input order
    assert len({r["correlation_id"] for r in results}) == 100
    for intent, r in zip(intents, results):
        assert r["state"] == "COMPLETE", r
        assert r["filled_qty"] == str(intent["qty"]) and r["fill_rate"] == "1"
        assert r["reason_code"] is None and r["avg_fill_price"] is not None
        assert len(r["children"]) == 1 and r["children"][0]["state"] == "FILLED"
    stats = system.venue_stats()
    assert stats["duplicate_attempts"] == 0


def test_bad_input_fails_with_reason_codes_and_good_input_still_flows(system):
    lines = [
        "this is not json",
        json.dumps({"symbol": "AAPL", "side": "HOLD", "qty": 1, "strategy_id": "bad"}),
        json.dumps({"symbol": "AAPL", "side": "BUY", "qty": 0, "strategy_id": "bad"}),
        json.dumps({"symbol": "AAPL", "side": "BUY", "qty": 1, "order_type": "LIMIT", "strategy_id": "bad"}),
        json.dumps({"symbol": "", "side": "BUY", "qty": 1, "strategy_id": "bad"}),
        json.dumps({"symbol": "NOPE", "side": "BUY", "qty": 1, "strategy_id": "bad"}),
        json.dumps({"symbol": "AAPL", "side": "BUY", "qty": 3, "strategy_id": "good", "client_key": "after-bad"}),
    ]
    results = system.submit(lines)
    codes = [r["reason_code"] for r in results]
    assert codes[:6] == [
        "VALIDATION_MALFORMED",
        "VALIDATION_INVALID_SIDE",
        "VALIDATION_INVALID_QUANTITY",
        "VALIDATION_INVALID_PRICE",
        "VALIDATION_INVALID_SYMBOL",
        "VALIDATION_INVALID_SYMBOL",
    ]
    assert all(r["state"] == "FAILED" for r in results[:6])
    assert "FS091" in results[5]["alerts"]
    assert results[6]["state"] == "COMPLETE" and results[6]["filled_qty"] == "3"
    # a rejected intent is a queryable execution too
    status = system.cli("status", results[1]["correlation_id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["reason_code"] == "VALIDATION_INVALID_SIDE"


def test_same_intent_twice_is_one_execution(system):
    intent = {"symbol": "MSFT", "side": "BUY", "qty": 7, "strategy_id": "dup", "client_key": "same-key"}
    first = system.submit([intent, intent])
    again = system.submit([intent])
    assert first[0]["correlation_id"] == first[1]["correlation_id"] == again[0]["correlation_id"]
    assert again[0]["state"] == "COMPLETE" and again[0]["filled_qty"] == "7"
    assert len(again[0]["children"]) == 1


def test_symbols_contract(system):
    res = system.cli("symbols", "--json")
    rows = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert {"AAPL", "MSFT", "BTC-USD"} <= {r["symbol"] for r in rows}
    assert all({"symbol", "reference_price", "lot_size", "tick_size"} <= set(r) for r in rows)


def test_killed_coordinator_loses_nothing(system, tmp_path):
    """SIGKILL the coordinator while TWAP executions are in flight; `up` restarts it."""
    intents = market_intents(30, "crash", split="TWAP", horizon_s=3)
    before = system.venue_stats()["orders"]
    import subprocess
    import sys

    batch = tmp_path / "intents.jsonl"
    batch.write_text("\n".join(json.dumps(i) for i in intents))
    proc = subprocess.Popen([sys.executable, "-m", "jetexec.cli", "submit", str(batch), "--wait", "--json", "--timeout", "120", "--nats-url", system.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=system.env)
    pids = wait_for_sync(lambda: system.worker_pids("coordinator"), what="coordinator pid")
    wait_for_sync(lambda: system.venue_stats()["orders"] > before + 10, what="children reaching the venue")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for_sync(lambda: system.worker_pids("coordinator") and system.worker_pids("coordinator") != pids, what="coordinator restarted")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert len(results) == 30
    assert all(r["state"] == "COMPLETE" for r in results), [r["state"] for r in results]
    children = sum(len(r["children"]) for r in results)
    assert all(str(i["qty"]) == r["filled_qty"] for i, r in zip(intents, results))
    stats = system.venue_stats()
    assert stats["duplicate_attempts"] == 0
    assert stats["orders"] - before == children  # every child reached the venue exactly once


def _nice(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


def test_the_escape_lane_runs_at_a_higher_priority_than_the_bulk_workers(system):
    """What a PriorityClass does on Kubernetes, `up` does with scheduling priorities: the escape
    worker and the venue's cancel path keep their CPU when the stage workers saturate it."""
    lane = [_nice(p) for name in ("escape", "paper-exchange") for p in system.worker_pids(name)]
    bulk = [_nice(p) for name in ("precheck", "split", "send", "monitor", "coordinator", "ledger") for p in system.worker_pids(name)]
    assert lane and bulk
    assert max(lane) < min(bulk)
