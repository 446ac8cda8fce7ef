"""Login tickets: a TGT the login brought or got, kept by the hub; and ``refresh_user``.

A mixin of :class:`kerbauth.KerberosTickets`. A user's login ticket comes
from the password just typed (``KerberosTickets.password_tickets``: a
renewable TGT is requested with it; the password itself is not kept) or from
the login itself (a TGT the client delegated with SPNEGO, the kerberos-kdc
mode's AS exchange). The hub keeps its bytes in its own record
(``_hub_tickets``) and in JupyterHub's encrypted auth_state
(:data:`AUTH_STATE_KEY`), writes it to the user's cache at spawn, and renews
it from its own copy, never from the user's cache file. When it can no longer
be renewed, ``refresh_user`` asks for a new login.

Which ticket a user gets is decided per user (:meth:`PasswordTickets._user_login_ticket`),
from what the hub wrote only: their login ticket when auth_state holds one;
else the keytab (``keytab_template``) when one is configured; else the spawn
is refused with :class:`NoLoginTicket`, which tells the user what would bring
one (their browser's delegation, the password form).
"""

import asyncio
import base64
import time
from types import SimpleNamespace

from jupyterhub.utils import maybe_future

from kerbauth.core import ccache, tickets
from kerbauth.core.errors import TicketError
from kerbauth.core.names import log_safe

__all__ = ["PasswordTickets", "AUTH_STATE_KEY", "NoLoginTicket", "delegation_option"]

# Where a login ticket is kept in auth_state: the bytes of a FILE cache, base64.
AUTH_STATE_KEY = "kerberos_ccache"


def delegation_option(configurable):
    """The option by which logins can bring a delegated TGT, e.g. ``"KerberosSPNEGO.keytab"``,
    or ``""``.

    Asked of the authenticator's own ``delegation_option()`` (the SPNEGO mixin
    answers it; kerbauth.hub imports nothing of the login modes), so its place
    in the class's bases does not matter.
    """
    hook = getattr(configurable, "delegation_option", None)
    return (hook() or "") if callable(hook) else ""


class NoLoginTicket(TicketError):
    """The user holds no login ticket and no keytab is configured: what they can do.

    ``delegation``: logins can bring a delegated TGT (SPNEGO), so the user's
    browser must be allowed to delegate to the hub's host (``host``, the name
    the browser used, when known); ``password_form``: a password login brings
    one (``password_tickets``).
    """

    def __init__(self, detail, delegation, password_form, host=None):
        super().__init__("expired", detail)
        self.delegation = delegation
        self.password_form = password_form
        self.host = host

    @property
    def jupyterhub_message(self):
        ways = []
        if self.delegation:
            host = self.host or "this hub's host name"
            ways.append(
                f"allow your browser to delegate your Kerberos credentials to {host}"
                " (Chrome and Edge: the AuthNegotiateDelegateAllowlist policy;"
                " Firefox: network.negotiate-auth.delegation-uris), then log out and open"
                " the hub again"
            )
        if self.password_form or not ways:
            ways.append("log out and log in again with your password on the login form")
        return (
            "Your login brought no Kerberos ticket, so your server was not started."
            f" To get one, {', or '.join(ways)}."
        )


