"""The search account's bind with Kerberos (SASL/GSSAPI): a ticket from the hub's keytab.

ldap3's GSSAPI mechanism does the SASL exchange (it needs the ``gssapi``
package); here the initiator's credentials are named by a credential store (a
client keytab and a MEMORY cache of this process), so nothing in the hub's
environment is read or changed. Used by :mod:`kerbauth.auth.ldap.directory`
for ``search_bind_mechanism = "gssapi"``; checked at start-up by
:mod:`kerbauth.auth.ldap.settings`.
"""

import secrets
from dataclasses import dataclass, field

import ldap3
from ldap3.core import exceptions as ldap_errors

from kerbauth.auth.ldap.connection import ServerFailed, describe

__all__ = ["KerberosBind", "check_kerberos_bind", "kerberos_bind"]


@dataclass(frozen=True)
class KerberosBind:
    """Bind as ``principal`` with SASL/GSSAPI, its key in ``keytab``.

    Its tickets live in ``ccache``, a MEMORY cache of this process made for
    these settings, handed to GSSAPI as a credential store with the client
    keytab: nothing in the process's environment is read or changed, and the
    ticket is got once and used by every bind until it nears its end, when
    the Kerberos library gets a new one from the keytab.
    """

    principal: str
    keytab: str
    ccache: str = field(
        default_factory=lambda: f"MEMORY:kerbauth-ldap-search-{secrets.token_hex(8)}"
    )

    def __str__(self):
        return self.principal

    @property
    def store(self):
        return {"client_keytab": self.keytab, "ccache": self.ccache}


def _gssapi():
    """The ``gssapi`` module as ldap3's GSSAPI mechanism imports it (ImportError without it)."""
    try:
        from ldap3.protocol.sasl import kerberos
    except ldap_errors.LDAPPackageUnavailableError:
        raise ImportError("the Python package gssapi is not installed") from None
    return kerberos.gssapi


def check_kerberos_bind(bind):
    """Get a ticket for ``bind.principal`` from its keytab, as the first bind will.

    Raises ``ImportError`` without the gssapi package, ``ValueError`` with the
    Kerberos library's message when no ticket can be had (no such principal
    in the keytab, an unreadable keytab, a KDC that refuses the key).
    """
    gssapi = _gssapi()
    # A cache of its own: the check's ticket is not the one the binds use.
    store = {"client_keytab": bind.keytab, "ccache": KerberosBind("", "").ccache}
    try:
        name = gssapi.Name(bind.principal, gssapi.NameType.kerberos_principal)
        gssapi.Credentials(name=name, usage="initiate", store=store).inquire()
    except gssapi.exceptions.GSSError as e:
        raise ValueError(_gss_message(e)) from None


def _gss_message(error):
    try:
        return error.gen_message()
    except Exception:  # noqa: BLE001 - a message is all that is wanted
        return str(error)


def kerberos_bind(conn, bind):
    """SASL/GSSAPI bind of ``conn`` as ``bind.principal``; True when the server accepts it.

    A Kerberos failure (no ticket for the server's ``ldap/<host>``, a KDC
    that cannot be reached) raises :class:`ServerFailed` with the library's
    message: another server may be known to the KDC.
    """
    gssapi = _gssapi()
    # ldap3 builds the initiator's credentials from the connection's user and
    # credential store (and would take a DN left by a simple bind as the name).
    conn.user = bind.principal
    conn.cred_store = bind.store
    conn.sasl_credentials = None
    try:
        ok = conn.rebind(
            authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS, read_server_info=False
        )
    except gssapi.exceptions.GSSError as e:
        raise ServerFailed(
            f"the Kerberos (GSSAPI) bind as {bind.principal} failed: {_gss_message(e)}"
        ) from e
    except ldap_errors.LDAPBindError as e:
        raise ServerFailed(describe(e)) from e
    return bool(ok)
