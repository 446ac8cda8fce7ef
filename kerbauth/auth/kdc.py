"""The ``kerberos-kdc`` login mode: passwords checked by the KDC itself.

For a realm that is neither PAM's nor LDAP's: users know their Kerberos
password and nothing else answers for it. A login is

1. the name checked (:mod:`kerbauth.core.names`) and normalised as JupyterHub
   will, so the principal checked is the hub user's; an empty password is
   refused before any KDC is asked;
2. an AS exchange with the KDC for ``KerberosTickets.principal_template``,
   asking a renewable TGT (``renew_lifetime``);
3. the KDC's answer verified against the hub's own service keytab
   (``verify_keytab``, ``verify_principal``): MIT's
   ``krb5_verify_init_creds`` with ``ap_req_nofail``, so a spoofed KDC,
   which can answer for any user with a password of its choosing, cannot log
   anyone in (see :mod:`kerbauth.core.verify`).

Both run in one krb5 worker request of the hub's own uid (it holds the
service key), on the ticket threads, within ``KerberosTickets.timeout``, and
through the login limits (:mod:`kerbauth.auth.limits`). The TGT obtained *is*
the user's ticket: it goes into auth_state, and from there the password
ticket machinery (:mod:`kerbauth.hub.password_tickets`) writes it at spawn,
renews it until its renew-until time and asks for a new login after. So this
mode is ``password_tickets`` always on: ``keytab_template`` has no meaning
here and is refused, and so is the kinit backend (kinit cannot verify).

What the user is told: a wrong password and an unknown principal are the
same "invalid username or password" (the log says which). A KDC that does not
answer in time, or cannot be reached, is a 503 saying so. An answer that cannot be verified is a 503
asking the user to contact their administrator, the log saying the KDC could
not be verified; that tells a guesser nothing a successful login would not
(the password was right), and a spoofed KDC's operator knows it already.
"""

import asyncio
import base64
import socket

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Bool, Unicode, default

from kerbauth.auth.limits import LoginLimits, login_source
from kerbauth.core import tickets
from kerbauth.core.backends.libkrb5 import krb5_available
from kerbauth.core.errors import ConfigError, TicketError
from kerbauth.core.names import InvalidUsername, check_username, log_safe
from kerbauth.core.verify import KDCNotVerified
from kerbauth.hub.tickets import AUTH_STATE_KEY, KerberosTickets

__all__ = ["KerberosKDCAuthenticator"]

