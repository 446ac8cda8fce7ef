"""SPNEGO (Negotiate) login for both authenticators: ``c.KerberosSPNEGO``.

A browser that holds a Kerberos ticket logs in without typing: ``GET
/hub/login`` answers ``401`` with ``WWW-Authenticate: Negotiate`` *and* the
normal login form, so a browser that can negotiate sends ``Authorization:
Negotiate <token>`` and one that cannot shows the form (PAM or LDAP, which
still logs in as before). The handler is :mod:`kerbauth.auth.spnego_handler`.

This module holds the options (the mixin :class:`KerberosSPNEGO`, a base of
:class:`~kerbauth.KerberosPAMAuthenticator` and
:class:`~kerbauth.KerberosLDAPAuthenticator`), the rule from a principal to a
username (:func:`username_of`) and the accept itself (:func:`accept_token`,
python-gssapi, run on a small thread pool of its own, never on the event
loop). What each login mode checks of the account without a password is in
:mod:`kerbauth.auth.spnego_accounts`.

The principal-to-username rule: ``alice@REALM``, with ``REALM`` one of
``KerberosSPNEGO.realms``, is the user ``alice`` (then checked and
normalised as every kerbauth username is). A principal with an instance
(``alice/admin@REALM``) and a principal of any other realm are refused: never
``alice``.
"""

import asyncio
import base64
import binascii
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from kerbauth.core.errors import ConfigError
from kerbauth.core.names import InvalidUsername, check_username, printable
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

# The largest token read. A Kerberos AP-REQ with a PAC from Active Directory can
# be 12 KB and more (users in many groups); tornado refuses headers past 64 KB.
MAX_TOKEN_BYTES = 48 * 1024

# A host name as the acceptor name is built from it (HTTP@<host>): DNS labels.
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*")

TRY_THE_FORM = " Log in with your username and password below."


@dataclass(frozen=True)
class Negotiated:
    """An accepted SPNEGO login.

    ``principal``: the client's principal (``alice@REALM``); ``username`` the
    name the rule made of it; ``delegated`` the FILE-cache bytes of the TGT
    the client delegated (None without delegation); ``token`` the
    mutual-authentication token for ``WWW-Authenticate: Negotiate <base64>``.
    """

    principal: str
    username: str
    delegated: bytes | None
    token: bytes | None


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


class SpnegoRefused(Exception):
    """A refused SPNEGO login: ``status`` and ``message`` for the user, ``reason`` for the log."""

    def __init__(self, status, message, reason):
        self.status, self.message, self.reason = status, message, reason
        super().__init__(reason)


def decode_token(value):
    """The bytes of the token in ``Authorization: Negotiate <value>``; SpnegoRefused(400)."""
    value = value.strip()
    if not value:
        raise SpnegoRefused(400, "Your browser sent an empty Negotiate token.", "an empty token")
    if len(value) > MAX_TOKEN_BYTES * 4 // 3 + 4:
        raise SpnegoRefused(
            400, "Your browser sent a Negotiate token that is too long.", f"{len(value)} chars"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SpnegoRefused(
            400, "Your browser sent a Negotiate token that is not valid.", "not base64"
        ) from None


def username_of(principal, realms):
    """The username of ``principal`` (``alice@REALM``, REALM in ``realms``); SpnegoRefused(403).

    An instance (``alice/admin``), a realm not in ``realms``, an escaped
    character (MIT writes ``\\@`` and ``\\/`` inside a component) or a name
    that is not a valid kerbauth username is refused.
    """
    shown = printable(principal)
    name, at, realm = principal.rpartition("@")
    if not at or "\\" in principal:
        raise SpnegoRefused(
            403, "Your Kerberos principal cannot log in here.", f"unusable principal {shown!r}"
        )
    if realm not in realms:
        raise SpnegoRefused(
            403,
            f"Kerberos principals of the realm {printable(realm)} cannot log in here.",
            f"{shown}: realm {printable(realm)!r} is not in KerberosSPNEGO.realms"
            f" ({', '.join(realms)})",
        )
    if "/" in name:
        raise SpnegoRefused(
            403,
            f"The Kerberos principal {shown} has an instance and cannot log in here;"
            " use your own principal.",
            f"{shown} has an instance ({printable(name.partition('/')[2])!r}): only"
            " user@REALM principals map to a username",
        )
    try:
        return check_username(name)
    except InvalidUsername as e:
        raise SpnegoRefused(
            403, "Your Kerberos principal cannot log in here.", f"{shown}: {e}"
        ) from None


def _acceptor_name(gssapi, principal, host):
    """The gssapi.Name the hub accepts as: the pinned ``principal``, or ``HTTP@host``."""
    if principal:
        return gssapi.Name(principal, gssapi.NameType.kerberos_principal)
    if not _HOST.fullmatch(host or ""):
        raise SpnegoRefused(400, "This address cannot be used for Negotiate.", f"host {host!r}")
    return gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service)


