"""The child-order state machine: seed 002's nine states, with the fixes its own code lacked.

Re-applying the transition that produced the current state is a no-op (returns the same state);
an invalid move raises :class:`InvalidOrderTransition`. Differences from seed 002's table, and why:

* PARTIALLY_FILLED → PARTIALLY_FILLED is allowed (seed bug A2: the second partial fill failed).
* SUBMITTED → PARTIALLY_FILLED / FILLED: a fill may overtake its ack (the ack is implied).
* ACKNOWLEDGED / PARTIALLY_FILLED → FAILED: a venue can lose an order (reconciliation finds it).
* CANCELLED/EXPIRED → late fills are accounted by the caller, never by re-opening the order.
"""

from __future__ import annotations

from schemas.enums import OrderState as O

ORDER_TRANSITIONS: dict[O, frozenset[O]] = {
    O.CREATED: frozenset({O.SUBMITTED, O.CANCELLED, O.FAILED}),
    O.SUBMITTED: frozenset({O.ACKNOWLEDGED, O.PARTIALLY_FILLED, O.FILLED, O.REJECTED, O.FAILED, O.CANCELLED}),
    O.ACKNOWLEDGED: frozenset({O.PARTIALLY_FILLED, O.FILLED, O.CANCELLED, O.EXPIRED, O.FAILED}),
    O.PARTIALLY_FILLED: frozenset({O.PARTIALLY_FILLED, O.FILLED, O.CANCELLED, O.EXPIRED, O.FAILED}),
    O.FILLED: frozenset(),
    O.CANCELLED: frozenset(),
    O.REJECTED: frozenset(),
    O.EXPIRED: frozenset(),
    O.FAILED: frozenset(),
}

ORDER_TERMINAL: frozenset[O] = frozenset({O.FILLED, O.CANCELLED, O.REJECTED, O.EXPIRED, O.FAILED})
ORDER_LIVE: frozenset[O] = frozenset({O.SUBMITTED, O.ACKNOWLEDGED, O.PARTIALLY_FILLED})


class InvalidOrderTransition(ValueError):
    def __init__(self, current: O, target: O) -> None:
        super().__init__(f"Invalid order transition: {current.value} -> {target.value}")
        self.current = current
        self.target = target


def order_transition(current: O, target: O) -> O:
    """Apply a transition. Re-applying the current state is a no-op; anything off-table raises."""
    if current is target:
        return current
    if target not in ORDER_TRANSITIONS[current]:
        raise InvalidOrderTransition(current, target)
    return target
