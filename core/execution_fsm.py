"""The execution state machine of seed 000 (§3–4), as one explicit table.

Any non-terminal state may also go to ESCAPING (the emergency rule). ESCAPING → ESCAPED only; an
escape that cannot finish stays ESCAPING and is re-tried, never silently FAILED.
"""

from __future__ import annotations

from schemas.enums import ExecutionState as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.INIT: frozenset({S.PRECHECK, S.FAILED}),
    S.PRECHECK: frozenset({S.SPLITTING, S.FAILED}),
    S.SPLITTING: frozenset({S.SENDING, S.FAILED}),
    S.SENDING: frozenset({S.MONITORING, S.FAILED}),
    S.MONITORING: frozenset({S.COMPLETE, S.ADJUSTING}),
    S.ADJUSTING: frozenset({S.MONITORING}),
    S.ESCAPING: frozenset({S.ESCAPED}),
    S.COMPLETE: frozenset(),
    S.ESCAPED: frozenset(),
    S.FAILED: frozenset(),
}
"""Seed 000's table. INIT → FAILED is ours: an intent rejected at the gateway is recorded as a
failed execution so its result is queryable (seed 000 has no intake stage)."""

TERMINAL: frozenset[S] = frozenset({S.COMPLETE, S.ESCAPED, S.FAILED})

# Stage timeouts in milliseconds (seed 000 §5). Configurable through CoordinatorConfig.
STAGE_TIMEOUT_MS: dict[S, int] = {
    S.PRECHECK: 5000,
    S.SPLITTING: 1000,
    S.SENDING: 10000,
    S.MONITORING: 60000,
    S.ADJUSTING: 30000,
    S.ESCAPING: 30000,
}


class InvalidTransitionError(ValueError):
    """Raised for a move the table does not allow."""

    def __init__(self, current: S, target: S) -> None:
        super().__init__(f"Cannot transition from {current.value} to {target.value}")
        self.current = current
        self.target = target


def is_terminal(state: S) -> bool:
    return state in TERMINAL


def can_transition(current: S, target: S) -> bool:
    if target is S.ESCAPING:
        # The emergency rule: from any non-terminal state except ESCAPING itself (re-escaping is a
        # no-op handled by the caller, not a transition).
        return current not in TERMINAL and current is not S.ESCAPING
    return target in TRANSITIONS[current]


def transition(current: S, target: S) -> S:
    if not can_transition(current, target):
        raise InvalidTransitionError(current, target)
    return target


def timeout_target(state: S) -> S | None:
    """Where a stage timeout leads: MONITORING → ADJUSTING, ADJUSTING → ESCAPING, ESCAPING → stays
    (re-armed), other non-terminal stages → FAILED, terminals → nothing."""
    if state is S.MONITORING:
        return S.ADJUSTING
    if state is S.ADJUSTING:
        return S.ESCAPING
    if state in TERMINAL or state is S.ESCAPING:
        return None
    return S.FAILED
