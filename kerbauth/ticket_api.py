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
  the URL and status only).
"""

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

from .errors import TicketError
from .usernames import log_safe

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
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)
        self.log.info("kerbauth: ticket fetched by the server of %s", log_safe(user.name))
