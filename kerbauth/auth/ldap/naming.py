"""The option that names hub users by an attribute of their LDAP entry.

A mixin of :class:`~kerbauth.KerberosLDAPAuthenticator` (through
:class:`~kerbauth.auth.ldap.options.LDAPOptions`); ldapauthenticator's
``use_lookup_dn_username`` is read onto it (:mod:`kerbauth.auth.ldap.legacy`).
"""

from traitlets import Unicode, observe
from traitlets.config import LoggingConfigurable

__all__ = ["NamingOptions"]


class NamingOptions(LoggingConfigurable):
    """The option that names hub users by an attribute of their entry (a mixin of
    :class:`~kerbauth.KerberosLDAPAuthenticator`; ldapauthenticator's
    ``use_lookup_dn_username`` is read onto it)."""

    hub_username_attribute = Unicode(
        "",
        config=True,
        help="""
        Name hub users by this attribute of their LDAP entry instead of the
        name they typed: log in with one attribute (``user_attribute``, e.g.
        ``mail`` or ``sAMAccountName``) and be named by another (e.g.
        ``uid``). The entry must hold exactly one value of it; it is
        lowercased and must then be a valid kerbauth username (letters,
        digits, ``.``, ``_``, ``-``): a value that is not is refused, never
        changed. Empty (default): the hub name is the typed name.
        ``Authenticator.username_map`` is not applied to it. Example: ``"uid"``.

        .. versionadded:: 0.2
        """,
    )

    @observe("hub_username_attribute")
    def _naming_changed(self, change):
        self._settings = None  # the attribute is read at login: settings built again
