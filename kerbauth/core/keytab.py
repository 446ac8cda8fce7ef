"""Opening a user's keytab without trusting the path it lives at.

A keytab usually lives in the user's home directory, a place the user
controls. As root, opening such a path naively would let the user point it at
the host keytab (a symlink), hang the hub (a FIFO), or read a device. The
keytab is therefore opened once, without following a final symlink and without
blocking, checked on the open descriptor, and used through that descriptor
only, so it cannot be swapped between the check and the use.

A keytab is also bounded before any Kerberos library sees it: at most
:data:`MAX_KEYTAB_BYTES` bytes and :data:`MAX_KEYTAB_ENTRIES` records. Real
keytabs are a few hundred bytes to a few KB (one entry per key version and
encryption type); a keytab of 100 MB held a ticket request for its whole
timeout, and the log blamed the KDC.
"""

import errno
import os
import stat
import sys

from kerbauth.core.errors import KeytabError

__all__ = ["open_keytab", "read_keytab_bytes", "MAX_KEYTAB_BYTES", "MAX_KEYTAB_ENTRIES"]

MAX_KEYTAB_BYTES = 1024 * 1024
MAX_KEYTAB_ENTRIES = 1000


def open_keytab(path, uid):
    """Open ``path`` for reading and return its file descriptor.

    The keytab must be a regular file (not a symlink, FIFO, socket, device or
    directory), owned by root or by ``uid``, with no access for group or
    others, in the MIT keytab format (also Heimdal's), of at most
    :data:`MAX_KEYTAB_BYTES` bytes and :data:`MAX_KEYTAB_ENTRIES` records.
    Anything else raises :class:`KeytabError` naming the file and the reason.
    The caller closes the descriptor.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeytabError(path, "does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KeytabError(path, "is a symbolic link; refusing to follow it") from None
        raise KeytabError(path, f"cannot be opened: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        reason = _unsafe_reason(st, uid)
        if reason:
            raise KeytabError(path, reason)
        read_keytab_bytes(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_keytab_bytes(fd, path):
    """The bytes of the keytab open at ``fd``, checked against the caps.

    Read with ``pread`` (the descriptor's offset is not moved) and at most one
    byte more than :data:`MAX_KEYTAB_BYTES`, so a file that grew after
    :func:`open_keytab` checked it is refused here too. ``path`` names the
    file in the :class:`KeytabError`.
    """
    try:
        size = os.fstat(fd).st_size
        if size > MAX_KEYTAB_BYTES:
            raise KeytabError(path, _too_big(size))
        data = _pread_all(fd, MAX_KEYTAB_BYTES + 1)
    except OSError as e:
        raise KeytabError(path, f"cannot be read: {e.strerror}") from None
    if len(data) > MAX_KEYTAB_BYTES:
        raise KeytabError(path, _too_big(len(data)))
    reason = _format_reason(data)
    if reason:
        raise KeytabError(path, reason)
    return data


def _pread_all(fd, limit):
    chunks, offset = [], 0
    while offset < limit:
        chunk = os.pread(fd, limit - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _too_big(size):
    limit = MAX_KEYTAB_BYTES // (1024 * 1024)
    return (
        f"is {size} bytes; more than the {limit} MiB a keytab can sensibly be"
        " (a keytab holds a few keys: a few hundred bytes to a few KB)"
    )


def _format_reason(data):
    """Why ``data`` is not a keytab kerbauth hands on, or None.

    The MIT keytab format: two version bytes (0x05 0x01, records in the host's
    byte order, or 0x05 0x02, big-endian), then records, each a signed 32-bit
    length and that many bytes; a negative length is a hole of that many bytes
    left by a removed entry, a zero length ends the keytab. Only the lengths are
    read here: the library parses the entries.
    """
    if len(data) < 2 or data[0] != 5 or data[1] not in (1, 2):
        return "is not a keytab (it does not start with the keytab format version 0x0501 or 0x0502)"
    order = sys.byteorder if data[1] == 1 else "big"
    records, pos = 0, 2
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], order, signed=True)
        if size == 0:
            break
        records += 1
        if records > MAX_KEYTAB_ENTRIES:
            return (
                f"has more than {MAX_KEYTAB_ENTRIES} entries; a keytab holds a few keys"
                " (one per key version and encryption type)"
            )
        pos += 4 + abs(size)
    return None


def _unsafe_reason(st, uid):
    if not stat.S_ISREG(st.st_mode):
        kind = _file_kind(st.st_mode)
        return f"is a {kind}, not a regular file"
    if st.st_uid not in (0, uid):
        return f"is owned by uid {st.st_uid}; it must be owned by root or by the user (uid {uid})"
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        return f"is accessible by group or others (mode {mode:04o}); it must be mode 0600 or 0400"
    return None


def _file_kind(mode):
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return "special file"
