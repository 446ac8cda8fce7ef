"""The option of a filter the user must match after the bind: ``login_search_filter``.

:class:`LoginFilterOptions` is a mixin of :class:`~kerbauth.KerberosLDAPAuthenticator`
(written ``c.KerberosLDAPAuthenticator.login_search_filter``), kept out of
:mod:`kerbauth.auth.ldap.options` (at its line budget); its check and the search are in
:mod:`kerbauth.auth.ldap.login_filter` and :mod:`kerbauth.auth.ldap.directory`.
"""

from traitlets import Unicode, observe
from traitlets.config import LoggingConfigurable

__all__ = ["LoginFilterOptions"]


class LoginFilterOptions(LoggingConfigurable):
    """The filter a user must match once their password is accepted."""

    login_search_filter = Unicode(
        "",
        config=True,
        help="""
        A filter the user must match once their password is accepted:
        right after the bind, as the user, ``user_search_base`` is searched
        (the whole subtree) with it, and the login is refused unless exactly
        one entry is found. ``{user_attribute}`` is replaced by
        ``user_attribute``; ``{username}`` by the user's name, filter-escaped:
        the name they logged in with, or with ``hub_username_attribute`` that
        attribute's value. Works with ``bind_dn_template`` and with
        ``lookup_dn``; needs ``user_search_base``. The group refresh
        (``refresh_user``) searches it again, as the search account, and asks
        a user it no longer finds to log in again. Empty (default): no such
        check. ldapauthenticator's ``search_filter`` is read onto it.
        Example: ``"(&({user_attribute}={username})(employeeType=Captain))"``.

        .. versionadded:: 0.2
        """,
    )

    @observe("login_search_filter")
    def _login_filter_changed(self, change):
        self._settings = None  # LDAPOptions builds the settings again when next asked
