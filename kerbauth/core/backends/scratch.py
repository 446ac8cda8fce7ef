"""Scratch directories: where a child (kinit, a krb5 worker) writes the cache it made.

Each request gets a fresh private directory (mode 0700, owned by the uid the
child runs as), named ``kerbauth-<hub pid>-<random>`` in the temporary
directory: made by the hub for kinit (:class:`HubScratch`), by the worker
itself for the krb5 backend (at a path the hub chose, :func:`scratch_path`).
The cache is read back without following links (:func:`read_child_cache`) and
the directory removed, following no links either; :func:`remove_stale_scratch`
removes those left by hub processes that were killed.
"""

import contextlib
import os
import re
import secrets
import stat
import tempfile
import time

from kerbauth.core.cache_directory import pid_alive
from kerbauth.core.ccache import MAX_CCACHE_BYTES
from kerbauth.core.errors import TicketError

__all__ = [
    "scratch_path",
    "HubScratch",
    "scratch_errors",
    "read_child_cache",
    "remove_scratch",
    "NotScratch",
    "remove_stale_scratch",
    "MAX_CHILD_CACHE_BYTES",
]

# What a child's cache may weigh when read back: a TGT cache is a few KB.
# A child's cache is read up to the size any cache kerbauth reads may have.
MAX_CHILD_CACHE_BYTES = MAX_CCACHE_BYTES


@contextlib.contextmanager
def scratch_errors(what):
    """An OSError on the way (a full or read-only /tmp, no memory) as a TicketError."""
    try:
        yield
    except OSError as e:
        raise TicketError(
            "ccache", f"{what}: the request's scratch directory or keytab copy failed: {e}"
        ) from None


_SCRATCH = re.compile(r"kerbauth-([0-9]{1,7})-[0-9a-f]{16}")
# Private directories of kerbauth 0.1 (no pid in the name): removed when old.
_LEGACY = re.compile(r"kerbauth-(pw|fetch|renew)-[A-Za-z0-9_]{8}")
_LEGACY_AGE = 3600
_PID_MAX = 4194304  # the largest pid Linux can give (PID_MAX_LIMIT)


def scratch_path(directory=None):
    """A new scratch directory name of this process: ``<tmp>/kerbauth-<pid>-<random>``."""
    directory = tempfile.gettempdir() if directory is None else directory
    return os.path.join(directory, f"kerbauth-{os.getpid()}-{secrets.token_hex(8)}")


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HubScratch:
    """A scratch directory the hub makes for a child running as ``run_as`` (kinit).

    Made 0700 by the hub (``mkdir`` of a new random name, so nothing can be
    planted there first), held by descriptor; :meth:`write` puts the files the
    child reads in it, then :meth:`hand_over` gives the directory to ``run_as``
    with ``fchown`` on that descriptor, never by path. :meth:`read_cache` reads
    the child's cache back (see :func:`read_child_cache`); :meth:`remove`
    removes the directory through the descriptor, following no links.
    """

    def __init__(self, run_as, directory=None):
        self.run_as = run_as
        self.path = scratch_path(directory)
        try:
            os.mkdir(self.path, 0o700)
            self.fd = os.open(self.path, _OPEN_DIR)
        except OSError as e:
            raise TicketError(
                "ccache", f"cannot make a scratch directory {self.path}: {e.strerror}"
            ) from None
        os.fchmod(self.fd, 0o700)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def write(self, name, data):
        """Write ``data`` into a new file ``name`` (mode 0600, owned by ``run_as``)."""
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=self.fd,
        )
        try:
            if self.run_as is not None:
                os.fchown(fd, *self.run_as)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def hand_over(self):
        if self.run_as is not None:
            os.fchown(self.fd, *self.run_as)

    def read_cache(self, name, what):
        return read_child_cache(self.fd, name, what)

    def remove(self):
        if self.fd is None:
            return
        try:
            _remove_tree_fd(self.fd, self.path)
        except OSError:
            pass  # filled by the user's own processes: left to remove_stale_scratch
        finally:
            os.close(self.fd)
            self.fd = None


