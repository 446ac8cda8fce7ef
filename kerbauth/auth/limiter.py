"""Failed-login floods cost the client that sends them, not the other users.

A wrong password is expensive for the hub: pam_unix holds the PAM thread for
its fail delay (about 2 s), and the authenticator has a few such threads
(``PAMAuthenticator.executor_threads``, default 4). A client sending a few
wrong passwords a second can so hold every thread, and everyone else's login
waits behind it until it times out. :class:`LoginLimiter` decides, before any
thread or PAM call is spent, whether an attempt may start:

- **per name**: at most ``name_concurrency`` (1) attempts for one name are
  checked at once; a further one waits for its turn in asyncio (no thread),
  up to ``wait`` seconds;
- **per source address**: at most ``source_concurrency`` attempts from one
  address are checked at once, the others wait the same way;
- **failures**: each failed attempt counts against its name and its source;
  the count decays to zero over ``window`` seconds. A source whose count
  reaches ``max_failures`` is *throttled*: one attempt at a time, and any
  other is refused at once (no waiting, no thread, no PAM call). A throttled
  name also gets one attempt at a time (when ``name_concurrency`` allows
  more), but its other attempts wait rather than being refused, so that
  nobody can lock a user out by sending wrong passwords for their name from
  many addresses. A successful login clears its name's count (never its
  source's: one valid account must not launder a flood from its address).

Tables are bounded (``max_entries`` per kind; the least recently used idle
entry is dropped first), so a client cycling through random names or
addresses cannot grow the hub's memory.

The limiting is plain asyncio, with an injectable clock for tests;
:class:`kerbauth.auth.limits.LoginLimits` gives an authenticator its options
and the ``async with`` block around the expensive check.
"""

import asyncio
import collections
import contextlib
import time

__all__ = ["LoginLimiter", "LoginRefused", "Attempt", "MAX_WAITING"]

# A key that has this many attempts waiting refuses the next at once: waiting
# costs no thread, but one client should not pile up unbounded requests. High
# enough for a burst of a whole site's logins behind one proxy address.
MAX_WAITING = 128

FAILED_MESSAGE = "Too many failed logins; wait a minute and try again."
BUSY_MESSAGE = "Too many logins are being checked for you right now; try again in a moment."


class LoginRefused(Exception):
    """An attempt the limiter refused: ``kind`` ("name" or "source"), ``key``, ``reason``.

    ``reason`` is "failures" (throttled by recent failures) or "busy" (too many
    attempts waiting, or waited too long). ``message`` is for the user;
    ``streak`` counts the refusals of ``key`` since its last admitted attempt
    (1: the first, worth a warning; later ones are worth a debug line).
    """

    def __init__(self, kind, key, reason):
        self.kind, self.key, self.reason = kind, key, reason
        self.streak = 1
        self.message = FAILED_MESSAGE if reason == "failures" else BUSY_MESSAGE
        super().__init__(f"{kind} {key!r}: {reason}")


class _Entry:
    __slots__ = ("in_flight", "waiting", "score", "stamp", "refused")

    def __init__(self, now):
        self.in_flight = 0
        self.refused = 0  # refusals since the last admitted attempt
        self.waiting = collections.deque()  # futures, oldest first
        self.score = 0.0  # failures, decaying
        self.stamp = now  # when ``score`` was last brought up to date

    def idle(self):
        return not self.in_flight and not self.waiting


class _Table:
    """One kind of key (names or sources): entries in least-recently-used order."""

    def __init__(self, kind, concurrency, max_entries):
        self.kind = kind
        self.concurrency = concurrency
        self.max_entries = max_entries
        self.entries = collections.OrderedDict()

    def get(self, key, now):
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry(now)
            self._evict()
        else:
            self.entries.move_to_end(key)
        return entry

    def _evict(self):
        """Drop least recently used idle entries while over ``max_entries``."""
        while len(self.entries) > self.max_entries:
            # The oldest is almost always idle: this is O(1) per new key.
            victim = next((k for k, e in self.entries.items() if e.idle()), None)
            if victim is None:
                return
            del self.entries[victim]

    def forget_if_clean(self, key, entry):
        if entry.idle() and entry.score <= 0 and self.entries.get(key) is entry:
            del self.entries[key]


