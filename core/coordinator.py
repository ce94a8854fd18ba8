"""The coordinator's decisions: (execution record, fact, now) → new record with its outbox.

Pure: no I/O, no clock. The coordinator worker loads the record from KV, calls :func:`decide`,
writes the result with a revision check, publishes ``record.outbox``, and acks. Every message in the
outbox has a deterministic id (``<cid>.<version>.<n>``), so re-publishing after a crash is harmless.

Re-applying a fact is a no-op (``decide`` returns None): facts carry what makes them idempotent
(trade ids, child ids, the adjust round, the state they answer). This — not stream-sequence
bookkeeping — is what makes redelivery safe, because after a crash JetStream redelivers the dead
consumer's in-flight facts *after* newer ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from core import audit
from core.audit import AuditEntry
from core.execution_fsm import STAGE_TIMEOUT_MS, is_terminal, timeout_target, transition
from core.guardrails import alert as make_alert
from core.order_fsm import ORDER_LIVE, ORDER_TERMINAL, InvalidOrderTransition, order_transition
from schemas.codec import encode
from schemas.enums import AdjustAction, AlertCode, ErrorClass, ExecutionState as S, OrderState as O, ReasonCode, ReleasePolicy, SplitStrategy, TimerKind
from schemas.messages import (
    AdjustCommand,
    AdjustDone,
    Alert,
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildOrder,
    ChildRecord,
    ChildRejected,
    ChildReplaced,
    ChildResult,
    EscapeDone,
    EscapeRequest,
    EscapeStarted,
    ExecutionCreated,
    ExecutionRecord,
    ExecutionResult,
    Fact,
    IntentRejected,
    OutMsg,
    PrecheckCommand,
    PrecheckDone,
    SendCommand,
    SplitCommand,
    SplitDone,
    StageFailed,
    TimerFired,
    Transition,
)

ESCAPE_RETRY_S = 5.0


@dataclass(frozen=True)
class CoordinatorConfig:
    stage_timeout_ms: dict[S, int] = field(default_factory=lambda: dict(STAGE_TIMEOUT_MS))
    fill_delay_warn_s: float = 30.0  # GR064
    max_adjust_rounds: int = 3

    @classmethod
    def from_mapping(cls, raw: dict | None) -> "CoordinatorConfig":
        """From JSON such as ``{"stage_timeout_ms": {"MONITORING": 2000}, "fill_delay_warn_s": 5}``;
        unknown keys or states raise ValueError (a typo must not silently keep a 60 s timeout)."""
        raw = dict(raw or {})
        timeouts = dict(STAGE_TIMEOUT_MS)
        for name, ms in dict(raw.pop("stage_timeout_ms", {})).items():
            state = S(name)
            if state not in STAGE_TIMEOUT_MS or int(ms) <= 0:
                raise ValueError(f"no stage timeout for {name} (or not > 0)")
            timeouts[state] = int(ms)
        cfg = cls(stage_timeout_ms=timeouts, fill_delay_warn_s=float(raw.pop("fill_delay_warn_s", 30.0)), max_adjust_rounds=int(raw.pop("max_adjust_rounds", 3)))
        if raw:
            raise ValueError(f"unknown coordinator settings: {', '.join(sorted(raw))}")
        return cfg


def _subject_cmd(stage: str, cid: str) -> str:
    return f"exec.cmd.{stage}.{cid}"


class _Step:
    """Accumulates the changes of one decision (new record + outbox)."""

    def __init__(self, record: ExecutionRecord, now: float, cfg: CoordinatorConfig) -> None:
        self.r = record
        self.now = now
        self.cfg = cfg
        self.out: list[OutMsg] = []

    def emit(self, subject: str, payload: object) -> None:
        msg_id = f"{self.r.cid}.{self.r.version}.{len(self.out)}"
        self.out.append(OutMsg(subject, msg_id, encode(payload)))

    def alert(self, code: AlertCode, stage: str, message: str) -> None:
        self.r.alerts.append(make_alert(code, stage, message, self.now))

    def alerts(self, alerts: tuple[Alert, ...]) -> None:
        # A redelivered fact carries the same alerts (same code, message and timestamp): once only.
        for a in alerts:
            if a not in self.r.alerts:
                self.r.alerts.append(a)

    def move(self, target: S, reason: str = "") -> None:
        current = self.r.state
        if current is target:
            return
        transition(current, target)
        self.r.state = target
        self.r.transitions.append(Transition(current, target, self.now, reason))
        timeout = self.cfg.stage_timeout_ms.get(target)
        start = self.now
        if target is S.MONITORING:
            # A TWAP/VWAP schedule longer than the MONITORING timeout is not a fill timeout: the
            # clock starts when the last scheduled child is due.
            start = max([self.now] + [c.scheduled_at for c in self.r.children if not c.dispatched])
        self.r.deadline_at = start + timeout / 1000 if timeout else 0.0
        if is_terminal(target):
            self.r.completed_at = self.now

    def fail(self, code: ReasonCode, detail: str) -> None:
        self.r.reason_code = code
        self.r.detail = detail
        self.move(S.FAILED, code.value)

    def escape(self, reason: str, code: ReasonCode | None = None) -> None:
        """Move to ESCAPING and ask the escape worker to cancel every live child."""
        if self.r.state is S.ESCAPING or is_terminal(self.r.state):
            return
        if code is not None and self.r.reason_code is None:
            self.r.reason_code = code
            self.r.detail = reason
        self.move(S.ESCAPING, reason)
        self.emit(f"exec.escape.{self.r.cid}", EscapeRequest(reason=reason, cid=self.r.cid, requested_at=self.now, children=_live_children(self.r), venue=_venue(self.r)))


def _venue(r: ExecutionRecord) -> str | None:
    return (r.intent.venue or None) if r.intent else None


def _live_children(r: ExecutionRecord) -> tuple[str, ...]:
    """Children that may be working at the venue: dispatched and not closed."""
    return tuple(c.client_order_id for c in r.children if c.dispatched and c.state not in ORDER_TERMINAL)


def _child(r: ExecutionRecord, coid: str) -> ChildRecord | None:
    for c in r.children:
        if c.client_order_id == coid:
            return c
    return None


def _set_child_state(c: ChildRecord, target: O) -> None:
    try:
        c.state = order_transition(c.state, target)
    except InvalidOrderTransition:
        pass  # a stale or reordered venue event: the terminal state already recorded wins


def _dispatch_due(st: _Step) -> None:
    """Send every child whose time has come (SCHEDULED), or the next one when none is live (SEQUENTIAL)."""
    r = st.r
    if r.state not in (S.SENDING, S.MONITORING, S.ADJUSTING) or r.intent is None:
        return
    if r.release is ReleasePolicy.SEQUENTIAL:
        if any(c.dispatched and c.state not in ORDER_TERMINAL for c in r.children):
            return
        due = [c for c in r.children if not c.dispatched][:1]
    else:
        due = [c for c in r.children if not c.dispatched and c.scheduled_at <= st.now]
    for c in due:
        c.dispatched = True
        c.sent_at = st.now
        _set_child_state(c, O.SUBMITTED)
        child = ChildOrder(
            client_order_id=c.client_order_id,
            index=c.index,
            symbol=r.intent.symbol,
            side=r.intent.side,
            qty=c.qty,
            order_type=c.order_type,
            price=c.price,
            scheduled_at=c.scheduled_at,
            generation=c.generation,
            venue=r.intent.venue or "",
        )
        st.emit(_subject_cmd("send", r.cid), SendCommand(cid=r.cid, step=r.version, child=child, mode=r.mode, issued_at=st.now))


def filled_qty(r: ExecutionRecord) -> Decimal:
    return sum((c.filled_qty for c in r.children), Decimal(0))


def _all_closed(r: ExecutionRecord) -> bool:
    return all(c.state in ORDER_TERMINAL for c in r.children) and all(c.dispatched for c in r.children)


def _settle(st: _Step) -> None:
    """After any child change: complete, fail or finish escaping when the children say so."""
    r = st.r
    filled = filled_qty(r)
    if r.state is S.ESCAPING:
        # ESCAPED only once the escape worker has reported and every child is closed at the venue.
        if r.escape_reported and all(c.state in ORDER_TERMINAL for c in r.children):
            st.move(S.ESCAPED, "every child closed")
        return
    if r.state is S.SENDING:
        dispatched = [c for c in r.children if c.dispatched]
        if dispatched and all(c.state is not O.SUBMITTED for c in dispatched):
            if any(c.state in (O.ACKNOWLEDGED, O.PARTIALLY_FILLED, O.FILLED) for c in dispatched) or filled > 0:
                st.move(S.MONITORING, "acknowledged")
            elif all(c.state in ORDER_TERMINAL for c in r.children if c.dispatched) and all(c.dispatched for c in r.children):
                failed = sum(1 for c in dispatched if c.state in (O.REJECTED, O.FAILED))
                st.alert(AlertCode.FS090, "SENDING", f"All {failed} orders failed to send")
                st.fail(ReasonCode.ALL_SENDS_FAILED, f"every send failed ({failed})")
                return
            elif any(c.state in (O.REJECTED, O.FAILED) for c in dispatched) and any(not c.dispatched for c in r.children):
                st.move(S.MONITORING, "first wave settled; schedule continues")
    if r.state in (S.MONITORING, S.ADJUSTING) and r.intent is not None:
        if filled >= r.target_qty:
            if r.state is S.ADJUSTING:
                st.move(S.MONITORING, "filled while adjusting")
            st.move(S.COMPLETE, "filled")
            return
        if _all_closed(r):
            if r.state is S.ADJUSTING:
                st.move(S.MONITORING, "children closed while adjusting")
            if filled > 0:
                r.reason_code = r.reason_code or next((c.reason_code for c in r.children if c.reason_code), None)
                st.move(S.COMPLETE, "children closed, partially filled")
            else:
                # Nothing was filled and nothing is live: the execution cannot complete. FS090 if the
                # venue refused everything, otherwise escape to make sure nothing is left behind.
                if all(c.state in (O.REJECTED, O.FAILED) for c in r.children):
                    st.alert(AlertCode.FS090, "MONITORING", f"All {len(r.children)} orders failed")
                st.escape("no live child and nothing filled", r.reason_code or ReasonCode.ALL_SENDS_FAILED)


def _new_record(cid: str, key: str, now: float) -> ExecutionRecord:
    return ExecutionRecord(cid=cid, idempotency_key=key, state=S.INIT, created_at=now, updated_at=now)


def decide(record: ExecutionRecord | None, fact: Fact, now: float, cfg: CoordinatorConfig = CoordinatorConfig()) -> ExecutionRecord | None:
    """Apply one fact. Returns the new record (with ``version`` bumped and ``outbox`` set to what
    must be published), or None when the fact changes nothing (duplicate, stale or late)."""
    if record is None:
        create = _CREATE.get(type(fact))
        return create(fact, now, cfg) if create is not None else None  # no execution (yet): nothing to do
    if isinstance(fact, (ExecutionCreated, IntentRejected)):
        return None  # the same intent again: one execution
    handler = _HANDLERS.get(type(fact))
    if handler is None:
        return None

    r = msgspec.structs.replace(record)
    r.children = [msgspec.structs.replace(c, trade_ids=list(c.trade_ids)) for c in record.children]
    r.alerts = list(record.alerts)
    r.transitions = list(record.transitions)
    r.version = record.version + 1
    r.updated_at = now
    st = _Step(r, now, cfg)
    if handler(st, fact) is False:
        return None
    r.outbox = st.out
    unchanged = msgspec.structs.replace(r, version=record.version, updated_at=record.updated_at, outbox=record.outbox, last_fact_seq=record.last_fact_seq, outbox_log=record.outbox_log)
    if unchanged == record:
        return None  # nothing changed
    return r


# ---- a new execution ---------------------------------------------------------------------------
def _created(fact: ExecutionCreated, now: float, cfg: CoordinatorConfig) -> ExecutionRecord:
    r = _new_record(fact.cid, fact.idempotency_key, now)
    r.intent, r.mode, r.arrival_price = fact.intent, fact.mode, fact.arrival_price
    r.target_qty = fact.intent.qty
    r.version = 1
    st = _Step(r, now, cfg)
    st.move(S.PRECHECK, "intent accepted")
    st.emit(_subject_cmd("precheck", r.cid), PrecheckCommand(cid=r.cid, step=r.version, intent=fact.intent, mode=fact.mode, reference_price=fact.arrival_price, issued_at=now))
    r.outbox = st.out
    return r


def _rejected(fact: IntentRejected, now: float, cfg: CoordinatorConfig) -> ExecutionRecord:
    r = _new_record(fact.cid, fact.idempotency_key, now)
    r.version = 1
    st = _Step(r, now, cfg)
    st.alerts(fact.alerts)
    st.fail(fact.reason_code, fact.detail)
    r.outbox = []
    return r


_CREATE = {ExecutionCreated: _created, IntentRejected: _rejected}


# ---- one handler per fact type: each returns False when the fact changes nothing ----------------
def _on_precheck_done(st: _Step, fact: PrecheckDone) -> bool | None:
    r = st.r
    if r.state is not S.PRECHECK:
        return False
    st.alerts(fact.alerts)
    if fact.passed and r.intent is not None:
        r.target_qty = fact.qty if fact.qty is not None else r.intent.qty
        st.move(S.SPLITTING, "precheck passed")
        st.emit(_subject_cmd("split", r.cid), SplitCommand(cid=r.cid, step=r.version, intent=r.intent, qty=r.target_qty, idempotency_key=r.idempotency_key, issued_at=st.now))
    else:
        st.fail(fact.reason_code or ReasonCode.RISK_BLOCKED, fact.detail)
    return None


def _on_split_done(st: _Step, fact: SplitDone) -> bool | None:
    r = st.r
    if r.state is not S.SPLITTING:
        return False
    st.alerts(fact.alerts)
    if not fact.children:
        st.fail(fact.reason_code or ReasonCode.SPLIT_EMPTY, fact.detail or "no child orders")
        return None
    r.strategy = fact.strategy
    r.release = fact.release or release_of_old_fact(fact.strategy)
    r.target_qty = sum((c.qty for c in fact.children), Decimal(0))
    r.children = [
        ChildRecord(client_order_id=c.client_order_id, index=c.index, qty=c.qty, order_type=c.order_type, price=c.price, scheduled_at=c.scheduled_at, venue=(r.intent.venue or "") if r.intent else "")
        for c in fact.children
    ]
    st.move(S.SENDING, f"{fact.strategy.value} x{len(fact.children)}")
    _dispatch_due(st)
    return None


def release_of_old_fact(strategy: SplitStrategy) -> ReleasePolicy:
    """A SplitDone stored before release policies travelled on it (schema 1): ICEBERG was the only
    sequential strategy then."""
    return ReleasePolicy.SEQUENTIAL if strategy is SplitStrategy.ICEBERG else ReleasePolicy.SCHEDULED


def _on_child_accepted(st: _Step, fact: ChildAccepted) -> bool | None:
    r = st.r
    c = _child(r, fact.client_order_id)
    if c is None:
        return False
    c.venue_order_id = fact.venue_order_id
    if c.state is O.SUBMITTED:
        _set_child_state(c, O.ACKNOWLEDGED)
    c.acked_at = c.acked_at or st.now
    r.first_ack_at = r.first_ack_at or st.now
    if r.state is S.ESCAPING and r.escape_reported and c.state not in ORDER_TERMINAL:
        # Acked after the escape reported: it slipped past the fence; cancel it by name now.
        st.emit(f"exec.escape.{r.cid}", EscapeRequest(reason="escape: child acknowledged after the escape", cid=r.cid, requested_at=st.now, children=(c.client_order_id,), venue=_venue(r)))
    _settle(st)
    return None


def _on_child_rejected(st: _Step, fact: ChildRejected) -> bool | None:
    c = _child(st.r, fact.client_order_id)
    if c is None or c.state in ORDER_TERMINAL:
        return False
    c.reason_code = fact.reason_code
    _set_child_state(c, O.REJECTED if fact.reason_code not in (ReasonCode.VENUE_TIMEOUT,) else O.FAILED)
    if fact.error_class is ErrorClass.FATAL:
        st.alert(AlertCode.FS095, st.r.state.value, f"venue fatal error: {fact.detail}")
        st.escape("VENUE_FATAL", ReasonCode.VENUE_FATAL)
    else:
        _settle(st)
    return None


def _on_child_fill(st: _Step, fact: ChildFill) -> bool | None:
    r = st.r
    c = _child(r, fact.client_order_id)
    if c is None or fact.trade_id in c.trade_ids:
        return False
    c.trade_ids.append(fact.trade_id)
    c.filled_qty += fact.qty
    c.notional += fact.qty * fact.price
    c.fees += fact.fee
    c.last_fill_at = st.now
    r.first_fill_at = r.first_fill_at or st.now
    if c.state not in ORDER_TERMINAL:
        _set_child_state(c, O.FILLED if c.filled_qty >= c.qty else O.PARTIALLY_FILLED)
    _settle(st)
    _dispatch_due(st)  # a sequential slice filled: release the next
    return None


def _on_child_closed(st: _Step, fact: ChildClosed) -> bool | None:
    c = _child(st.r, fact.client_order_id)
    if c is None or c.state in ORDER_TERMINAL:
        return False
    _set_child_state(c, fact.state)
    if fact.state is O.REJECTED:
        c.reason_code = ReasonCode.VENUE_REJECTED
    _settle(st)
    _dispatch_due(st)
    return None


def _on_child_replaced(st: _Step, fact: ChildReplaced) -> bool | None:
    c = _child(st.r, fact.client_order_id)
    if c is None or c.state in ORDER_TERMINAL:
        return False
    c.client_order_id = fact.new_client_order_id
    c.price = fact.new_price
    c.generation = fact.generation
    return None


def _on_adjust_done(st: _Step, fact: AdjustDone) -> bool | None:
    r = st.r
    if r.state is not S.ADJUSTING or fact.round != r.adjust_round:
        return False  # late or repeated result of an earlier round
    st.alerts(fact.alerts)
    r.adjust_round = max(r.adjust_round, fact.round + 1)
    for rep in fact.replaced:
        c = _child(r, rep.client_order_id)
        if c is not None and c.state not in ORDER_TERMINAL:
            c.client_order_id, c.price, c.generation = rep.new_client_order_id, rep.new_price, rep.generation
    if fact.action == AdjustAction.ESCAPE:
        st.escape("adjustment limit reached", fact.reason_code or ReasonCode.SLIPPAGE_EXCEEDED)
    else:
        st.move(S.MONITORING, AdjustAction(fact.action).value)
        _settle(st)
    return None


def _on_timer(st: _Step, fact: TimerFired) -> bool | None:
    r = st.r
    if is_terminal(r.state):
        return False
    if fact.kind == TimerKind.SCHEDULE:
        _dispatch_due(st)  # scheduled children only: no stage timeout is judged on this wake
        return None
    if r.deadline_at and st.now >= r.deadline_at:
        _on_stage_timeout(st)
    _dispatch_due(st)
    _check_fill_delay(st)
    return None


def _on_escape_started(st: _Step, fact: EscapeStarted) -> bool | None:
    r = st.r
    if is_terminal(r.state):
        return False
    if r.state is not S.ESCAPING:
        st.move(S.ESCAPING, fact.reason)
    return None


def _on_escape_done(st: _Step, fact: EscapeDone) -> bool | None:
    r = st.r
    if is_terminal(r.state):
        return False
    if r.state is not S.ESCAPING:
        st.move(S.ESCAPING, fact.reason)
    st.alerts(fact.alerts)
    for coid in fact.cancelled:
        c = _child(r, coid)
        if c is not None and c.state not in ORDER_TERMINAL:
            _set_child_state(c, O.CANCELLED)
    for c in r.children:
        if not c.dispatched and c.state is O.CREATED:
            _set_child_state(c, O.CANCELLED)  # never sent: nothing to cancel at the venue
    r.escape_reported = True
    if fact.flatten_client_order_id:
        r.flatten_client_order_id = fact.flatten_client_order_id
    if fact.failed:
        r.deadline_at = st.now + ESCAPE_RETRY_S  # re-escape what could not be cancelled
    # A child the escape worker did not know of (it looked at a snapshot taken before that child
    # was sent): cancel it now, by name, instead of waiting for the ESCAPING deadline.
    tried = set(fact.attempted) | set(fact.cancelled) | set(fact.failed)
    missed = tuple(coid for coid in _live_children(r) if coid not in tried)
    if missed:
        st.emit(f"exec.escape.{r.cid}", EscapeRequest(reason=f"escape: {len(missed)} live children missed", cid=r.cid, requested_at=st.now, children=missed, venue=_venue(r)))
    _settle(st)
    return None


def _on_stage_failed(st: _Step, fact: StageFailed) -> bool | None:
    r = st.r
    if is_terminal(r.state):
        return False
    if r.state in (S.PRECHECK, S.SPLITTING) or (r.state is S.SENDING and not any(c.dispatched for c in r.children)):
        st.fail(fact.reason_code, f"{fact.stage}: {fact.detail}")
    else:
        st.escape(f"{fact.stage} dead-lettered: {fact.detail}", fact.reason_code)
    return None


_HANDLERS = {
    PrecheckDone: _on_precheck_done,
    SplitDone: _on_split_done,
    ChildAccepted: _on_child_accepted,
    ChildRejected: _on_child_rejected,
    ChildFill: _on_child_fill,
    ChildClosed: _on_child_closed,
    ChildReplaced: _on_child_replaced,
    AdjustDone: _on_adjust_done,
    TimerFired: _on_timer,
    EscapeStarted: _on_escape_started,
    EscapeDone: _on_escape_done,
    StageFailed: _on_stage_failed,
}
"""What each fact does to an execution: the whole decision table of the coordinator."""


def _on_stage_timeout(st: _Step) -> None:
    r = st.r
    target = timeout_target(r.state)
    if r.state is S.ESCAPING:
        # The escape did not finish in time: ask again (cancels are idempotent), never give up silently.
        r.deadline_at = st.now + ESCAPE_RETRY_S
        st.emit(f"exec.escape.{r.cid}", EscapeRequest(reason="escape retry", cid=r.cid, requested_at=st.now))
        return
    if target is None:
        return
    if r.state is S.MONITORING:
        st.alert(AlertCode.FS093, "MONITORING", "Fill timeout in MONITORING stage")
        if r.adjust_round >= st.cfg.max_adjust_rounds:
            st.alert(AlertCode.FS094, "ADJUSTING", f"Max adjustment rounds ({st.cfg.max_adjust_rounds}) reached")
            st.escape("fill timeout after max adjustment rounds", ReasonCode.FILL_TIMEOUT)
            return
        st.move(S.ADJUSTING, "fill timeout")
        live = tuple(
            ChildOrder(client_order_id=c.client_order_id, index=c.index, symbol=r.intent.symbol, side=r.intent.side, qty=c.qty - c.filled_qty, order_type=c.order_type, price=c.price, generation=c.generation)
            for c in r.children
            if c.dispatched and c.state in ORDER_LIVE and r.intent is not None
        )
        assert r.intent is not None
        st.emit(
            _subject_cmd("adjust", r.cid),
            AdjustCommand(cid=r.cid, step=r.version, symbol=r.intent.symbol, side=r.intent.side, arrival_price=r.arrival_price, round=r.adjust_round, children=live, mode=r.mode, issued_at=st.now, venue=r.intent.venue or ""),
        )
        return
    if r.state is S.ADJUSTING:
        st.escape("adjustment timeout", ReasonCode.STAGE_TIMEOUT)
        return
    if r.state is S.SENDING and any(c.dispatched for c in r.children):
        st.escape("send timeout with children possibly live", ReasonCode.STAGE_TIMEOUT)
        return
    st.fail(ReasonCode.STAGE_TIMEOUT, f"{r.state.value} timed out")


def _check_fill_delay(st: _Step) -> None:
    """GR064: a live child with no fill for fill_delay_warn_s — once per child."""
    r = st.r
    for c in r.children:
        if c.state in ORDER_LIVE and c.filled_qty == 0 and c.sent_at and st.now - c.sent_at > st.cfg.fill_delay_warn_s and not c.fill_delay_warned:
            c.fill_delay_warned = True
            st.alert(AlertCode.GR064, "MONITORING", f"{c.client_order_id} has no fill after {st.now - c.sent_at:.0f}s")


def schedule_due(r: ExecutionRecord, now: float) -> bool:
    """Is a scheduled (TWAP/VWAP) child due to be sent?"""
    return (
        r.state in (S.SENDING, S.MONITORING, S.ADJUSTING)
        and r.release is not ReleasePolicy.SEQUENTIAL
        and any(not c.dispatched and c.scheduled_at <= now for c in r.children)
    )


def next_wake(r: ExecutionRecord, cfg: CoordinatorConfig = CoordinatorConfig()) -> float | None:
    """When the coordinator must look at this execution again without any new fact."""
    if is_terminal(r.state):
        return None
    times = [r.deadline_at] if r.deadline_at else []
    if r.state in (S.SENDING, S.MONITORING, S.ADJUSTING) and r.release is not ReleasePolicy.SEQUENTIAL:
        times += [c.scheduled_at for c in r.children if not c.dispatched]
    times += [c.sent_at + cfg.fill_delay_warn_s + 0.001 for c in r.children if c.state in ORDER_LIVE and c.filled_qty == 0 and c.sent_at and not c.fill_delay_warned]
    return min(times) if times else None


def decision_audit(before: ExecutionRecord | None, after: ExecutionRecord, seq: int, now: float, fact: Fact) -> list[AuditEntry]:
    """The audit entries of one decision: its execution transitions and the alerts it raised, once
    each — the id names the fact that caused them (``coord:<fact stream seq>``), so deciding the same
    fact again (a redelivery, a takeover's replay) writes the same ids."""
    return audit.numbered(audit.execution_entries(after.cid, before, after, now, type(fact).__name__), f"coord:{seq}")


def _plain(d: Decimal) -> Decimal:
    """8 decimal places at most, trailing zeros dropped, never exponent notation ("75100", not "7.51E+4")."""
    return Decimal(format(d.quantize(Decimal("0.00000001")).normalize(), "f"))


def to_result(r: ExecutionRecord) -> ExecutionResult:
    """The public result object (README contract)."""
    filled = filled_qty(r)
    notional = sum((c.notional for c in r.children), Decimal(0))
    avg = _plain(notional / filled) if filled > 0 else None
    target = r.target_qty if r.target_qty > 0 else (r.intent.qty if r.intent else Decimal(0))
    rate = _plain((filled / target).quantize(Decimal("0.0001"))) if target > 0 else Decimal(0)
    codes: list = []
    for a in r.alerts:
        if a.code not in codes:
            codes.append(a.code)
    return ExecutionResult(
        correlation_id=r.cid,
        idempotency_key=r.idempotency_key,
        state=r.state,
        filled_qty=filled,
        avg_fill_price=avg,
        fill_rate=rate,
        reason_code=r.reason_code,
        alerts=codes,
        children=[
            ChildResult(
                client_order_id=c.client_order_id,
                qty=c.qty,
                state=c.state,
                filled_qty=c.filled_qty,
                avg_fill_price=_plain(c.notional / c.filled_qty) if c.filled_qty > 0 else None,
                price=c.price,
                venue=c.venue or None,
            )
            for c in r.children
        ],
        symbol=r.intent.symbol if r.intent else None,
        side=r.intent.side if r.intent else None,
        qty=r.intent.qty if r.intent else None,
        strategy=r.strategy,
        detail=r.detail,
        created_at=r.created_at,
        updated_at=r.updated_at,
        venue=(r.intent.venue or None) if r.intent else None,
        strategy_id=r.intent.strategy_id if r.intent else None,
        order_type=r.intent.order_type if r.intent else None,
        price=r.intent.price if r.intent else None,
    )