def _delegated_bytes(context, principal, log):
    """The delegated TGT as FILE-cache bytes, or None (no delegation, or not available yet)."""
    creds = context.delegated_creds
    if creds is None:
        return None
    try:
        from kerbauth.core.delegated import delegated_ccache
    except ImportError:
        return None
    try:
        return delegated_ccache(creds, principal)
    except Exception as e:  # noqa: BLE001 - the login goes on without the ticket
        log.warning(
            "kerbauth: SPNEGO login of %s: its delegated ticket could not be kept: %s",
            printable(principal),
            printable(e),
        )
        return None


def accept_token(token, keytab, principal, host, realms, log):
    """Accept one SPNEGO ``token`` (blocking: call it on a thread); a :class:`Negotiated`.

    The acceptor's credentials come from ``keytab``: for the pinned
    ``principal``, or for ``HTTP/<host>`` (any realm) when it is empty.
    The exchange must complete in one step (Kerberos does); a token that is
    not one, does not decrypt with the keytab, or was seen before (the
    replay cache) is refused with 401.
    """
    import gssapi

    name = _acceptor_name(gssapi, principal, host)
    try:
        creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": keytab})
    except gssapi.exceptions.GSSError as e:
        raise SpnegoRefused(
            401,
            "This hub cannot accept Kerberos logins for this address." + TRY_THE_FORM,
            f"no key for {printable(name)} in {keytab}: {printable(e)}",
        ) from None
    context = gssapi.SecurityContext(creds=creds, usage="accept")
    try:
        reply = context.step(token)
        # A failure with an error token for the client (SPNEGO's reject) is raised by
        # python-gssapi at the next use of the context, here.
        complete = context.complete
    except gssapi.exceptions.GSSError as e:
        raise SpnegoRefused(
            401,
            "Your Kerberos ticket was not accepted." + TRY_THE_FORM,
            f"token refused: {printable(e)}",
        ) from None
    if not complete:
        raise SpnegoRefused(
            401,
            "Your browser did not offer a Kerberos ticket." + TRY_THE_FORM,
            "the exchange did not complete in one step (not a Kerberos token?)",
        )
    client = str(context.initiator_name)
    username = username_of(client, realms)
    return Negotiated(client, username, _delegated_bytes(context, client, log), reply or None)


class KerberosSPNEGO(LoggingConfigurable):
    """SPNEGO (Negotiate) login, off unless ``keytab`` is set; see the module's docstring."""

    keytab = Unicode(
        "",
        config=True,
        help="""The hub's service keytab for SPNEGO login, e.g. ``"/etc/jupyterhub/http.keytab"``.

        It holds the key of ``HTTP/<host>@REALM``, where ``<host>`` is the name
        the browsers use to reach the hub (behind a TLS proxy: the proxy's public
        name). Readable by the hub only. Unset (``""``): SPNEGO is off and the
        login page is the form alone, as before.

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
            with open(self.keytab, "rb"):
                pass
        except OSError as e:
            raise ConfigError(
                f"KerberosSPNEGO.keytab {self.keytab!r} cannot be read: {e}"
            ) from None
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
