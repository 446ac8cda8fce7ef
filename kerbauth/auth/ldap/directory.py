"""The questions a login asks the directory: is this the password, who is this, which groups.

Plain functions on ldap3, no traitlets: :class:`kerbauth.KerberosLDAPAuthenticator`
reads its configuration into a :class:`~kerbauth.auth.ldap.connection.Directory`
and a :class:`~kerbauth.auth.ldap.queries.UserQuery` and calls
:func:`check_login` (or, for the owner of a cache, :func:`lookup_user`) on a
thread pool, so nothing here runs on the hub's event loop. Each call runs on
the first server that can be used (:func:`~kerbauth.auth.ldap.connection.with_failover`),
within the limits of :mod:`kerbauth.auth.ldap.connection`; the DNs and filters
come from :mod:`kerbauth.auth.ldap.queries` and
:mod:`kerbauth.auth.ldap.groups`, escaped there.
"""

from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors

from kerbauth.auth.ldap import groups as group_policy
from kerbauth.auth.ldap.ad_errors import account_refusal
from kerbauth.auth.ldap.connection import (
    DirectoryError,
    DirectoryUnavailable,
    ServerFailed,
    describe,
    with_failover,
)
from kerbauth.auth.ldap.queries import dn_from_template, user_filter
from kerbauth.auth.ldap.sasl import kerberos_bind
from kerbauth.core.names import log_safe

# DirectoryError and DirectoryUnavailable are what check_login and lookup_user raise.
__all__ = [
    "DirectoryError",
    "DirectoryUnavailable",
    "LoginResult",
    "check_login",
    "look_up_membership",
    "look_up_membership_by_dn",
    "lookup_user",
]

# LDAP result codes: a server that answers with these cannot serve us now,
# the next one may (RFC 4511 busy, unavailable).
_SERVER_BUSY = {51, 52}
_NO_SUCH_OBJECT = 32
_SIZE_LIMIT_EXCEEDED = 4


@dataclass
class LoginResult:
    """A successful login: the user's DN, the attributes read, the groups found.

    ``groups`` holds ``(dn, name)`` pairs, or is None when no group search is set.
    ``server`` is the server that answered (a :class:`kerbauth.core.address.Address`).
    ``filtered_out``: a refresh found the entry no longer matching ``login_search_filter``.
    """

    dn: str
    attributes: dict
    groups: list | None
    server: object
    filtered_out: bool = False


# --- the operations -------------------------------------------------------------------


def _bind(conn, dn, password):
    """Bind as ``dn``; True on success, False when the directory refuses the credentials."""
    try:
        ok = conn.rebind(
            user=dn, password=password, authentication=ldap3.SIMPLE, read_server_info=False
        )
    except ldap_errors.LDAPBindError as e:
        # ldap3's rebind turns a receive error (a timeout too) into this.
        raise ServerFailed(describe(e)) from e
    if not ok and conn.result and conn.result.get("result") in _SERVER_BUSY:
        raise ServerFailed(conn.result.get("description"))
    return bool(ok)


def _search(conn, base, search_filter, attributes, scope=ldap3.SUBTREE, size_limit=0):
    """Entries found, as ``(dn, {attribute: [str]})``; [] for a base that does not exist."""
    conn.search(
        base,
        search_filter,
        search_scope=scope,
        attributes=attributes or [ldap3.NO_ATTRIBUTES],
        size_limit=size_limit,
        time_limit=max(1, int(conn.receive_timeout or 0)),
    )
    code = conn.result.get("result") if conn.result else None
    if code in _SERVER_BUSY:
        raise ServerFailed(conn.result.get("description"))
    if code not in (0, _NO_SUCH_OBJECT, _SIZE_LIMIT_EXCEEDED):
        raise DirectoryError(
            f"search under {base!r} failed: {conn.result.get('description')}"
            f" {conn.result.get('message') or ''}".rstrip()
        )
    return [
        (entry["dn"], {k: _values(v) for k, v in entry.get("attributes", {}).items()})
        for entry in conn.response or []
        if entry.get("type") == "searchResEntry"
    ]


