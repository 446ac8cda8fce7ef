"""Asking a KDC whether it is there: a minimal AS-REQ, by hand, on TCP or UDP.

An open port says little (a firewall, another daemon); an answer to a
Kerberos request from the right realm says the KDC is up and serves it. The
probe asks for a ticket of a principal that does not exist, with no
pre-authentication and no secret, and expects the KDC's error reply
("client not found"). Plain functions, no Kerberos library: ``kerbauth
doctor`` uses it whichever ticket backend is configured.
"""

import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["KdcAnswer", "as_req", "parse_reply", "probe_kdc", "PROBE_NAME"]

# The client name asked for. Any answer from the KDC will do; "not found" is expected.
PROBE_NAME = "kerbauth-doctor-probe"

# Error codes of RFC 4120 that the doctor names.
ERROR_NAMES = {
    6: "client not found",
    14: "no supported encryption type",
    24: "pre-authentication failed",
    25: "pre-authentication required",
    37: "clock skew too great",
    68: "wrong realm",
}


def _der(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items):
    return _der(0x30, b"".join(items))


def _tagged(number, content):
    return _der(0xA0 + number, content)


def _int(value):
    return _der(0x02, value.to_bytes((value.bit_length() + 8) // 8 or 1, "big", signed=True))


def _string(text):
    return _der(0x1B, text.encode("utf-8"))  # GeneralString


def _name(name_type, *components):
    return _seq(_tagged(0, _int(name_type)), _tagged(1, _seq(*map(_string, components))))


def as_req(realm, client=PROBE_NAME, nonce=None):
    """The DER bytes of an AS-REQ for ``client@realm`` (RFC 4120, 5.4.1), without padata."""
    nonce = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF if nonce is None else nonce
    body = _seq(
        _tagged(0, _der(0x03, b"\x00\x00\x00\x00\x00")),  # kdc-options: none
        _tagged(1, _name(1, client)),  # NT-PRINCIPAL
        _tagged(2, _string(realm)),
        _tagged(3, _name(2, "krbtgt", realm)),  # NT-SRV-INST
        _tagged(5, _der(0x18, b"20370101000000Z")),  # till
        _tagged(7, _int(nonce)),
        _tagged(8, _seq(_int(18), _int(17), _int(20), _int(19))),  # AES etypes
    )
    return _der(0x6A, _seq(_tagged(1, _int(5)), _tagged(2, _int(10)), _tagged(4, body)))


def _read(data, pos):
    """``(tag, content, next position)`` of the DER element at ``pos``."""
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(data):
        raise ValueError("truncated reply")
    return tag, data[pos : pos + length], pos + length


@dataclass(frozen=True)
class KdcAnswer:
    """What a KDC said: an AS-REP, or an error with its code and realm."""

    kind: str  # "error" or "as-rep"
    realm: str
    code: int = 0

    @property
    def error_name(self):
        return ERROR_NAMES.get(self.code, f"error {self.code}")


def parse_reply(data):
    """:class:`KdcAnswer` of a KDC reply; ValueError when ``data`` is no Kerberos reply."""
    if not data or data[0] not in (0x6B, 0x7E):
        raise ValueError(f"not a Kerberos reply (first byte {data[:1].hex() or 'missing'})")
    try:
        tag, content, _ = _read(data, 0)
        if tag == 0x6B:  # AS-REP: the probe name exists and needs no pre-authentication
            _, fields, _ = _read(content, 0)
            return KdcAnswer("as-rep", _text(fields, 3))
        _, fields, _ = _read(content, 0)
        code = int.from_bytes(_field(fields, 6, b"\x00"), "big", signed=True)
        return KdcAnswer("error", _text(fields, 9), code)
    except IndexError:
        raise ValueError("truncated reply") from None


def _field(fields, number, missing):
    """The content of the inner element of context field ``[number]``, or ``missing``."""
    pos = 0
    while pos < len(fields):
        tag, content, pos = _read(fields, pos)
        if tag == 0xA0 + number:
            return _read(content, 0)[1]
    return missing


def _text(fields, number):
    return _field(fields, number, b"").decode("utf-8", "replace")


def probe_kdc(host, port, realm, transport, timeout):
    """Send the probe to ``host:port`` over ``transport`` ("tcp" or "udp").

    Returns :class:`KdcAnswer`; raises OSError (refused, unreachable,
    timeout) or ValueError (something answered, but not a KDC). Waits at
    most about ``timeout`` seconds.
    """
    request = as_req(realm)
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    )[0]
    with socket.socket(family, kind, proto) as s:
        s.settimeout(timeout)
        s.connect(address)
        if transport == "tcp":
            s.sendall(struct.pack(">I", len(request)) + request)
            length = struct.unpack(">I", _recv_exactly(s, 4))[0]
            if length > 1 << 20:
                raise ValueError("not a Kerberos reply (length prefix too large)")
            return parse_reply(_recv_exactly(s, length))
        s.send(request)
        return parse_reply(s.recv(65536))


def _recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed before the reply was complete")
        data += chunk
    return data
