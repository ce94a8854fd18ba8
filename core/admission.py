"""Admission control: refuse new intents while the pipeline is saturated, before they are accepted.

An accepted intent is owed an execution; one that waits in queues past its stage deadlines ends
ESCAPED or FAILED on STAGE_TIMEOUT, which is worse for a strategy than an honest "not now". So the
coordinators measure how much of each stage's deadline the round trips of the stage commands used
(queueing included), and how far behind the fact log they are, and report the worst ratio as
``pressure`` (1.0 = a deadline used up). The gateway refuses new intents with ``OVERLOADED`` and a
retry-after while the pressure of any coordinator is at or above ``refuse_at``.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from core.execution_fsm import STAGE_TIMEOUT_MS
from schemas.enums import ExecutionState as S
from schemas.messages import ChildAccepted, ChildRejected, ExecutionRecord, PrecheckDone, SplitDone

REPORT_EVERY_S = 0.1  # how often a coordinator publishes its load
REPORT_STALE_S = 2.0  # a report older than this is a coordinator that stopped: ignored
LAG_BUDGET_S = 1.0  # the coordinator's own lag counts against the tightest stage (SPLITTING, 1 s)


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    """One coordinator's load (core NATS ``exec.load``)."""

    instance: str
    pressure: float  # worst share of a stage deadline used by queueing in the last window
    early: int = 0  # live executions not yet at the venue (INIT..SENDING)
    at: float = 0.0


class AdmissionConfig(msgspec.Struct, frozen=True, kw_only=True):
    refuse_at: float = 0.4  # refuse while a coordinator's pressure is at least this
    max_early: int = 5000  # and while this many executions wait before the venue
    min_retry_after_ms: int = 100
    max_retry_after_ms: int = 2000


def stage_pressure(before: ExecutionRecord | None, fact: object, now: float, timeouts: dict[S, int] = STAGE_TIMEOUT_MS) -> float | None:
    """The share of its stage deadline that the command behind ``fact`` took (sent → result stored),
    or None when the fact is not a stage result."""
    if before is None or not before.transitions:
        return None
    if isinstance(fact, (PrecheckDone, SplitDone)):
        stage = S.PRECHECK if isinstance(fact, PrecheckDone) else S.SPLITTING
        if before.state is not stage:
            return None
        started = before.transitions[-1].ts
    elif isinstance(fact, (ChildAccepted, ChildRejected)):
        stage = S.SENDING
        child = next((c for c in before.children if c.client_order_id == fact.client_order_id), None)
        if child is None or not child.sent_at:
            return None
        started = child.sent_at
    else:
        return None
    budget = timeouts.get(stage, 0) / 1000
    return max(0.0, now - started) / budget if budget > 0 else None


def lag_pressure(lag_s: float) -> float:
    """The coordinator's own lag behind the fact log, as a share of the tightest stage budget."""
    return max(0.0, lag_s) / LAG_BUDGET_S


def refusal(reports: Iterable[LoadReport], now: float, cfg: AdmissionConfig = AdmissionConfig()) -> tuple[str, int] | None:
    """``(detail, retry_after_ms)`` when a new intent must be refused now, else None."""
    live = [r for r in reports if now - r.at <= REPORT_STALE_S]
    if not live:
        return None
    pressure = max(r.pressure for r in live)
    early = sum(r.early for r in live)
    if pressure < cfg.refuse_at and early < cfg.max_early:
        return None
    # The fuller the queues, the longer to wait: what draining them takes, roughly.
    scale = max(pressure / cfg.refuse_at if cfg.refuse_at > 0 else 1.0, early / cfg.max_early if cfg.max_early > 0 else 1.0)
    retry = int(min(cfg.max_retry_after_ms, max(cfg.min_retry_after_ms, cfg.min_retry_after_ms * scale)))
    detail = f"pipeline saturated: stage queues used {pressure:.0%} of a deadline, {early} executions before the venue; retry after {retry} ms"
    return detail, retry
