"""Reaching the directory: one connection within its limits, TLS, and failover between servers.

Plain ldap3 and the standard library, blocking and bounded (callers run it on
a thread): a TCP connect waits at most ``connect_timeout``, each answer at
most ``receive_timeout``, one login at most ``login_timeout`` over all servers,
and one connection reads at most ``max_response_bytes``. The last three are
kept by :class:`_BoundedSocket`, which stands in for the connection's socket
(also after StartTLS or LDAPS has wrapped it): ldap3 itself waits per
``recv``, so a server trickling one byte at a time would hold it for ever,
and it appends each chunk to a ``bytes`` buffer, so a large answer costs
quadratic time. Here each answer is read into one buffer and handed over whole.

:func:`with_failover` runs a piece of work on the first server that can be
used; :mod:`kerbauth.auth.ldap.directory` says what that work is.
"""

import contextlib
import math
import socket
import ssl
import time
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors

# The context of the TLS options, built by settings; importable from here as before.
from kerbauth.auth.ldap.tls import tls_context

__all__ = [
    "TLS_STRATEGIES",
    "DirectoryError",
    "DirectoryUnavailable",
    "ServerFailed",
    "Directory",
    "tls_context",
    "with_failover",
]

TLS_STRATEGIES = ("starttls", "ldaps", "insecure")

# How much one recv asks the kernel for: big enough that a 4 MiB answer takes
# 64 calls, small enough not to matter for memory.
_CHUNK = 65536


class DirectoryError(Exception):
    """The directory could not answer a question it should be able to answer."""


class DirectoryUnavailable(DirectoryError):
    """No configured server could be used; the message names each server and its error."""


class ServerFailed(Exception):
    """The server answered "busy" or "unavailable", or dropped the connection: try the next."""


@dataclass
class Directory:
    """Where the directory is and how to talk to it."""

    servers: list  # of kerbauth.core.address.Address, tried in order
    tls_strategy: str = "starttls"
    context: ssl.SSLContext | None = None  # for starttls and ldaps
    connect_timeout: float = 5.0
    receive_timeout: float = 5.0
    login_timeout: float = 30.0  # all servers of one login together
    max_response_bytes: int = 4 * 1024 * 1024  # read from one server in one login


def _no_delay(sock):
    """Send each request at once. Without this, a request written while the last
    TLS handshake message is unacknowledged waits for the server's delayed ACK:
    about 40 ms a login on Linux."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


# --- one connection's limits ------------------------------------------------------------


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


# --- TLS --------------------------------------------------------------------------------


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


# --- one server -------------------------------------------------------------------------


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


# --- failover ---------------------------------------------------------------------------


def with_failover(directory, work, log, deadline=None):
    """``work(conn)`` on the first server that answers; ``(result, server)``.

    Servers are tried in order. A server that refuses the connection, times
    out, fails the TLS check, says it is busy (:class:`ServerFailed`), sends
    more than ``max_response_bytes`` or anything that makes ldap3 (or us)
    raise, costs at most its share of the time, then the next is tried. An
    answer (even "wrong password") ends the loop: a password is never tried on
    a second server after one refused it. :class:`DirectoryError` (a
    deliberate answer, such as a refused search account) ends it too.
    Connections are always closed.

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
            reason = describe(tls.error if tls is not None and tls.error else e)
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s unusable: %s", server, reason)
            log.debug("kerbauth: LDAP server %s: connecting raised", server, exc_info=True)
            continue
        connected = limits.received
        try:
            return work(conn), server
        except DirectoryError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a server makes us raise, it failed
            reason = describe(e)
            if tls is not None and limits.received == connected and "terminated" in reason:
                reason = CLOSED_IN_TLS  # closed over TLS before its first answer
            failures.append(f"{server}: {reason}")
            log.warning("kerbauth: LDAP server %s failed: %s", server, reason)
            log.debug("kerbauth: LDAP server %s: the login raised", server, exc_info=True)
        finally:
            _close(conn)
    raise DirectoryUnavailable("no LDAP server could be used: " + "; ".join(failures))


# A TLS 1.3 server checks the client's certificate after the client has finished its
# handshake: a refusal is a connection closed at the first request.
CLOSED_IN_TLS = (
    "TLS failed: the server closed the connection in the handshake or right after it;"
    " it may refuse our TLS version or ciphers (tls_minimum_version, tls_ciphers) or want"
    " a client certificate it trusts (tls_client_cert)"
)


def describe(error):
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
        if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return CLOSED_IN_TLS
        if isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None):
            return f"TLS failed: {cause.reason}"
        if isinstance(cause, LoginDeadline):
            return "no answer before the login's time (login_timeout) ran out"
        if isinstance(cause, AnswerTooLarge | ProtocolViolation):
            return str(cause).rpartition("error receiving data: ")[2]
        if isinstance(cause, socket.timeout | TimeoutError):
            return "no answer in time"
        cause = cause.__cause__ or cause.__context__
    if not isinstance(error, ServerFailed | ldap_errors.LDAPException | OSError):
        return f"unexpected {type(error).__name__} (a malformed answer?): {error}"
    text = str(error) or type(error).__name__
    if "login_timeout" in text:
        return "no answer before the login's time (login_timeout) ran out"
    if "max_response_bytes" in text:
        return text.rpartition("error receiving data: ")[2]
    return "no answer in time" if "timed out" in text else text
