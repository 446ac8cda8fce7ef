"""LDAP servers that misbehave on purpose: a TCP proxy in front of the test slapd.

:class:`HostileLDAP` listens on a loopback port and passes every connection
through to a real LDAP server (the ``slapd`` fixture of :mod:`support.slapd`),
until a request on that connection makes ``hostile(request)`` true; from then
on that connection misbehaves in the way ``mode`` names:

``"trickle"``
    every byte the server sends back is passed on ``byte_delay`` seconds
    after the previous one: valid answers, arbitrarily slow (a server, or
    anything on the path before TLS, that holds a login for as long as it
    likes without ever letting a receive timeout expire).
``"slow"``
    each chunk the server sends back is passed on whole, ``answer_delay``
    seconds late (answers that each come in time, a login that does not).
``"huge_search"``
    a search request is not passed on: it is answered with one entry of
    ``huge_bytes`` bytes and a successful searchResDone.
``"malformed"``
    the request is not passed on: it is answered with a message whose
    framing is valid but whose content makes ldap3's decoder raise KeyError.

``hostile`` gets a :class:`Request` (the operation, its message ID and, for a
bind, the DN): ``lambda r: True`` (the default) turns every connection hostile
from its first request; ``binds_as(dn)`` only connections whose bind request
carries ``dn`` (in plain LDAP: before StartTLS the proxy sees only the
StartTLS request, after it only TLS records, which it passes through).

With ``tls=True`` the upstream port speaks TLS from the first byte (LDAPS):
the proxy sees no requests, so every connection is hostile from its first
byte (``"trickle"`` and ``"slow"`` only), the TLS handshake included.

Other connections are passed through untouched, so the same proxy serves
innocent users and an attacker at once: ``HostileLDAP(slapd_address,
mode="trickle", hostile=binds_as(attacker_dn))`` is "a path that misbehaves
for some logins". ``stats`` counts connections, hostile connections and bytes
sent to clients. Use it as a context manager (or the ``hostile_ldap`` fixture
factory below): on exit the listener and every connection are closed and all
threads joined.
"""

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

MODES = ("trickle", "slow", "huge_search", "malformed")

# LDAP protocolOp tags (RFC 4511, [APPLICATION n], constructed where it applies).
BIND_REQUEST = 0x60
SEARCH_REQUEST = 0x63
EXTENDED_REQUEST = 0x77
UNBIND_REQUEST = 0x42
_OPS = {
    BIND_REQUEST: "bind",
    SEARCH_REQUEST: "search",
    EXTENDED_REQUEST: "extended",
    UNBIND_REQUEST: "unbind",
}


@dataclass
class Request:
    op: str  # "bind", "search", "extended", "unbind" or "other"
    message_id: int
    bind_dn: str = ""


@dataclass
class Stats:
    connections: int = 0
    hostile_connections: int = 0
    bytes_to_clients: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts):
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def binds_as(dn):
    """A ``hostile`` predicate: true for a bind request carrying ``dn`` (any case)."""
    return lambda request: request.op == "bind" and request.bind_dn.lower() == dn.lower()


# --- BER, just what the proxy needs ---------------------------------------------------


def ber_length(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag, value):
    return bytes([tag]) + ber_length(len(value)) + value


def message_size(buffer):
    """Length of the BER element at the start of ``buffer``, or None if incomplete."""
    if len(buffer) < 2:
        return None
    if buffer[1] < 0x80:
        return 2 + buffer[1]
    count = buffer[1] & 0x7F
    if len(buffer) < 2 + count:
        return None
    return 2 + count + int.from_bytes(buffer[2 : 2 + count], "big")


def _element(data, offset):
    """``(tag, value start, value end)`` of the BER element at ``offset``."""
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    start = offset + 2 + count
    return tag, start, start + length


def parse_request(message):
    """A :class:`Request` from one LDAPMessage (as the client sent it)."""
    _, start, _ = _element(message, 0)  # the LDAPMessage SEQUENCE
    _, id_start, id_end = _element(message, start)
    message_id = int.from_bytes(message[id_start:id_end], "big")
    op_tag, op_start, _ = _element(message, id_end)
    request = Request(_OPS.get(op_tag, "other"), message_id)
    if op_tag == BIND_REQUEST:
        _, _, version_end = _element(message, op_start)
        _, name_start, name_end = _element(message, version_end)
        request.bind_dn = message[name_start:name_end].decode("utf-8", "replace")
    return request


def _int(value):
    return tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def search_done(message_id):
    """A successful searchResDone for ``message_id``."""
    body = tlv(0x0A, b"\x00") + tlv(0x04, b"") + tlv(0x04, b"")
    return tlv(0x30, _int(message_id) + tlv(0x65, body))


def malformed_answer(message_id):
    """A message with valid framing whose second element has universal tag 15,
    which ldap3's fast decoder has no entry for (a KeyError)."""
    return tlv(0x30, _int(message_id) + b"\x0f\x00")


