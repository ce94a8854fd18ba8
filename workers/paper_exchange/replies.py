"""The paper exchange's answers to ``venue.api.fills`` and ``venue.api.tape`` (wire format: the
ledger's client side, ``workers/ledger/venue_ops.py``)."""

from __future__ import annotations

import bisect

import json
from decimal import Decimal
from typing import Any

from schemas.venue import ExecutionReport

TAPE_POINTS_MAX = 2000


class FillIndex:
    """Every FILL report the venue emitted, by client order id (feed it the reports the paper
    exchange publishes; persist ``to_json(coid)`` under ``f.<coid>`` if fills must survive a venue
    restart)."""

    def __init__(self) -> None:
        self.by_order: dict[str, list[dict[str, Any]]] = {}

    def add(self, reports: list[ExecutionReport]) -> None:
        for r in reports:
            if r.kind != "FILL":
                continue
            rows = self.by_order.setdefault(r.client_order_id, [])
            if any(x["trade_id"] == r.trade_id for x in rows):
                continue
            rows.append({"trade_id": r.trade_id, "qty": str(r.qty), "price": str(r.price), "fee": str(r.fee), "ts": r.ts, "cum_qty": str(r.cum_qty)})

    def reply(self, order: Any | None, client_order_id: str) -> bytes:
        """The ``venue.api.fills`` answer; ``order`` is the venue's RestingOrder (or None)."""
        rows = self.by_order.get(client_order_id, [])
        if order is None:
            return json.dumps({"found": False, "client_order_id": client_order_id, "fills": rows}).encode()
        return json.dumps(
            {
                "found": True,
                "client_order_id": client_order_id,
                "cid": order.cid,
                "state": order.state.value,
                "qty": str(order.qty),
                "filled_qty": str(order.filled_qty),
                "fill_count": order.fill_count,
                "fills": rows,
            }
        ).encode()


def _ts(p: Any) -> float:
    return p.ts


def tape_reply(state: Any, symbol: str, t0: float, t1: float) -> bytes:
    """The ``venue.api.tape`` answer from a ``core.paper_venue.VenueState``."""
    from core.paper_venue import interval_vwap

    tape = state.tape  # in time order: the window is found by bisection, not by a scan of it all
    window = tape[bisect.bisect_left(tape, t0, key=_ts) : bisect.bisect_right(tape, t1, key=_ts)]
    inside = [p for p in window if p.symbol == symbol]
    volume = sum((p.qty for p in inside), Decimal(0))
    vwap = interval_vwap(state, symbol, t0, t1)
    first = next((p for p in tape if p.symbol == symbol), None)
    step = max(1, -(-len(inside) // TAPE_POINTS_MAX))
    points = [[p.ts, str(p.price), str(p.qty)] for p in inside[::step]]
    return json.dumps(
        {
            "symbol": symbol,
            "t0": t0,
            "t1": t1,
            "vwap": None if vwap is None else str(vwap),
            "volume": str(volume),
            "prints": len(inside),
            "tape_from": first.ts if first is not None else None,
            "points": points,
        }
    ).encode()
