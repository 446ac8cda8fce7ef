"""The hub side of the ``fetch`` delivery: an API handler that hands a server its ticket.

``GET /hub/api/kerbauth/ticket`` answers with the bytes of a fresh FILE cache
holding the TGT of the user who owns the request's API token, and of no one
else: the URL names no user, so there is nothing to ask for but one's own
ticket. The rules:

- only an API token in the ``Authorization`` header is accepted (never the
  browser's cookie): in practice the server's ``JUPYTERHUB_API_TOKEN``;
- the token must belong to a user (not a service) and carry the scope
  :data:`SCOPE`; anything else (no token, a revoked or unknown token, a token
  without the scope) gets 403;
- the ticket is made off the event loop, on kerbauth's own thread pool with
  its timeout (:meth:`kerbauth.KerberosTickets.fetch_ticket`);
- the response is ``application/octet-stream`` with ``Cache-Control:
  no-store``, and its body is never logged (JupyterHub's request log names
  the URL and status only);
- the log says which token fetched: "by the server of alice (token id a12)"
  only for the API token of one of the owner's running servers; any other
  token of the owner's (one made on the token page or through the API, with
  the scope or inheriting it) is logged as "with a token of alice that is
  not a server's", with its id and note.
"""

import asyncio
import hmac

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from jupyterhub.utils import compare_token
from tornado import web

from kerbauth.core.errors import TicketError
from kerbauth.core.names import log_safe

__all__ = ["SCOPE", "SCOPE_DEFINITION", "TICKET_PATH", "TicketHandler"]

# The custom scope a server's token needs (JupyterHub >= 3: custom scopes start with "custom:").
SCOPE = "custom:kerbauth:ticket"
SCOPE_DEFINITION = {
    SCOPE: {"description": "Fetch a Kerberos ticket of the token owner's own user (kerbauth)."}
}
# Below the hub's API prefix (/hub/api/).
TICKET_PATH = "kerbauth/ticket"


class TicketHandler(APIHandler):
    """``GET /hub/api/kerbauth/ticket``: the token owner's own ticket, as cache bytes."""

    # A token only: a page open in the user's browser must not be able to read tickets.
    _accept_cookie_auth = False

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def _refuse(self, why):
        # The reason goes to the log; the caller learns only that it was refused.
        self.log.warning("kerbauth: ticket request refused: %s", why)
        raise web.HTTPError(403, "Forbidden")

    async def get(self):
        user = self.current_user
        if user is None:
            self._refuse("no valid API token")
        if not isinstance(user, User):
            self._refuse(f"the token of {log_safe(user.name)} is not a user's")
        # The scope, unfiltered or filtered to this very user (``!user``).
        if not self.has_scope(f"{SCOPE}!user={user.name}"):
            self._refuse(f"the token of {log_safe(user.name)} lacks the scope {SCOPE}")
        try:
            data = await self.authenticator.fetch_ticket(user)
        except TicketError as e:
            self.log.error("kerbauth: no ticket for %s to fetch: %s", log_safe(user.name), e)
            status = 409 if e.cause == "expired" else 503
            raise web.HTTPError(status, e.jupyterhub_message) from None
        # Logged before the answer goes out, so whoever got the ticket finds the line.
        self.log.info("kerbauth: ticket fetched %s", await self._fetched_by(user))
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)

    async def _server_of_token(self, user):
        """The name of ``user``'s running server whose API token this request carries, or None.

        The spawner keeps its token in memory while the hub runs; after a hub
        restart only the hash JupyterHub stored for the server's OAuth client
        (the same token) is left, so that is compared too (a few ms of
        hashing, on a thread).
        """
        token = self.get_auth_token() or ""
        hashed = []
        for name, spawner in list(user.spawners.items()):
            if not spawner.active:
                continue
            if spawner.api_token:
                if hmac.compare_digest(spawner.api_token.encode(), token.encode()):
                    return name
                continue
            client = getattr(spawner.orm_spawner, "oauth_client", None)
            secret = getattr(client, "secret", "") or ""
            if secret:
                hashed.append((name, secret))
        for name, secret in hashed:
            if await asyncio.to_thread(compare_token, secret, token):
                return name
        return None

    async def _fetched_by(self, user):
        """How to name who fetched: the server's own token, or another token of the user."""
        orm_token = self.get_token()
        token_id = orm_token.api_id if orm_token is not None else "?"
        server = await self._server_of_token(user)
        if server is not None:
            shown = log_safe(user.name) + (f"/{log_safe(server)}" if server else "")
            return f"by the server of {shown} (token id {token_id})"
        note = log_safe(orm_token.note or "", limit=64) if orm_token is not None else ""
        return (
            f"with a token of {log_safe(user.name)} that is not a server's"
            f' (token id {token_id}, note "{note}")'
        )