def huge_entry_chunks(message_id, dn, size, chunk=65536):
    """A searchResEntry for ``dn`` whose one attribute value is ``size`` bytes,
    in pieces of at most ``chunk`` bytes (never all in memory)."""
    value_header = b"\x04" + ber_length(size)
    attr_type = tlv(0x04, b"description")
    values_len = len(value_header) + size
    values_header = b"\x31" + ber_length(values_len)
    attr_len = len(attr_type) + len(values_header) + values_len
    attr_header = b"\x30" + ber_length(attr_len)
    attrs_len = len(attr_header) + attr_len
    attrs_header = b"\x30" + ber_length(attrs_len)
    name = tlv(0x04, dn.encode())
    entry_len = len(name) + len(attrs_header) + attrs_len
    entry_header = b"\x64" + ber_length(entry_len)
    mid = _int(message_id)
    total = len(mid) + len(entry_header) + entry_len
    yield (
        b"\x30"
        + ber_length(total)
        + mid
        + entry_header
        + name
        + attrs_header
        + attr_header
        + attr_type
        + values_header
        + value_header
    )
    left = size
    filler = b"x" * chunk
    while left > 0:
        n = min(chunk, left)
        yield filler[:n]
        left -= n


# --- the proxy ------------------------------------------------------------------------


class HostileLDAP:
    """A proxy in front of ``upstream`` (``(host, port)``) that misbehaves on chosen
    connections; see the module's docstring. ``address`` is ``(host, port)``."""

    def __init__(
        self,
        upstream,
        mode="trickle",
        hostile=None,
        byte_delay=0.5,
        answer_delay=1.0,
        huge_bytes=24 * 1024 * 1024,
        tls=False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if tls and (mode not in ("trickle", "slow") or hostile is not None):
            raise ValueError("with tls=True, only trickle or slow, for every connection")
        self.tls = tls
        self.upstream = upstream
        self.mode = mode
        self.hostile = hostile or (lambda request: True)
        self.byte_delay = byte_delay
        self.answer_delay = answer_delay
        self.huge_bytes = huge_bytes
        self.stats = Stats()
        self._stop = threading.Event()
        self._threads = []
        self._sockets = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.address = self._listener.getsockname()

    # --- lifecycle ---

    def __enter__(self):
        self._start(self._accept, "hostile-ldap-accept")
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in list(self._threads):
            thread.join(10)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"hostile LDAP threads still running: {alive}"

    def _start(self, target, name, *args):
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _keep(self, sock):
        with self._lock:
            self._sockets.append(sock)
        return sock

    # --- connections ---

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._keep(client)
            self.stats.add(connections=1)
            try:
                server = self._keep(socket.create_connection(self.upstream, timeout=5))
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            state = {"hostile": self.tls, "tls": self.tls}
            if self.tls:
                self.stats.add(hostile_connections=1)
            self._start(self._from_client, "hostile-ldap-in", client, server, state)
            self._start(self._from_server, "hostile-ldap-out", client, server, state)

    def _send(self, client, data):
        client.sendall(data)
        self.stats.add(bytes_to_clients=len(data))

    def _from_client(self, client, server, state):
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                data = client.recv(65536)
                if not data:
                    break
                if state["tls"]:
                    server.sendall(data)
                    continue
                buffer += data
                while (size := message_size(buffer)) is not None and len(buffer) >= size:
                    message = bytes(buffer[:size])
                    del buffer[:size]
                    self._request(client, server, state, message)
                    if state["tls"] and buffer:
                        server.sendall(bytes(buffer))
                        buffer.clear()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    def _request(self, client, server, state, message):
        request = parse_request(message)
        if not state["hostile"] and self.hostile(request):
            state["hostile"] = True
            self.stats.add(hostile_connections=1)
        if state["hostile"] and self.mode == "malformed":
            self._send(client, malformed_answer(request.message_id))
            return
        if state["hostile"] and self.mode == "huge_search" and request.op == "search":
            for piece in huge_entry_chunks(request.message_id, "cn=huge", self.huge_bytes):
                if self._stop.is_set():
                    return
                self._send(client, piece)
            self._send(client, search_done(request.message_id))
            return
        if request.op == "extended":
            # StartTLS, the only extended operation a login sends: TLS records follow.
            state["tls"] = True
        server.sendall(message)

    def _from_server(self, client, server, state):
        try:
            while not self._stop.is_set():
                data = server.recv(65536)
                if not data:
                    break
                if state["hostile"] and self.mode == "trickle":
                    for i in range(len(data)):
                        if self._stop.wait(self.byte_delay):
                            return
                        self._send(client, data[i : i + 1])
                elif state["hostile"] and self.mode == "slow":
                    if self._stop.wait(self.answer_delay):
                        return
                    self._send(client, data)
                else:
                    self._send(client, data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)


@pytest.fixture
def hostile_ldap(slapd):
    """``hostile_ldap(mode=..., hostile=..., ...)``: a started :class:`HostileLDAP` in
    front of the test slapd's plain LDAP port (its LDAPS port with ``tls=True``);
    all are closed at teardown."""
    started = []

    def factory(**kwargs):
        port = slapd.ldaps_port if kwargs.get("tls") else slapd.ldap_port
        proxy = HostileLDAP((slapd.host, port), **kwargs).__enter__()
        started.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in started:
            proxy.close()


def wait_for(condition, deadline=10, what="condition"):
    """Poll ``condition()`` every 20 ms until it is true; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {deadline} s")
        time.sleep(0.02)
