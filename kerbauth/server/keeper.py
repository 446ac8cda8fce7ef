"""The server's ticket keeper: fetch at start, and again before the ticket ends.

Runs inside the user's server (its container, or its process on a shared
host), as the user. The hub gives the server three variables:

- ``KRB5CCNAME``: ``FILE:<path>``, where the ticket goes (container-local,
  checked by :func:`kerbauth.server.cache_target.open_cache`);
- ``KERBAUTH_TICKET_URL``: the hub's ``/hub/api/kerbauth/ticket``;
- ``KERBAUTH_RENEW_MARGIN``: seconds before the end at which to fetch again;
- ``KERBAUTH_RENEW_INTERVAL``: the longest wait between two looks at the
  cache (the hub's ``renew_interval``);

and JupyterHub itself gives it ``JUPYTERHUB_API_TOKEN``, which authenticates
the request (:func:`kerbauth.server.hub_client.fetch_ticket`).

When to fetch again and how to retry are the hub's own rules, from
:mod:`kerbauth.core.policy`: the ticket is due ``margin`` seconds before its
end (or at half its life, for a short one); a failing fetch is retried with a
capped exponential backoff with jitter (1, 2, 4, ... up to ``max_backoff``
seconds, so servers that failed together do not all come back together),
logged once per streak with its cause, and once more when it works again.
Between two fetches the keeper looks at the cache every ``interval`` seconds,
as the hub looks at the caches it writes: a cache that no longer holds a
valid ticket of the principal it wrote (the user ran ``kdestroy``, or
``kinit`` as someone else) gets the ticket again at once. What is due is
decided from the keeper's own record of what it fetched; the file only ever
makes a fetch come sooner. The keeper never raises into its caller: the
server goes on without a ticket until one comes.
"""

import random
import threading
import time

from kerbauth.core.ccache import read_ccache
from kerbauth.core.policy import FailureStreak, due_time
from kerbauth.server.cache_target import ccache_target, open_cache
from kerbauth.server.errors import FetchError, UnsafeCacheTarget
from kerbauth.server.hub_client import ENV_URL, fetch_ticket, ssl_context_from_environ

__all__ = [
    "ENV_INTERVAL",
    "ENV_MARGIN",
    "MIN_DELAY",
    "TicketKeeper",
    "keeper_from_environ",
    "next_fetch_delay",
]

ENV_MARGIN = "KERBAUTH_RENEW_MARGIN"
ENV_INTERVAL = "KERBAUTH_RENEW_INTERVAL"
MIN_DELAY = 5.0  # seconds between two fetches when all goes well


def next_fetch_delay(times, now, margin):
    """Seconds until the ticket with ``times`` is due (:func:`~kerbauth.core.policy.due_time`),
    never less than :data:`MIN_DELAY` (no busy loop on a ticket about to end)."""
    return max(MIN_DELAY, due_time((times.start, times.end), margin) - now)


