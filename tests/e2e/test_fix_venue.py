"""The FIX venue end to end: `jetexec up --mode live` with a FIX venue configured, every worker a
process, QuickFIX in `venue-fix` talking FIX 4.4 to an independent acceptor (jspurefix, Node.js)
through a TCP relay the test can blackhole and cut.

Checked: MARKET and LIMIT; TWAP and ICEBERG children; escape of a resting child; a connection
dropped mid-order, then reconnect and a sequence gap filled by the engines (ResendRequest), with no
child sent twice and every fill counted once; a restart of the venue worker with an order open;
`jetexec recon` clean. Every check at the counterparty reads what the acceptor itself recorded.
"""

from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import wait_for_sync
from tests.e2e.harness import Up
from tests.venues.counterparty import Counterparty, ThreadedProxy, fix_venue_config, require_fix_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_fix_stack()
    tmp = tmp_path_factory.mktemp("fix-live")
    cp = Counterparty(tmp / "counterparty").start()
    proxy = ThreadedProxy(cp.port)
    venues = {"default": "fix", "venues": {"fix": fix_venue_config(proxy.port, tmp / "fix-store", reconnect_s=1), "paper": {"kind": "paper"}}}
    env = {"JETEXEC_VENUES": json.dumps(venues), "JETEXEC_LIVE_ENABLED": "yes"}
    try:
        with Up(tmp, env=env, args=("--mode", "live")) as up:
            up.cp, up.proxy, up.store = cp, proxy, tmp / "fix-store" / "fix"
            wait_for_sync(lambda: cp.control("stats")["connected"], timeout=60, what="the FIX session logged on")
            yield up
    finally:
        proxy.stop()
        cp.stop()


def intent(**kw):
    return {"symbol": "AAPL", "side": "BUY", "order_type": "MARKET", **kw}


def orders(up) -> dict:
    return up.cp.control("orders")


def child_ids(result) -> list[str]:
    return [c["client_order_id"] for c in result["children"]]


def assert_sent_once(up, result) -> None:
    snap = orders(up)
    for coid in child_ids(result):
        assert snap["arrivals"].get(coid) == 1, (coid, snap["arrivals"].get(coid))
    assert snap["duplicates"] == 0


def test_market_and_limit_orders(live):
    market, limit = live.submit([
        intent(qty=10, strategy_id="fix-mkt"),
        intent(qty=5, order_type="LIMIT", price="190.50", strategy_id="fix-lmt"),
    ])
    assert market["state"] == "COMPLETE" and market["filled_qty"] == "10" and market["avg_fill_price"] == "190", market
    assert market["venue"] == "fix" and market["children"][0]["venue"] == "fix"
    assert limit["state"] == "COMPLETE" and limit["filled_qty"] == "5" and limit["avg_fill_price"] == "190.5", limit
    for r in (market, limit):
        assert_sent_once(live, r)
    snap = orders(live)["orders"][market["children"][0]["client_order_id"]]
    assert snap["symbol"] == "AAPL.OQ" and snap["cum_qty"] == "10", "the venue saw its own symbol"


def test_twap_and_iceberg_children(live):
    twap, iceberg = live.submit([
        intent(qty=40, split="TWAP", horizon_s=2, strategy_id="fix-twap"),
        intent(qty=1200, split="ICEBERG", order_type="LIMIT", price="190.20", strategy_id="fix-ice"),
    ], timeout=90)
    assert twap["strategy"] == "TWAP" and len(twap["children"]) > 1 and twap["state"] == "COMPLETE", twap
    assert iceberg["strategy"] == "ICEBERG" and len(iceberg["children"]) > 1 and iceberg["state"] == "COMPLETE", iceberg
    for r in (twap, iceberg):
        assert sum(Decimal(c["filled_qty"]) for c in r["children"]) == Decimal(r["qty"])
        assert_sent_once(live, r)


def test_escape_cancels_a_resting_child_at_the_venue(live):
    (receipt,) = live.submit_nowait([intent(qty=7, order_type="LIMIT", price="185.00", strategy_id="fix-esc")])
    cid = receipt["correlation_id"]
    coid = wait_for_sync(lambda: (live.status(cid)["children"] or [None])[0], what="the child")["client_order_id"]
    wait_for_sync(lambda: orders(live)["orders"].get(coid, {}).get("live"), what="the limit resting at the venue")
    assert live.cli("escape", cid).returncode == 0
    wait_for_sync(lambda: live.status(cid)["state"] == "ESCAPED", timeout=30, what="ESCAPED")
    venue_side = orders(live)["orders"][coid]
    assert venue_side["status"] == "4" and not venue_side["live"] and venue_side["history"][-1] == f"{coid}.x1"


