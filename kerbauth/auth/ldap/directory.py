"""Talking to the directory: connect, find the user, check the password, read groups.

Plain functions on ldap3, no traitlets: :class:`kerbauth.KerberosLDAPAuthenticator`
reads the configuration into a :class:`Directory` and calls :func:`check_login`
on a thread pool, so nothing here runs on the hub's event loop. Everything is
blocking and bounded: a TCP connect waits at most ``connect_timeout``, each
answer at most ``receive_timeout``, one login at most ``login_timeout`` in all,
and one connection reads at most ``max_response_bytes``. The last three are
enforced by :class:`_BoundedSocket`, which stands in for the connection's socket
(also after StartTLS or LDAPS has wrapped it): ldap3 itself waits per ``recv``,
so a server trickling one byte at a time would hold it for ever, and it
appends each chunk to a ``bytes`` buffer, so a large answer costs quadratic
time. Here each answer is read into one buffer and handed over whole.

Every value that comes from a login form is escaped where it is used: with
:func:`ldap3.utils.dn.escape_rdn` inside a DN, with
:func:`ldap3.utils.conv.escape_filter_chars` inside a search filter.
"""

import contextlib
import math
import socket
import ssl
import time
from dataclasses import dataclass, field

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from kerbauth.core.names import log_safe

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

# How much one recv asks the kernel for: big enough that a 4 MiB answer takes
# 64 calls, small enough not to matter for memory.
_CHUNK = 65536


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


class LoginDeadline(TimeoutError):
    """The login's overall deadline (``login_timeout``) passed while a server was asked."""


class AnswerTooLarge(OSError):
    """A server sent more than ``max_response_bytes`` on one connection."""


class ProtocolViolation(OSError):
    """A server sent something no LDAP server sends (at the framing level)."""


@dataclass
class _Limits:
    """What one connection may cost: until when, how long per answer, how many bytes."""

    deadline: float  # time.monotonic() by which this server must be done with
    receive_timeout: float
    max_bytes: int
    received: int = 0

    def time_left(self, answer_deadline=None):
        """Seconds the next wait may take; raise when none is left."""
        now = time.monotonic()
        if answer_deadline is not None and answer_deadline < self.deadline:
            if answer_deadline <= now:
                raise TimeoutError("timed out")
            return answer_deadline - now
        if self.deadline <= now:
            raise LoginDeadline("the login's time (login_timeout) ran out")
        return self.deadline - now


