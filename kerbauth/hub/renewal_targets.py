"""Renewal wiring: the hub's running servers as the targets of :mod:`kerbauth.hub.renewal`.

A mixin of :class:`kerbauth.KerberosTickets`. Which servers run comes from
the hub (``parent.users``); when each ticket is due, from the hub's record of
the ticket it gave (``_issued``); the cache file is only looked at to see
whether it still holds the user's own principal. A server shared while it
runs loses its ticket here (see :mod:`kerbauth.hub.spawn_policy`).
"""

import asyncio
import functools

from kerbauth.core import ccache, tickets
from kerbauth.core.errors import TicketError
from kerbauth.hub.renewal import RenewalTarget

__all__ = ["RenewalTargets"]


class RenewalTargets:
    """What the renewer sweeps: one target per user with a running server."""

    def _running_users(self):
        """The hub's users with at least one active server (empty outside a hub)."""
        users = getattr(self.parent, "users", None)
        if users is None or not hasattr(users, "values"):
            return []
        return [u for u in users.values() if any(s.active for s in u.spawners.values())]

    def _inspect_cache(self, username, principal):
        """What ``username``'s cache holds now: "ok", "foreign" or "absent"."""
        data = self.cache_dir.read(tickets.ccache_name(username))
        if data is None:
            return "absent"
        try:
            found = ccache.parse_ccache(data).principal
        except TicketError:
            return "foreign"
        return "ok" if found == principal else "foreign"

    async def _hub_started(self):
        """Wait until the hub has started, when the renewer started before it did.

        The renewer starts while JupyterHub is still initialising (from
        ``check_allow_config``, before its users and spawners are loaded), and
        its first sweep would find no users, or fail on a ``users`` that cannot
        exist yet. JupyterHub (5 and 6) resolves ``_start_future`` once it has
        started, its running servers included (unless they take longer than
        ``init_spawners_timeout``, when they join at a later sweep): the first
        sweep waits for it, so a restarted hub renews what running servers hold
        at once. A hub without that attribute is taken as started.
        """
        started = getattr(self.parent, "_start_future", None)
        if isinstance(started, asyncio.Future) and not started.done():
            await asyncio.shield(started)

    async def _renewal_targets(self):
        if self.cache_dir is None:
            return []
        await self._hub_started()
        targets = []
        for user in self._running_users():
            try:
                principal, _, _ = self._ticket_paths(user.name)
            except TicketError:
                continue
            if self._shared_without_tickets(user):
                await self._drop_shared(user)
                continue
            self._shared_warned.discard(user.name)  # shared again later: warned again
            after = None
            if await self._holds_login_ticket(user):
                renew = functools.partial(self._refresh_password_cache_sync, user)
                after = functools.partial(self._save_hub_ticket, user)
            elif self.keytab_template:
                renew = functools.partial(self._renew_keytab_sync, user)
            else:
                continue  # no login ticket, no keytab: nothing to renew it with
            issued = self._issued.get(user.name)
            targets.append(
                RenewalTarget(
                    key=user.name,
                    times=(issued.start, issued.end) if issued else None,
                    inspect=functools.partial(self._inspect_cache, user.name, principal),
                    renew=renew,
                    after=after,
                )
            )
        return targets

    async def _holds_login_ticket(self, user):
        """Whether ``user``'s ticket is a login ticket (renewed from the hub's copy): the
        hub's record, or (after a hub restart) auth_state, which only the hub writes."""
        if not self._login_tickets_possible():
            return False
        if user.name in self._hub_tickets:
            return True
        try:
            await self._login_ticket(user)
        except TicketError:
            return False
        return True

    def _renew_keytab_sync(self, user):
        _, _, times = self._obtain_ticket_sync(user, "renewal")
        return times.start, times.end

    def _start_renewal(self):
        """Start the renewal loop if there is a running event loop (there is in a hub) and
        the hub keeps the caches (``delivery = "file"``)."""
        if self._backend is None or self.cache_dir is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.renewer.start()
