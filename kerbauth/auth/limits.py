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

The limiting itself is plain asyncio (:class:`LoginLimiter`, with an
injectable clock for tests). :class:`LoginLimits` is the traitlets mixin that
gives an authenticator the options and :meth:`LoginLimits.login_attempt`,
which an ``authenticate`` wraps around the expensive check::

    async with self.login_attempt(handler, username) as attempt:
        ...  # PAM or the LDAP bind
        attempt.succeeded()
"""

import asyncio
import collections
import contextlib
import logging
import time

from tornado import netutil, web
from traitlets import Float, Integer, validate
from traitlets.config import LoggingConfigurable

from kerbauth.core.names import log_safe

__all__ = ["LoginLimiter", "LoginLimits", "LoginRefused", "login_source"]

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


def login_source(request):
    """The client address of a tornado ``request``, from the proxy's X-Forwarded-For.

    Like tornado's ``xheaders`` (which JupyterHub turns on) this takes the last
    X-Forwarded-For entry not in the hub's ``trusted_downstream_ips``, as the
    proxy in front of the hub appended it, but it ignores ``X-Real-Ip``: tornado
    prefers that header, and configurable-http-proxy passes on whatever the
    client put there, so a client could claim a new address with every request.
    """
    context = getattr(request.connection, "context", None)
    peer = getattr(context, "_orig_remote_ip", None) or request.remote_ip
    trusted = getattr(context, "trusted_downstream", None) or set()
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        for candidate in reversed(forwarded.split(",")):
            candidate = candidate.strip()
            if candidate not in trusted:
                if netutil.is_valid_ip(candidate):
                    return candidate
                break
    return peer


class LoginLimits(LoggingConfigurable):
    """Options of the login limiter; mixed into kerbauth's authenticators."""

    login_max_failures = Integer(
        5,
        config=True,
        help="""Failed logins after which a username or a client address is throttled.

        Each failed login counts against the name and against the address it
        came from; the count decays to zero over ``login_failure_window``
        seconds. A name or address at this count gets one login checked at a
        time, and any other attempt from it is refused at once with 429 *"Too
        many failed logins; wait a minute and try again."*, costing no PAM or
        LDAP call. A successful login clears the name's count (not the
        address's). 0 turns this off. Default: 5. Example: ``20`` for a site
        whose users all come through one proxy address.

        .. versionadded:: 0.2
        """,
    )

    login_failure_window = Float(
        60.0,
        config=True,
        help="""Seconds over which a full count of failed logins decays to zero.

        A count goes down by ``login_max_failures`` every
        ``login_failure_window`` seconds: with the defaults one failure is
        forgiven every 12 s, and an address is throttled while its count is 5
        or more (so an address that failed 10 times in a row is throttled for
        about a minute after the last). Default: 60. Example: ``300``.

        .. versionadded:: 0.2
        """,
    )

    login_name_concurrency = Integer(
        1,
        config=True,
        help="""Logins for one username checked at the same time.

        A further attempt for the same name waits for its turn without holding
        a thread, for up to ``login_wait`` seconds. Names are compared
        case-insensitively. 0: no limit. Default: 1. Example: ``2``.

        .. versionadded:: 0.2
        """,
    )

    login_source_concurrency = Integer(
        2,
        config=True,
        help="""Logins from one client address checked at the same time.

        Keep it below ``PAMAuthenticator.executor_threads`` (default 4), so
        that one address never holds every PAM thread. Further attempts wait
        for their turn without holding a thread, for up to ``login_wait``
        seconds. A site whose users all arrive through one proxy address
        shares this between all of them (a successful PAM login takes
        milliseconds, so the wait is short). 0: no limit. Default: 2.
        Example: ``3``.

        .. versionadded:: 0.2
        """,
    )

    login_wait = Float(
        10.0,
        config=True,
        help="""Seconds an attempt may wait for its turn before it is refused (429).

        Default: 10. Example: ``20``.

        .. versionadded:: 0.2
        """,
    )

    login_limit_entries = Integer(
        10000,
        config=True,
        help="""How many usernames, and how many client addresses, the limiter remembers.

        Past this, the least recently seen idle entry is forgotten, so a client
        cycling through random names or addresses cannot grow the hub's memory
        (about 200 bytes an entry). Default: 10000. Example: ``100000``.

        .. versionadded:: 0.2
        """,
    )

    @validate(
        "login_max_failures",
        "login_name_concurrency",
        "login_source_concurrency",
        "login_limit_entries",
    )
    def _check_not_negative(self, proposal):
        if proposal.value < 0:
            raise ValueError(
                f"{type(self).__name__}.{proposal.trait.name} may not be negative,"
                f" not {proposal.value!r}"
            )
        return proposal.value

    @validate("login_failure_window", "login_wait")
    def _check_positive(self, proposal):
        if proposal.value <= 0:
            raise ValueError(
                f"{type(self).__name__}.{proposal.trait.name} must be positive,"
                f" not {proposal.value!r}"
            )
        return proposal.value

    _login_limiter = None

    @property
    def login_limiter(self):
        """The :class:`LoginLimiter` built from the options (once, at first use)."""
        if self._login_limiter is None:
            self._login_limiter = LoginLimiter(
                max_failures=self.login_max_failures,
                window=self.login_failure_window,
                name_concurrency=self.login_name_concurrency,
                source_concurrency=self.login_source_concurrency,
                wait=self.login_wait,
                max_entries=max(1, self.login_limit_entries),
            )
        return self._login_limiter

    async def acquire_login(self, handler, username):
        """A turn (:class:`Attempt`) for ``username``'s login from ``handler``'s client.

        Raises ``HTTPError(429)`` with a short message when refused, and logs
        why. The caller must ``release()`` the attempt (after ``succeeded()``
        if the password checked out); :meth:`login_attempt` does that for a block.
        """
        source = login_source(handler.request) if handler is not None else None
        try:
            return await self.login_limiter.acquire(username, source)
        except LoginRefused as e:
            # One warning per streak of refusals of a key, not one per request.
            self.log.log(
                logging.WARNING if e.streak == 1 else logging.DEBUG,
                "kerbauth: login of %s from %s refused (429): %s %s (%d since its last"
                " admitted attempt); see %s.login_max_failures and .login_source_concurrency",
                log_safe(username),
                source,
                e.kind,
                "throttled after failed logins" if e.reason == "failures" else "busy",
                e.streak,
                type(self).__name__,
            )
            raise web.HTTPError(429, e.message) from None

    @contextlib.asynccontextmanager
    async def login_attempt(self, handler, username):
        """``async with self.login_attempt(handler, name) as attempt:`` around the check.

        Call ``attempt.succeeded()`` once the password checked out; leaving the
        block otherwise (a wrong password, an error, a timeout) counts as a
        failure. Refused: ``HTTPError(429)`` before the block runs.
        """
        attempt = await self.acquire_login(handler, username)
        try:
            yield attempt
        finally:
            attempt.release()
