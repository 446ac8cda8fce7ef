"""Talking to the directory: connect, find the user, check the password, read groups.

Plain functions on ldap3, no traitlets: :class:`kerbauth.KerberosLDAPAuthenticator`
reads the configuration into a :class:`Directory` and calls :func:`check_login`
on a thread pool, so nothing here runs on the hub's event loop. Everything is
blocking and bounded by timeouts: a TCP connect waits at most
``connect_timeout``, each answer at most ``receive_timeout``.

Every value that comes from a login form is escaped where it is used: with
:func:`ldap3.utils.dn.escape_rdn` inside a DN, with
:func:`ldap3.utils.conv.escape_filter_chars` inside a search filter.
"""

import math
import socket
import ssl
from dataclasses import dataclass, field

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from .usernames import log_safe

__all__ = [
    "DirectoryError",
    "DirectoryUnavailable",
    "Server",
    "Directory",
    "UserQuery",
    "LoginResult",
    "parse_server",
    "tls_context",
    "dn_from_template",
    "user_filter",
    "group_filter",
    "check_filter_template",
    "same_dn",
    "check_login",
    "lookup_user",
]

TLS_STRATEGIES = ("starttls", "ldaps", "insecure")

# LDAP result codes: a server that answers with these cannot serve us now,
# the next one may (RFC 4511 busy, unavailable).
_SERVER_BUSY = {51, 52}
_NO_SUCH_OBJECT = 32
_SIZE_LIMIT_EXCEEDED = 4

# What a server that is down, unreachable, silent or not who it claims to be
# raises: the next server is tried.
_SERVER_FAILURES = (
    ldap_errors.LDAPCommunicationError,  # socket open/send/receive, session closed
    ldap_errors.LDAPResponseTimeoutError,
    ldap_errors.LDAPStartTLSError,  # StartTLS refused, or its TLS handshake failed
    ldap_errors.LDAPCertificateError,
    ssl.SSLError,
    OSError,
)


class DirectoryError(Exception):
    """The directory could not answer a question it should be able to answer."""


