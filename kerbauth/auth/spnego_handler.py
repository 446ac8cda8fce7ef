"""The login page with SPNEGO (Negotiate): JupyterHub's LoginHandler, answering Negotiate too.

Installed at ``/hub/login`` by :meth:`kerbauth.auth.spnego.KerberosSPNEGO.get_handlers`
when ``KerberosSPNEGO.keytab`` is set:

- ``GET`` without ``Authorization: Negotiate``: ``401`` with
  ``WWW-Authenticate: Negotiate`` and the normal login form as the body (a
  browser that cannot negotiate shows it; it still POSTs as before);
- ``GET`` with a token: the token is checked off the event loop
  (:meth:`~kerbauth.auth.spnego.KerberosSPNEGO.spnego_accept`), the user is
  logged in through JupyterHub's own ``login_user`` (allowed and blocked
  users, admin, auth_state, cookies as for a form login) and redirected to
  ``next``, with the mutual-authentication token in ``WWW-Authenticate``;
- a refused token: its status (400 for a malformed token, 401 for one the
  keytab does not accept, 403 for a principal that may not log in, 503 for
  no answer in time), the form with a short message, the cause in the log.
"""

import base64

from jupyterhub.handlers.login import LoginHandler

from kerbauth.auth.spnego import NegotiatedLogin, SpnegoRefused
from kerbauth.core.names import printable

__all__ = ["SPNEGOLoginHandler"]

NOT_ALLOWED = "Your Kerberos login as {name} is not allowed on this hub."


class SPNEGOLoginHandler(LoginHandler):
    """``/hub/login``: the form, and Negotiate; see the module's docstring."""

    _spnego_error = None

    def _render(self, login_error=None, username=None, **kwargs):
        return super()._render(
            login_error=login_error or self._spnego_error, username=username, **kwargs
        )

    async def _form(self, status, message=None, negotiate=True):
        """The login page as LoginHandler's GET renders it, with ``status`` (and a message)."""
        self._spnego_error = message
        self.set_status(status)
        if negotiate:
            self.set_header("WWW-Authenticate", "Negotiate")
        await super().get()

    async def get(self):
        if self.current_user is not None or self.authenticator.auto_login:
            return await super().get()
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "negotiate":
            return await self._form(401)
        from kerbauth.auth.spnego import decode_token

        remote = self.request.remote_ip
        try:
            token = decode_token(value)
            negotiated = await self.authenticator.spnego_accept(token, self.request.host_name)
            user = await self.login_user(NegotiatedLogin(negotiated))
        except SpnegoRefused as e:
            self.log.warning(
                "kerbauth: SPNEGO login from %s refused (%d): %s", remote, e.status, e.reason
            )
            # 401 without a new challenge: the browser shows the form instead of retrying.
            return await self._form(e.status, e.message, negotiate=False)
        if user is None:
            self.log.warning(
                "kerbauth: SPNEGO login of %s from %s refused (403): not allowed"
                " (allowed_users, allowed_groups, blocked_users, or the mode's account check)",
                printable(negotiated.principal),
                remote,
            )
            message = NOT_ALLOWED.format(name=negotiated.username)
            return await self._form(403, message, negotiate=False)
        self.log.info(
            "kerbauth: %s logged in with SPNEGO as %s%s",
            printable(negotiated.principal),
            user.name,
            " (delegated ticket)" if negotiated.delegated else "",
        )
        if negotiated.token:
            reply = base64.b64encode(negotiated.token).decode("ascii")
            self.set_header("WWW-Authenticate", f"Negotiate {reply}")
        self._jupyterhub_user = user
        self.redirect(self.get_next_url(user))