class TicketKeeper:
    """Fetches the ticket into ``target`` now and again before it ends, on a daemon thread.

    ``target`` is a :class:`~kerbauth.server.cache_target.CacheTarget`.
    ``on_unsafe(error)``, if given, is called when the target turns out to be
    someone else's at a write; it returns a new target to use (the server
    extension's private one) or None to go on failing. ``rng`` draws the
    backoff's jitter (a test passes a constant). Nothing happens until
    :meth:`start`, :meth:`run`, :meth:`step` or :meth:`fetch_once`.
    """

    def __init__(
        self,
        *,
        url,
        token,
        target,
        margin=1800.0,
        interval=60.0,
        max_backoff=60.0,
        timeout=30.0,
        ssl_context=None,
        on_unsafe=None,
        rng=random.random,
        log,
    ):
        self.url = url
        self.ssl_context = ssl_context
        self.token = token
        self.target = target
        self.on_unsafe = on_unsafe
        self.margin = margin
        self.interval = interval
        self.timeout = timeout
        self.rng = rng
        self.log = log
        self.streak = FailureStreak(max_backoff=max_backoff)
        self.fetched = 0
        self.written = None  # the TicketTimes of the last ticket written, while it is good
        self.stopped = threading.Event()
        self.thread = None

    def fetch_once(self):
        """Fetch and write the ticket; its TicketTimes. Raises :class:`FetchError`."""
        data, times = fetch_ticket(self.url, self.token, self.timeout, self.ssl_context)
        if times.end <= time.time():
            raise FetchError(
                f"the hub's ticket for {times.principal} has already ended (log in again?)"
            )
        try:
            self.target.write(data)
        except UnsafeCacheTarget as e:
            replacement = self.on_unsafe(e) if self.on_unsafe is not None else None
            if replacement is None:
                raise
            old, self.target = self.target, replacement
            old.remove()  # only what is ours there goes
            self.target.write(data)
        self.fetched += 1
        self.written = times
        return times

    def cache_holds_ticket(self):
        """Whether the cache still holds a valid ticket of the principal last written."""
        written = self.written
        if written is None:
            return False
        try:
            found = read_ccache(self.path)
        except Exception:  # noqa: BLE001 - missing, emptied, unreadable: all mean no ticket
            return False
        return found.principal == written.principal and found.end > time.time()

    @property
    def path(self):
        return self.target.path

    def step(self):
        """One attempt; the seconds to wait before the next one. Never raises."""
        try:
            times = self.fetch_once()
        except Exception as e:  # noqa: BLE001 - a failure must never reach the server
            self.written = None
            delay = self.streak.failed(time.monotonic(), rng=self.rng)
            if self.streak.first:
                self.log.warning(
                    "kerbauth: no Kerberos ticket from %s into %s: %s; retrying with backoff",
                    self.url,
                    self.path,
                    e,
                )
            else:
                self.log.debug(
                    "kerbauth: ticket fetch failed again (%d): %s", self.streak.failures, e
                )
            return delay
        failures = self.streak.ended()
        if failures:
            self.log.info("kerbauth: ticket fetch works again after %d failure(s)", failures)
        delay = next_fetch_delay(times, time.time(), self.margin)
        self.log.info(
            "kerbauth: Kerberos ticket of %s written to %s, valid until %s; next fetch in %.0f s",
            times.principal,
            self.path,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(times.end)),
            delay,
        )
        return delay

    def run(self):
        while not self.stopped.is_set():
            self.wait(self.step())

    def wait(self, delay):
        """Wait ``delay`` seconds, or less when the cache loses the ticket meanwhile
        (looked at every ``interval`` seconds, and only after a fetch that worked)."""
        until = time.monotonic() + delay
        while not self.stopped.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return
            if self.stopped.wait(min(left, self.interval)):
                return
            if self.written is not None and not self.cache_holds_ticket():
                self.log.info(
                    "kerbauth: %s no longer holds the ticket of %s; fetching it again",
                    self.path,
                    self.written.principal,
                )
                return

    def start(self):
        """Run in a daemon thread (it never blocks the server's start or its stop)."""
        self.thread = threading.Thread(target=self.run, name="kerbauth-fetch", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self, timeout=None):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def close(self, timeout=5.0):
        """Stop, then remove the ticket and the directory made for it (at the server's stop)."""
        self.stop(timeout)
        self.target.remove()


def keeper_from_environ(environ, log, target=None, **kwargs):
    """A :class:`TicketKeeper` configured from the server's environment, or None.

    None when the hub did not ask for the fetch delivery (no
    ``KERBAUTH_TICKET_URL``), so an image with kerbauth installed behaves as
    before under any other hub. The cache named by ``KRB5CCNAME`` is opened
    (:func:`~kerbauth.server.cache_target.open_cache`: its directory made if
    missing) unless ``target`` is given;
    :class:`~kerbauth.server.errors.UnsafeCacheTarget` when it is not the
    server's own.
    """
    url = environ.get(ENV_URL)
    if not url:
        return None
    path = ccache_target(environ.get("KRB5CCNAME", ""))
    margin = _seconds(environ, ENV_MARGIN, 1800.0)
    interval = _seconds(environ, ENV_INTERVAL, 60.0)
    ssl_context = ssl_context_from_environ(environ)
    return TicketKeeper(
        url=url,
        token=environ.get("JUPYTERHUB_API_TOKEN", ""),
        target=open_cache(path) if target is None else target,
        margin=margin,
        interval=interval,
        ssl_context=ssl_context,
        log=log,
        **kwargs,
    )


def _seconds(environ, name, default):
    value = environ.get(name)
    try:
        seconds = float(value or default)
    except ValueError:
        raise FetchError(f"{name}={value!r} is not a number") from None
    if not seconds > 0:
        raise FetchError(f"{name}={value!r} is not a positive number of seconds")
    return seconds
