"""When a ticket is due, and how a failing renewal is retried: one rule for hub and server.

The hub's renewal (:mod:`kerbauth.hub.renewal`) and the ``fetch`` delivery's
keeper in the user's server (:mod:`kerbauth.server.keeper`) both use this
module, so a ticket is replaced at the same moment whoever replaces it.

- A ticket is due ``margin`` seconds before it ends, or at half its life when
  it lives shorter than twice the margin (a 10-minute test ticket with the
  default 30-minute margin is due after 5 minutes, not at once).
- A failing renewal is retried with a capped exponential backoff (1, 2, 4 ...
  up to ``max_backoff`` seconds) with jitter, so the renewals of many servers
  that failed together (a KDC restart) do not come back together; the failure
  is logged once per streak, and once more when it works again.
"""

import random
from dataclasses import dataclass

__all__ = ["due_time", "is_due", "FailureStreak"]


def due_time(times, margin):
    """When a ticket with ``times`` (start, end) is due for replacement."""
    start, end = times
    return end - min(margin, (end - start) / 2)


def is_due(times, now, margin):
    """Whether a ticket with ``times`` ((start, end), None when unknown) needs replacing."""
    return times is None or now >= due_time(times, margin)


@dataclass
class FailureStreak:
    """The failures in a row of one renewal, and when to try again.

    ``failed(now)`` counts a failure and returns the seconds to wait: 1, 2, 4
    ... capped at ``max_backoff``, each less up to ``jitter`` (a fraction) so
    that streaks started together spread out. ``first`` says whether the
    failure just counted began the streak (the one to log).
    """

    max_backoff: float
    jitter: float = 0.1
    failures: int = 0
    retry_at: float = 0.0

    @property
    def first(self):
        return self.failures == 1

    def failed(self, now, rng=random.random):
        self.failures += 1
        backoff = min(self.max_backoff, 2.0 ** (self.failures - 1))
        backoff *= 1 - self.jitter * rng()
        self.retry_at = now + backoff
        return backoff

    def ended(self):
        """The number of failures the streak had (0: there was none); the streak is reset."""
        failures, self.failures, self.retry_at = self.failures, 0, 0.0
        return failures