OPTION = "KerberosKDCAuthenticator"
TIMEOUT_MESSAGE = (
    "The Kerberos server did not answer in time, so your password could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)
UNREACHABLE_MESSAGE = (
    "The Kerberos server could not be reached, so your password could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)
NOT_VERIFIED_MESSAGE = (
    "The Kerberos server's answer could not be verified, so you were not logged in."
    " Please contact your administrator."
)
FAILED_MESSAGE = (
    "Your password could not be checked: the Kerberos server answered with an error."
    " Please contact your administrator."
)
# Causes that mean "this name and password do not log in" (told to the user as such).
REFUSED = ("password", "principal")


class KerberosKDCAuthenticator(LoginLimits, KerberosTickets, Authenticator):
    """Log in with the Kerberos password, checked by the KDC and verified with the hub's
    service keytab; the TGT of the login is the user's ticket."""

    verify_keytab = Unicode(
        "/etc/krb5.keytab",
        config=True,
        help="""The hub's service keytab, holding the key of ``verify_principal``.

        Every login's answer from the KDC is verified with it (a spoofed KDC
        does not know that key). It must be a regular file owned by root or by
        the hub's user, mode 0600 or 0400 (0640/0440 for a group of the hub's
        own); as root a symlink is refused. Missing, unreadable or without
        the principal's key: the hub refuses to start. It is read again at
        every login, so a new key version is picked up without a restart.
        Example: ``"/etc/jupyterhub/hub.keytab"``.

        .. versionadded:: 0.2
        """,
    )

    verify_principal = Unicode(
        "",
        config=True,
        help="""The service principal whose key in ``verify_keytab`` verifies the KDC.

        Unset (``""``): ``host/<this host's fully qualified name>@<realm>``
        (Python's ``socket.getfqdn()`` and ``KerberosTickets.realm``), the
        principal of a host keytab made by ``ktadd host/$(hostname -f)``;
        the hub logs the principal it uses. Any service principal of the
        realm works, as long as the keytab holds its current key. A principal
        without ``@`` gets ``@<realm>``. Example:
        ``"HTTP/hub.example.org@EXAMPLE.ORG"``.

        .. versionadded:: 0.2
        """,
    )

    password_tickets = Bool(
        True,
        config=True,
        help="""Always True in the ``kerberos-kdc`` mode (the login's TGT is the user's
        ticket); setting it False is refused at start-up. Example: leave it unset.

        .. versionadded:: 0.2
        """,
    )

    @default("enable_auth_state")
    def _default_auth_state(self):
        return True

    _service_checked = False

    @property
    def verify_principal_name(self):
        """The principal :attr:`verify_principal` names (its default filled in)."""
        name = self.verify_principal or f"host/{socket.getfqdn()}"
        return name if "@" in name else f"{name}@{self.realm}"

    def check_config(self):
        """The mode's rules, then :class:`KerberosTickets`'s; a ConfigError naming the option."""
        if not self.password_tickets:
            raise ConfigError(
                f"{OPTION}.password_tickets cannot be False: in the kerberos-kdc mode the"
                " ticket of the login is the user's ticket (remove the setting)"
            )
        if self.keytab_template:
            raise ConfigError(
                f"KerberosTickets.keytab_template is set, but the kerberos-kdc mode takes"
                f" every user's ticket from their login, never from a keytab: remove it (the"
                f" hub's own keytab is {OPTION}.verify_keytab)"
            )
        if self.backend == "kinit" or not krb5_available():
            raise ConfigError(
                f"the kerberos-kdc mode needs the krb5 backend (KerberosTickets.backend ="
                f' "krb5" or unset) and the krb5 bindings: pip install kerbauth[krb5]'
                f" ({OPTION} verifies the KDC through libkrb5, which kinit cannot)"
            )
        super().check_config()

    def start(self):
        """Start as :class:`KerberosTickets` does, then check the service keytab once:
        a keytab that cannot verify would refuse every login, so the hub refuses to start."""
        super().start()
        if not self._service_checked:
            try:
                tickets.check_service_keytab(
                    self.ticket_backend,
                    keytab=self.verify_keytab,
                    server=self.verify_principal_name,
                    timeout=self.timeout,
                )
            except TicketError as e:
                raise ConfigError(
                    f"{OPTION}.verify_keytab {self.verify_keytab!r} cannot verify the KDC's"
                    f" answers as {self.verify_principal_name} ({OPTION}.verify_principal):"
                    f" {e.detail}"
                ) from None
            self._service_checked = True
            self.log.info(
                "kerbauth: kerberos-kdc logins verified with the key of %s from %s",
                self.verify_principal_name,
                self.verify_keytab,
            )
        return self

    def _kdc_login_sync(self, username, password):
        """The AS exchange and its verification, on a ticket thread: the cache bytes."""
        principal, _, _ = self._ticket_paths(username)
        data = self._timed(
            "login",
            lambda: tickets.verified_password_ticket(
                self.ticket_backend,
                principal=principal,
                password=password,
                renew_life=self.renew_lifetime,
                keytab=self.verify_keytab,
                server=self.verify_principal_name,
                timeout=self.timeout,
            ),
        )
        # Kept by the hub from auth_state (kerbauth.hub.password_tickets), which also
        # gives it to a running server at once.
        return data

    async def authenticate(self, handler, data):
        """Check the name and password with the KDC, verified; the user model, or None."""
        data = data or {}
        typed = data.get("username") or ""
        password = data.get("password") or ""
        try:
            check_username(typed)
            username = check_username(self.normalize_username(typed))
        except InvalidUsername as e:
            self.log.warning("kerbauth: kerberos-kdc login refused: %s", e)
            return None
        if not password.strip():
            self.log.warning(
                "kerbauth: kerberos-kdc login of %s refused: empty password (the KDC was"
                " not asked)",
                log_safe(username),
            )
            return None
        self.start()
        remote = login_source(handler.request) if handler is not None else "-"
        attempt = await self.acquire_login(handler, username)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._ticket_executor, self._kdc_login_sync, username, password)

        def release_when_done(done):
            if not done.cancelled():
                done.exception()  # retrieved: the login has been answered already
            attempt.release()

        try:
            # The worker is killed at KerberosTickets.timeout; this bounds the wait
            # for a ticket thread too. shield: on timeout the thread goes on, and so
            # does its hold on the login limits (released when it is done).
            blob = await asyncio.wait_for(asyncio.shield(call), 2 * self.timeout + 5)
        except TicketError as e:
            attempt.release()
            return self._refused(username, remote, e)
        except asyncio.TimeoutError:
            call.add_done_callback(release_when_done)
            self.log.error(
                "kerbauth: the kerberos-kdc login of %s waited %s s for a ticket thread",
                log_safe(username),
                2 * self.timeout + 5,
            )
            raise web.HTTPError(503, TIMEOUT_MESSAGE) from None
        except BaseException:
            call.add_done_callback(release_when_done)
            raise
        attempt.succeeded()
        attempt.release()
        self.log.info("kerbauth: %s logged in with the KDC (verified)", username)
        state = {AUTH_STATE_KEY: base64.b64encode(blob).decode("ascii")}
        return {"name": username, "auth_state": state}

    def _refused(self, username, remote, error):
        """What a failed KDC login answers (None or an HTTPError), logged with its cause."""
        if isinstance(error, KDCNotVerified):
            self.log.error(
                "kerbauth: kerberos-kdc login of %s@%s refused: %s (a spoofed KDC, or %s"
                " holds a key of %s the KDC no longer has)",
                log_safe(username),
                remote,
                error.detail,
                self.verify_keytab,
                self.verify_principal_name,
            )
            raise web.HTTPError(503, NOT_VERIFIED_MESSAGE)
        if error.cause in REFUSED:
            self.log.warning(
                "kerbauth: kerberos-kdc login of %s@%s refused (%s): %s",
                log_safe(username),
                remote,
                "wrong password" if error.cause == "password" else "unknown principal",
                error.detail,
            )
            return None
        self.log.error(
            "kerbauth: kerberos-kdc login of %s@%s failed (%s): %s; see"
            " KerberosTickets.timeout and krb5.conf",
            log_safe(username),
            remote,
            error.cause,
            error.detail,
        )
        if error.cause == "timeout":
            raise web.HTTPError(503, TIMEOUT_MESSAGE)
        if error.cause == "kdc_unreachable":
            raise web.HTTPError(503, UNREACHABLE_MESSAGE)
        raise web.HTTPError(503, FAILED_MESSAGE)
