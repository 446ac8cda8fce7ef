"""The hub's cache directory: checked at start, held by descriptor, written atomically.

The cache directory is the hub's (``KerberosTickets.ccache_dir``): root owns
it and nobody else can write in it. :class:`CacheDirectory` holds it open by
descriptor from start-up on and does every file operation relative to that
descriptor, after checking that the path still names the same directory. A
/tmp cleaner that removes it, and a user who then makes a directory of that
name, get nothing: the hub notices the change before its next write, refuses
to write into a directory it does not own, and recreates one of its own when
the name is free again.

Caches are written by :func:`kerbauth.core.atomic_write.atomic_write` (a
temporary file of the hub's own, owner and mode set on its descriptor,
rename, fsync of the directory). Temporary files left by a hub that was
killed (``kill -9``) are removed when the next hub opens the directory.
"""

import errno
import os
import stat
import threading

from kerbauth.core.atomic_write import TEMP_PREFIX, atomic_write, temp_pid
from kerbauth.core.ccache import read_regular_file
from kerbauth.core.errors import CcacheError

__all__ = ["CacheDirectory", "prepare_ccache_dir", "check_ccache_parent", "pid_alive"]

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _option(path):
    return f"KerberosTickets.ccache_dir {path}"


def check_ccache_parent(path):
    """Refuse a cache directory whose parent, or any ancestor, others could rearrange.

    The parent itself must be writable by its owner only (a directory right
    in /tmp, even with the sticky bit, is refused: a /tmp cleaner removes it
    and any user can take the name). A higher ancestor writable by others
    must at least be sticky, so that nobody but its owner can rename what is
    in it.
    """
    parent = os.path.dirname(path.rstrip("/")) or "/"
    try:
        st = os.stat(parent)
    except OSError as e:
        raise CcacheError(
            f"{_option(path)}: its parent {parent} cannot be read: {e.strerror}"
        ) from None
    if st.st_mode & 0o022 or st.st_uid not in (0, os.geteuid()):
        raise CcacheError(
            f"{_option(path)} is inside {parent}, which others can write (mode"
            f" {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}); put it in a directory only"
            " root can write, such as /run/kerbauth"
        )
    ancestor = parent
    while ancestor != "/":
        ancestor = os.path.dirname(ancestor)
        st = os.stat(ancestor)
        if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
            raise CcacheError(
                f"{_option(path)} is below {ancestor}, which anyone can write"
                f" (mode {stat.S_IMODE(st.st_mode):04o}, not sticky)"
            )