def _values(raw):
    """Attribute values as a list of strings."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items]


def _bind_user(conn, dn, password):
    """:func:`_bind` with a user's password; raises
    :class:`~kerbauth.auth.ldap.ad_errors.AccountRefused` when Active Directory
    says why it refused (password expired, account locked, ...)."""
    if _bind(conn, dn, password):
        return True
    refused = account_refusal(conn.result, dn)
    if refused is not None:
        raise refused
    return False


def _exists(conn, dn):
    return bool(_search(conn, dn, "(objectClass=*)", [], scope=ldap3.BASE))


def _bind_search_account(conn, query):
    """Bind as the search account, simple or Kerberos (search_bind_mechanism); True if accepted."""
    if query.search_bind_kerberos is not None:
        return kerberos_bind(conn, query.search_bind_kerberos)
    return _bind(conn, query.search_bind_dn, query.search_bind_password)


def _search_account(query):
    return str(query.search_bind_kerberos or "") or query.search_bind_dn


def _bind_service(conn, query):
    if not _bind_search_account(conn, query):
        raise DirectoryError(f"the directory refused the search account {_search_account(query)!r}")


# --- the user's entry -----------------------------------------------------------------


def _find_dn_by_search(conn, query, username, log):
    search_filter = user_filter(query.search_filter, query.user_attribute, username)
    found = _search(conn, query.search_base, search_filter, [], size_limit=2)
    if len(found) != 1:
        if found:
            log.warning(
                "kerbauth: the LDAP search for %s found more than one entry; login refused",
                log_safe(username),
            )
        else:
            log.info("kerbauth: no LDAP entry for %s", log_safe(username))
        return None
    return found[0][0]


def _read_user(conn, dn, attributes):
    found = _search(conn, dn, "(objectClass=*)", attributes, scope=ldap3.BASE)
    if not found:
        return {}
    wanted = {a.lower(): a for a in attributes}
    return {wanted.get(k.lower(), k): v for k, v in found[0][1].items()}


def _find_groups(conn, query, dn, username):
    search_filter = group_policy.group_filter(query.group_search_filter, dn, username)
    found = _search(conn, query.group_search_base, search_filter, [query.group_name_attribute])
    return group_policy.named_groups(found, query.group_name_attribute)


def _passes_login_filter(conn, query, dn, username, log):
    """Whether ``login_search_filter`` finds exactly one entry, searched as the user
    just bound (as ldapauthenticator's ``search_filter``)."""
    name = username
    if query.login_filter_name_attribute:
        attribute = query.login_filter_name_attribute
        values = _read_user(conn, dn, [attribute]).get(attribute, [])
        if len(values) != 1:
            log.warning(
                "kerbauth: LDAP login of %s refused: its entry %s has %d values of %s, not one"
                " (login_search_filter's {username})",
                log_safe(username),
                dn,
                len(values),
                attribute,
            )
            return False
        name = values[0]
    search_filter = user_filter(query.login_filter, query.user_attribute, name)
    found = _search(conn, query.login_filter_base, search_filter, [], size_limit=2)
    if len(found) != 1:
        log.warning(
            "kerbauth: LDAP login of %s refused: KerberosLDAPAuthenticator.login_search_filter"
            " %s found %s under %s, and exactly one is required",
            log_safe(username),
            search_filter,
            "more than one entry" if found else "no entry",
            query.login_filter_base,
        )
        return False
    return True


def _login_on(conn, query, username, password, log):
    """Check the password on one open connection; LoginResult or None."""
    service = bool(_search_account(query))
    if query.search_base:
        if service and not _bind_search_account(conn, query):
            raise DirectoryError(
                f"the directory refused the search account {_search_account(query)!r}"
                f" ({conn.result.get('description')})"
            )
        dn = _find_dn_by_search(conn, query, username, log)
        if dn is None or not _bind_user(conn, dn, password):
            return None
        earlier = []
    else:
        # The DNs the name reaches before the one that took the password: if
        # one of them exists, the name belongs to that entry, and the password
        # just checked is another entry's (uid=bob,ou=people and
        # uid=Bob,ou=staff are both "bob").
        earlier = []
        for template in query.bind_dn_templates:
            dn = dn_from_template(template, username)
            if _bind_user(conn, dn, password):
                break
            earlier.append(dn)
        else:
            return None
    if query.login_filter and not _passes_login_filter(conn, query, dn, username, log):
        return None
    if service and (query.attributes or query.group_search_base or earlier):
        # Read as the search account: it may see what users may not.
        _bind_service(conn, query)
    for other in earlier:
        if _exists(conn, other):
            log.warning(
                "kerbauth: LDAP login of %s refused: the password is that of %s, but the"
                " name belongs to %s (an earlier bind_dn_template)",
                log_safe(username),
                dn,
                other,
            )
            return None
    attributes = _read_user(conn, dn, query.attributes) if query.attributes else {}
    groups = _find_groups(conn, query, dn, username) if query.group_search_base else None
    return LoginResult(dn=dn, attributes=attributes, groups=groups, server=None)


def _lookup_on(conn, query, username, log):
    """Find and read ``username``'s entry without their password; (dn, attributes) or None."""
    if _search_account(query):
        _bind_service(conn, query)
    if query.search_base:
        dn = _find_dn_by_search(conn, query, username, log)
        candidates = [dn] if dn else []
    else:
        candidates = [dn_from_template(t, username) for t in query.bind_dn_templates]
    for dn in candidates:
        attributes = _read_user(conn, dn, query.attributes)
        if attributes or _exists(conn, dn):
            return dn, attributes
    return None


# --- what the authenticator calls -----------------------------------------------------


def check_login(directory, query, username, password, log, deadline=None):
    """Check ``username``'s ``password`` against the directory.

    Returns a :class:`LoginResult`, or None when the directory refuses the
    login (no such user, wrong password, more than one match, an entry that
    is not the one ``username`` names). Raises :class:`DirectoryUnavailable`
    when no server could be asked, or none answered before ``deadline``
    (``time.monotonic()``; default ``login_timeout`` from now). Raises
    :class:`~kerbauth.auth.ldap.ad_errors.AccountRefused` when Active
    Directory refuses the bind with a reason the user is told. Blocking:
    call it on a thread. The password is used for one bind and never logged.
    """
    if not password or not password.strip():
        # A simple bind with an empty password is an anonymous bind on many servers.
        return None
    result, server = with_failover(
        directory, lambda conn: _login_on(conn, query, username, password, log), log, deadline
    )
    if result is not None:
        result.server = server
    return result


def look_up_membership(directory, query, username, log, deadline=None):
    """What a login would find about ``username`` now, without their password: a
    :class:`LoginResult` (entry, attributes, groups), or None when the entry is gone.

    Read as the search account, on the first server that answers, within ``deadline``
    (as :func:`check_login`), ``login_search_filter`` too (``filtered_out`` when the
    entry no longer matches it); raises :class:`DirectoryUnavailable` when no server could
    answer. For ``refresh_user``: blocking, call it on a thread.
    """

    def work(conn):
        found = _lookup_on(conn, query, username, log)
        if found is None:
            return None
        dn, attributes = found
        if query.login_filter and not _passes_login_filter(conn, query, dn, username, log):
            return LoginResult(dn, attributes, None, None, filtered_out=True)
        groups = _find_groups(conn, query, dn, username) if query.group_search_base else None
        return LoginResult(dn=dn, attributes=attributes, groups=groups, server=None)

    result, server = with_failover(directory, work, log, deadline)
    if result is not None:
        result.server = server
    return result


def look_up_membership_by_dn(directory, query, dn, username, log, deadline=None):
    """:func:`look_up_membership` of the entry ``dn`` (the DN a login found, kept in
    auth_state), for a hub name that is not the login name (``hub_username_attribute``):
    ``username`` is the name that login was made with (for the group filter).
    None when the entry is gone."""

    def work(conn):
        if _search_account(query):
            _bind_service(conn, query)
        attributes = _read_user(conn, dn, query.attributes)
        if not attributes and not _exists(conn, dn):
            return None
        if query.login_filter and not _passes_login_filter(conn, query, dn, username, log):
            return LoginResult(dn, attributes, None, None, filtered_out=True)
        groups = _find_groups(conn, query, dn, username) if query.group_search_base else None
        return LoginResult(dn=dn, attributes=attributes, groups=groups, server=None)

    result, server = with_failover(directory, work, log, deadline)
    if result is not None:
        result.server = server
    return result


def lookup_user(directory, query, username, log, deadline=None):
    """``(dn, attributes)`` of ``username``'s entry, read with the search account
    (anonymously without one), or None when there is no such entry."""
    result, _ = with_failover(
        directory, lambda conn: _lookup_on(conn, query, username, log), log, deadline
    )
    return result