def read_child_cache(dir_fd, name, what):
    """The bytes of the cache ``name`` a child wrote in the scratch directory ``dir_fd``.

    Opened relative to the directory without following links; it must be a
    regular file with one link and at most :data:`MAX_CHILD_CACHE_BYTES`.
    ``what`` names the request in the :class:`TicketError`.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        raise TicketError(
            "other", f"{what}: the new cache cannot be opened: {e.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise TicketError("other", f"{what}: the new cache is not a regular file with one link")
        chunks, size = [], 0
        while size <= MAX_CHILD_CACHE_BYTES:
            chunk = os.read(fd, MAX_CHILD_CACHE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CHILD_CACHE_BYTES:
            raise TicketError(
                "other", f"{what}: the new cache is larger than {MAX_CHILD_CACHE_BYTES} bytes"
            )
        return b"".join(chunks)
    finally:
        os.close(fd)


# A scratch directory holds a cache or two and kinit's temporary file. One
# with more (a user can make directories of such names in /tmp, or fill their
# own child's) is not removed: emptying it would cost the hub without bound.
_MAX_SCRATCH_ENTRIES = 64
_MAX_SCRATCH_DEPTH = 2


class NotScratch(OSError):
    """A directory of a scratch name holds more than a scratch directory can."""


def _clear(dir_fd, depth=0):
    """Remove everything inside the directory open at ``dir_fd``, following no links."""
    names = os.listdir(dir_fd)
    if len(names) > _MAX_SCRATCH_ENTRIES or depth > _MAX_SCRATCH_DEPTH:
        raise NotScratch(f"{len(names)} entries at depth {depth}; not a kerbauth scratch directory")
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
                try:
                    _clear(sub, depth + 1)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=dir_fd)
            else:
                os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue


def _remove_tree_fd(fd, path):
    """Empty the directory open at ``fd``; remove ``path`` if it still names it."""
    _clear(fd)
    held = os.fstat(fd)
    with contextlib.suppress(OSError):
        st = os.stat(path, follow_symlinks=False)
        if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
            os.rmdir(path)


def remove_scratch(path):
    """Remove the scratch directory ``path`` (of any owner) if it is one; follow no links.

    Raises :class:`NotScratch` (an OSError) for a directory that holds more
    than a scratch directory can, and leaves it.
    """
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError:
        return False  # gone, or not a directory (a symlink is not followed)
    try:
        _remove_tree_fd(fd, path)
    finally:
        os.close(fd)
    return True


def remove_stale_scratch(directory=None, log=None):
    """Remove the scratch directories of hub processes that are no longer running.

    Looks in ``directory`` (default: :func:`tempfile.gettempdir`, where the
    backends make them) for ``kerbauth-<pid>-<random>`` directories whose pid
    is not a running process, and removes them; a running process's (this
    hub's, another hub's on the same host) are never touched. Directories of
    kerbauth 0.1 (``kerbauth-pw-*``, ``kerbauth-fetch-*``,
    ``kerbauth-renew-*``: no pid in the name) owned by this uid are removed
    when older than an hour. Nothing is followed: a symlink of such a name is
    left alone. Returns the paths removed; ``log`` (a :class:`logging.Logger`)
    gets one line naming how many.
    """
    directory = tempfile.gettempdir() if directory is None else directory
    try:
        names = os.listdir(directory)
    except OSError as e:
        if log:
            log.warning("kerbauth: cannot list %s for stale scratch directories: %s", directory, e)
        return []
    removed = []
    now = time.time()
    for name in names:
        path = os.path.join(directory, name)
        match = _SCRATCH.fullmatch(name)
        if match:
            pid = int(match.group(1))
            if not 0 < pid <= _PID_MAX or pid_alive(pid):
                continue
        elif _LEGACY.fullmatch(name):
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid != os.geteuid() or now - st.st_mtime < _LEGACY_AGE:
                continue
        else:
            continue
        try:
            if remove_scratch(path):
                removed.append(path)
        except OSError as e:
            if log:
                log.warning("kerbauth: cannot remove the stale scratch directory %s: %s", path, e)
    if removed and log:
        log.info(
            "kerbauth: removed %d scratch directories of hub processes no longer running in %s",
            len(removed),
            directory,
        )
    return removed
