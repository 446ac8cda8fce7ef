"""SPNEGO (Negotiate) login for both authenticators: ``c.KerberosSPNEGO``.

A browser that holds a Kerberos ticket logs in without typing: ``GET
/hub/login`` answers ``401`` with ``WWW-Authenticate: Negotiate`` *and* the
normal login form, so a browser that can negotiate sends ``Authorization:
Negotiate <token>`` and one that cannot shows the form (PAM or LDAP, which
still logs in as before). The handler is :mod:`kerbauth.auth.spnego_handler`.

This module holds the options (the mixin :class:`KerberosSPNEGO`, a base of
:class:`~kerbauth.KerberosPAMAuthenticator` and
:class:`~kerbauth.KerberosLDAPAuthenticator`), and runs the accept
(:func:`~kerbauth.auth.spnego_accept.accept_token`, python-gssapi, with the
rule from a principal to a username, :func:`~kerbauth.auth.spnego_accept.username_of`)
on a small thread pool of its own, never on the event loop. What each login
mode checks of the account without a password is in
:mod:`kerbauth.auth.spnego_accounts`.

The principal-to-username rule: ``alice@REALM``, with ``REALM`` one of
``KerberosSPNEGO.realms``, is the user ``alice`` (then checked and
normalised as every kerbauth username is). A principal with an instance
(``alice/admin@REALM``) and a principal of any other realm are refused: never
``alice``.
"""

import asyncio
import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from kerbauth.auth.spnego_accept import (
    Negotiated,
    SpnegoRefused,
    accept_token,
    decode_token,
    replay_cache_problem,
    username_of,
)
from kerbauth.core.errors import ConfigError
from kerbauth.traits import Count, StringList

__all__ = [
    "KerberosSPNEGO",
    "Negotiated",
    "NegotiatedLogin",
    "SpnegoRefused",
    "accept_token",
    "decode_token",
    "username_of",
]


class NegotiatedLogin:
    """What the SPNEGO handler passes to ``login_user``: a login that a form cannot forge.

    A form POST gives the authenticator a dict of strings; only the handler
    makes one of these. ``get`` answers as a form's dict would for the keys
    JupyterHub and kerbauth read (``username`` for log lines; no ``password``).
    """

    __slots__ = ("negotiated",)

    def __init__(self, negotiated):
        self.negotiated = negotiated

    def get(self, key, default=None):
        if key == "username":
            return self.negotiated.principal
        return default

    def __bool__(self):
        return True


