"""Keeping the tickets of running servers fresh.

A ticket lives 10 or 24 hours; a notebook can run for days. The hub therefore
gets each running server a new ticket before the old one ends: ``margin``
seconds before its end, or at half its life for a ticket that lives shorter
than twice the margin. With a keytab that is a new initial request, so
renew-until does not matter.

When a ticket ends is taken from the hub's own record of the ticket it wrote
(:attr:`RenewalTarget.times`), never from the cache file: the user owns that
file and can write any times into it. The file is only looked at to see
whether it still holds the user's own principal; a cache that does not (the
user put another ticket there, or removed it) is written again.

Sweeps are scheduled by the earliest due ticket, not on a fixed clock: the
next sweep runs when the first ticket falls due (but no sooner than
:data:`MIN_WAIT` and no later than ``interval``), so a ticket of any lifetime
above a few seconds is replaced before it ends. A new ticket given at spawn
wakes the renewer (:meth:`Renewer.wake`), which then plans for it too.

The only other memory is about failures: a user whose renewal failed is
retried with a capped exponential backoff, and the failure is logged once per
streak (with its cause), then once more when renewal works again. The due rule
and the backoff (with jitter) are :mod:`kerbauth.core.policy`'s, shared with
the keeper in the user's server.
"""

import asyncio
import inspect
import time
from dataclasses import dataclass

from kerbauth.core import policy
from kerbauth.core.errors import TicketError
from kerbauth.core.policy import FailureStreak, due_time

__all__ = ["Renewer", "RenewalTarget", "due_time", "MIN_WAIT"]

# The shortest wait between two sweeps, in seconds.
MIN_WAIT = 0.5


@dataclass
class RenewalTarget:
    """A running server's cache to keep fresh.

    ``times``: (start, end) of the ticket the hub last gave it, or None when
    the hub has no record (after a restart): then it is due at once.
    ``inspect()`` (blocking) says what the cache holds now: ``"ok"`` (the
    user's own principal), ``"foreign"`` (another principal, or unreadable)
    or ``"absent"``. ``renew()`` (blocking) writes a new ticket and returns
    its (start, end). ``after`` (a coroutine function or None) runs on the
    event loop after a renewal that worked (saving auth_state, say).
    """

    key: str  # the username, for logs and the failure memory
    times: tuple | None
    inspect: object
    renew: object
    after: object = None


class Renewer:
    """Runs renewal sweeps. Plain asyncio; :class:`kerbauth.KerberosTickets` drives it.

    ``targets()`` (a plain or a coroutine function) returns the
    :class:`RenewalTarget` of every running server. Blocking work runs on
    ``executor``, at most ``lanes`` renewals at a time.
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
        self._wake = None
        self._stopping = False
        self.next_due = None  # the earliest due time seen at the last sweep

    def is_due(self, times, now):
        """Whether a ticket with ``times`` ((start, end), None when unknown) needs renewing."""
        return policy.is_due(times, now, self.margin)

    async def sweep(self):
        """Renew every due ticket once; return how many renewals were attempted."""
        targets = self.targets()
        if inspect.isawaitable(targets):
            targets = await targets
        targets = list(targets)
        loop = asyncio.get_running_loop()
        states = await loop.run_in_executor(self.executor, _inspect_all, targets)
        now = self.clock()
        known = {t.key for t in targets}
        for key in list(self._streaks):
            if key not in known:
                del self._streaks[key]  # the server stopped: forget its failures
        due, planned = [], []
        for target, state in zip(targets, states, strict=True):
            if state == "absent" and target.times is None:
                continue  # a server kerbauth gave no ticket
            streak = self._streaks.get(target.key)
            if streak and now < streak.retry_at:
                continue  # planned by its backoff (see next_wait)
            if state != "ok" or self.is_due(target.times, now):
                due.append(target)
            else:
                planned.append(due_time(target.times, self.margin))
        renewed = []
        if due:
            # A few lanes, each renewing one target after another: the executor
            # never holds more than ``lanes`` renewals, so a spawn's ticket
            # request does not queue behind a sweep of thousands, and the event
            # loop does not stall submitting them all at once (measured with
            # benchmarks/renewal.py: /hub/health max 0.6 s -> 20 ms at 5,000).
            pending = iter(due)

            async def lane():
                for target in pending:
                    times = await self._renew(loop, target)
                    if times is not None:
                        renewed.append(due_time(times, self.margin))

            await asyncio.gather(*(lane() for _ in range(min(self.lanes, len(due)))))
        planned += renewed
        self.next_due = min(planned) if planned else None
        return len(due)

    async def _renew(self, loop, target):
        started = time.monotonic()
        try:
            times = await loop.run_in_executor(self.executor, target.renew)
            if target.after is not None:
                await target.after()
        except Exception as e:  # noqa: BLE001 - one user's failure must not stop the sweep
            if not isinstance(e, TicketError):
                e = TicketError("other", f"{type(e).__name__}: {e}")
            self.on_result(target.key, e, time.monotonic() - started)
            self._failed(target, e)
            return None
        self.on_result(target.key, None, time.monotonic() - started)
        streak = self._streaks.pop(target.key, None)
        failures = streak.ended() if streak else 0
        if failures:
            self.log.info(
                "kerbauth: ticket renewal for %s works again after %d failure(s)",
                target.key,
                failures,
            )
        return times

    def _failed(self, target, error):
        streak = self._streaks.get(target.key)
        if streak is None:
            streak = self._streaks[target.key] = FailureStreak(max_backoff=self.max_backoff)
        streak.failed(self.clock())
        if streak.first:
            # Once per streak: the first failure says what is wrong.
            self.log.warning(
                "kerbauth: ticket renewal for %s failed (%s); retrying with backoff: %s",
                target.key,
                error.cause,
                error,
            )

    def next_wait(self):
        """Seconds until the next sweep: the earliest due ticket or backoff, within
        [MIN_WAIT, interval]."""
        now = self.clock()
        wake = [now + self.interval]
        if self.next_due is not None:
            wake.append(self.next_due)
        wake.extend(s.retry_at for s in self._streaks.values())
        return max(MIN_WAIT, min(wake) - now)

    def wake(self):
        """Plan again now (a new ticket was given, whose due time may come first)."""
        if self._wake is not None:
            self._wake.set()

    def start(self):
        """Start sweeping on the running event loop."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def stop(self):
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self):
        while not self._stopping:
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - one bad sweep must not end renewal for good
                self.log.exception("kerbauth: ticket renewal sweep failed")
            # asyncio.wait, not wait_for: Python 3.11's wait_for loses a cancellation
            # that comes just after a wake, and the loop would never end.
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({woken}, timeout=self.next_wait())
            finally:
                woken.cancel()


def _inspect_all(targets):
    states = []
    for target in targets:
        try:
            states.append(target.inspect())
        except Exception:  # noqa: BLE001 - an unreadable cache is one to write again
            states.append("foreign")
    return states
