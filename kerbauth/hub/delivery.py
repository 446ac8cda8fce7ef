"""The two ways a server gets its ticket (``KerberosTickets.delivery``), as strategies.

Each strategy is made with the :class:`kerbauth.KerberosTickets` it serves
and answers the same questions:

- ``open()``, at start: the cache directory the hub writes into, or None;
- ``where()``: where tickets go, for the start-up log line;
- ``handlers()``: the hub API handlers it adds;
- ``give(user, spawner)``, before a spawn: get the ticket (or check one can
  be had) and tell the server where it is (``spawner.environment``);
- ``take_back(user, spawner)``, after a server stopped.

``"file"`` (:class:`FileDelivery`): the hub writes each user's cache into
``ccache_dir``, owned by the user, and renews it there. ``"fetch"``
(:class:`FetchDelivery`): the hub writes nothing; each server fetches its own
ticket from ``/hub/api/kerbauth/ticket`` (:mod:`kerbauth.hub.api`).
"""

import asyncio
import os
import time
from urllib.parse import urlparse

from jupyterhub.utils import url_path_join

from kerbauth.core import ccache, tickets
from kerbauth.core.cache_directory import CacheDirectory
from kerbauth.core.errors import TicketError
from kerbauth.core.names import InvalidUsername, check_username, log_safe

__all__ = ["FileDelivery", "FetchDelivery", "DELIVERIES", "FETCH_REUSE_SECONDS"]

# With delivery = "fetch", a keytab ticket fetched again within this many seconds is reused.
FETCH_REUSE_SECONDS = 10


class FileDelivery:
    """``delivery = "file"``: a cache file in ``ccache_dir`` that the user owns."""

    name = "file"

    def __init__(self, tickets):
        self.tickets = tickets

    def open(self):
        t = self.tickets
        return CacheDirectory(t.ccache_dir, log=t.log).open()

    def where(self):
        return f"caches in {self.tickets.ccache_dir}"

    def handlers(self):
        return []

    async def give(self, user, spawner):
        t = self.tickets
        t._refuse_shared(user, spawner)
        principal, cache = await t.obtain_ticket(user)
        environment = dict(spawner.environment)
        environment["KRB5CCNAME"] = f"FILE:{cache}"
        if os.environ.get("KRB5_CONFIG"):
            environment["KRB5_CONFIG"] = os.environ["KRB5_CONFIG"]
        spawner.environment = environment
        t.log.info("kerbauth: ticket for %s written to %s", principal, cache)

    async def take_back(self, user, spawner):
        others = [s for s in getattr(user, "spawners", {}).values() if s is not spawner]
        if any(s.active for s in others):
            return  # one cache serves all of a user's servers; another one still runs
        if await self.tickets.remove_ticket(user):
            self.tickets.log.info("kerbauth: removed the ticket cache of %s", log_safe(user.name))


class FetchDelivery:
    """``delivery = "fetch"``: the server fetches its ticket from the hub API."""

    name = "fetch"

    def __init__(self, tickets):
        self.tickets = tickets

    def open(self):
        return None  # the hub keeps no cache: each server writes its own

    def where(self):
        return f"fetched by the servers into {self.tickets.fetch_ccache_path}"

    def handlers(self):
        from kerbauth.hub.api import TICKET_PATH, TicketHandler

        return [(f"/api/{TICKET_PATH}", TicketHandler)]

    def environment(self, user, spawner):
        """What a server needs to fetch its ticket: ``KRB5CCNAME`` and the handler's URL."""
        from kerbauth.hub.api import TICKET_PATH

        t = self.tickets
        path = t.fetch_ccache_path.format(username=check_username(user.name))
        hub = getattr(spawner, "hub", None)
        api_url = hub.api_url if hub is not None else ""
        connect_url = getattr(spawner, "hub_connect_url", None)
        if connect_url:
            # As JupyterHub builds JUPYTERHUB_API_URL for the server.
            api_url = url_path_join(connect_url, urlparse(api_url).path)
        return {
            "KRB5CCNAME": f"FILE:{path}",
            "KERBAUTH_TICKET_URL": url_path_join(api_url, TICKET_PATH),
            "KERBAUTH_RENEW_MARGIN": f"{t.renew_margin:g}",
            "KERBAUTH_RENEW_INTERVAL": f"{t.renew_interval:g}",
        }

    async def give(self, user, spawner):
        """Check a ticket can be had, tell the server where to get it."""
        t = self.tickets
        try:
            check_username(user.name)
        except InvalidUsername as e:
            raise TicketError("config", str(e)) from None
        t._refuse_shared(user, spawner)
        data = await self.fetch_ticket(user)
        environment = dict(spawner.environment)
        environment.update(self.environment(user, spawner))
        spawner.environment = environment
        t.log.info(
            "kerbauth: the server of %s will fetch its ticket (%s) into %s",
            log_safe(user.name),
            ccache.parse_ccache(data).principal,
            environment["KRB5CCNAME"],
        )

    async def take_back(self, user, spawner):
        return  # the server's cache went with it

    async def fetch_ticket(self, user):
        """The bytes of a FILE cache with ``user``'s current TGT, one request per user."""
        t = self.tickets
        t._refuse_shared(user)
        return await t._single_flight(user.name, lambda: self._fetch(user))

    async def _fetch(self, user):
        t = self.tickets
        loop = asyncio.get_running_loop()
        login = await t._user_login_ticket(user)  # per user: a login ticket, or the keytab
        if login is not None:
            _, data = login
            data, renewed = await loop.run_in_executor(
                t._ticket_executor, t._fetch_password_ticket_sync, user, data
            )
            if renewed:
                await t._save_hub_ticket(user)
            return data
        # A server asks at start and before the end; a user's code asking in a
        # loop gets the same ticket again for a few seconds, not a KDC request each.
        reused = t._fetched.get(user.name)
        if reused and time.monotonic() - reused[0] < FETCH_REUSE_SECONDS:
            return reused[1]
        data = await loop.run_in_executor(t._ticket_executor, self._keytab_ticket_sync, user.name)
        now = time.monotonic()
        for name in [n for n, (at, _) in t._fetched.items() if now - at >= FETCH_REUSE_SECONDS]:
            del t._fetched[name]
        t._fetched[user.name] = (now, data)
        return data

    def _keytab_ticket_sync(self, username):
        t = self.tickets
        if t.ticket_backend is None:
            raise TicketError("config", "KerberosTickets.keytab_template is not set")

        def work():
            principal, keytab, _ = t._ticket_paths(username)
            return tickets.keytab_ticket_bytes(
                t.ticket_backend,
                principal=principal,
                keytab=keytab,
                keytab_owner=os.geteuid(),
                timeout=t.timeout,
            )

        return t._timed("fetch", work)


DELIVERIES = {"file": FileDelivery, "fetch": FetchDelivery}
