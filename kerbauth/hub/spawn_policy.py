"""The spawn policy: what ``pre_spawn_start`` and ``post_spawn_stop`` do with tickets.

A mixin of :class:`kerbauth.KerberosTickets`. Before a spawn the delivery
(:mod:`kerbauth.hub.delivery`) gives the server its ticket; when none can be
had, ``required`` decides between refusing the spawn (the user sees why, the
log says the cause) and starting without one. Shared servers (JupyterHub 5
sharing) get no ticket unless ``tickets_for_shared_servers``: whoever a
server is shared with works in it as its owner.
"""

from jupyterhub.utils import maybe_future

from kerbauth.core.errors import TicketError
from kerbauth.core.names import log_safe
from kerbauth.hub.password_tickets import NoLoginTicket
from kerbauth.hub.refusal import spawn_refusal

__all__ = ["SpawnPolicy"]


class SpawnPolicy:
    """JupyterHub's spawn hooks, the refusal of a spawn, and shared servers."""

    async def pre_spawn_start(self, user, spawner):
        """Give the server a ticket (``delivery``); refuse the spawn without one (``required``)."""
        await maybe_future(super().pre_spawn_start(user, spawner))
        self.start()
        try:
            await self.delivery_strategy.give(user, spawner)
        except TicketError as e:
            if isinstance(e, NoLoginTicket):
                # The name the user's browser asked for: what its delegation must allow.
                handler = getattr(spawner, "handler", None)
                e.host = getattr(getattr(handler, "request", None), "host_name", None)
            self._no_ticket_at_spawn(user, e)

    async def post_spawn_stop(self, user, spawner):
        """Take the ticket back: remove the cache once the user's last server stopped."""
        await maybe_future(super().post_spawn_stop(user, spawner))
        await self.delivery_strategy.take_back(user, spawner)

    def get_handlers(self, app):
        """The login handlers, plus ``/hub/api/kerbauth/ticket`` with ``delivery = "fetch"``."""
        parent = getattr(super(), "get_handlers", None)
        handlers = list(parent(app)) if parent else []
        return handlers + self.delivery_strategy.handlers()

    async def fetch_ticket(self, user):
        """The bytes of a FILE cache with ``user``'s current TGT (``delivery = "fetch"``).

        With a keytab, a fresh ticket each time; with ``password_tickets``, the
        hub's ticket, renewed (and saved back to auth_state) when it is due.
        Runs on kerbauth's thread pool, one request per user at a time;
        raises :class:`TicketError`.
        """
        self.start()
        if self.delivery != "fetch":
            raise TicketError("config", 'KerberosTickets.delivery is not "fetch"')
        return await self.delivery_strategy.fetch_ticket(user)

    def _no_ticket_at_spawn(self, user, error):
        """``required``: refuse the spawn (the user sees why); otherwise log and go on."""
        if self.required:
            self.log.error(
                "kerbauth: no ticket for %s, spawn refused: %s", log_safe(user.name), error
            )
            raise spawn_refusal(error) from error
        self.log.warning(
            "kerbauth: starting %s's server without a Kerberos ticket"
            " (KerberosTickets.required is False): %s",
            log_safe(user.name),
            error,
        )

    # --- shared servers -------------------------------------------------------------

    def _shared_without_tickets(self, user, spawner=None):
        """Whether a server of ``user`` that runs (or ``spawner``, about to) is shared with
        other users while ``tickets_for_shared_servers`` is off. All of a user's servers
        share one cache, so one shared server exposes it."""
        if self.tickets_for_shared_servers:
            return False
        spawners = [s for s in getattr(user, "spawners", {}).values() if s.active]
        if spawner is not None:
            spawners.append(spawner)
        for s in spawners:
            orm_spawner = getattr(s, "orm_spawner", None)
            if getattr(orm_spawner, "shares", None) or getattr(orm_spawner, "share_codes", None):
                return True
        return False

    async def _drop_shared(self, user):
        """A server shared while it runs loses its ticket (logged once)."""
        if user.name not in self._shared_warned:
            self._shared_warned.add(user.name)
            self.log.warning(
                "kerbauth: a server of %s is shared with other users; its Kerberos ticket is"
                " removed and not renewed (KerberosTickets.tickets_for_shared_servers is False)",
                log_safe(user.name),
            )
        await self.remove_ticket(user)

    def _refuse_shared(self, user, spawner=None):
        if self._shared_without_tickets(user, spawner):
            raise TicketError(
                "shared",
                f"a server of {log_safe(user.name)} is shared with other users"
                " (KerberosTickets.tickets_for_shared_servers is False)",
            )