class LoginLimiter:
    """Admission control for logins by name and by source address; see the module docstring.

    ``max_failures = 0`` turns the failure throttle off; concurrency 0 means
    no limit of that kind. ``clock`` (default :func:`time.monotonic`) dates
    failures; waiting uses the event loop's own timer.
    """

    def __init__(
        self,
        *,
        max_failures=5,
        window=60.0,
        name_concurrency=1,
        source_concurrency=2,
        wait=10.0,
        max_entries=10000,
        clock=time.monotonic,
    ):
        self.max_failures = max_failures
        self.window = window
        self.wait = wait
        self.clock = clock
        self.tables = {
            "name": _Table("name", name_concurrency, max_entries),
            "source": _Table("source", source_concurrency, max_entries),
        }

    # --- state ------------------------------------------------------------------

    def _decay(self, entry, now):
        if entry.score > 0 and self.max_failures:
            rate = self.max_failures / self.window  # a full count is gone after `window`
            entry.score = max(0.0, entry.score - (now - entry.stamp) * rate)
        entry.stamp = now

    def throttled(self, entry):
        return bool(self.max_failures) and entry.score >= self.max_failures

    def _limit(self, table, entry):
        if self.throttled(entry):
            return 1
        return table.concurrency or None

    def _has_room(self, table, entry):
        limit = self._limit(table, entry)
        return limit is None or entry.in_flight < limit

    def failures(self, kind, key):
        """The current (decayed) failure count of ``key``: for tests and logs."""
        entry = self.tables[kind].entries.get(key)
        if entry is None:
            return 0.0
        self._decay(entry, self.clock())
        return entry.score

    def size(self, kind):
        return len(self.tables[kind].entries)

    # --- admission ----------------------------------------------------------------

    def _keys(self, name, source):
        pairs = [("name", name.casefold() if name else name), ("source", source)]
        return [(self.tables[kind], key) for kind, key in pairs if key]

    def _refusal(self, held, now):
        """Why an attempt for ``held`` must be refused at once, or None if it may wait."""
        for table, key, entry in held:
            self._decay(entry, now)
            full = not self._has_room(table, entry)
            # A throttled address is refused at once. A throttled name waits
            # instead: refusing it would let anyone lock a user out by
            # sending wrong passwords for their name from many addresses.
            if table.kind == "source" and self.throttled(entry) and full:
                return LoginRefused(table.kind, key, "failures")
            if full and len(entry.waiting) >= MAX_WAITING:
                return LoginRefused(table.kind, key, "busy")
        return None

    async def acquire(self, name, source):
        """Wait for a turn for ``name`` from ``source``; the :class:`Attempt` to release.

        Raises :class:`LoginRefused` at once when a key is throttled and busy
        (or has too many waiting), or after ``wait`` seconds without a turn.
        """
        keys = self._keys(name, source)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            # Looked up again after every wait: an idle, clean entry may have
            # been dropped meanwhile, and counting on a dropped one would let a
            # second attempt for the same key past its limit.
            now = self.clock()
            held = [(table, key, table.get(key, now)) for table, key in keys]
            refusal = self._refusal(held, now)
            if refusal is not None:
                self._refuse(held, refusal)
            blocked = [(t, k, e) for t, k, e in held if not self._has_room(t, e)]
            if not blocked:
                for _, _, entry in held:
                    entry.in_flight += 1
                    entry.refused = 0
                return Attempt(self, held)
            # Wait on the first key without room; every release of it wakes its
            # waiters, which check again (and wait again if someone was faster).
            table, key, entry = blocked[0]
            waiter = loop.create_future()
            entry.waiting.append(waiter)
            remaining = deadline - loop.time()
            try:
                if remaining > 0:
                    await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    entry.waiting.remove(waiter)
            if not waiter.done() or waiter.cancelled():
                self._refuse(held, LoginRefused(table.kind, key, "busy"))

    def _refuse(self, held, refusal):
        for table, key, entry in held:
            if (table.kind, key) == (refusal.kind, refusal.key):
                entry.refused += 1
                refusal.streak = entry.refused
        self._tidy(held)
        raise refusal

    def _tidy(self, held):
        for table, key, entry in held:
            table.forget_if_clean(key, entry)

    def _wake(self, entry):
        """Let every waiter of ``entry`` check again (at most ``MAX_WAITING`` of them)."""
        while entry.waiting:
            waiter = entry.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _release(self, held, success):
        now = self.clock()
        for table, key, entry in held:
            entry.in_flight -= 1
            self._decay(entry, now)
            if success:
                if table.kind == "name":
                    entry.score = 0.0
            elif self.max_failures:
                entry.score += 1
            self._wake(entry)
            table.forget_if_clean(key, entry)


class Attempt:
    """A turn given by :meth:`LoginLimiter.acquire`; release it once, saying how it went."""

    def __init__(self, limiter, held):
        self._limiter = limiter
        self._held = held
        self._released = False
        self.success = False

    def succeeded(self):
        """Mark the attempt successful (a release then clears the name's failures)."""
        self.success = True

    def release(self, success=None):
        if self._released:
            return
        self._released = True
        self._limiter._release(self._held, self.success if success is None else success)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.release()
        return False
