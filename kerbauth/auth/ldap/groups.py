"""Group policy: which groups a user is found in, and what membership allows.

Plain functions, no network: :mod:`kerbauth.auth.ldap.directory` runs the
search built by :func:`group_filter` and hands the entries to
:func:`named_groups`; the login keeps the result in auth_state
(:func:`groups_state`), and the authenticator's ``check_allowed`` and
``is_admin`` ask :func:`member_of` about it. A group is named in the
configuration by its name (``group_name_attribute``, compared without case)
or by its full DN (compared as a DN: case and spacing between parts ignored).
"""

from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

__all__ = [
    "DEFAULT_GROUP_FILTER",
    "group_filter",
    "named_groups",
    "groups_state",
    "member_of",
    "same_dn",
]

# groupOfNames (member), groupOfUniqueNames (uniqueMember) and posixGroup (memberUid).
DEFAULT_GROUP_FILTER = (
    "(|(&(objectClass=groupOfNames)(member={user_dn}))"
    "(&(objectClass=groupOfUniqueNames)(uniqueMember={user_dn}))"
    "(&(objectClass=posixGroup)(memberUid={username})))"
)


def group_filter(template, user_dn, username):
    """The group search filter; ``{user_dn}`` and ``{username}`` escaped as filter values."""
    return template.format(
        user_dn=escape_filter_chars(user_dn), username=escape_filter_chars(username)
    )


def named_groups(entries, name_attribute):
    """``(dn, name)`` of each group entry found: ``(dn, {attribute: [values]})`` pairs.

    The name is the first value of ``name_attribute`` (compared without case),
    or the DN for a group without one.
    """
    wanted = name_attribute.lower()
    groups = []
    for dn, attributes in entries:
        names = next((values for key, values in attributes.items() if key.lower() == wanted), [])
        groups.append((dn, names[0] if names else dn))
    return groups


def groups_state(groups):
    """What auth_state keeps of the groups found: names (sorted, once each) and DNs."""
    return {
        "ldap_groups": sorted({name for _, name in groups}),
        "ldap_group_dns": [dn for dn, _ in groups],
    }


def group_names(auth_state):
    """The names of the groups in ``auth_state`` (what ``manage_groups`` gives JupyterHub):
    ``ldap_groups``, or ``ldap_group_names`` where ``ldap_groups`` holds a
    ldapauthenticator configuration's DNs."""
    state = auth_state or {}
    return state.get("ldap_group_names", state.get("ldap_groups", []))


def member_of(auth_state, wanted):
    """Whether the groups in ``auth_state`` (:func:`groups_state`) include any of ``wanted``.

    An entry of ``wanted`` with ``=`` in it is a DN, the others are names.
    """
    state = auth_state or {}
    dns = state.get("ldap_group_dns") or []
    names = {n.casefold() for n in state.get("ldap_groups") or []}
    for entry in wanted:
        if "=" in entry:
            if any(same_dn(entry, dn) for dn in dns):
                return True
        elif entry.casefold() in names:
            return True
    return False


def _dn_key(dn):
    return tuple((attr.lower(), value.lower()) for attr, value, _ in parse_dn(dn, escape=True))


def same_dn(a, b):
    """Whether two DNs name the same entry (case and spacing between parts ignored)."""
    try:
        return _dn_key(a) == _dn_key(b)
    except ldap_errors.LDAPInvalidDnError:
        return a.lower() == b.lower()
