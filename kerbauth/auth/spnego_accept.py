"""The SPNEGO accept itself, and the rule from a principal to a username: plain functions.

No traitlets, tornado or JupyterHub: :class:`kerbauth.auth.spnego.KerberosSPNEGO` reads
the options and calls :func:`accept_token` on its threads. python-gssapi is imported
when a token is accepted (it is the optional ``spnego`` extra).
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass

from kerbauth.core.names import InvalidUsername, check_username, printable

__all__ = [
    "Negotiated",
    "SpnegoRefused",
    "accept_token",
    "decode_token",
    "replay_cache_problem",
    "username_of",
]

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


def replay_cache_problem(environ):
    """Why MIT's replay cache (the acceptor's) cannot work in ``environ``, or "".

    Its file is ``krb5_<uid>.rcache2`` in ``KRB5RCACHEDIR`` (default /var/tmp) unless
    ``KRB5RCACHENAME`` or ``KRB5RCACHETYPE`` say otherwise; without the directory
    every token is refused.
    """
    if environ.get("KRB5RCACHENAME") or environ.get("KRB5RCACHETYPE"):
        return ""
    directory = environ.get("KRB5RCACHEDIR") or "/var/tmp"
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"KerberosSPNEGO.keytab is set, but the replay cache directory {directory!r}"
            " (KRB5RCACHEDIR) is not a directory the hub can write: every SPNEGO token"
            " would be refused"
        )
    return ""


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
