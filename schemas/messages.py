"""Every message on the wire, as frozen msgspec Structs.

Three families, each a tagged union (the ``type`` field names the Struct):

* ``Command``  — work for one stage worker, on ``exec.cmd.<stage>.<cid>``.
* ``Fact``     — something that happened, on ``exec.evt.<cid>`` (the fact log; coordinator input).
* ``EscapeRequest`` — the escape lane, ``exec.escape.<cid>`` / ``exec.escape.all``.

Venue protocol messages live in :mod:`schemas.venue`. Prices, quantities and money are Decimal
(strings on the wire). Every message carries ``v`` = :data:`SCHEMA_VERSION`; decoders refuse others.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from schemas.enums import (
    AdjustAction,
    AlertCode,
    ErrorClass,
    ExecutionMode,
    ExecutionState,
    OrderState,
    OrderType,
    ReasonCode,
    ReleasePolicy,
    SafetyState,
    Severity,
    Side,
    SplitStrategy,
    TimerKind,
    Urgency,
)

SCHEMA_VERSION = 1


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    """A validated order intent (see :func:`core.intake.parse_intent` for the edge validation)."""

    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    strategy_id: str
    urgency: Urgency = Urgency.NORMAL
    price: Decimal | None = None
    split: SplitStrategy = SplitStrategy.AUTO
    horizon_s: int | None = None
    client_key: str | None = None
    # The venue id to route to. None in what a client sends = the configured default; the gateway
    # stores the resolved id in the ExecutionCreated fact (after deriving the idempotency key).
    venue: str | None = None


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An ExecutionAlert of seed 000: a coded event with severity, stage and message."""

    code: AlertCode
    severity: Severity
    stage: str
    message: str
    ts: float = 0.0


class ChildOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One planned piece of an execution, before it reaches the venue."""

    client_order_id: str
    index: int
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    price: Decimal | None = None
    scheduled_at: float = 0.0  # epoch seconds; 0 = immediately
    generation: int = 0  # amend generation (cancel/replace mints a new client order id)
    venue: str = ""  # the venue id the child goes to ("" = the default venue)


# --------------------------------------------------------------------------------------------
# Commands: exec.cmd.<stage>.<cid>
# --------------------------------------------------------------------------------------------


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    cid: str
    step: int  # the execution version that issued the command; stale results are ignored
    v: int = SCHEMA_VERSION
    issued_at: float = 0.0


class PrecheckCommand(_Command, tag="PrecheckCommand"):
    intent: Intent
    mode: ExecutionMode
    reference_price: Decimal | None = None


class SplitCommand(_Command, tag="SplitCommand"):
    intent: Intent
    qty: Decimal  # after any GR061 reduction at precheck
    idempotency_key: str


class SendCommand(_Command, tag="SendCommand"):
    child: ChildOrder
    mode: ExecutionMode = ExecutionMode.PAPER


class AdjustCommand(_Command, tag="AdjustCommand"):
    symbol: str
    side: Side
    arrival_price: Decimal | None
    round: int
    children: tuple[ChildOrder, ...]  # live children to re-price, at their current price
    mode: ExecutionMode = ExecutionMode.PAPER
    venue: str = ""  # the venue the children rest at ("" = the default venue)


Command = PrecheckCommand | SplitCommand | SendCommand | AdjustCommand


# --------------------------------------------------------------------------------------------
# Facts: exec.evt.<cid>
# --------------------------------------------------------------------------------------------


class _Fact(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    cid: str
    v: int = SCHEMA_VERSION
    ts: float = 0.0


class ExecutionCreated(_Fact, tag="ExecutionCreated"):
    idempotency_key: str
    intent: Intent
    mode: ExecutionMode
    arrival_price: Decimal | None = None  # venue mid when the intent was accepted (TCA)


class IntentRejected(_Fact, tag="IntentRejected"):
    """An intent that failed contract validation: recorded as a FAILED execution, never dropped."""

    idempotency_key: str
    reason_code: ReasonCode
    detail: str
    raw: str = ""  # the offending input, truncated
    alerts: tuple[Alert, ...] = ()


class PrecheckDone(_Fact, tag="PrecheckDone"):
    step: int
    passed: bool
    reason_code: ReasonCode | None = None
    detail: str = ""
    qty: Decimal | None = None  # quantity to split (reduced by GR061)
    alerts: tuple[Alert, ...] = ()


class SplitDone(_Fact, tag="SplitDone"):
    step: int
    strategy: SplitStrategy
    children: tuple[ChildOrder, ...]
    alerts: tuple[Alert, ...] = ()
    reason_code: ReasonCode | None = None
    detail: str = ""
    release: ReleasePolicy | None = None  # None: a fact from before policies travelled (core.coordinator)


class ChildAccepted(_Fact, tag="ChildAccepted"):
    """The venue acknowledged a child (OrderAck accepted)."""

    client_order_id: str
    venue_order_id: str
    attempts: int = 1


class ChildRejected(_Fact, tag="ChildRejected"):
    """The venue refused a child, or every send attempt failed."""

    client_order_id: str
    reason_code: ReasonCode
    error_class: ErrorClass
    detail: str = ""
    attempts: int = 1


class ChildFill(_Fact, tag="ChildFill"):
    """One fill of one child, normalised by the monitor from a venue execution report."""

    client_order_id: str
    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    liquidity: str = "TAKER"


class ChildClosed(_Fact, tag="ChildClosed"):
    """The venue closed a child without (further) fills: CancelAck, expiry or venue-side reject."""

    client_order_id: str
    state: OrderState  # CANCELLED | EXPIRED | REJECTED
    reason: str = ""


class ChildReplaced(_Fact, tag="ChildReplaced"):
    """A ModifyAck: the child now rests at a new price (and maybe under a new client order id)."""

    client_order_id: str
    new_client_order_id: str
    new_price: Decimal | None
    generation: int


class AdjustDone(_Fact, tag="AdjustDone"):
    step: int
    round: int
    action: AdjustAction
    replaced: tuple[ChildReplaced, ...] = ()
    alerts: tuple[Alert, ...] = ()
    reason_code: ReasonCode | None = None


class TimerFired(_Fact, tag="TimerFired"):
    """A coordinator deadline or schedule came due. ``step`` is the version it was armed for."""

    step: int
    kind: TimerKind = TimerKind.WAKE


class EscapeStarted(_Fact, tag="EscapeStarted"):
    reason: str
    fence: str  # the HALT key set: the cid or ALL


class EscapeDone(_Fact, tag="EscapeDone"):
    reason: str
    cancelled: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    attempted: tuple[str, ...] = ()  # every child the escape worker tried to cancel
    flatten_client_order_id: str | None = None
    alerts: tuple[Alert, ...] = ()


class StageFailed(_Fact, tag="StageFailed"):
    """A command was dead-lettered (poison or out of deliveries); the execution must not hang."""

    stage: str
    reason_code: ReasonCode
    detail: str = ""


class PartitionProbe(_Fact, tag="PartitionProbe"):
    """No execution's fact: it makes the server deliver something on a partition, so that an idle
    partition whose owner died gets a new owner (ownership moves only with a delivery). ``cid`` is
    a token that the partition transform maps to ``partition``."""

    partition: int
    by: str = ""


Fact = (
    ExecutionCreated
    | IntentRejected
    | PrecheckDone
    | SplitDone
    | ChildAccepted
    | ChildRejected
    | ChildFill
    | ChildClosed
    | ChildReplaced
    | AdjustDone
    | TimerFired
    | EscapeStarted
    | EscapeDone
    | StageFailed
    | PartitionProbe
)


# --------------------------------------------------------------------------------------------
# Escape lane: exec.escape.<cid> | exec.escape.all
# --------------------------------------------------------------------------------------------


class EscapeRequest(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    cid: str | None = None  # None = every live execution
    flatten: bool = False
    requested_at: float = 0.0
    safety_state: SafetyState | None = None  # set for halt (LOCKDOWN)
    # Set by the coordinator, which knows them: the children live at the venue (dispatched, not
    # closed). None (an operator's request) = the escape worker looks them up itself.
    children: tuple[str, ...] | None = None
    venue: str | None = None  # where those children are (None: the default venue)
    v: int = SCHEMA_VERSION


# --------------------------------------------------------------------------------------------
# Records kept in KV (the coordinator's state) and the public result
# --------------------------------------------------------------------------------------------


class ChildRecord(msgspec.Struct, kw_only=True):
    client_order_id: str
    index: int
    qty: Decimal
    order_type: OrderType
    price: Decimal | None
    state: OrderState = OrderState.CREATED
    filled_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)  # sum(qty * price) of fills
    fees: Decimal = Decimal(0)
    venue_order_id: str | None = None
    scheduled_at: float = 0.0
    dispatched: bool = False
    generation: int = 0
    trade_ids: list[str] = []
    last_fill_at: float = 0.0
    sent_at: float = 0.0
    acked_at: float = 0.0
    reason_code: ReasonCode | None = None
    venue: str = ""
    fill_delay_warned: bool = False  # GR064 raised for it (once per child)


class OutMsg(msgspec.Struct, frozen=True):
    """One message the coordinator must publish after a state change (the outbox)."""

    subject: str
    msg_id: str
    data: bytes


class OutboxEntry(msgspec.Struct, frozen=True):
    """The outbox of one applied fact, kept so a redelivered fact can re-publish it."""

    seq: int  # stream sequence of the fact that produced it
    msgs: list[OutMsg]


class Transition(msgspec.Struct, frozen=True):
    from_state: ExecutionState
    to_state: ExecutionState
    ts: float
    reason: str = ""


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """The coordinator's state for one execution, stored in KV ``EXECUTIONS`` under its cid."""

    cid: str
    idempotency_key: str
    state: ExecutionState
    version: int = 0
    intent: Intent | None = None
    mode: ExecutionMode = ExecutionMode.PAPER
    strategy: SplitStrategy | None = None
    release: ReleasePolicy | None = None  # how the children go out (from SplitDone)
    target_qty: Decimal = Decimal(0)
    children: list[ChildRecord] = []
    alerts: list[Alert] = []
    reason_code: ReasonCode | None = None
    detail: str = ""
    arrival_price: Decimal | None = None
    deadline_at: float = 0.0
    adjust_round: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    first_ack_at: float = 0.0
    first_fill_at: float = 0.0
    completed_at: float = 0.0
    transitions: list[Transition] = []
    escape_reported: bool = False  # the escape worker reported its cancels (EscapeDone)
    flatten_client_order_id: str | None = None
    last_fact_seq: int = 0
    outbox: list[OutMsg] = []
    outbox_log: list[OutboxEntry] = []  # the last few outboxes, by fact sequence
    trace_parent: str = ""  # W3C traceparent of the execution's trace (timers, re-publishes, escapes join it)


