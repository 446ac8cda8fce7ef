"""A filter the user must match after the bind (ldapauthenticator's ``search_filter``).

Plain functions, no traitlets: :func:`check_login_filter` is the start-up check
of ``login_search_filter`` (the option, in
:mod:`kerbauth.auth.ldap.login_filter_options`; called by
:func:`kerbauth.auth.ldap.settings.check`), :func:`legacy_search_filter` reads
ldapauthenticator's ``search_filter`` onto it (for :mod:`kerbauth.auth.ldap.legacy`).
The search itself runs in the bind path of
:func:`kerbauth.auth.ldap.directory.check_login`, on the connection bound as the
user, within the login's deadline and failover.
"""

from kerbauth.auth.ldap.queries import check_filter_template
from kerbauth.core.errors import ConfigError

__all__ = ["USED_BY_SEARCH_FILTER", "check_login_filter", "legacy_search_filter"]

NAME = "KerberosLDAPAuthenticator"
OLD = "LDAPAuthenticator"

# What ldapauthenticator's search_filter uses, with lookup_dn or without.
USED_BY_SEARCH_FILTER = ("user_search_base", "user_attribute")


def check_login_filter(options):
    """Refuse a ``login_search_filter`` that cannot work (ConfigError naming it)."""
    template = getattr(options, "login_search_filter", "")
    if not template:
        return
    if not options.user_search_base:
        raise ConfigError(
            f"{NAME}.login_search_filter is searched under {NAME}.user_search_base,"
            ' which is empty: set it (e.g. "ou=people,dc=corp,dc=example")'
        )
    try:
        check_filter_template(template, user_attribute=options.user_attribute, username="x")
    except ValueError as e:
        raise ConfigError(f"{NAME}.login_search_filter: {e}") from None


def legacy_search_filter(section, is_set):
    """ldapauthenticator's ``search_filter`` (in ``section``, a mapping) as
    ``login_search_filter``: ``{userattr}`` written ``{user_attribute}``.

    Its ``{username}`` is ldapauthenticator's looked-up name: with ``lookup_dn``,
    the entry's ``lookup_dn_user_dn_attribute``. kerbauth fills it with that
    attribute only as ``hub_username_attribute`` (``use_lookup_dn_username``), or
    when it is ``user_attribute`` (the login name); otherwise refused, naming both.
    ``is_set(section, option)``: whether the option is set to something acted on.
    """
    search_filter = section["search_filter"]
    for option in USED_BY_SEARCH_FILTER:
        used = option == "user_search_base" or "{userattr}" in search_filter
        if used and not is_set(section, option):
            raise ConfigError(
                f"{OLD}.search_filter is searched with {OLD}.{option}, which is not set: set it"
            )
    attribute = section.get("lookup_dn_user_dn_attribute") or ""
    if (
        section.get("lookup_dn")
        and "{username}" in search_filter
        and not section.get("use_lookup_dn_username")
        and attribute.lower() != str(section.get("user_attribute") or "").lower()
    ):
        raise ConfigError(
            f"{OLD}.search_filter: its {{username}} is the entry's {attribute!r}"
            f" ({OLD}.lookup_dn_user_dn_attribute), which kerbauth reads for it only with"
            f" {OLD}.use_lookup_dn_username = True: set that, or write the filter for the"
            f" name the user logs in with as {NAME}.login_search_filter"
        )
    return search_filter.replace("{userattr}", "{user_attribute}")