def _message_size(buffer):
    """The length of the LDAP message at the start of ``buffer``, or None if its
    header is not complete yet (BER definite length, RFC 4511 section 5.1)."""
    if len(buffer) < 2:
        return None
    first = buffer[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        # Indefinite length (not allowed in LDAP) or a length over 4 GiB.
        raise ProtocolViolation(f"an answer with an unusable BER length (0x{first:02x})")
    if len(buffer) < 2 + count:
        return None
    return 2 + count + int.from_bytes(buffer[2 : 2 + count], "big")


class _BoundedSocket:
    """A connection's socket that gives each answer a deadline and counts its bytes.

    ldap3's sync strategy calls ``recv`` until a whole LDAP message is in; its
    own timeout applies to each ``recv``, so a server sending one byte every
    half second never times out, and it appends chunks to ``bytes`` (quadratic
    for a large message). Here ``recv`` returns one whole message (however
    large ldap3 asked for), read into one ``bytearray``: a message must arrive
    within ``receive_timeout`` and before the login's deadline, and all the
    messages of one connection together may not exceed ``max_bytes`` (checked
    against the length a message announces, before it is read). Sends are
    bounded by the same deadline. Everything else goes to the real socket.
    """

    def __init__(self, sock, limits):
        self.sock = sock
        self.limits = limits
        self.buffer = bytearray()
        self._eof = False

    def recv(self, bufsize=_CHUNK, flags=0):
        answer_deadline = time.monotonic() + self.limits.receive_timeout
        while True:
            size = _message_size(self.buffer)
            if size is not None:
                if self.limits.received - len(self.buffer) + size > self.limits.max_bytes:
                    raise AnswerTooLarge(
                        f"an answer of {size} bytes: more than max_response_bytes"
                        f" ({self.limits.max_bytes}) on one connection"
                    )
                if len(self.buffer) >= size:
                    message = bytes(self.buffer[:size])
                    del self.buffer[:size]
                    return message
            if self._eof:
                # The server closed the connection: hand ldap3 what is left (it
                # reports the session as terminated).
                rest = bytes(self.buffer)
                self.buffer.clear()
                return rest
            self.sock.settimeout(self.limits.time_left(answer_deadline))
            try:
                chunk = self.sock.recv(_CHUNK)
            except TimeoutError:
                self.limits.time_left()  # LoginDeadline if that was the login's deadline
                raise
            if not chunk:
                self._eof = True
                continue
            self.limits.received += len(chunk)
            if self.limits.received > self.limits.max_bytes:
                raise AnswerTooLarge(
                    f"more than max_response_bytes ({self.limits.max_bytes}) on one connection"
                )
            self.buffer += chunk

    def send(self, data, flags=0):
        return self._sending(self.sock.send, data)

    def sendall(self, data, flags=0):
        # Since Python 3.5 the timeout bounds the whole sendall.
        return self._sending(self.sock.sendall, data)

    def _sending(self, send, data):
        self.sock.settimeout(self.limits.time_left(time.monotonic() + self.limits.receive_timeout))
        try:
            return send(data)
        except TimeoutError:
            self.limits.time_left()
            raise

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _raw_socket(connection):
    """The socket under ldap3's connection, without our wrapper (for a TLS wrap)."""
    sock = connection.socket
    if isinstance(sock, _BoundedSocket):
        if sock.buffer:
            # Bytes after the StartTLS answer and before the handshake: someone
            # on the path is injecting plain text that would read as protected.
            raise ProtocolViolation("plain-text data after the StartTLS answer")
        return sock.sock
    return sock


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
        self.limits = None

    def wrap_socket(self, connection, do_handshake=False):
        raw = _raw_socket(connection)
        _no_delay(raw)
        if self.limits is not None:
            # CPython's handshake treats the socket's timeout as a deadline
            # for the whole handshake, not for each read: a trickled
            # handshake ends in time too.
            raw.settimeout(self.limits.time_left(time.monotonic() + self.limits.receive_timeout))
        try:
            wrapped = self.context.wrap_socket(
                raw,
                server_side=False,
                do_handshake_on_connect=do_handshake,
                server_hostname=connection.server.host,
            )
        except (ssl.SSLError, OSError) as e:
            self.error = e
            raise
        connection.socket = _BoundedSocket(wrapped, self.limits) if self.limits else wrapped


@dataclass
class Directory:
    """Where the directory is and how to talk to it."""

    servers: list
    tls_strategy: str = "starttls"
    context: ssl.SSLContext | None = None  # for starttls and ldaps
    connect_timeout: float = 5.0
    receive_timeout: float = 5.0
    login_timeout: float = 30.0  # all servers of one login together
    max_response_bytes: int = 4 * 1024 * 1024  # read from one server in one login


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


def _connect(directory, server, tls, limits):
    """An open, not yet bound connection to ``server``, with TLS as configured,
    whose socket keeps to ``limits`` (a :class:`_BoundedSocket`)."""
    ldaps = directory.tls_strategy == "ldaps"
    conn = ldap3.Connection(
        ldap3.Server(
            server.host,
            port=server.port,
            use_ssl=ldaps,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=min(directory.connect_timeout, limits.time_left()),
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
        tls.limits = limits
    try:
        conn.open(read_server_info=False)
        if not isinstance(conn.socket, _BoundedSocket):  # plain LDAP; LDAPS is wrapped
            _no_delay(conn.socket)
            conn.socket = _BoundedSocket(conn.socket, limits)
        if directory.tls_strategy == "starttls":
            conn.start_tls(read_server_info=False)
    except BaseException:
        _close(conn)
        raise
    return conn


def _close(conn):
    # A connection being dropped (a server that misbehaved) may fail in any way.
    with contextlib.suppress(Exception):
        conn.unbind()
    # unbind() closes the socket unless sending the request failed.
    with contextlib.suppress(Exception):
        conn.strategy.close()


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
        earlier = []
    else:
        # The DNs the name reaches before the one that took the password: if
        # one of them exists, the name belongs to that entry, and the password
        # just checked is another entry's (uid=bob,ou=people and
        # uid=Bob,ou=staff are both "bob").
        earlier = []
        for template in query.bind_dn_templates:
            dn = dn_from_template(template, username)
            if _bind(conn, dn, password):
                break
            earlier.append(dn)
        else:
            return None
    if service and (query.attributes or query.group_search_base or earlier):
        # Read as the search account: it may see what users may not.
        if not _bind(conn, query.search_bind_dn, query.search_bind_password):
            raise DirectoryError(
                f"the directory refused the search account {query.search_bind_dn!r}"
            )
    for other in earlier:
        if _search(conn, other, "(objectClass=*)", [], scope=ldap3.BASE):
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


def _with_failover(directory, work, log, deadline=None):
    """``work(conn)`` on the first server that answers; ``(result, server)``.

    Servers are tried in order. A server that refuses the connection, times
    out, fails the TLS check, says it is busy, sends more than
    ``max_response_bytes`` or anything that makes ldap3 (or us) raise, costs
    at most its share of the time, then the next is tried. An answer (even
    "wrong password") ends the loop: a password is never tried on a second
    server after one refused it. :class:`DirectoryError` (a deliberate answer,
    such as a refused search account) ends it too. Connections are always
    closed.

    ``deadline`` (``time.monotonic()``; default ``login_timeout`` from now)
    bounds all servers together. Each server gets the time left divided by the
    number of servers not yet tried: a server that holds its connection for
    as long as it can leaves the later ones their share, and one that fails
    at once hands its share on.
    """
    if deadline is None:
        deadline = time.monotonic() + directory.login_timeout
    failures = []
    servers = list(directory.servers)
    for index, server in enumerate(servers):
        left = deadline - time.monotonic()
        if left <= 0:
            failures.append(f"{server}: not tried, the login's time (login_timeout) ran out")
            continue
        limits = _Limits(
            deadline=time.monotonic() + left / (len(servers) - index),
            receive_timeout=directory.receive_timeout,
            max_bytes=directory.max_response_bytes,
        )
        tls = _VerifiedTls(directory.context) if directory.tls_strategy != "insecure" else None
        try:
            conn = _connect(directory, server, tls, limits)
        except Exception as e:  # noqa: BLE001 - whatever a server makes us raise, it failed
            reason = _describe(tls.error if tls is not None and tls.error else e)
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s unusable: %s", server, reason)
            log.debug("kerbauth: LDAP server %s: connecting raised", server, exc_info=True)
            continue
        try:
            return work(conn), server
        except DirectoryError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a server makes us raise, it failed
            reason = _describe(e)
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s failed: %s", server, reason)
            log.debug("kerbauth: LDAP server %s: the login raised", server, exc_info=True)
        finally:
            _close(conn)
    raise DirectoryUnavailable("no LDAP server could be used: " + "; ".join(failures))


def _describe(error):
    """What went wrong, from the innermost cause ldap3 wrapped (a timeout, a TLS error).

    An error that is neither ldap3's, a socket's nor a server's answer (a
    KeyError from ldap3's decoder, say) is named with its type.
    """
    cause = error
    while cause is not None:
        # ldap3 re-raises errors as classes derived from both its own and the
        # original type, without the original's attributes: look for those.
        if getattr(cause, "verify_message", None):
            return f"TLS certificate refused: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None):
            return f"TLS failed: {cause.reason}"
        if isinstance(cause, LoginDeadline):
            return "no answer before the login's time (login_timeout) ran out"
        if isinstance(cause, AnswerTooLarge | ProtocolViolation):
            return str(cause).rpartition("error receiving data: ")[2]
        if isinstance(cause, socket.timeout | TimeoutError):
            return "no answer in time"
        cause = cause.__cause__ or cause.__context__
    if not isinstance(error, _ServerFailed | ldap_errors.LDAPException | OSError):
        return f"unexpected {type(error).__name__} (a malformed answer?): {error}"
    text = str(error) or type(error).__name__
    if "login_timeout" in text:
        return "no answer before the login's time (login_timeout) ran out"
    if "max_response_bytes" in text:
        return text.rpartition("error receiving data: ")[2]
    return "no answer in time" if "timed out" in text else text


# --- what the authenticator calls -----------------------------------------------------


def check_login(directory, query, username, password, log, deadline=None):
    """Check ``username``'s ``password`` against the directory.

    Returns a :class:`LoginResult`, or None when the directory refuses the
    login (no such user, wrong password, more than one match, an entry that
    is not the one ``username`` names). Raises :class:`DirectoryUnavailable`
    when no server could be asked, or none answered before ``deadline``
    (``time.monotonic()``; default ``login_timeout`` from now). Blocking:
    call it on a thread. The password is used for one bind and never logged.
    """
    if not password or not password.strip():
        # A simple bind with an empty password is an anonymous bind on many servers.
        return None
    result, server = _with_failover(
        directory, lambda conn: _login_on(conn, query, username, password, log), log, deadline
    )
    if result is not None:
        result.server = server
    return result


def lookup_user(directory, query, username, log, deadline=None):
    """``(dn, attributes)`` of ``username``'s entry, read with the search account
    (anonymously without one), or None when there is no such entry."""
    result, _ = _with_failover(
        directory, lambda conn: _lookup_on(conn, query, username, log), log, deadline
    )
    return result
