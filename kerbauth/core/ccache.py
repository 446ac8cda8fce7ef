"""The credential cache format: what a cache file holds, read without the krb5 library.

The MIT file format (versions 3 and 4, which every current MIT and Heimdal
release writes) is parsed directly, so the hub, the user's server and
``kerbauth doctor`` read a cache's principal and ticket times the same way
with either backend and without the krb5 bindings. Files are opened without
following links and read only when they are regular files of at most
:data:`MAX_CCACHE_BYTES`.

Where caches live and how they are written is elsewhere: the hub's cache
directory in :mod:`kerbauth.core.cache_directory`, the one atomic write in
:mod:`kerbauth.core.atomic_write`.
"""

import os
import stat
import struct
from dataclasses import dataclass

from kerbauth.core.errors import CcacheError

__all__ = [
    "read_ccache",
    "read_ccache_bytes",
    "read_regular_file",
    "parse_ccache",
    "TicketTimes",
    "MAX_CCACHE_BYTES",
]

# A TGT cache is a few KB; a user's cache with thousands of service tickets
# stays far below this. Anything larger is not read.
MAX_CCACHE_BYTES = 4 * 1024 * 1024


def read_regular_file(fd, name):
    """The bytes of the open file ``fd`` (closed here): a regular file of at most
    :data:`MAX_CCACHE_BYTES`; ``name`` is for the error message."""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CcacheError(f"cache {name} is not a regular file")
        data = f.read(MAX_CCACHE_BYTES + 1)
    if len(data) > MAX_CCACHE_BYTES:
        raise CcacheError(f"cache {name} is larger than {MAX_CCACHE_BYTES} bytes")
    return data


@dataclass(frozen=True)
class TicketTimes:
    """The principal of a cache and the times of its ticket-granting ticket."""

    principal: str
    start: int  # seconds since the epoch
    end: int
    renew_till: int  # 0 when the ticket is not renewable


def read_ccache(path):
    """Read the default principal and the TGT times of the FILE cache at ``path``.

    The MIT file format (versions 3 and 4, which every current MIT and Heimdal
    release writes) is read directly, so this works with either backend and
    without the krb5 bindings. The file is opened without following links.
    Returns :class:`TicketTimes`, or raises :class:`CcacheError` when the file
    is missing, malformed or holds no TGT.
    """
    return parse_ccache(read_ccache_bytes(path), path)


def read_ccache_bytes(path):
    """The bytes of the cache file at ``path`` (``FILE:`` allowed), read without following links."""
    if path.startswith("FILE:"):
        path = path[len("FILE:") :]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise CcacheError(f"cache {path} cannot be read: {e.strerror}") from None
    return read_regular_file(fd, path)


def parse_ccache(data, name="cache"):
    """:class:`TicketTimes` of the cache bytes ``data``; ``name`` is for the error message."""
    try:
        return _parse_ccache(data)
    except (struct.error, ValueError, IndexError) as e:
        raise CcacheError(f"{name} is not a readable credential cache: {e}") from None


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def octets(self):
        length = self.take(">I")
        if self.pos + length > len(self.data):
            raise ValueError("truncated")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def principal(self):
        self.take(">I")  # name type
        count = self.take(">I")
        realm = self.octets().decode("utf-8", "replace")
        components = [self.octets().decode("utf-8", "replace") for _ in range(count)]
        return realm, components

    def at_end(self):
        return self.pos >= len(self.data)


def _parse_ccache(data):
    r = _Reader(data)
    version = r.take(">H")
    if version not in (0x0503, 0x0504):
        raise ValueError(f"unsupported cache format 0x{version:04x}")
    if version == 0x0504:
        header_length = r.take(">H")
        r.pos += header_length  # header fields (KDC time offset): not needed
    realm, components = r.principal()
    client = "/".join(components) + "@" + realm
    while not r.at_end():
        r.principal()  # client
        server_realm, server = r.principal()
        r.take(">H")  # key type
        r.octets()  # key
        _auth, start, end, renew_till = r.take(">IIII")
        r.take(">BI")  # is_skey, flags
        for _ in range(r.take(">I")):  # addresses
            r.take(">H")
            r.octets()
        for _ in range(r.take(">I")):  # authorization data
            r.take(">H")
            r.octets()
        r.octets()  # ticket
        r.octets()  # second ticket
        if server == ["krbtgt", realm] and server_realm == realm:
            return TicketTimes(client, start, end, renew_till)
    raise ValueError(f"no ticket-granting ticket for {client}")
