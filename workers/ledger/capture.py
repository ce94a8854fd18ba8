"""Market data for TCA, captured when an execution ends: the recorded mids around it and the
venue's tape (VWAP) of its window, stored in KV ``LEDGER`` (``mkt.<cid>``) a little after the end
(the coordinator's ``exec.result.<cid>`` says when), because the mids are kept only for a while."""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time

from schemas.codec import decode
from schemas.messages import ExecutionResult
from workers.ledger import market as mkt
from workers.ledger import store, venue_ops

log = logging.getLogger("jetexec.ledger")

CAPTURE_DELAY_S = 1.5  # after the end: the last prints of the window have reached the tape
CAPTURE_PAD_S = 1.0  # the window around the execution


class MarketCapture:
    def __init__(self, nc, ledger_kv, market: mkt.MarketRecorder, state_of) -> None:
        self.nc = nc
        self.kv = ledger_kv
        self.market = market
        self.state_of = state_of  # async cid -> the ledger's state of that execution (or None)
        self.due: list[tuple[float, str, float]] = []
        self.wake = asyncio.Event()

    async def on_result(self, msg) -> None:
        """An execution ended: capture its market data soon."""
        try:
            result = decode(msg.data, ExecutionResult)
        except Exception:
            return
        if result.symbol is None or time.time() - result.updated_at > mkt.HISTORY_S:
            return  # rejected at intake, or long ago: nothing recorded any more
        heapq.heappush(self.due, (time.time() + CAPTURE_DELAY_S, result.correlation_id, result.updated_at))
        self.wake.set()

    async def run(self) -> None:
        while True:
            if not self.due:
                self.wake.clear()
                await self.wake.wait()
                continue
            at, cid, completed_at = self.due[0]
            if at > time.time():
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), at - time.time())
                except asyncio.TimeoutError:
                    pass
                continue
            heapq.heappop(self.due)
            try:
                await self.capture(cid, completed_at)
            except Exception:
                log.exception("market capture failed for %s", cid)

    async def capture(self, cid: str, completed_at: float = 0.0) -> dict | None:
        st = await self.state_of(cid)
        if st is None or st.symbol is None:
            return None
        end = completed_at or time.time()
        try:
            tape = await venue_ops.tape(self.nc, st.symbol, st.created_ts, end, venue=st.venue or None)
        except venue_ops.OpUnavailable:
            tape = None
        doc = mkt.capture(self.market, st.symbol, st.created_ts - CAPTURE_PAD_S, end + CAPTURE_PAD_S, tape)
        doc["cid"] = cid
        await self.kv.put(store.mkt_key(cid), json.dumps(doc).encode())
        return doc