class DirectoryUnavailable(DirectoryError):
    """No configured server could be used; the message names each server and its error."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server(entry, default_port):
    """A :class:`Server` from ``"host"``, ``"host:port"`` or ``"[v6 address]:port"``."""
    text = entry.strip()
    if not text or "://" in text or "/" in text or any(c.isspace() for c in text):
        raise ValueError(f"{entry!r} is not a host name or host:port")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{entry!r} is not [address]:port")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"{entry!r} has no host")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} has an invalid port")
        return Server(host, int(port))
    return Server(host, default_port)


def tls_context(ca_file=None):
    """An SSL context that checks the server's certificate and its host name.

    ``ca_file``: PEM file of the CAs to trust; the system's CAs when empty.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _no_delay(sock):
    """Send each request at once. Without this, a request written while the last
    TLS handshake message is unacknowledged waits for the server's delayed ACK:
    about 40 ms a login on Linux."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class _VerifiedTls(ldap3.Tls):
    """ldap3's TLS settings, wrapping sockets with a context that verifies the server.

    ldap3 turns the context's own host name check off and checks afterwards
    with a helper that, without ``ssl.match_hostname`` (Python 3.12+), refuses
    IP addresses. Here the standard library checks chain and name during the
    handshake, before anything (a password) is sent.
    """

    def __init__(self, context):
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = context
        # The handshake's own error: ldap3 re-raises it as text inside its own.
        self.error = None
        self.receive_timeout = None

    def wrap_socket(self, connection, do_handshake=False):
        _no_delay(connection.socket)
        if self.receive_timeout is not None:
            connection.socket.settimeout(self.receive_timeout)
        try:
            connection.socket = self.context.wrap_socket(
                connection.socket,
                server_side=False,
                do_handshake_on_connect=do_handshake,
                server_hostname=connection.server.host,
            )
        except (ssl.SSLError, OSError) as e:
            self.error = e
            raise


@dataclass
class Directory:
    """Where the directory is and how to talk to it."""

    servers: list
    tls_strategy: str = "starttls"
    context: ssl.SSLContext | None = None  # for starttls and ldaps
    connect_timeout: float = 5.0
    receive_timeout: float = 5.0


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
    attributes: list = field(default_factory=list)
    group_search_base: str = ""
    group_search_filter: str = ""
    group_name_attribute: str = "cn"


@dataclass
class LoginResult:
    """A successful login: the user's DN, the attributes read, the groups found.

    ``groups`` holds ``(dn, name)`` pairs, or is None when no group search is set.
    ``server`` is the server that answered.
    """

    dn: str
    attributes: dict
    groups: list | None
    server: Server


# --- building DNs and filters ---------------------------------------------------------


def dn_from_template(template, username):
    """``template`` with ``{username}`` replaced by ``username`` escaped as a DN value."""
    return template.format(username=escape_rdn(username))


def user_filter(template, user_attribute, username):
    """The user search filter, ``{username}`` escaped as a filter value."""
    return template.format(user_attribute=user_attribute, username=escape_filter_chars(username))


def group_filter(template, user_dn, username):
    """The group search filter; ``{user_dn}`` and ``{username}`` escaped as filter values."""
    return template.format(
        user_dn=escape_filter_chars(user_dn), username=escape_filter_chars(username)
    )


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


def _dn_key(dn):
    return tuple((attr.lower(), value.lower()) for attr, value, _ in parse_dn(dn, escape=True))


def same_dn(a, b):
    """Whether two DNs name the same entry (case and spacing between parts ignored)."""
    try:
        return _dn_key(a) == _dn_key(b)
    except ldap_errors.LDAPInvalidDnError:
        return a.lower() == b.lower()


# --- talking to one server ------------------------------------------------------------


class _ServerFailed(Exception):
    """The server answered "busy" or "unavailable", or dropped the connection: try the next."""


def _connect(directory, server, tls):
    """An open, not yet bound connection to ``server``, with TLS as configured."""
    ldaps = directory.tls_strategy == "ldaps"
    conn = ldap3.Connection(
        ldap3.Server(
            server.host,
            port=server.port,
            use_ssl=ldaps,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=directory.connect_timeout,
        ),
        client_strategy=ldap3.SYNC,
        read_only=True,
        raise_exceptions=False,
        auto_referrals=False,
        # ldap3 packs this into SO_RCVTIMEO as whole seconds (a float fails there);
        # the socket's own timeout, which does the waiting, is set exactly below
        # and, for TLS, in _VerifiedTls.wrap_socket before the handshake.
        receive_timeout=max(1, math.ceil(directory.receive_timeout)),
    )
    if tls is not None:
        tls.receive_timeout = directory.receive_timeout
    try:
        conn.open(read_server_info=False)
        conn.socket.settimeout(directory.receive_timeout)
        _no_delay(conn.socket)
        if directory.tls_strategy == "starttls":
            conn.start_tls(read_server_info=False)
    except BaseException:
        _close(conn)
        raise
    return conn


def _close(conn):
    try:
        conn.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass
    finally:
        # unbind() closes the socket unless sending the request failed.
        try:
            conn.strategy.close()
        except (ldap_errors.LDAPException, OSError):
            pass


def _bind(conn, dn, password):
    """Bind as ``dn``; True on success, False when the directory refuses the credentials."""
    try:
        ok = conn.rebind(
            user=dn, password=password, authentication=ldap3.SIMPLE, read_server_info=False
        )
    except ldap_errors.LDAPBindError as e:
        # ldap3's rebind turns a receive error (a timeout too) into this.
        raise _ServerFailed(_describe(e)) from e
    if not ok and conn.result and conn.result.get("result") in _SERVER_BUSY:
        raise _ServerFailed(conn.result.get("description"))
    return bool(ok)


def _search(conn, base, search_filter, attributes, scope=ldap3.SUBTREE, size_limit=0):
    """Entries found, as ``(dn, attributes)``; [] for a base that does not exist."""
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
        raise _ServerFailed(conn.result.get("description"))
    if code not in (0, _NO_SUCH_OBJECT, _SIZE_LIMIT_EXCEEDED):
        raise DirectoryError(
            f"search under {base!r} failed: {conn.result.get('description')}"
            f" {conn.result.get('message') or ''}".rstrip()
        )
    return [
        (entry["dn"], dict(entry.get("attributes", {})))
        for entry in conn.response or []
        if entry.get("type") == "searchResEntry"
    ]


def _values(raw):
    """Attribute values as a list of strings."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items]


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
    return {wanted.get(k.lower(), k): _values(v) for k, v in found[0][1].items()}


def _find_groups(conn, query, dn, username):
    search_filter = group_filter(query.group_search_filter, dn, username)
    found = _search(conn, query.group_search_base, search_filter, [query.group_name_attribute])
    groups = []
    for group_dn, attributes in found:
        names = next(
            (
                _values(v)
                for k, v in attributes.items()
                if k.lower() == query.group_name_attribute.lower()
            ),
            [],
        )
        groups.append((group_dn, names[0] if names else group_dn))
    return groups


