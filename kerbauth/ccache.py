"""Ticket caches on disk: the cache directory, atomic writes, reading expiry.

How a cache is written (and why):

1. The backend writes the new cache into a private directory (``mkdtemp``,
   mode 0700, owned by the hub) made inside the cache directory. Nobody else
   can create, replace or link anything in it, so no planted symlink or
   hardlink can be written through, whatever the cache directory is.
2. The file is opened without following links and checked on the descriptor:
   a regular file with exactly one link.
3. Owner and mode are set on the descriptor (``fchown``, ``fchmod 0600``),
   then the data is flushed (``fsync``).
4. ``rename`` puts it over the final name in one step: a reader sees the old
   cache or the new one, never an empty or partial file. A symlink or hardlink
   that was planted at the final name is replaced as a directory entry; the
   file it pointed to is not touched.
5. The directory is flushed, and the private directory removed. On any error
   the temporary file goes too and the previous cache is left as it was.
"""

import errno
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass

from .errors import CcacheError

__all__ = [
    "prepare_ccache_dir",
    "write_ccache",
    "remove_ccache",
    "read_ccache",
    "read_ccache_bytes",
    "parse_ccache",
    "TicketTimes",
]


def prepare_ccache_dir(path, mode=0o711):
    """Make sure ``path`` is a safe home for ticket caches, creating it if absent.

    The directory must be a real directory (not a symlink), owned by the user
    the hub runs as (root, normally) and writable by nobody else. A missing
    directory is created with ``mode`` (0711: users can reach a cache whose
    name they know, but cannot list or create anything). Raises
    :class:`CcacheError` naming the directory and the problem.
    """
    if not os.path.isabs(path):
        raise CcacheError(f"KerberosTickets.ccache_dir must be an absolute path, not {path!r}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        created = False
    except FileNotFoundError:
        raise CcacheError(
            f"KerberosTickets.ccache_dir {path}: its parent directory does not exist"
        ) from None
    except OSError as e:
        raise CcacheError(f"KerberosTickets.ccache_dir {path} cannot be created: {e}") from None
    else:
        created = True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symbolic link" if os.path.islink(path) else "not a directory"
            raise CcacheError(
                f"KerberosTickets.ccache_dir {path} is {what}; it must be a real directory"
            ) from None
        raise CcacheError(f"KerberosTickets.ccache_dir {path} cannot be opened: {e}") from None
    try:
        if created:
            os.fchmod(fd, mode)
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise CcacheError(
                f"KerberosTickets.ccache_dir {path} is owned by uid {st.st_uid}; it must be owned"
                f" by the user the hub runs as (uid {os.geteuid()})"
            )
        if st.st_mode & 0o022:
            raise CcacheError(
                f"KerberosTickets.ccache_dir {path} is writable by group or others"
                f" (mode {stat.S_IMODE(st.st_mode):04o}); use a directory only the hub can write,"
                f" such as /run/kerbauth (mode 0711)"
            )
    finally:
        os.close(fd)
    return path


def write_ccache(path, fill, uid, gid):
    """Write a cache at ``path`` atomically, owned by ``uid``/``gid``, mode 0600.

    ``fill(tmp_path)`` must write a complete FILE cache at ``tmp_path`` (a
    path in a fresh private directory) or raise. Whatever it raises is passed
    on, after the temporary file is removed; the cache at ``path`` is then
    unchanged.
    """
    directory = os.path.dirname(path)
    private = tempfile.mkdtemp(prefix=".kerbauth-", dir=directory)
    tmp = os.path.join(private, "ccache")
    try:
        fill(tmp)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise CcacheError(f"the new cache {tmp} cannot be opened: {e}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise CcacheError(f"the new cache {tmp} is not a regular file with one link")
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, path)
        except OSError as e:
            raise CcacheError(f"cannot put the new cache in place at {path}: {e}") from None
        _fsync_dir(directory)
    finally:
        # The private directory is the hub's alone; anything a killed backend
        # left in it goes with it. rmtree does not follow symlinks.
        shutil.rmtree(private, ignore_errors=True)


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_ccache(path):
    """Remove the cache at ``path``; return True if there was one.

    Unlinking removes the directory entry only, so a symlink planted there is
    removed, not followed.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


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
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CcacheError(f"cache {path} is not a regular file")
        return f.read(4 * 1024 * 1024)


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
