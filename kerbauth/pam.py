"""PAM login plus a Kerberos ticket at spawn (``kerberos-pam``).

Built on JupyterHub's PAMAuthenticator, so its options (``service``,
``check_account``, ``admin_groups``, ``allowed_groups``, ``open_sessions``,
``pam_normalize_username``, ``executor_threads``) keep their meaning. What
changes is the login itself:

- the typed name is checked against kerbauth's username rules and an empty
  or blank password is refused before PAM sees either;
- PAM runs on the authenticator's thread pool with a deadline, so a slow
  module (pam_sss or pam_krb5 waiting on a KDC) costs the user a clear error,
  never the hub its event loop;
- authentication and the account check run in one PAM transaction, and
  ``pam_setcred`` is never called. pamela calls it by default, and with
  pam_krb5 in the stack that writes the user's ticket into the *hub's*
  default cache (``/tmp/krb5cc_0``) and hands that file to the user. The
  server's ticket comes from :class:`~kerbauth.KerberosTickets` instead.
"""

import asyncio
import grp

import pamela
from jupyterhub.auth import PAMAuthenticator
from tornado import web
from traitlets import Float, validate

from .kerberos_tickets import KerberosTickets
from .usernames import InvalidUsername, check_username, log_safe

__all__ = ["KerberosPAMAuthenticator"]

TIMEOUT_MESSAGE = (
    "The login service did not answer in time, so your password could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)


class KerberosPAMAuthenticator(KerberosTickets, PAMAuthenticator):
    """Log in with the system password through PAM; each server gets the user's Kerberos ticket."""

    pam_timeout = Float(
        30.0,
        config=True,
        help="""Seconds one PAM login (authentication and account check) may take.

        Past this, the user gets a "try again" error (503) and the log says
        which PAM service was slow. PAM cannot be interrupted: the call goes
        on in its thread, and ``PAMAuthenticator.executor_threads`` bounds
        how many such calls run at once. Default: 30.

        .. versionadded:: 0.1
        """,
    )

    @validate("pam_timeout")
    def _check_pam_timeout(self, proposal):
        if proposal.value <= 0:
            raise ValueError(
                f"KerberosPAMAuthenticator.pam_timeout must be positive, not {proposal.value!r}"
            )
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # JupyterHub answers every login with a 500 while admin_groups names
        # a group this host cannot resolve; say so once, at startup.
        for option in ("admin_groups", "allowed_groups"):
            for group in sorted(getattr(self, option)):
                try:
                    grp.getgrnam(group)
                except KeyError:
                    self.log.warning(
                        "kerbauth: PAMAuthenticator.%s names %r, which is not a group on this"
                        " host (check the name, or nsswitch/sssd)",
                        option,
                        group,
                    )

    def _pam_login_sync(self, username, password):
        """One PAM transaction: authenticate, then (if ``check_account``) the account check.

        ``resetcred=0``: no ``pam_setcred`` (see the module's docstring).
        """
        pamela.authenticate(
            username,
            password,
            service=self.service,
            encoding=self.encoding,
            resetcred=0,
            check=self.check_account,
        )

    async def authenticate(self, handler, data):
        """Check the name and password with PAM, off the event loop; the name, or None."""
        data = data or {}
        username = data.get("username") or ""
        password = data.get("password") or ""
        try:
            check_username(username)
        except InvalidUsername as e:
            self.log.warning("kerbauth: PAM login refused: %s", e)
            return None
        if not password.strip():
            self.log.warning("kerbauth: PAM login of %s refused: empty password", username)
            return None
        if "otp" in data:
            password = (password, data["otp"])
        remote = handler.request.remote_ip if handler is not None else "-"
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, self._pam_login_sync, username, password)
        try:
            await asyncio.wait_for(call, self.pam_timeout)
        except asyncio.TimeoutError:
            self.log.error(
                "kerbauth: PAM service %r did not answer the login of %s within %s s"
                " (KerberosPAMAuthenticator.pam_timeout)",
                self.service,
                username,
                self.pam_timeout,
            )
            raise web.HTTPError(503, TIMEOUT_MESSAGE) from None
        except pamela.PAMError as e:
            self.log.warning("kerbauth: PAM refused the login of %s@%s: %s", username, remote, e)
            return None
        self.log.info("kerbauth: %s logged in through PAM service %r", username, self.service)
        return username

    def normalize_username(self, username):
        # pam_normalize_username looks the name up in NSS and raises KeyError
        # for one with no account (yet), which stops the hub at startup when
        # allowed_users or admin_users names it. Keep such a name as written:
        # PAM refuses its logins until the account exists.
        try:
            return super().normalize_username(username)
        except KeyError:
            self.log.warning("kerbauth: no local account %s", log_safe(username))
            return username
