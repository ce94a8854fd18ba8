"""Child-order state machine: seed 002's nine states, re-application is a no-op, invalid moves raise."""

import pytest
from hypothesis import given, strategies as st

from core.order_fsm import ORDER_TERMINAL, ORDER_TRANSITIONS, InvalidOrderTransition, order_transition
from schemas.enums import OrderState as O

ALLOWED = {
    (O.CREATED, O.SUBMITTED), (O.CREATED, O.CANCELLED), (O.CREATED, O.FAILED),
    (O.SUBMITTED, O.ACKNOWLEDGED), (O.SUBMITTED, O.PARTIALLY_FILLED), (O.SUBMITTED, O.FILLED),
    (O.SUBMITTED, O.REJECTED), (O.SUBMITTED, O.FAILED), (O.SUBMITTED, O.CANCELLED),
    (O.ACKNOWLEDGED, O.PARTIALLY_FILLED), (O.ACKNOWLEDGED, O.FILLED), (O.ACKNOWLEDGED, O.CANCELLED),
    (O.ACKNOWLEDGED, O.EXPIRED), (O.ACKNOWLEDGED, O.FAILED),
    (O.PARTIALLY_FILLED, O.PARTIALLY_FILLED), (O.PARTIALLY_FILLED, O.FILLED), (O.PARTIALLY_FILLED, O.CANCELLED),
    (O.PARTIALLY_FILLED, O.EXPIRED), (O.PARTIALLY_FILLED, O.FAILED),
}


@pytest.mark.parametrize("current", list(O))
@pytest.mark.parametrize("target", list(O))
def test_order_transition_matrix(current, target):
    if current is target:
        assert order_transition(current, target) is current  # re-applying is a no-op
    elif (current, target) in ALLOWED:
        assert order_transition(current, target) is target
    else:
        with pytest.raises(InvalidOrderTransition, match=f"{current.value} -> {target.value}"):
            order_transition(current, target)


def test_nine_states_and_terminals():
    assert len(O) == 9
    assert ORDER_TERMINAL == {O.FILLED, O.CANCELLED, O.REJECTED, O.EXPIRED, O.FAILED}
    assert all(not ORDER_TRANSITIONS[t] for t in ORDER_TERMINAL)


def test_repeated_partial_fills_are_legal():
    """Seed 002's bug: the second partial fill failed. Order 10, fills 3, 3, 4 must work."""
    s = O.ACKNOWLEDGED
    for target in (O.PARTIALLY_FILLED, O.PARTIALLY_FILLED, O.FILLED):
        s = order_transition(s, target)
    assert s is O.FILLED


@given(st.lists(st.sampled_from(list(O)), max_size=40))
def test_random_sequences_stay_in_the_table(targets):
    s = O.CREATED
    for t in targets:
        try:
            nxt = order_transition(s, t)
        except InvalidOrderTransition:
            assert t is not s and t not in ORDER_TRANSITIONS[s]
            continue
        assert nxt is s or nxt in ORDER_TRANSITIONS[s]
        s = nxt
