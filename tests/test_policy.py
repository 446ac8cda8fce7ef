"""The due rule and the failure streak that the hub's renewal and the server's keeper share."""

import pytest

from kerbauth.core.policy import FailureStreak, due_time, is_due


@pytest.mark.parametrize(
    ("times", "margin", "due"),
    [
        ((0, 36000), 1800, 34200),  # a 10-hour ticket: 30 minutes before its end
        ((0, 600), 1800, 300),  # a 10-minute ticket: at half its life, not at once
        ((100, 3700), 1800, 1900),  # exactly twice the margin: both rules agree
    ],
)
def test_a_ticket_is_due_margin_before_its_end_or_at_half_life(times, margin, due):
    assert due_time(times, margin) == due
    assert not is_due(times, due - 0.001, margin)
    assert is_due(times, due, margin)


def test_a_ticket_the_hub_has_no_record_of_is_due_at_once():
    assert is_due(None, 0, 1800)


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens_it():
    streak = FailureStreak(max_backoff=8, jitter=0.1)
    waits = [streak.failed(now=100, rng=lambda: 0.0) for _ in range(6)]
    assert waits == [1, 2, 4, 8, 8, 8]
    assert streak.retry_at == 108
    jittered = FailureStreak(max_backoff=8, jitter=0.1)
    assert [jittered.failed(now=0, rng=lambda: 1.0) for _ in range(4)] == pytest.approx(
        [0.9, 1.8, 3.6, 7.2]
    )


def test_streaks_started_together_spread_out():
    streaks = [FailureStreak(max_backoff=60) for _ in range(50)]
    for streak in streaks:
        for _ in range(5):
            streak.failed(now=0)
    retry = {round(s.retry_at, 3) for s in streaks}
    assert len(retry) > 40, "jitter spreads the retries of a KDC outage"
    assert all(16 * 0.9 <= r <= 16 for r in retry)


def test_only_the_first_failure_of_a_streak_is_the_one_to_log_and_ended_resets():
    streak = FailureStreak(max_backoff=60)
    firsts = []
    for _ in range(3):
        streak.failed(now=0)
        firsts.append(streak.first)
    assert firsts == [True, False, False]
    assert streak.ended() == 3
    assert (streak.failures, streak.retry_at) == (0, 0.0)
    streak.failed(now=0)
    assert streak.first, "a new streak is logged again"
