"""What the directory is asked about a user: the name, the DNs and filters built from it.

Plain functions, no network. Every value that comes from a login form is
escaped where it is used: with :func:`ldap3.utils.dn.escape_rdn` inside a DN,
with :func:`ldap3.utils.conv.escape_filter_chars` inside a search filter; and
the templates the configuration gives are checked at start-up
(:func:`check_filter_template`).
"""

from dataclasses import dataclass, field

from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

__all__ = [
    "UserQuery",
    "directory_name",
    "dn_from_template",
    "user_filter",
    "check_filter_template",
]


@dataclass
class UserQuery:
    """How to find a user's entry and what to read about them.

    Either ``bind_dn_templates`` (DNs tried in order) or ``search_base`` (search,
    then bind to the one entry found) is set.
    """

    bind_dn_templates: list = field(default_factory=list)
    search_base: str = ""
    search_filter: str = "({user_attribute}={username})"
    user_attribute: str = "uid"
    search_bind_dn: str = ""
    search_bind_password: str = ""
    search_bind_kerberos: object = None  # a connection.KerberosBind (search_bind_mechanism)
    attributes: list = field(default_factory=list)
    group_search_base: str = ""
    group_search_filter: str = ""
    group_name_attribute: str = "cn"
    # login_search_filter: searched under login_filter_base after the bind; its
    # {username} is the value of login_filter_name_attribute when that is set.
    login_filter: str = ""
    login_filter_base: str = ""
    login_filter_name_attribute: str = ""


def directory_name(typed, login_domains):
    """The name the directory is asked about: ``typed`` with spaces and a listed
    domain (``alice@corp.example``, ``CORP\\alice``) removed, lowercased.

    ``login_domains`` compare without case; a name with another domain keeps it
    (and fails the username check). Lowercased because the hub's names are
    (JupyterHub lowercases them), and the entry must be a function of the hub's
    name: ``uid`` (core schema), ``sAMAccountName`` and ``cn`` compare without
    case, so ``uid=Bob,...`` and ``uid=bob,...`` are one entry and the bind
    reaches the account the user typed. Where the naming attribute does compare
    case (a custom caseExactMatch schema), an entry spelt ``Bob`` cannot log in
    at all, rather than being taken for ``bob``.
    """
    name = typed.strip()
    domains = {d.lower() for d in login_domains}
    if "\\" in name:
        domain, _, rest = name.partition("\\")
        if domain.lower() in domains:
            name = rest
    elif "@" in name:
        rest, _, domain = name.rpartition("@")
        if domain.lower() in domains:
            name = rest
    return name.lower()


def dn_from_template(template, username):
    """``template`` with ``{username}`` replaced by ``username`` escaped as a DN value."""
    return template.format(username=escape_rdn(username))


def user_filter(template, user_attribute, username):
    """The user search filter, ``{username}`` escaped as a filter value."""
    return template.format(user_attribute=user_attribute, username=escape_filter_chars(username))


def check_filter_template(template, **sample):
    """Raise ValueError if ``template`` does not make a valid filter (checked at startup)."""
    try:
        text = template.format(**sample)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{template!r}: unknown or malformed placeholder {e}") from None
    try:
        parse_filter(
            text, None, auto_escape=False, auto_encode=False, validator=None, check_names=False
        )
    except ldap_errors.LDAPException as e:
        raise ValueError(f"{template!r} is not a valid LDAP filter: {e}") from None
