"""Opening a user's keytab without trusting the path it lives at.

A keytab usually lives in the user's home directory, a place the user
controls. As root, opening such a path naively would let the user point it at
the host keytab (a symlink), hang the hub (a FIFO), or read a device. The
keytab is therefore opened once, without following a final symlink and without
blocking, checked on the open descriptor, and used through that descriptor
only, so it cannot be swapped between the check and the use.
"""

import errno
import os
import stat

from .errors import KeytabError

__all__ = ["open_keytab", "keytab_path_for_fd"]


def open_keytab(path, uid):
    """Open ``path`` for reading and return its file descriptor.

    The keytab must be a regular file (not a symlink, FIFO, socket, device or
    directory), owned by root or by ``uid``, with no access for group or
    others. Anything else raises :class:`KeytabError` naming the file and the
    reason. The caller closes the descriptor.
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
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def keytab_path_for_fd(fd, pid=None):
    """A keytab name that reopens exactly the file behind ``fd`` of process ``pid``.

    Reopening through ``/proc`` gives the same inode that was checked, whatever
    has happened to the original path since.
    """
    pid = os.getpid() if pid is None else pid
    return f"FILE:/proc/{pid}/fd/{fd}"
