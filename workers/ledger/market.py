"""Market data the ledger keeps: marks for unrealized PnL and a short mid history for TCA charts.

Quotes arrive on ``venue.md.<symbol>`` (core NATS, every price step). The recorder keeps the latest
quote per symbol (marks) and a bounded, thinned history of (ts, mid, bid, ask) per symbol, from
which :func:`capture` cuts an execution's window when it ends (stored under ``mkt.<cid>``).
"""

from __future__ import annotations

import collections
from decimal import Decimal
from typing import Any


from schemas.venue import SymbolInfo
from workers.common import MarketData

SAMPLE_EVERY_S = 0.2
HISTORY_S = 1800.0
MAX_POINTS = 600


class MarketRecorder(MarketData):
    def __init__(self, sample_every_s: float = SAMPLE_EVERY_S, history_s: float = HISTORY_S) -> None:
        super().__init__()
        self.history: dict[str, collections.deque] = {}
        self.sample_every_s = sample_every_s
        self.maxlen = int(history_s / sample_every_s) + 1
        self._last: dict[str, float] = {}

    def record(self, q: SymbolInfo, now: float) -> None:
        super().record(q, now)
        if now - self._last.get(q.symbol, 0.0) < self.sample_every_s:
            return
        self._last[q.symbol] = now
        dq = self.history.get(q.symbol)
        if dq is None:
            dq = self.history[q.symbol] = collections.deque(maxlen=self.maxlen)
        dq.append((now, q.reference_price, q.bid, q.ask))

    def mark(self, symbol: str) -> Decimal | None:
        return self.mid(symbol)

    def marks(self) -> dict[str, Decimal]:
        return {s: q.reference_price for s, q in self.quotes.items()}

    def window(self, symbol: str, t0: float, t1: float, max_points: int = MAX_POINTS) -> list[list[Any]]:
        rows = [r for r in self.history.get(symbol, ()) if t0 <= r[0] <= t1]
        step = max(1, -(-len(rows) // max_points))
        return [[ts, str(mid), None if bid is None else str(bid), None if ask is None else str(ask)] for ts, mid, bid, ask in rows[::step]]


def capture(recorder: MarketRecorder, symbol: str, t0: float, t1: float, tape: dict[str, Any] | None) -> dict[str, Any]:
    """The ``mkt.<cid>`` document: recorded mids over [t0, t1] and the venue tape summary (if any)."""
    doc: dict[str, Any] = {"symbol": symbol, "t0": t0, "t1": t1, "mids": recorder.window(symbol, t0, t1), "tape": None}
    if tape is not None:
        doc["tape"] = {k: tape.get(k) for k in ("vwap", "volume", "prints", "tape_from", "points")}
    return doc
