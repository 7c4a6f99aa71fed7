"""The instance lifecycle's transition table, without a database or a sandbox."""

from __future__ import annotations

import itertools

import pytest

from forkyard.compute.errors import InvalidTransition
from forkyard.compute.models import Instance
from forkyard.compute.states import TRANSITIONS, InstanceStatus, can_transition, transition

S = InstanceStatus
ALLOWED = {
    (S.PROVISIONING, S.RUNNING),
    (S.PROVISIONING, S.ERROR),
    (S.PROVISIONING, S.DELETING),
    (S.RUNNING, S.STOPPING),
    (S.RUNNING, S.ERROR),
    (S.RUNNING, S.DELETING),
    (S.STOPPING, S.STOPPED),
    (S.STOPPING, S.DELETING),
    (S.STOPPED, S.PROVISIONING),
    (S.STOPPED, S.DELETING),
    (S.ERROR, S.PROVISIONING),
    (S.ERROR, S.STOPPING),
    (S.ERROR, S.RUNNING),
    (S.ERROR, S.DELETING),
}
EVERY_PAIR = list(itertools.product(InstanceStatus, InstanceStatus))


def an_instance(status: InstanceStatus) -> Instance:
    return Instance(id="inst_test", status=status.value, status_reason="before")


def test_the_table_is_exactly_the_allowed_set():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert set(TRANSITIONS) == set(InstanceStatus)


@pytest.mark.parametrize(("current", "to"), sorted(ALLOWED))
def test_an_allowed_transition_moves_the_instance(current, to):
    instance = an_instance(current)
    transition(instance, to, action="act", reason="why")
    assert (instance.status, instance.status_reason) == (to.value, "why")
    assert instance.updated_at is not None


@pytest.mark.parametrize(("current", "to"), [p for p in EVERY_PAIR if p not in ALLOWED])
def test_a_refused_transition_changes_nothing(current, to):
    instance = an_instance(current)
    assert not can_transition(current.value, to)
    with pytest.raises(InvalidTransition) as refused:
        transition(instance, to, action="start")
    assert refused.value.code == "invalid_transition"
    assert refused.value.details == {"status": current.value, "action": "start"}
    assert f"Cannot start instance inst_test while it is {current.value}." in refused.value.message
    assert (instance.status, instance.status_reason) == (current.value, "before")


def test_deleting_is_the_end():
    assert not TRANSITIONS[S.DELETING]
    assert all(S.DELETING in TRANSITIONS[s] for s in InstanceStatus if s is not S.DELETING)