class PasswordTickets:
    """Getting, keeping and renewing login tickets, and which ticket each user gets."""

    def _login_tickets_possible(self):
        """Whether a login can bring a ticket: ``password_tickets``, or delegation on."""
        return bool(self.password_tickets or delegation_option(self))

    async def _user_login_ticket(self, user):
        """Which ticket ``user`` gets: ``(auth_state, bytes)`` of their login ticket, or
        None for the keytab route.

        Decided from auth_state (written by the hub only), never from the user's
        cache file. Without a login ticket and without ``keytab_template``,
        raises :class:`NoLoginTicket`, saying what would bring one.
        """
        if not self._login_tickets_possible():
            return None
        try:
            return await self._login_ticket(user)
        except TicketError as e:
            if self.keytab_template:
                return None
            raise NoLoginTicket(
                e.detail,
                delegation=bool(delegation_option(self)),
                password_form=self.password_tickets,
            ) from None

    async def _login_ticket(self, user):
        """``(auth_state, ticket bytes)`` of ``user``'s login ticket; TicketError
        without one.

        auth_state (written by the hub only) says whether the user holds a login
        ticket at all; of it and the hub's own copy in memory (renewed, maybe not
        saved yet), the one that ends later is used.
        """
        auth_state = await user.get_auth_state() or {}
        stored = None
        if auth_state.get(AUTH_STATE_KEY):
            try:
                stored = base64.b64decode(auth_state[AUTH_STATE_KEY])
                stored_end = ccache.parse_ccache(stored, "the ticket in auth_state").end
            except (TicketError, ValueError):
                stored = None
        if stored is None:
            self._hub_tickets.pop(user.name, None)
            raise TicketError(
                "expired", "no ticket from the login in auth_state; the user must log in again"
            )
        kept = self._hub_tickets.get(user.name)
        if kept is not None and ccache.parse_ccache(kept).end >= stored_end:
            return auth_state, kept
        self._hub_tickets[user.name] = stored
        return auth_state, stored

    def _login_ticket_sync(self, username, password):
        principal, _, _ = self._ticket_paths(username)
        run_as = None
        if self.delivery == "file":
            try:
                run_as = self._run_as(*self.ticket_owner(SimpleNamespace(name=username)))
            except TicketError:
                run_as = None
        data = self._timed(
            "login",
            lambda: tickets.password_ticket(
                self.ticket_backend,
                principal=principal,
                password=password,
                renew_life=self.renew_lifetime,
                timeout=self.timeout,
                run_as=run_as,
            ),
        )
        self._hub_tickets[username] = data
        if self.cache_dir is not None and self.cache_dir.exists(tickets.ccache_name(username)):
            # A running server gets the new ticket at once (a login after
            # the old one ran out, typically).
            uid, gid = self.ticket_owner(SimpleNamespace(name=username))
            self._timed("login", lambda: self._store_sync(username, data, uid, gid))
        return data

    async def get_authenticated_user(self, handler, data):
        """Log in as usual, keeping a ticket the login brought; with ``password_tickets``,
        a form login also gets a ticket from the password."""
        authenticated = await super().get_authenticated_user(handler, data)
        if authenticated is None:
            return authenticated
        username = authenticated["name"]
        brought = (authenticated.get("auth_state") or {}).get(AUTH_STATE_KEY)
        if brought:
            # The login itself brought the user's TGT (the kerberos-kdc mode's AS
            # exchange, a delegated SPNEGO ticket): it is the ticket, not asked again.
            if self.enable_auth_state:  # else JupyterHub keeps no auth_state to hold it
                await self._keep_brought_ticket(username, base64.b64decode(brought))
            return authenticated
        # This login's auth_state holds no ticket: the hub's copy of an older one goes.
        self._hub_tickets.pop(username, None)
        if not self.password_tickets or not isinstance(data, dict) or "password" not in data:
            return authenticated  # no password typed (a SPNEGO login): nothing to ask with
        self.start()
        loop = asyncio.get_running_loop()
        try:
            blob = await loop.run_in_executor(
                self._ticket_executor, self._login_ticket_sync, username, data.get("password")
            )
        except TicketError as e:
            if self.required:
                self.log.error("kerbauth: no ticket for %s at login: %s", log_safe(username), e)
                raise
            self.log.warning("kerbauth: logging %s in without a ticket: %s", log_safe(username), e)
            return authenticated
        auth_state = dict(authenticated.get("auth_state") or {})
        auth_state[AUTH_STATE_KEY] = base64.b64encode(blob).decode("ascii")
        authenticated["auth_state"] = auth_state
        return authenticated

    async def _keep_brought_ticket(self, username, data):
        """Record a ticket the login brought; a running server's cache gets it at once."""
        self._hub_tickets[username] = data
        self.start()
        if self.cache_dir is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._ticket_executor, self._store_brought_sync, username, data
            )
        except TicketError as e:
            self.log.warning(
                "kerbauth: the login ticket of %s is kept, but not written to the cache of"
                " their running server: %s",
                log_safe(username),
                e,
            )

    def _store_brought_sync(self, username, data):
        if not self.cache_dir.exists(tickets.ccache_name(username)):
            return
        principal, _, _ = self._ticket_paths(username)
        found = ccache.parse_ccache(data, "the login's ticket").principal
        if found != principal:
            raise TicketError("config", f"the login brought a ticket of {found}, not {principal}")
        uid, gid = self.ticket_owner(SimpleNamespace(name=username))
        self._timed("login", lambda: self._store_sync(username, data, uid, gid))

    def _password_cache_sync(self, user, data):
        """Write the hub's password ticket to the user's cache, renewed first if it is due.

        ``(principal, cache, renewed)``.
        """
        principal, _, cache = self._ticket_paths(user.name)
        ticket = ccache.parse_ccache(data, "the ticket in auth_state")
        if ticket.principal != principal:
            raise TicketError("config", f"auth_state holds {ticket.principal}, not {principal}")
        if self.renewer.is_due((ticket.start, ticket.end), self.renewer.clock()) and (
            ticket.renew_till > ticket.end
        ):
            self._renew_password_ticket_sync(user)
            return principal, cache, True
        uid, gid = self.ticket_owner(user)
        self._timed("spawn", lambda: self._store_sync(user.name, data, uid, gid))
        return principal, cache, False

    def _renew_password_ticket_sync(self, user):
        """Renew the hub's copy of ``user``'s password ticket and write it to their cache.

        The user's cache file is never read: it is theirs to change, and what
        they write there must not decide when they log in again.
        """
        principal, _, _ = self._ticket_paths(user.name)
        data = self._hub_tickets.get(user.name)
        if data is None:
            raise TicketError("expired", f"the hub holds no ticket of {principal}; log in again")
        current = ccache.parse_ccache(data, "the hub's ticket")
        if current.renew_till <= current.end:
            raise TicketError(
                "expired",
                f"the ticket of {principal} cannot be renewed past"
                f" {time.ctime(current.end)}; the user must log in again",
            )
        # With the fetch delivery there is no local account: the hub renews as itself.
        uid, gid = self.ticket_owner(user) if self.cache_dir is not None else (None, None)

        def work():
            renewed = tickets.renew_ticket_bytes(
                self.ticket_backend,
                data=data,
                principal=principal,
                timeout=self.timeout,
                run_as=self._run_as(uid, gid) if uid is not None else None,
            )
            self._hub_tickets[user.name] = renewed
            if self.cache_dir is None:
                return ccache.parse_ccache(renewed)
            return self._store_sync(user.name, renewed, uid, gid)

        return self._timed("renewal", work)

    def _refresh_password_cache_sync(self, user):
        """A renewal sweep's work for a password ticket: renew the hub's copy when it is
        due, else write it as it is (after a hub restart the hub has no record of what
        the cache holds); its (start, end)."""
        data = self._hub_tickets.get(user.name)
        if data is not None:
            ticket = ccache.parse_ccache(data, "the hub's ticket")
            if not self.renewer.is_due((ticket.start, ticket.end), self.renewer.clock()):
                uid, gid = self.ticket_owner(user)
                times = self._timed("renewal", lambda: self._store_sync(user.name, data, uid, gid))
                return times.start, times.end
        times = self._renew_password_ticket_sync(user)
        return times.start, times.end

    async def _save_hub_ticket(self, user):
        """Save the hub's copy of ``user``'s password ticket in auth_state, if it is newer."""
        data = self._hub_tickets.get(user.name)
        if data is None:
            return
        auth_state = dict(await user.get_auth_state() or {})
        blob = base64.b64encode(data).decode("ascii")
        if auth_state.get(AUTH_STATE_KEY) != blob:
            auth_state[AUTH_STATE_KEY] = blob
            await user.save_auth_state(auth_state)

    async def refresh_user(self, user, handler=None):
        """Keep auth_state's login ticket current, or ask for a new login.

        Decided from the hub's own copy of the ticket (renewed by the hub) and
        auth_state (written by the hub), never from the user's cache file.
        When the ticket can no longer be renewed and is about to end, False
        makes JupyterHub ask the user to log in again (their server keeps
        running; with SPNEGO the browser negotiates again by itself). A user
        without a login ticket is asked to log in again only where nothing else
        gives tickets (``password_tickets`` alone); otherwise the keytab route
        applies, or their spawn is refused saying what would bring one.
        """
        result = await maybe_future(super().refresh_user(user, handler))
        if result is False or not self._login_tickets_possible():
            return result
        try:
            auth_state, data = await self._login_ticket(user)
        except TicketError:
            if self.keytab_template or delegation_option(self):
                return result
            return False
        ticket = ccache.parse_ccache(data, "the hub's ticket")
        if ticket.renew_till <= ticket.end and self.renewer.is_due(
            (ticket.start, ticket.end), self.renewer.clock()
        ):
            self.log.info(
                "kerbauth: the ticket of %s can no longer be renewed; asking for a new login",
                log_safe(user.name),
            )
            return False
        blob = base64.b64encode(data).decode("ascii")
        if isinstance(result, dict) or auth_state.get(AUTH_STATE_KEY) != blob:
            # What the authenticator's own refresh said (groups, fresher auth_state
            # keys) is kept, with the hub's ticket in auth_state.
            model = dict(result) if isinstance(result, dict) else {"name": user.name}
            model["auth_state"] = {
                **auth_state,
                **(model.get("auth_state") or {}),
                AUTH_STATE_KEY: blob,
            }
            return model
        return result

    def _fetch_password_ticket_sync(self, user, data):
        """``(cache bytes, renewed)``: the hub's password ticket, renewed when it is due."""
        principal, _, _ = self._ticket_paths(user.name)
        ticket = ccache.parse_ccache(data, "the hub's ticket")
        if ticket.principal != principal:
            raise TicketError("config", f"auth_state holds {ticket.principal}, not {principal}")
        now = self.renewer.clock()
        if not self.renewer.is_due((ticket.start, ticket.end), now):
            return data, False
        if ticket.renew_till <= ticket.end:
            if ticket.end > now:
                return data, False
            raise TicketError(
                "expired",
                f"the ticket of {principal} ended at {time.ctime(ticket.end)} and cannot be"
                " renewed; the user must log in again",
            )
        self._renew_password_ticket_sync(user)
        return self._hub_tickets[user.name], True