class KerberosSPNEGO(LoggingConfigurable):
    """SPNEGO (Negotiate) login, off unless ``keytab`` is set; see the module's docstring."""

    keytab = Unicode(
        "",
        config=True,
        help="""The hub's service keytab for SPNEGO login, e.g. ``"/etc/jupyterhub/http.keytab"``.

        It holds the key of ``HTTP/<host>@REALM``, where ``<host>`` is the name
        the browsers use to reach the hub (behind a TLS proxy: the proxy's public
        name). It must be a regular file others cannot read (0600, or 0640 for
        the hub's group): whoever reads that key can make a ticket to the hub
        in any user's name, and the hub refuses to start otherwise. Unset
        (``""``): SPNEGO is off and the login page is the form alone, as before.

        .. versionadded:: 0.2
        """,
    )

    principal = Unicode(
        "",
        config=True,
        help="""The service principal the hub accepts SPNEGO logins for.

        Unset (``""``): ``HTTP/<the host the browser asked for>``,
        any realm, i.e. any ``HTTP/`` key of ``keytab`` whose host is the
        request's host (a hub reached under two names accepts both, each with
        its own key). Set, it pins one principal, e.g.
        ``"HTTP/hub.example.org@EXAMPLE.ORG"``: tickets for any other name are
        refused.

        .. versionadded:: 0.2
        """,
    )

    realms = StringList(
        config=True,
        help="""The realms whose principals may log in with SPNEGO.

        ``alice@REALM`` with ``REALM`` listed is the user ``alice``; a
        principal of any other realm is refused (401 page with the form, the
        cause in the log), and so is one with an instance (``alice/admin``).
        Unset (empty): ``[KerberosTickets.realm]``. Example: ``["EXAMPLE.ORG",
        "AD.EXAMPLE.ORG"]`` (two realms whose users share one namespace).

        .. versionadded:: 0.2
        """,
    )

    spnego_concurrency = Count(
        2,
        minimum=1,
        config=True,
        help="""How many SPNEGO tokens are checked at once; more wait their turn.

        Each check reads the keytab and decrypts the ticket, on a thread of its
        own, within ``KerberosTickets.timeout`` seconds (waiting included:
        past it the client gets 503). Example: ``4``.

        .. versionadded:: 0.2
        """,
    )

    @default("realms")
    def _default_realms(self):
        realm = getattr(self, "realm", "")
        return [realm] if realm else []

    _spnego_pool = None
    _spnego_turns = None

    # The login mode's part (kerbauth.auth.spnego_accounts): what it checks of the
    # account without a password, and what in its configuration cannot work.
    async def spnego_login(self, handler, negotiated):
        return negotiated.username

    def spnego_config_problem(self):
        return ""

    def delegation_option(self):
        """The option by which logins can bring a delegated TGT (asked by kerbauth.hub)."""
        return "KerberosSPNEGO.keytab" if self.keytab else ""

    def check_spnego_config(self):
        """Refuse a SPNEGO configuration that cannot work (a ConfigError naming the option)."""
        if not self.keytab:
            return
        try:
            import gssapi  # noqa: F401
        except ImportError:
            raise ConfigError(
                "KerberosSPNEGO.keytab is set, but python-gssapi is not installed"
                " (pip install 'kerbauth[spnego]')"
            ) from None
        try:
            with open(self.keytab, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
        except OSError as e:
            raise ConfigError(
                f"KerberosSPNEGO.keytab {self.keytab!r} cannot be read: {e}"
            ) from None
        if not stat.S_ISREG(mode) or mode & 0o007:
            # Whoever reads the HTTP key can make a ticket to the hub in anyone's name.
            raise ConfigError(
                f"KerberosSPNEGO.keytab {self.keytab!r} must be a regular file that others"
                f" cannot read or write (mode {stat.S_IMODE(mode):04o}; use 0600 or 0640)"
            )
        rcache = replay_cache_problem(os.environ)
        if rcache:
            raise ConfigError(rcache)
        if not self.realms:
            raise ConfigError(
                "KerberosSPNEGO.realms is empty and KerberosTickets.realm is not set:"
                " no principal could log in with SPNEGO"
            )
        problem = self.spnego_config_problem()
        if problem:
            raise ConfigError(problem)

    def check_allow_config(self):
        super().check_allow_config()
        self.check_spnego_config()
        if self.keytab:
            self.log.info(
                "kerbauth: SPNEGO login on: keytab %s, principal %s, realms %s",
                self.keytab,
                self.principal or "HTTP/<the request's host>",
                ", ".join(self.realms),
            )

    def get_handlers(self, app):
        handlers = super().get_handlers(app)
        if not self.keytab:
            return handlers
        from kerbauth.auth.spnego_handler import SPNEGOLoginHandler

        return [
            (path, SPNEGOLoginHandler, *rest) if path == "/login" else (path, handler, *rest)
            for path, handler, *rest in handlers
        ]

    async def spnego_accept(self, token, host):
        """:func:`accept_token` on the SPNEGO threads, waiting included within the
        ticket timeout; a :class:`Negotiated`, or SpnegoRefused."""
        if self._spnego_pool is None:
            self._spnego_pool = ThreadPoolExecutor(
                self.spnego_concurrency, thread_name_prefix="kerbauth-spnego"
            )
            self._spnego_turns = asyncio.Semaphore(self.spnego_concurrency)
        timeout = getattr(self, "timeout", 10)

        async def turn():
            async with self._spnego_turns:
                future = self._spnego_pool.submit(
                    accept_token, token, self.keytab, self.principal, host, self.realms, self.log
                )
                return await asyncio.wrap_future(future)

        try:
            return await asyncio.wait_for(turn(), timeout)
        except TimeoutError:
            raise SpnegoRefused(
                503,
                "Your Kerberos login could not be checked in time; please try again.",
                f"no result within KerberosTickets.timeout ({timeout:g} s)",
            ) from None

    async def spnego_authenticate(self, handler, data):
        """``authenticate`` of a SPNEGO login (a :class:`NegotiatedLogin`, which each mode's
        ``authenticate`` hands here): the mode's account checks (``spnego_login``), and
        the delegated ticket into auth_state."""
        negotiated = data.negotiated
        model = await self.spnego_login(handler, negotiated)
        if model is None:
            return None
        if not isinstance(model, dict):
            model = {"name": model}
        if negotiated.delegated is not None:
            from kerbauth.hub.password_tickets import AUTH_STATE_KEY

            auth_state = dict(model.get("auth_state") or {})
            auth_state[AUTH_STATE_KEY] = base64.b64encode(negotiated.delegated).decode("ascii")
            model["auth_state"] = auth_state
        return model