def _login_on(conn, query, username, password, log):
    """Check the password on one open connection; LoginResult or None."""
    service = bool(query.search_bind_dn)
    if query.search_base:
        if service and not _bind(conn, query.search_bind_dn, query.search_bind_password):
            raise DirectoryError(
                f"the directory refused the search account {query.search_bind_dn!r}"
                f" ({conn.result.get('description')})"
            )
        dn = _find_dn_by_search(conn, query, username, log)
        if dn is None or not _bind(conn, dn, password):
            return None
    else:
        for template in query.bind_dn_templates:
            dn = dn_from_template(template, username)
            if _bind(conn, dn, password):
                break
        else:
            return None
    if service and (query.attributes or query.group_search_base):
        # Read as the search account: it may see what users may not.
        if not _bind(conn, query.search_bind_dn, query.search_bind_password):
            raise DirectoryError(
                f"the directory refused the search account {query.search_bind_dn!r}"
            )
    attributes = _read_user(conn, dn, query.attributes) if query.attributes else {}
    groups = _find_groups(conn, query, dn, username) if query.group_search_base else None
    return LoginResult(dn=dn, attributes=attributes, groups=groups, server=None)


def _lookup_on(conn, query, username, log):
    """Find and read ``username``'s entry without their password; (dn, attributes) or None."""
    if query.search_bind_dn and not _bind(conn, query.search_bind_dn, query.search_bind_password):
        raise DirectoryError(f"the directory refused the search account {query.search_bind_dn!r}")
    if query.search_base:
        dn = _find_dn_by_search(conn, query, username, log)
        candidates = [dn] if dn else []
    else:
        candidates = [dn_from_template(t, username) for t in query.bind_dn_templates]
    for dn in candidates:
        attributes = _read_user(conn, dn, query.attributes)
        if attributes or _search(conn, dn, "(objectClass=*)", [], scope=ldap3.BASE):
            return dn, attributes
    return None


def _with_failover(directory, work, log):
    """``work(conn)`` on the first server that answers; ``(result, server)``.

    Servers are tried in order. A server that refuses the connection, times
    out, fails the TLS check or says it is busy costs its timeout at most,
    then the next is tried. An answer (even "wrong password") ends the loop:
    a password is never tried on a second server after one refused it.
    Connections are always closed.
    """
    failures = []
    for server in directory.servers:
        tls = _VerifiedTls(directory.context) if directory.tls_strategy != "insecure" else None
        try:
            conn = _connect(directory, server, tls)
        except _SERVER_FAILURES as e:
            reason = _describe(tls.error if tls is not None and tls.error else e)
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s unusable: %s", server, reason)
            continue
        try:
            return work(conn), server
        except (_ServerFailed, *_SERVER_FAILURES) as e:
            reason = _describe(e)
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s failed: %s", server, reason)
        finally:
            _close(conn)
    raise DirectoryUnavailable("no LDAP server could be used: " + "; ".join(failures))


def _describe(error):
    """What went wrong, from the innermost cause ldap3 wrapped (a timeout, a TLS error)."""
    cause = error
    while cause is not None:
        # ldap3 re-raises errors as classes derived from both its own and the
        # original type, without the original's attributes: look for those.
        if getattr(cause, "verify_message", None):
            return f"TLS certificate refused: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None):
            return f"TLS failed: {cause.reason}"
        if isinstance(cause, socket.timeout | TimeoutError):
            return "no answer in time"
        cause = cause.__cause__ or cause.__context__
    text = str(error) or type(error).__name__
    return "no answer in time" if "timed out" in text else text


# --- what the authenticator calls -----------------------------------------------------


def check_login(directory, query, username, password, log):
    """Check ``username``'s ``password`` against the directory.

    Returns a :class:`LoginResult`, or None when the directory refuses the
    login (no such user, wrong password, more than one match). Raises
    :class:`DirectoryUnavailable` when no server could be asked. Blocking:
    call it on a thread. The password is used for one bind and never logged.
    """
    if not password or not password.strip():
        # A simple bind with an empty password is an anonymous bind on many servers.
        return None
    result, server = _with_failover(
        directory, lambda conn: _login_on(conn, query, username, password, log), log
    )
    if result is not None:
        result.server = server
    return result


def lookup_user(directory, query, username, log):
    """``(dn, attributes)`` of ``username``'s entry, read with the search account
    (anonymously without one), or None when there is no such entry."""
    result, _ = _with_failover(directory, lambda conn: _lookup_on(conn, query, username, log), log)
    return result
