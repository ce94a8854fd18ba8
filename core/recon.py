"""Reconciliation, pure: the ledger's orders against what the venue says, and snapshots.

No I/O. :mod:`workers.ledger.recon` gathers the two views (ledger state from KV ``LEDGER``, the venue
through ``venue.api.query`` and — when served — ``venue.api.fills``), calls :func:`reconcile`, waits a
grace period and calls it again on the survivors (a fill the venue made a few ms ago may still be on
its way through ``VENUE_RPT`` → monitor → ``EXEC_EVT``), then acts on what is left:

* **Back-fills** — a venue trade the ledger never booked becomes a ``ChildFill`` fact (the monitor's
  own message id, ``<cid>.fill.<trade id>``, so a late original and the back-fill collapse into one);
  a close the ledger missed becomes a ``ChildClosed`` fact (id ``<cid>.close.<coid>.<KIND>``, again
  the monitor's). Only possible with the venue's per-trade detail (``venue.api.fills``).
* **Issues** — every discrepancy, with a deterministic :attr:`Issue.key`; the worker alerts (audit
  ``RECON_DISCREPANCY``) when an issue appears and writes ``RECON_RESOLVED`` when it disappears.

Issue codes: ``RECON_FILL_MISSING`` (venue trade not in the ledger; back-filled when details are
known), ``RECON_FILL_QTY_MISMATCH`` (filled quantities differ and no per-trade detail to fix it),
``RECON_FILL_UNKNOWN_AT_VENUE`` (ledger trade the venue does not have), ``RECON_ORDER_UNKNOWN_AT_VENUE``
(a live or filled ledger order the venue never heard of), ``RECON_STATE_MISMATCH`` (open on one side,
closed on the other), ``RECON_QTY_MISMATCH`` (order quantity differs), ``RECON_OPEN_COUNT_MISMATCH``
(the venue holds more open orders than the ledger knows of).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from core.ledger import OrderLedgerEntry
from schemas.enums import OrderState

__all__ = [
    "Backfill",
    "CloseBackfill",
    "Issue",
    "ReconResult",
    "VenueFill",
    "VenueOrder",
    "build_snapshot",
    "issue_changes",
    "reconcile",
]

LEDGER_LIVE = frozenset({OrderState.SUBMITTED, OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED})
VENUE_LIVE = frozenset({OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED})
NEVER_AT_VENUE = frozenset({OrderState.CREATED, OrderState.REJECTED, OrderState.FAILED, OrderState.CANCELLED, OrderState.SUBMITTED})


class VenueFill(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    ts: float = 0.0


class VenueOrder(msgspec.Struct, frozen=True, kw_only=True):
    """What the venue says about one client order id."""

    client_order_id: str
    found: bool
    state: OrderState | None = None
    qty: Decimal = Decimal(0)
    filled_qty: Decimal = Decimal(0)
    fills: tuple[VenueFill, ...] | None = None  # None: the venue gave no per-trade detail


class Issue(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    correlation_id: str
    client_order_id: str | None
    message: str
    details: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """Stable identity: the same discrepancy found again has the same key."""
        h = hashlib.sha256(f"{self.code}\x1f{self.correlation_id}\x1f{self.client_order_id}\x1f{self.details.get('identity', '')}".encode())
        return h.hexdigest()[:24]


class Backfill(msgspec.Struct, frozen=True, kw_only=True):
    correlation_id: str
    client_order_id: str
    fill: VenueFill


class CloseBackfill(msgspec.Struct, frozen=True, kw_only=True):
    correlation_id: str
    client_order_id: str
    state: OrderState
    reason: str


class ReconResult(msgspec.Struct, kw_only=True):
    checked: int = 0
    issues: list[Issue] = []
    backfills: list[Backfill] = []
    closes: list[CloseBackfill] = []

    @property
    def clean(self) -> bool:
        return not self.issues and not self.backfills and not self.closes


def _issue(code: str, o: OrderLedgerEntry, message: str, identity: str = "", **details: Any) -> Issue:
    d = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in details.items()}
    d["identity"] = identity
    return Issue(code=code, correlation_id=o.correlation_id, client_order_id=o.client_order_id, message=message, details=d)


def diff_order(o: OrderLedgerEntry, v: VenueOrder, *, is_estimate: bool = False) -> ReconResult:
    """One order: the ledger's entry against the venue's view. ``is_estimate``: the ledger's order
    quantity is an estimate (the escape worker's flatten order), so a quantity difference is no issue."""
    r = ReconResult(checked=1)
    if not v.found:
        if o.state in LEDGER_LIVE - {OrderState.SUBMITTED} or o.filled_qty > 0:
            r.issues.append(_issue("RECON_ORDER_UNKNOWN_AT_VENUE", o, f"{o.state.value} in the ledger (filled {o.filled_qty}) but unknown at the venue", o.state.value, ledger_state=o.state.value, ledger_filled=o.filled_qty))
        return r
    ledger_trades = set(o.trade_ids)
    if v.fills is not None:
        venue_trades = {f.trade_id for f in v.fills}
        for f in v.fills:
            if f.trade_id not in ledger_trades:
                r.backfills.append(Backfill(correlation_id=o.correlation_id, client_order_id=o.client_order_id, fill=f))
                r.issues.append(_issue("RECON_FILL_MISSING", o, f"venue trade {f.trade_id} ({f.qty} @ {f.price}) missing from the ledger: back-filled", f.trade_id, trade_id=f.trade_id, qty=f.qty, price=f.price, fee=f.fee, backfilled=True))
        for t in sorted(ledger_trades - venue_trades):
            r.issues.append(_issue("RECON_FILL_UNKNOWN_AT_VENUE", o, f"ledger trade {t} unknown at the venue", t, trade_id=t))
    elif v.filled_qty != o.filled_qty:
        r.issues.append(
            _issue(
                "RECON_FILL_QTY_MISMATCH",
                o,
                f"venue filled {v.filled_qty}, ledger filled {o.filled_qty} (no per-trade detail from the venue: not back-filled)",
                f"{v.filled_qty}/{o.filled_qty}",
                venue_filled=v.filled_qty,
                ledger_filled=o.filled_qty,
            )
        )
    if v.qty and v.qty != o.qty and not is_estimate:
        r.issues.append(_issue("RECON_QTY_MISMATCH", o, f"order qty: venue {v.qty}, ledger {o.qty}", f"{v.qty}/{o.qty}", venue_qty=v.qty, ledger_qty=o.qty))
    if v.state is not None:
        venue_live = v.state in VENUE_LIVE
        ledger_live = o.state in LEDGER_LIVE
        if venue_live and not ledger_live:
            r.issues.append(_issue("RECON_STATE_MISMATCH", o, f"open at the venue ({v.state.value}), {o.state.value} in the ledger", f"{v.state.value}/{o.state.value}", venue_state=v.state.value, ledger_state=o.state.value))
        elif ledger_live and not venue_live:
            if v.state in (OrderState.CANCELLED, OrderState.EXPIRED, OrderState.REJECTED):
                r.closes.append(CloseBackfill(correlation_id=o.correlation_id, client_order_id=o.client_order_id, state=v.state, reason="reconciliation: closed at the venue"))
                r.issues.append(_issue("RECON_STATE_MISMATCH", o, f"{v.state.value} at the venue, {o.state.value} in the ledger: close back-filled", f"{v.state.value}/{o.state.value}", venue_state=v.state.value, ledger_state=o.state.value, backfilled=True))
            elif v.state is OrderState.FILLED and v.fills is None:
                r.issues.append(_issue("RECON_STATE_MISMATCH", o, f"FILLED at the venue, {o.state.value} in the ledger", f"{v.state.value}/{o.state.value}", venue_state=v.state.value, ledger_state=o.state.value))
    return r


def reconcile(
    orders: Iterable[OrderLedgerEntry],
    venue: Mapping[str, VenueOrder],
    *,
    venue_open: int | None = None,
    ledger_open_total: int | None = None,
    estimates: Iterable[str] = (),
) -> ReconResult:
    """Every ledger order that has a venue view; plus the open-order count check when given
    (``ledger_open_total``: live orders the ledger knows of, across all executions)."""
    est = set(estimates)
    out = ReconResult()
    for o in sorted(orders, key=lambda o: (o.correlation_id, o.client_order_id)):
        v = venue.get(o.client_order_id)
        if v is None:
            continue
        r = diff_order(o, v, is_estimate=o.client_order_id in est)
        out.checked += r.checked
        out.issues += r.issues
        out.backfills += r.backfills
        out.closes += r.closes
    if venue_open is not None and ledger_open_total is not None and venue_open > ledger_open_total:
        out.issues.append(
            Issue(
                code="RECON_OPEN_COUNT_MISMATCH",
                correlation_id="system",
                client_order_id=None,
                message=f"the venue holds {venue_open} open orders, the ledger knows of {ledger_open_total} live ones",
                details={"venue_open": venue_open, "ledger_open": ledger_open_total, "identity": f"{venue_open}/{ledger_open_total}"},
            )
        )
    return out


def persistent(first: ReconResult, second: ReconResult) -> ReconResult:
    """What both passes found (the second pass's objects): drops discrepancies that were only
    reports still in flight during the first pass."""
    keys = {i.key for i in first.issues}
    trades = {b.fill.trade_id for b in first.backfills}
    closes = {(c.client_order_id, c.state) for c in first.closes}
    return ReconResult(
        checked=second.checked,
        issues=[i for i in second.issues if i.key in keys],
        backfills=[b for b in second.backfills if b.fill.trade_id in trades],
        closes=[c for c in second.closes if (c.client_order_id, c.state) in closes],
    )


def issue_changes(previous: Mapping[str, Any], current: Sequence[Issue]) -> tuple[list[Issue], list[str]]:
    """``(new issues, keys of resolved ones)`` given the previously open issues (by key)."""
    now = {i.key: i for i in current}
    new = [i for k, i in now.items() if k not in previous]
    resolved = sorted(k for k in previous if k not in now)
    return new, resolved


def build_snapshot(
    *,
    ts: float,
    positions: Sequence[Mapping[str, Any]],
    orders: Sequence[OrderLedgerEntry],
    order_row,
    audit_high_water: int,
    evt_high_water: int,
    ledger_ack_floor: int,
    include_all_orders: bool = False,
) -> dict[str, Any]:
    """The recon hand-off snapshot: positions, open orders (all with ``include_all_orders``), order
    counts by state, and the high-water marks that say exactly which log prefix it reflects."""
    counts: dict[str, int] = {}
    for o in orders:
        counts[o.state.value] = counts.get(o.state.value, 0) + 1
    chosen = orders if include_all_orders else [o for o in orders if o.state in LEDGER_LIVE]
    return {
        "ts": ts,
        "audit_high_water": audit_high_water,
        "exec_evt_high_water": evt_high_water,
        "ledger_ack_floor": ledger_ack_floor,
        "positions": list(positions),
        "orders": [order_row(o) for o in sorted(chosen, key=lambda o: (o.created_at, o.client_order_id))],
        "order_counts": dict(sorted(counts.items())),
        "orders_total": len(orders),
    }
