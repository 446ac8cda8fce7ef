"""The ticket service: what the hub keeps and does to get a user a ticket.

A mixin of :class:`kerbauth.KerberosTickets` (it reads the options through
``self``). It holds

- the resources, made on first use or by :meth:`TicketService.start`, never
  by the constructor: the thread pool every blocking ticket call runs on, the
  backend (kinit or the krb5 workers), the delivery's cache directory and the
  renewer;
- the hub's own records, the only truth about tickets it gave: ``_issued``
  (username -> TicketTimes of the ticket last written for that user) and
  ``_hub_tickets`` (login tickets, from the password or delegated: username
  -> the cache bytes the hub holds);
- single flight (one request per user at a time) and ``_timed`` (metrics, and
  an OSError on the way is a TicketError).
"""

import asyncio
import os
import pwd
import time
from concurrent.futures import ThreadPoolExecutor

from kerbauth.core import ccache, tickets
from kerbauth.core.backends.scratch import remove_stale_scratch
from kerbauth.core.errors import CcacheError, ConfigError, TicketError
from kerbauth.core.names import InvalidUsername, log_safe
from kerbauth.hub import metrics
from kerbauth.hub.delivery import DELIVERIES
from kerbauth.hub.password_tickets import delegation_option
from kerbauth.hub.renewal import Renewer

__all__ = ["TicketService"]

_UNSET = object()


