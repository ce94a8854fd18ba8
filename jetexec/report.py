"""The transaction-cost report document: per-execution TCA and chart data, and the batch TCA.

``jetexec report`` prints it (``--json``: the same objects) or renders it (``--html``, through
:mod:`jetexec.report_html`); ``jetexec demo`` writes the page at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.tca import batch_tca, execution_tca, to_json
from jetexec.report_html import render
from workers.ledger import query, store, venue_ops
from workers.ledger.tca_data import chart_data, tca_input


class UnknownExecutions(LookupError):
    """Correlation ids neither the ledger nor the fact log knows."""

    def __init__(self, cids: list[str]) -> None:
        super().__init__(f"no execution {', '.join(cids[:5])}{'...' if len(cids) > 5 else ''}")
        self.cids = cids


async def build_report(nc, cids: list[str] | None, *, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """The report document for ``cids`` (``None`` = every execution the ledger knows, filtered by
    creation time)."""
    states = await query.states(nc, cids)
    if cids is not None:
        for cid in cids:
            if cid not in states:  # the ledger has not seen it (yet): rebuild from the fact log
                st = await query.rebuild_state(nc, cid)
                if st is not None:
                    states[cid] = st
        missing = [c for c in cids if c not in states]
        if missing:
            raise UnknownExecutions(missing)
        ordered = [states[c] for c in cids]
    else:
        ordered = sorted(states.values(), key=lambda s: (s.created_ts, s.cid))
    await query.attach_records(nc, {s.cid: s for s in ordered})
    ordered = [s for s in ordered if s.record is not None and (since is None or s.created_ts >= since) and (until is None or s.created_ts <= until)]
    kv = await nc.jetstream(timeout=5).key_value("LEDGER")
    items = []
    rows = []
    for st in ordered:
        doc = None
        try:
            entry = await kv.get(store.mkt_key(st.cid))
            doc = json.loads(entry.value) if entry.value else None
        except Exception:
            doc = None
        if doc is None and st.record is not None and st.symbol:
            t0 = st.created_ts
            t1 = st.record.completed_at or time.time()
            try:
                tape = await venue_ops.tape(nc, st.symbol, t0, t1, timeout=1.0)
                doc = {"symbol": st.symbol, "t0": t0, "t1": t1, "mids": [], "tape": tape}
            except venue_ops.OpUnavailable:
                doc = None
        tca = execution_tca(tca_input(st, doc))
        rows.append(tca)
        items.append({"tca": to_json(tca), "chart": chart_data(st, doc, tca)})
    return {"generated_at": time.time(), "batch": to_json(batch_tca(rows)), "executions": items}


async def write_report(nc, cids: list[str] | None, path: str | Path, title: str = "jetexec — transaction cost report") -> Path:
    """Build the report for ``cids`` and write the HTML page."""
    doc = await build_report(nc, cids)
    p = Path(path)
    p.write_text(render(doc, title))
    return p
