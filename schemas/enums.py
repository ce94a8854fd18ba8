"""Enumerations shared by every message on the wire.

String enums, so the JSON on the wire reads like the specs (seed 000 and seed 002).
"""

from __future__ import annotations

import enum


class ExecutionState(str, enum.Enum):
    """One intent's life through the pipeline (seed 000, 10 states)."""

    INIT = "INIT"
    PRECHECK = "PRECHECK"
    SPLITTING = "SPLITTING"
    SENDING = "SENDING"
    MONITORING = "MONITORING"
    ADJUSTING = "ADJUSTING"
    ESCAPING = "ESCAPING"
    COMPLETE = "COMPLETE"
    ESCAPED = "ESCAPED"
    FAILED = "FAILED"


class OrderState(str, enum.Enum):
    """One child order at the venue (seed 002, 9 states)."""

    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, enum.Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class Urgency(str, enum.Enum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


class SplitStrategy(str, enum.Enum):
    AUTO = "AUTO"
    SINGLE = "SINGLE"
    TWAP = "TWAP"
    VWAP = "VWAP"
    ICEBERG = "ICEBERG"


class AdjustAction(str, enum.Enum):
    """What an adjust round did: re-priced children, waited, or gave up (escape)."""

    PRICE_IMPROVE = "PRICE_IMPROVE"
    WAIT = "WAIT"
    ESCAPE = "ESCAPE"


class TimerKind(str, enum.Enum):
    """WAKE judges everything due; SCHEDULE only sends scheduled children (the grace after a takeover)."""

    WAKE = "WAKE"
    SCHEDULE = "SCHEDULE"


class ReleasePolicy(str, enum.Enum):
    """How a split's children go out: SCHEDULED at their times, or SEQUENTIAL (the next one when
    the previous closes, as an iceberg shows one slice at a time)."""

    SCHEDULED = "SCHEDULED"
    SEQUENTIAL = "SEQUENTIAL"


class ExecutionMode(str, enum.Enum):
    PAPER = "PAPER"
    SHADOW = "SHADOW"
    LIVE = "LIVE"


class SafetyState(str, enum.Enum):
    NORMAL = "NORMAL"
    WARNING = "WARNING"
    FAIL = "FAIL"
    LOCKDOWN = "LOCKDOWN"


class Severity(str, enum.Enum):
    FAIL_SAFE = "FAIL_SAFE"
    GUARDRAIL = "GUARDRAIL"
    WARNING = "WARNING"


class ErrorClass(str, enum.Enum):
    """Seed 002's retry taxonomy."""

    RETRYABLE = "RETRYABLE"
    NON_RETRYABLE = "NON_RETRYABLE"
    FATAL = "FATAL"


class RiskDecision(str, enum.Enum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"
    PAUSE = "PAUSE"


class AlertCode(str, enum.Enum):
    """Fail-safe and guardrail codes of seed 000."""

    FS090 = "FS090"  # every send of an execution failed (also: safety state blocks intake)
    FS091 = "FS091"  # invalid symbol
    FS092 = "FS092"  # emergency escape executed
    FS093 = "FS093"  # fill timeout: unfilled quantity cancelled
    FS094 = "FS094"  # slippage / adjustment rounds beyond the maximum: stop adjusting, escape
    FS095 = "FS095"  # escape caused by safety failure / venue disconnect / escape lane overflow
    GR060 = "GR060"  # more than max children: consolidated
    GR061 = "GR061"  # insufficient capital: quantity reduced
    GR062 = "GR062"  # daily trade limit reached
    GR063 = "GR063"  # slippage warning: stop improving price, wait
    GR064 = "GR064"  # no fill for a live child within the delay threshold


class ReasonCode(str, enum.Enum):
    """Why something failed. Part of the public result contract: add, never rename."""

    # intake / contract validation
    VALIDATION_MALFORMED = "VALIDATION_MALFORMED"
    VALIDATION_MISSING_FIELD = "VALIDATION_MISSING_FIELD"
    VALIDATION_INVALID_SIDE = "VALIDATION_INVALID_SIDE"
    VALIDATION_INVALID_QUANTITY = "VALIDATION_INVALID_QUANTITY"
    VALIDATION_INVALID_PRICE = "VALIDATION_INVALID_PRICE"
    VALIDATION_INVALID_ORDER_TYPE = "VALIDATION_INVALID_ORDER_TYPE"
    VALIDATION_INVALID_FIELD = "VALIDATION_INVALID_FIELD"
    VALIDATION_INVALID_SYMBOL = "VALIDATION_INVALID_SYMBOL"
    VALIDATION_SCHEMA_VERSION = "VALIDATION_SCHEMA_VERSION"
    VALIDATION_TOO_LARGE = "VALIDATION_TOO_LARGE"
    VALIDATION_INVALID_VENUE = "VALIDATION_INVALID_VENUE"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    # precheck
    SAFETY_BLOCKED = "SAFETY_BLOCKED"
    OVERLOADED = "OVERLOADED"  # refused at intake while the pipeline is saturated (retry after)
    POSITION_LIMIT_EXCEEDED = "POSITION_LIMIT_EXCEEDED"
    INSUFFICIENT_CAPITAL = "INSUFFICIENT_CAPITAL"
    VENUE_DISCONNECTED = "VENUE_DISCONNECTED"
    MARKET_CLOSED = "MARKET_CLOSED"
    SYMBOL_HALTED = "SYMBOL_HALTED"
    DAILY_LIMIT_REACHED = "DAILY_LIMIT_REACHED"
    PRICE_COLLAR = "PRICE_COLLAR"
    RISK_BLOCKED = "RISK_BLOCKED"
    RISK_PAUSE_TIMEOUT = "RISK_PAUSE_TIMEOUT"
    POLICY_LIVE_NOT_ENABLED = "POLICY_LIVE_NOT_ENABLED"
    # split
    SPLIT_EMPTY = "SPLIT_EMPTY"
    # send / venue
    VENUE_REJECTED = "VENUE_REJECTED"
    VENUE_TIMEOUT = "VENUE_TIMEOUT"
    VENUE_FATAL = "VENUE_FATAL"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ALL_SENDS_FAILED = "ALL_SENDS_FAILED"
    HALTED = "HALTED"
    # lifecycle
    STAGE_TIMEOUT = "STAGE_TIMEOUT"
    FILL_TIMEOUT = "FILL_TIMEOUT"
    SLIPPAGE_EXCEEDED = "SLIPPAGE_EXCEEDED"
    ESCAPE_REQUESTED = "ESCAPE_REQUESTED"
    # bus
    POISON_MESSAGE = "POISON_MESSAGE"
    MAX_DELIVERIES = "MAX_DELIVERIES"
