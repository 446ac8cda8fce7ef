"""Keeping the tickets of running servers fresh.

A ticket lives 10 or 24 hours; a notebook can run for days. The hub therefore
looks at the caches of running servers every ``interval`` seconds and gets a
new ticket for each one whose TGT ends within ``margin`` seconds. With a
keytab that is a new initial request, so renew-until does not matter.

The state is on disk: which servers run comes from the hub, when each ticket
ends is read from its cache. Nothing has to be rebuilt after a hub restart,
and a server that stopped simply drops out. The only memory kept is about
failures: a user whose renewal failed is retried with a capped exponential
backoff, and the failure is logged once per streak (with its cause), then
once more when renewal works again.
"""

import asyncio
import time
from dataclasses import dataclass

from .ccache import read_ccache
from .errors import CcacheError, TicketError

__all__ = ["Renewer", "RenewalTarget"]


@dataclass(frozen=True)
class RenewalTarget:
    """A cache to keep fresh: ``renew()`` (blocking) writes a new ticket into ``cache``."""

    key: str  # the username, for logs and the failure memory
    cache: str
    renew: object  # a callable with no arguments


@dataclass
class _Streak:
    failures: int
    retry_at: float


class Renewer:
    """Runs renewal sweeps. Plain asyncio; :class:`kerbauth.KerberosTickets` drives it.

    ``targets()`` returns the :class:`RenewalTarget` of every running server.
    Blocking work (reading caches, renewing) runs on ``executor``, at most
    ``lanes`` renewals at a time.
    """

    def __init__(
        self,
        *,
        targets,
        executor,
        margin,
        interval,
        max_backoff,
        log,
        on_result=None,
        clock=time.time,
        lanes=1,
    ):
        self.targets = targets
        self.lanes = max(1, lanes)
        self.executor = executor
        self.margin = margin
        self.interval = interval
        self.max_backoff = max_backoff
        self.log = log
        self.on_result = on_result or (lambda key, error, seconds: None)
        self.clock = clock
        self._streaks = {}
        self._task = None
        self.expiring = 0  # tickets within the margin (or unreadable) at the last sweep

    def is_due(self, times, now):
        """Whether a ticket with ``times`` ((start, end), None when unreadable) needs renewing.

        Due within ``margin`` seconds of its end, or past half its life when
        the ticket lives shorter than twice the margin (so a short-lived
        ticket is not renewed at every sweep).
        """
        if times is None:
            return True
        start, end = times
        return end - now <= min(self.margin, (end - start) / 2)

    async def sweep(self):
        """Renew every due ticket once; return how many renewals were attempted."""
        targets = list(self.targets())
        loop = asyncio.get_running_loop()
        times = await loop.run_in_executor(self.executor, _ticket_times, [t.cache for t in targets])
        now = self.clock()
        self.expiring = sum(1 for t in times if t is None or t[1] - now <= self.margin)
        known = {t.key for t in targets}
        for key in list(self._streaks):
            if key not in known:
                del self._streaks[key]  # the server stopped: forget its failures
        due = []
        for target, ticket in zip(targets, times, strict=True):
            streak = self._streaks.get(target.key)
            if streak and now < streak.retry_at:
                continue
            if self.is_due(ticket, now):
                due.append(target)
        if due:
            # A few lanes, each renewing one target after another: the executor
            # never holds more than ``lanes`` renewals, so a spawn's ticket
            # request does not queue behind a sweep of thousands, and the event
            # loop does not stall submitting them all at once (measured with
            # benchmarks/renewal.py: /hub/health max 0.6 s -> 20 ms at 5,000).
            pending = iter(due)

            async def lane():
                for target in pending:
                    await self._renew(loop, target)

            await asyncio.gather(*(lane() for _ in range(min(self.lanes, len(due)))))
        return len(due)

    async def _renew(self, loop, target):
        started = time.monotonic()
        try:
            await loop.run_in_executor(self.executor, target.renew)
        except TicketError as e:
            self.on_result(target.key, e, time.monotonic() - started)
            self._failed(target, e)
        else:
            self.on_result(target.key, None, time.monotonic() - started)
            streak = self._streaks.pop(target.key, None)
            if streak:
                self.log.info(
                    "kerbauth: ticket renewal for %s works again after %d failure(s)",
                    target.key,
                    streak.failures,
                )

    def _failed(self, target, error):
        streak = self._streaks.get(target.key)
        if streak is None:
            streak = self._streaks[target.key] = _Streak(failures=0, retry_at=0)
            # Once per streak: the first failure says what is wrong.
            self.log.warning(
                "kerbauth: ticket renewal for %s failed (%s); retrying with backoff: %s",
                target.key,
                error.cause,
                error,
            )
        streak.failures += 1
        backoff = min(self.max_backoff, 2 ** (streak.failures - 1))
        streak.retry_at = self.clock() + backoff

    def start(self):
        """Start sweeping every ``interval`` seconds on the running event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self):
        while True:
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - one bad sweep must not end renewal for good
                self.log.exception("kerbauth: ticket renewal sweep failed")
            # The next sweep is due in `interval` seconds, or sooner when a
            # backoff ends before that.
            wait = self.interval
            if self._streaks:
                soonest = min(s.retry_at for s in self._streaks.values()) - self.clock()
                wait = max(0.5, min(wait, soonest))
            await asyncio.sleep(wait)


def _ticket_times(paths):
    times = []
    for path in paths:
        try:
            ticket = read_ccache(path)
        except CcacheError:
            times.append(None)
        else:
            times.append((ticket.start, ticket.end))
    return times