def _open_checked(path):
    """A descriptor of the directory ``path``, checked to be a safe home for caches."""
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symbolic link" if os.path.islink(path) else "not a directory"
            raise CcacheError(f"{_option(path)} is {what}; it must be a real directory") from None
        raise CcacheError(f"{_option(path)} cannot be opened: {e}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise CcacheError(
                f"{_option(path)} is owned by uid {st.st_uid}; it must be owned"
                f" by the user the hub runs as (uid {os.geteuid()})"
            )
        if st.st_mode & 0o022:
            raise CcacheError(
                f"{_option(path)} is writable by group or others"
                f" (mode {stat.S_IMODE(st.st_mode):04o}); use a directory only the hub can write,"
                f" such as /run/kerbauth (mode 0711)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_dir(path, mode):
    """Create ``path`` (mode ``mode``); False if something of that name exists."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise CcacheError(f"{_option(path)}: its parent directory does not exist") from None
    except OSError as e:
        raise CcacheError(f"{_option(path)} cannot be created: {e}") from None
    fd = os.open(path, _OPEN_DIR)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def prepare_ccache_dir(path, mode=0o711):
    """Check (creating it if absent) that ``path`` is a safe home for ticket caches.

    The directory must be a real directory (not a symlink), owned by the user
    the hub runs as (root, normally), writable by nobody else, in a parent
    only root can write (see :func:`check_ccache_parent`). A missing directory
    is created with ``mode`` (0711: users can reach a cache whose name they
    know, but cannot list or create anything). Raises :class:`CcacheError`
    naming the directory and the problem.
    """
    if not os.path.isabs(path):
        raise CcacheError(f"KerberosTickets.ccache_dir must be an absolute path, not {path!r}")
    check_ccache_parent(path)
    _make_dir(path, mode)
    os.close(_open_checked(path))
    return path


def pid_alive(pid):
    """Whether a process ``pid`` runs (one of another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CacheDirectory:
    """The cache directory, held by descriptor; every operation is relative to it.

    Blocking (file system calls): the hub calls it on its ticket threads.
    ``open()`` does the start-up check and takes the descriptor; nothing
    happens in the constructor.
    """

    def __init__(self, path, mode=0o711, log=None):
        self.path = path
        self.mode = mode
        self.log = log
        self._fd = None
        self._lock = threading.Lock()

    def open(self):
        """Check or create the directory, hold it, and remove stale temporary files."""
        prepare_ccache_dir(self.path, self.mode)
        with self._lock:
            self._hold()
        self.remove_stale()
        return self

    def close(self):
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _hold(self):
        fd = _open_checked(self.path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd

    def _dir_fd(self, make=True):
        """The held descriptor, after checking that ``path`` still names that directory.

        A directory removed from under the hub is made again (and held), or,
        with ``make=False``, None is returned; one replaced by something the
        hub does not own is refused.
        """
        with self._lock:
            if self._fd is None:
                self._hold()
            held = os.fstat(self._fd)
            try:
                now = os.lstat(self.path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return self._fd
            if now is None:
                if not make:
                    return None
                _make_dir(self.path, self.mode)
                if self.log:
                    self.log.warning("kerbauth: %s was removed; made it again", _option(self.path))
            try:
                self._hold()
            except CcacheError as e:
                raise CcacheError(
                    f"{_option(self.path)} was replaced while the hub ran: {e.detail}"
                ) from None
            return self._fd

    def file_path(self, name):
        return os.path.join(self.path, name)

    def write(self, name, data, uid, gid):
        """Put the cache bytes ``data`` at ``name`` atomically, owned by ``uid``/``gid``, 0600."""
        return atomic_write(self._dir_fd(), name, data, directory=self.path, uid=uid, gid=gid)

    def read(self, name):
        """The bytes of the cache ``name`` (not following links), or None if there is none."""
        dir_fd = self._dir_fd(make=False)
        if dir_fd is None:
            return None
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
            )
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CcacheError(
                f"cache {self.file_path(name)} cannot be read: {e.strerror}"
            ) from None
        return read_regular_file(fd, self.file_path(name))

    def exists(self, name):
        dir_fd = self._dir_fd(make=False)
        if dir_fd is None:
            return False
        try:
            os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        return True

    def remove(self, name):
        """Remove the cache ``name``; True if there was one. A planted link is removed, not
        followed."""
        dir_fd = self._dir_fd(make=False)
        if dir_fd is None:
            return False  # no directory, no cache
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise CcacheError(f"cannot remove {self.file_path(name)}: {e.strerror}") from None
        return True

    def remove_stale(self):
        """Remove temporary entries that a hub which no longer runs left behind."""
        dir_fd = self._dir_fd()
        removed = 0
        for name in os.listdir(dir_fd):
            if not name.startswith(TEMP_PREFIX):
                continue
            pid = temp_pid(name)
            if pid is not None and (pid == os.getpid() or pid_alive(pid)):
                continue
            try:
                st = os.lstat(name, dir_fd=dir_fd)
                if stat.S_ISDIR(st.st_mode):
                    _remove_tree(dir_fd, name)
                else:
                    os.unlink(name, dir_fd=dir_fd)
            except OSError:
                continue
            removed += 1
        if removed and self.log:
            self.log.info(
                "kerbauth: removed %d temporary file(s) left in %s by an earlier hub",
                removed,
                self.path,
            )
        return removed


def _remove_tree(dir_fd, name):
    """Remove the directory ``name`` below ``dir_fd`` and what is in it, following no link."""
    fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    try:
        for entry in os.listdir(fd):
            st = os.lstat(entry, dir_fd=fd)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