class Checkpoint(msgspec.Struct, kw_only=True):
    """A coordinator partition's checkpoint (KV ``COORD`` key ``cp.<p>``)."""

    w: int = 0  # watermark: the partition's facts up to this stream sequence are in the stored records
    live: list[str] = []  # the partition's live executions at that point
    owner: str = ""
    at: float = 0.0


class ChildResult(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    qty: Decimal
    state: OrderState
    filled_qty: Decimal
    avg_fill_price: Decimal | None = None
    price: Decimal | None = None
    venue: str | None = None


class ExecutionResult(msgspec.Struct, frozen=True, kw_only=True):
    """The public result contract (README). Add fields freely; never rename one."""

    correlation_id: str
    idempotency_key: str
    state: ExecutionState
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    fill_rate: Decimal
    reason_code: ReasonCode | None
    alerts: list[AlertCode]
    children: list[ChildResult]
    symbol: str | None = None
    side: Side | None = None
    qty: Decimal | None = None
    strategy: SplitStrategy | None = None
    detail: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    venue: str | None = None
    strategy_id: str | None = None  # the intent's strategy_id (added for filters and views)
    order_type: OrderType | None = None
    price: Decimal | None = None  # the LIMIT price


# --------------------------------------------------------------------------------------------
# Intake: exec.intake request/reply
# --------------------------------------------------------------------------------------------


class IntakeReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's reply on ``exec.intake``: accepted (the fact is stored in JetStream) or FAILED
    with a reason code. The order fields are filled for an accepted intent."""

    accepted: bool
    correlation_id: str
    idempotency_key: str
    state: ExecutionState
    reason_code: ReasonCode | None = None
    detail: str = ""
    alerts: list[AlertCode] = []
    symbol: str | None = None
    side: Side | None = None
    qty: Decimal | None = None
    strategy_id: str | None = None
    order_type: OrderType | None = None
    price: Decimal | None = None
    created_at: float = 0.0  # when the gateway stored the fact (epoch seconds)
    retry_after_ms: int | None = None  # OVERLOADED: when to try again

    def to_result(self) -> ExecutionResult:
        """The receipt as a result object (what ``jetexec submit`` prints without ``--wait``)."""
        return ExecutionResult(
            correlation_id=self.correlation_id,
            idempotency_key=self.idempotency_key,
            state=self.state,
            filled_qty=Decimal(0),
            avg_fill_price=None,
            fill_rate=Decimal(0),
            reason_code=self.reason_code,
            alerts=list(self.alerts),
            children=[],
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            detail=self.detail,
            created_at=self.created_at,
            updated_at=self.created_at,
            strategy_id=self.strategy_id,
            order_type=self.order_type,
            price=self.price,
        )


# --------------------------------------------------------------------------------------------
# Escape outcome: what `jetexec escape --json` prints (JetexecClient.escape_and_report)
# --------------------------------------------------------------------------------------------


class CancelledChild(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    qty: Decimal
    filled_qty: Decimal
    cancelled_qty: Decimal  # qty - filled_qty: what will no longer trade
    sent: bool = True  # False: a scheduled child that never reached the venue


class EscapeOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One execution's escape: what was live before it, and what it cancelled."""

    correlation_id: str
    found: bool  # False: no such execution (no escape was sent)
    state_before: ExecutionState | None = None
    state: ExecutionState | None = None  # after the escape (or when the wait ran out)
    cancelled: list[CancelledChild] = []
    not_cancelled: list[str] = []  # live before and not CANCELLED after (filled meanwhile, or still open)
    flatten_client_order_id: str | None = None
    timed_out: bool = False
