"""The LDAP login's options for TLS client control and the search account's Kerberos bind.

:class:`TlsAndSaslOptions` is a mixin of :class:`~kerbauth.KerberosLDAPAuthenticator`
next to :class:`~kerbauth.auth.ldap.options.LDAPOptions` (its options are written
``c.KerberosLDAPAuthenticator.*`` too); the rules between
them are checked at start-up by :func:`kerbauth.auth.ldap.settings.check`, and they
are applied in :mod:`kerbauth.auth.ldap.connection` (the TLS context, the SASL bind).
"""

from traitlets import Unicode, observe
from traitlets.config import LoggingConfigurable

from kerbauth.auth.ldap.tls import TLS_VERSIONS
from kerbauth.traits import Choice

__all__ = ["TlsAndSaslOptions", "SEARCH_BIND_MECHANISMS"]

SEARCH_BIND_MECHANISMS = ("simple", "gssapi")
_OPTIONS = (
    "tls_minimum_version",
    "tls_ciphers",
    "tls_client_cert",
    "tls_client_key",
    "search_bind_mechanism",
    "search_bind_principal",
    "search_bind_keytab",
)


class TlsAndSaslOptions(LoggingConfigurable):
    """TLS versions, ciphers, a client certificate; the search bind's mechanism."""

    tls_minimum_version = Choice(
        tuple(TLS_VERSIONS),
        default_value="1.2",
        config=True,
        help="""
        The oldest TLS version the hub accepts from an LDAP server (StartTLS
        and LDAPS): ``"1.2"`` or ``"1.3"``. A server that offers only older
        versions fails the connection ("TLS failed: ...") and the next server
        is asked. Example: ``"1.3"``.

        .. versionadded:: 0.2
        """,
    )
    tls_ciphers = Unicode(
        "",
        config=True,
        help="""
        The TLS 1.2 cipher suites the hub offers, as an OpenSSL cipher
        string; empty: Python's defaults. Checked at start-up (a string that
        selects no cipher is refused). TLS 1.3 suites cannot be chosen this
        way, so this cannot be combined with ``tls_minimum_version = "1.3"``.
        Example: ``"ECDHE+AESGCM:!SHA1"``.

        .. versionadded:: 0.2
        """,
    )
    tls_client_cert = Unicode(
        "",
        config=True,
        help="""
        PEM file of the certificate (and chain) the hub shows LDAP servers
        that ask for one (OpenLDAP's ``TLSVerifyClient demand``); empty: none.
        Its key is ``tls_client_key``, or in this file when that is empty.
        Example: ``"/etc/jupyterhub/ldap-client.pem"``.

        .. versionadded:: 0.2
        """,
    )
    tls_client_key = Unicode(
        "",
        config=True,
        help="""
        PEM file of the private key of ``tls_client_cert``, not protected by a
        passphrase (the hub cannot ask for one); readable by the hub only.
        Example: ``"/etc/jupyterhub/ldap-client.key"``.

        .. versionadded:: 0.2
        """,
    )
    search_bind_mechanism = Choice(
        SEARCH_BIND_MECHANISMS,
        default_value="simple",
        config=True,
        help="""
        How the search account binds. ``"simple"``: ``search_bind_dn`` with
        ``search_bind_password`` (anonymously when both are empty).
        ``"gssapi"``: SASL/GSSAPI as ``search_bind_principal`` with its key in
        ``search_bind_keytab``, so the config holds no password; the directory
        maps the principal to an entry (OpenLDAP: ``olcAuthzRegexp``) and the
        service ticket asked for is ``ldap/<host of server_address>``. Needs the
        Python package ``gssapi``. Example: ``"gssapi"``.

        .. versionadded:: 0.2
        """,
    )
    search_bind_principal = Unicode(
        "",
        config=True,
        help="""
        The Kerberos principal the search account binds as with
        ``search_bind_mechanism = "gssapi"``; without a realm, the default
        realm's. Example: ``"jupyterhub/hub.corp.example@CORP.EXAMPLE"``.

        .. versionadded:: 0.2
        """,
    )
    search_bind_keytab = Unicode(
        "",
        config=True,
        help="""
        The keytab holding ``search_bind_principal``'s key, read by the hub
        (``search_bind_mechanism = "gssapi"``). Its tickets are kept in a
        memory cache of the hub's own: nothing in the hub's environment
        (``KRB5CCNAME``, ``KRB5_CLIENT_KTNAME``) is changed. Checked at
        start-up by getting a ticket with it. Example:
        ``"/etc/jupyterhub/ldap-search.keytab"``.

        .. versionadded:: 0.2
        """,
    )

    @observe(*_OPTIONS)
    def _tls_or_sasl_option_changed(self, change):
        # LDAPOptions keeps the settings built from the options until one changes.
        self._settings = None