class TicketService:
    """Obtaining and storing tickets, the hub's records, and the resources they need."""

    def _init_records(self):
        self._issued = {}
        self._hub_tickets = {}
        self._in_flight = {}  # username -> the ticket request in flight for that user
        self._shared_warned = set()
        self._fetched = {}  # username -> (monotonic time, cache bytes) last fetched
        self._backend = _UNSET
        self._executor = None
        self._renewer = None
        self._delivery = None
        self.cache_dir = None

    # --- resources, on first use or at start -------------------------------------

    def start(self):
        """Check the options, make the backend and the delivery's directory, warm up.

        Idempotent. JupyterHub calls it at start-up (through
        ``check_allow_config``), so a configuration whose tickets cannot work
        stops the hub with a :class:`~kerbauth.core.errors.ConfigError` naming
        the option; outside a hub it runs on first use. With a running event
        loop it also starts renewal and warms the backend on a ticket thread.
        """
        if self._backend is _UNSET:
            self.check_config()
            self._backend = self._make_backend()
            if self._backend is not None:
                self._warm()
        self._start_renewal()
        return self

    def close(self):
        """Undo :meth:`start`: stop renewal, the backend's processes and the ticket
        threads. For code that made the instance itself (``kerbauth doctor``, tests); a
        later use starts it again."""
        if self._renewer is not None and self._renewer._task is not None:
            self._renewer._task.cancel()
        self._renewer = None
        if self._backend not in (None, _UNSET) and hasattr(self._backend, "close"):
            self._backend.close()
        self._backend = _UNSET
        if self.cache_dir is not None:
            self.cache_dir.close()
        self.cache_dir = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._executor = None

    @property
    def ticket_backend(self):
        """The backend tickets are requested through (None without a keytab_template)."""
        if self._backend is _UNSET:
            self.start()
        return self._backend

    @ticket_backend.setter
    def ticket_backend(self, backend):
        self._backend = backend

    @property
    def _ticket_executor(self):
        """kerbauth's own thread pool: every blocking ticket call, ``ticket_concurrency``
        at a time."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.ticket_concurrency, thread_name_prefix="kerbauth-ticket"
            )
        return self._executor

    @property
    def delivery_strategy(self):
        """The :mod:`kerbauth.hub.delivery` strategy that ``delivery`` names."""
        if self._delivery is None:
            self._delivery = DELIVERIES[self.delivery](self)
        return self._delivery

    @property
    def renewer(self):
        """The :class:`~kerbauth.hub.renewal.Renewer` of the running servers' tickets."""
        if self._renewer is None:
            self._renewer = Renewer(
                targets=self._renewal_targets,
                executor=self._ticket_executor,
                margin=self.renew_margin,
                interval=self.renew_interval,
                max_backoff=self.renew_max_backoff,
                log=self.log,
                # One ticket thread stays free for spawns and logins during a sweep.
                lanes=self.ticket_concurrency - 1,
            )
        return self._renewer

    def _make_backend(self):
        """The backend, the delivery's directory, a log line of what is used."""
        delegation = delegation_option(self)
        if not (self.password_tickets or self.keytab_template or delegation):
            self.log.warning("kerbauth: KerberosTickets.keytab_template is not set; no tickets")
            return None
        try:
            self.cache_dir = self.delivery_strategy.open()
        except CcacheError as e:
            raise ConfigError(e.detail) from e
        # What a hub that was killed (kill -9) left in its scratch directories.
        remove_stale_scratch(log=self.log)
        try:
            backend = tickets.make_backend(
                self.backend,
                self.kinit_path,
                max_workers=self.ticket_concurrency,
            )
        except TicketError as e:
            raise ConfigError(e.detail) from e
        sources = [
            *(["the TGT the login delegates"] if delegation else []),
            *(["the login password"] if self.password_tickets else []),
            *([self.keytab_template] if self.keytab_template else []),
        ]
        self.log.info(
            "kerbauth: tickets for %s from %s through the %s backend, %s",
            self.principal_template.replace("{realm}", self.realm),
            ", else ".join(sources),
            backend.name,
            self.delivery_strategy.where(),
        )
        metrics.watch_expiring(self)
        return backend

    def _warm(self):
        """Start what the first ticket needs (the krb5 workers), off the event loop."""
        warm = getattr(self._backend, "warm", None)
        if warm is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no hub around: the first request pays
        started = time.monotonic()

        def done(future):
            if future.exception() is not None:
                self.log.warning("kerbauth: warming the backend failed: %s", future.exception())
            else:
                self.log.info(
                    "kerbauth: the %s backend warmed up in %.2f s",
                    self._backend.name,
                    time.monotonic() - started,
                )

        loop.run_in_executor(self._ticket_executor, warm).add_done_callback(done)

    # --- pieces a subclass may override -------------------------------------------

    def ticket_owner(self, user):
        """The ``(uid, gid)`` the cache of ``user`` is given: the local account's."""
        try:
            entry = pwd.getpwnam(user.name)
        except KeyError:
            raise TicketError(
                "config", f"there is no local account {log_safe(user.name)!r} to own the cache"
            ) from None
        return entry.pw_uid, entry.pw_gid

    # --- the ticket itself -------------------------------------------------------

    def _ticket_paths(self, username):
        """``(principal, keytab, cache)`` of ``username``; TicketError for a hostile name."""
        try:
            return (
                tickets.build_principal(self.principal_template, username, self.realm),
                tickets.keytab_path(self.keytab_template, username),
                tickets.ccache_path(self.ccache_dir, username),
            )
        except InvalidUsername as e:
            raise TicketError("config", str(e)) from None

    def _run_as(self, uid, gid):
        """Who the backend's process runs as: the user, when the hub can switch to them."""
        return (uid, gid) if os.geteuid() == 0 and uid != 0 else None

    def _store_sync(self, username, data, uid, gid):
        """Write the cache bytes ``data`` to ``username``'s cache; record what was given."""
        times = ccache.parse_ccache(data, "the new ticket")
        self.cache_dir.write(tickets.ccache_name(username), data, uid, gid)
        self._issued[username] = times
        return times

    def _obtain_ticket_sync(self, user, purpose="spawn"):
        """A keytab ticket into ``user``'s cache; ``(principal, cache, times)``."""
        if self.ticket_backend is None:
            raise TicketError("config", "KerberosTickets.keytab_template is not set")

        def work():
            principal, keytab, cache = self._ticket_paths(user.name)
            uid, gid = self.ticket_owner(user)
            data = tickets.keytab_ticket_bytes(
                self.ticket_backend,
                principal=principal,
                keytab=keytab,
                keytab_owner=uid,
                timeout=self.timeout,
                run_as=self._run_as(uid, gid),
            )
            return principal, cache, self._store_sync(user.name, data, uid, gid)

        return self._timed(purpose, work)

    def _timed(self, purpose, work):
        """Run ``work()``, counting its time, outcome and failure cause in the metrics.

        An OSError on the way (a full disk, a read-only file system) becomes a
        TicketError with its cause, like every other failure.
        """
        started, outcome = time.monotonic(), "other"
        try:
            try:
                result = work()
            except OSError as e:
                raise TicketError("ccache", f"{purpose}: {e}") from None
            outcome = "ok"
            return result
        except TicketError as e:
            outcome = e.cause
            metrics.TICKET_FAILURES.labels(e.cause, purpose).inc()
            raise
        finally:
            backend = getattr(self._backend, "name", "none")
            metrics.TICKET_REQUEST_SECONDS.labels(backend, purpose, outcome).observe(
                time.monotonic() - started
            )

    async def _single_flight(self, key, make):
        """Run ``make()`` (a coroutine) for ``key``, or wait for the one already running.

        One user's ticket requests never hold more than one ticket thread: a
        second spawn, fetch or renewal of the same user while one runs shares
        its result (or its error).
        """
        running = self._in_flight.get(key)
        if running is None:
            running = asyncio.ensure_future(make())
            self._in_flight[key] = running
            running.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(running)

    async def obtain_ticket(self, user):
        """Get ``user`` a fresh ticket in their cache; return ``(principal, cache path)``.

        Runs on kerbauth's own thread pool, one request per user at a time;
        raises :class:`TicketError`.
        """
        return await self._single_flight(user.name, lambda: self._obtain(user))

    async def _obtain(self, user):
        loop = asyncio.get_running_loop()
        login = await self._user_login_ticket(user)  # per user: a login ticket, or the keytab
        if login is not None:
            _, data = login
            principal, cache, renewed = await loop.run_in_executor(
                self._ticket_executor, self._password_cache_sync, user, data
            )
            if renewed:
                await self._save_hub_ticket(user)
        else:
            principal, cache, _ = await loop.run_in_executor(
                self._ticket_executor, self._obtain_ticket_sync, user
            )
        self.renewer.wake()
        return principal, cache

    async def remove_ticket(self, user):
        """Remove ``user``'s cache, if there is one, and forget what was given."""
        self._issued.pop(user.name, None)
        if self.cache_dir is None:
            return False
        try:
            name = tickets.ccache_name(user.name)
        except InvalidUsername:
            return False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ticket_executor, self.cache_dir.remove, name)
