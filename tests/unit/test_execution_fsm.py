"""Execution state machine: the full 10×10 transition matrix of seed 000, and random walks."""

import pytest
from hypothesis import given, strategies as st

from core.execution_fsm import (
    STAGE_TIMEOUT_MS,
    TERMINAL,
    InvalidTransitionError,
    can_transition,
    timeout_target,
    transition,
)
from schemas.enums import ExecutionState as S

ALLOWED = {
    (S.INIT, S.PRECHECK), (S.INIT, S.FAILED),
    (S.PRECHECK, S.SPLITTING), (S.PRECHECK, S.FAILED),
    (S.SPLITTING, S.SENDING), (S.SPLITTING, S.FAILED),
    (S.SENDING, S.MONITORING), (S.SENDING, S.FAILED),
    (S.MONITORING, S.COMPLETE), (S.MONITORING, S.ADJUSTING),
    (S.ADJUSTING, S.MONITORING),
    (S.ESCAPING, S.ESCAPED),
}
ALLOWED |= {(s, S.ESCAPING) for s in S if s not in TERMINAL and s is not S.ESCAPING}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_matrix(current, target):
    expected = (current, target) in ALLOWED
    assert can_transition(current, target) is expected
    if expected:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransitionError, match=f"Cannot transition from {current.value} to {target.value}"):
            transition(current, target)


def test_ten_states_three_terminal():
    assert len(S) == 10
    assert TERMINAL == {S.COMPLETE, S.ESCAPED, S.FAILED}


def test_stage_timeouts_match_seed():
    assert STAGE_TIMEOUT_MS == {S.PRECHECK: 5000, S.SPLITTING: 1000, S.SENDING: 10000, S.MONITORING: 60000, S.ADJUSTING: 30000, S.ESCAPING: 30000}


def test_timeout_targets():
    assert timeout_target(S.MONITORING) is S.ADJUSTING
    assert timeout_target(S.ADJUSTING) is S.ESCAPING
    assert timeout_target(S.PRECHECK) is S.FAILED
    assert timeout_target(S.ESCAPING) is None  # re-armed, never an illegal ESCAPING → FAILED
    for t in TERMINAL:
        assert timeout_target(t) is None


@given(st.lists(st.sampled_from(list(S)), max_size=40))
def test_random_walks_never_leave_the_table(targets):
    state = S.INIT
    for target in targets:
        if can_transition(state, target):
            state = transition(state, target)
            assert (state is target)
        else:
            with pytest.raises(InvalidTransitionError):
                transition(state, target)
        assert state in S
        if state in TERMINAL:
            assert not any(can_transition(state, t) for t in S)
