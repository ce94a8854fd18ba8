"""Two venues under one `jetexec up`: the paper exchange and the FIX venue, intents routed by their
`venue` field; the adjust path re-pricing a resting FIX limit (OrderCancelReplaceRequest); and the
live switches: in paper mode the FIX venue is never even connected to.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for_sync
from tests.e2e.harness import Up
from tests.venues.counterparty import Counterparty, fix_venue_config, require_fix_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    require_fix_stack()
    tmp = tmp_path_factory.mktemp("two-venues")
    cp = Counterparty(tmp / "counterparty").start()
    venues = {"default": "fix", "venues": {"fix": fix_venue_config(cp.port, tmp / "fix-store"), "paper": {"kind": "paper"}}}
    env = {
        "JETEXEC_VENUES": json.dumps(venues),
        "JETEXEC_LIVE_ENABLED": "yes",
        "JETEXEC_COORDINATOR_CONFIG": json.dumps({"stage_timeout_ms": {"MONITORING": 1500, "ADJUSTING": 3000}}),
    }
    try:
        with Up(tmp, env=env, args=("--mode", "live")) as up:
            up.cp = cp
            wait_for_sync(lambda: cp.control("stats")["connected"], timeout=60, what="the FIX session logged on")
            yield up
    finally:
        cp.stop()


def intent(**kw):
    return {"symbol": "AAPL", "side": "BUY", "order_type": "MARKET", **kw}


def test_intents_are_routed_by_their_venue(two):
    paper, fix_default, fix_named, unknown = two.submit([
        intent(qty=5, venue="paper", strategy_id="route-paper"),
        intent(qty=5, strategy_id="route-default"),
        intent(qty=2, symbol="MSFT", venue="fix", strategy_id="route-fix"),
        intent(qty=1, venue="nowhere", strategy_id="route-bad"),
    ])
    assert paper["state"] == "COMPLETE" and paper["venue"] == "paper", paper
    assert fix_default["state"] == "COMPLETE" and fix_default["venue"] == "fix", fix_default
    assert fix_named["state"] == "COMPLETE" and fix_named["venue"] == "fix" and fix_named["avg_fill_price"] == "410", fix_named
    assert unknown["state"] == "FAILED" and unknown["reason_code"] == "VALIDATION_INVALID_VENUE", unknown
    at_fix = two.cp.control("orders")["arrivals"]
    at_paper = two.request("venue.paper.api.orders", {})
    paper_child = paper["children"][0]["client_order_id"]
    fix_children = [r["children"][0]["client_order_id"] for r in (fix_default, fix_named)]
    assert paper_child in at_paper and paper_child not in at_fix
    assert all(at_fix.get(c) == 1 and c not in at_paper for c in fix_children)
    # the original subjects belong to the default venue (here the FIX venue); each id has its own
    assert {s["symbol"] for s in two.request("venue.api.specs", {})} == {"AAPL", "MSFT"}
    assert {s["symbol"] for s in two.request("venue.fix.api.specs", {})} == {"AAPL", "MSFT"}
    assert "BTC-USD" in {s["symbol"] for s in two.request("venue.paper.api.specs", {})}
    ledger = two.cli("ledger", "orders", "--json")
    assert ledger.returncode == 0, ledger.stderr.decode()
    rows = [json.loads(line) for line in ledger.stdout.decode().splitlines() if line.strip()]
    by_id = {r["client_order_id"]: r for r in (rows[0] if len(rows) == 1 and isinstance(rows[0], list) else rows)}
    assert by_id[paper_child]["venue"] == "paper" and all(by_id[c]["venue"] == "fix" for c in fix_children)


def test_adjust_re_prices_a_resting_fix_limit_with_cancel_replace(two):
    (receipt,) = two.submit_nowait([intent(qty=5, order_type="LIMIT", price="189.50", strategy_id="fix-adjust")])
    cid = receipt["correlation_id"]
    coid = wait_for_sync(lambda: (two.status(cid)["children"] or [None])[0], what="the child")["client_order_id"]
    # MONITORING times out (1.5 s) → AdaptiveAdjust re-prices → OrderCancelReplaceRequest (G)
    venue_side = wait_for_sync(lambda: (o := two.cp.control("orders")["orders"].get(coid)) and len(o["history"]) > 1 and o, timeout=30, what="a cancel/replace at the venue")
    assert venue_side["history"][1] == f"{coid}.r1" and venue_side["live"]
    assert two.cp.control("fill", symbol="AAPL.OQ", qty="5", order=coid)["filled"] == 1
    wait_for_sync(lambda: two.status(cid)["state"] == "COMPLETE", timeout=30, what="COMPLETE after the fill")
    r = two.status(cid)
    assert r["filled_qty"] == "5" and r["venue"] == "fix"
    final = two.cp.control("orders")["orders"][coid]
    assert r["children"][0]["price"] == final["price"] and final["price"] != "189.5", (r, final)
    assert two.cp.control("orders")["arrivals"][coid] == 1, "re-priced, never re-sent"


@pytest.fixture(scope="module")
def paper_mode(tmp_path_factory):
    """Paper mode with a FIX venue configured and even the operator's variable set: one switch is
    not two, so venue-fix runs but never connects."""
    require_fix_stack()
    tmp = tmp_path_factory.mktemp("paper-mode")
    cp = Counterparty(tmp / "counterparty").start()
    venues = {"default": "paper", "venues": {"paper": {"kind": "paper"}, "fix": fix_venue_config(cp.port, tmp / "fix-store")}}
    try:
        with Up(tmp, env={"JETEXEC_VENUES": json.dumps(venues), "JETEXEC_LIVE_ENABLED": "yes"}) as up:
            up.cp = cp
            yield up
    finally:
        cp.stop()


def test_paper_mode_never_reaches_the_fix_venue(paper_mode):
    ok, refused = paper_mode.submit([intent(qty=3, strategy_id="pm-paper"), intent(qty=3, venue="fix", strategy_id="pm-fix")])
    assert ok["state"] == "COMPLETE" and ok["venue"] == "paper", ok
    assert refused["state"] == "FAILED" and refused["reason_code"] == "POLICY_LIVE_NOT_ENABLED", refused
    assert "live venue" in refused["detail"]
    # even a hand-made LIVE order straight to the venue's subject is refused: the worker is not armed
    direct = paper_mode.request("venue.fix.api.new", {"client_order_id": "rogue-1", "cid": "rogue", "symbol": "AAPL", "side": "BUY", "qty": "1", "order_type": "MARKET", "mode": "LIVE", "v": 1})
    assert direct["accepted"] is False and direct["reason_code"] == "POLICY_LIVE_NOT_ENABLED", direct
    assert {s["symbol"] for s in paper_mode.request("venue.fix.api.specs", {})} == {"AAPL", "MSFT"}, "reference data is served"
    stats = paper_mode.cp.control("stats")
    assert not stats["connected"] and stats["arrivals"] == {} and stats["executions"] == 0
    assert "logon" not in (paper_mode.cp.work / "counterparty.log").read_text(), "no FIX session was ever opened"