def test_connection_dropped_mid_order_gap_filled_nothing_twice(live):
    """The acceptor's reports vanish on the wire, a new order goes out meanwhile, the TCP connection
    drops; after the reconnect QuickFIX finds the sequence gap and asks for a resend (35=2), the
    acceptor replays with PossDupFlag — every fill arrives, counted once, no child sent twice."""
    (resting,) = live.submit_nowait([intent(qty=6, order_type="LIMIT", price="186.00", strategy_id="fix-drop-1")])
    rcid = resting["correlation_id"]
    rcoid = wait_for_sync(lambda: (live.status(rcid)["children"] or [None])[0], what="the child")["client_order_id"]
    wait_for_sync(lambda: live.status(rcid)["state"] == "MONITORING", what="the resting child acknowledged")
    resends_before = _resend_requests(live.store)
    live.proxy.blackhole(True)
    try:
        assert live.cp.control("fill", symbol="AAPL.OQ", qty="6", order=rcoid)["filled"] == 1
        (market,) = live.submit_nowait([intent(qty=3, strategy_id="fix-drop-2")])
        mcid = market["correlation_id"]
        mcoid = wait_for_sync(lambda: (live.status(mcid)["children"] or [None])[0], what="the new child")["client_order_id"]
        wait_for_sync(lambda: mcoid in orders(live)["arrivals"], timeout=30, what="the new order reached the venue during the outage")
        live.proxy.cut()
    finally:
        live.proxy.blackhole(False)
    for cid in (rcid, mcid):
        wait_for_sync(lambda: live.status(cid)["state"] == "COMPLETE", timeout=90, what=f"{cid} complete after the reconnect")
    r, m = live.status(rcid), live.status(mcid)
    assert r["filled_qty"] == "6" and m["filled_qty"] == "3", (r, m)
    assert_sent_once(live, r)
    assert_sent_once(live, m)
    assert live.proxy.connections >= 2, "the session came back on a new connection"
    assert _resend_requests(live.store) > resends_before, "QuickFIX asked for the gap (ResendRequest)"
    assert "43=Y" in live.cp.messages(), "the acceptor replayed the gap as possible duplicates"


def test_venue_worker_restart_with_an_order_open(live):
    (resting,) = live.submit_nowait([intent(qty=4, order_type="LIMIT", price="187.00", strategy_id="fix-restart")])
    cid = resting["correlation_id"]
    wait_for_sync(lambda: live.status(cid)["state"] == "MONITORING", what="the resting child acknowledged")
    coid = live.status(cid)["children"][0]["client_order_id"]
    (pid,) = live.worker_pids("venue-fix")
    live.proxy.blackhole(True)  # its fill is sent while the worker is going down: lost on the wire
    try:
        assert live.cp.control("fill", symbol="AAPL.OQ", qty="4", order=coid)["filled"] == 1
        os.kill(pid, signal.SIGKILL)
        wait_for_sync(lambda: live.worker_pids("venue-fix") and live.worker_pids("venue-fix") != [pid], timeout=30, what="the supervisor restarted venue-fix")
    finally:
        live.proxy.blackhole(False)
    live.proxy.cut()
    wait_for_sync(lambda: live.status(cid)["state"] == "COMPLETE", timeout=90, what="the fill after the restart")
    r = live.status(cid)
    assert r["filled_qty"] == "4" and r["children"][0]["filled_qty"] == "4"
    assert_sent_once(live, r)


def test_recon_finds_nothing_to_fix(live):
    res = live.cli("recon", "--json", "--fail-on-issues")
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    report = json.loads(res.stdout)
    assert report["orders_checked"] > 0 and report["venue_fills_op"], report
    assert report["issues"] == [] and report["backfilled_fills"] == [] and report["backfilled_closes"] == [], report


def _resend_requests(store: Path) -> int:
    """ResendRequests (35=2) our engine sent, from QuickFIX's own message log."""
    total = 0
    for log in (store / "log").glob("*.messages.current.log"):
        total += sum(1 for line in log.read_text(errors="replace").splitlines() if "\x0135=2\x01" in line and "\x0149=JETEXEC\x01" in line)
    return total
