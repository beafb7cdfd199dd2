"""How many runs a pool claims ahead of its workers (tasks.handoff.Handoff.plan_ahead): the
rule alone, on the numbers the dispatcher gives it; the pool's tests run it for real."""

from tasks.handoff import AHEAD_PER_WORKER, Handoff
from tasks.queue import Ending, Outcome


def ended(handoff: Handoff, *seconds: float | None) -> None:
    with handoff.lock:  # as the workers hold it
        for ran in seconds:
            handoff.idle -= 1  # a worker takes a run
            handoff.ended(Outcome(run=None, ending=Ending.COMPLETED), ran)  # type: ignore[arg-type]


def test_short_runs_are_claimed_many_at_a_time_up_to_the_cap():
    handoff = Handoff(8)
    ended(handoff, *[0.0001] * 16)  # no-ops: 8 workers finish hundreds in a 5 ms step
    handoff.plan_ahead(0.005)
    assert handoff.ahead == AHEAD_PER_WORKER * 8


def test_runs_as_long_as_a_step_get_a_few_and_longer_ones_none():
    handoff = Handoff(8)
    ended(handoff, *[0.02] * 8)  # 8 workers on 20 ms runs finish 2 in a 5 ms step: twice that
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 4
    ended(handoff, *[1.0] * 8)
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 0


def test_only_the_workers_that_ended_runs_count():
    handoff = Handoff(8)
    ended(handoff, 0.01)  # one worker on 10 ms runs; the seven others busy with long ones
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 1


def test_runs_that_never_started_say_nothing_of_the_pace():
    """A run canceled in the inbox, or requeued at shutdown, ends in no time: counted as a
    run, it would claim the cap ahead of workers busy with long runs."""
    handoff = Handoff(8)
    ended(handoff, None, None)
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 0
    ended(handoff, None, 1.0)
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 0


def test_each_plan_judges_only_the_runs_since_the_last():
    handoff = Handoff(8)
    ended(handoff, *[0.0001] * 8)
    handoff.plan_ahead(0.005)
    handoff.plan_ahead(0.005)
    assert handoff.ahead == 0
