"""Where the server's ticket goes: a FILE cache in a directory that is the server's own.

``KRB5CCNAME`` (``FILE:<path>``) names the place; :func:`open_cache` checks it
before anything is written. Every directory on the way is opened without
following symbolic links and checked on its descriptor (owned by root or by
the server's uid, not writable by group or others unless sticky, as /tmp
is); the cache's own directory is made, mode 0700, when it does not exist
(the default ``/tmp/kerbauth-fetch-{username}/krb5cc``) and must otherwise
belong to the server's uid (or be a sticky directory such as /tmp, where the
name is then claimed at once). A final name that exists and belongs to
someone else is refused (:class:`~kerbauth.server.errors.UnsafeCacheTarget`),
never written through: on a shared host another user may have planted it to
hand the server their own ticket.

:class:`CacheTarget` holds the checked directory by descriptor and writes
with :func:`kerbauth.core.atomic_write.atomic_write`, the hub's own atomic
write: a reader sees the old ticket or the new one, never a partial file, and
a symlink of the server's own at the final name is replaced, not followed.
:meth:`CacheTarget.remove` takes the ticket (and the directory, if it was
made here) away when the server stops.
"""

import errno
import os
import pwd
import stat
import tempfile
import threading

from kerbauth.core.atomic_write import atomic_write
from kerbauth.core.errors import CcacheError
from kerbauth.core.names import log_safe
from kerbauth.server.errors import FetchError, UnsafeCacheTarget

__all__ = ["CacheTarget", "ccache_target", "open_cache", "private_cache", "write_ticket"]


def ccache_target(ccname):
    """The file path named by ``KRB5CCNAME`` (``FILE:/path`` or ``/path``).

    Other cache types (KEYRING, KCM, DIR, MEMORY) are refused: the fetched
    ticket is a file cache, and those do not cross container boundaries anyway.
    """
    if not ccname:
        raise FetchError("KRB5CCNAME is not set")
    kind, sep, rest = ccname.partition(":")
    if sep and kind.upper() == "FILE":
        path = rest
    elif sep and not ccname.startswith("/"):
        raise FetchError(f"KRB5CCNAME={ccname!r} is not a FILE cache")
    else:
        path = ccname
    if not os.path.isabs(path) or path.endswith("/"):
        raise FetchError(f"KRB5CCNAME={ccname!r} does not name an absolute file path")
    return path


def _owner(uid):
    """``uid 1234 (mallory)``: who owns a file, for a message."""
    try:
        return f"uid {uid} ({log_safe(pwd.getpwuid(uid).pw_name)})"
    except KeyError:
        return f"uid {uid}"


_WHAT_TO_DO = (
    "remove it (or ask an administrator to), or set KerberosTickets.fetch_ccache_path"
    " (KRB5CCNAME) to a directory of your own"
)


def _shared_dir_ok(st, uid):
    """A directory on the way is safe when only root or ``uid`` can change its entries.

    Owned by root or ``uid``, and not writable by group or others unless
    sticky (as /tmp: others may add names there but cannot rename or remove
    ours).
    """
    if st.st_uid not in (0, uid):
        return False
    return not (st.st_mode & 0o022) or bool(st.st_mode & stat.S_ISVTX)


def _open_dir(name, dir_fd, shown):
    """``name`` under ``dir_fd`` as a directory descriptor, never through a symlink."""
    try:
        return os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise UnsafeCacheTarget(
            f"cannot use {shown} for the Kerberos ticket: it is {what}, owned by"
            f" {_owner(st.st_uid)}; {_WHAT_TO_DO}"
        ) from None


class CacheTarget:
    """A FILE cache path whose directory is held open and checked; see :func:`open_cache`."""

    def __init__(self, path, dir_fd, uid, created):
        self.path = path
        self.directory, self.name = os.path.split(path)
        self.dir_fd = dir_fd
        self.uid = uid
        self.created = created  # the directory was made here, so it goes at remove()
        self.lock = threading.Lock()
        self.closed = False

    def _check_name(self):
        """Refuse a final name that exists and is not ours (or is a directory)."""
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if st.st_uid != self.uid:
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file"
            raise UnsafeCacheTarget(
                f"cannot use {self.path} for the Kerberos ticket: {kind} of"
                f" {_owner(st.st_uid)} is already there, not yours ({_owner(self.uid)});"
                f" {_WHAT_TO_DO}"
            )
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeCacheTarget(
                f"cannot use {self.path} for the Kerberos ticket: it is a directory; {_WHAT_TO_DO}"
            )
        return st

    def claim(self):
        """Make the final name ours now (an empty file) when others could plant it.

        Only in a sticky directory others can write (/tmp): there, a name of
        ours cannot be replaced by anyone else afterwards.
        """
        st = os.fstat(self.dir_fd)
        if not (st.st_mode & 0o022) or self._check_name() is not None:
            return
        try:
            fd = os.open(
                self.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self.dir_fd,
            )
        except FileExistsError:
            self._check_name()  # planted meanwhile: refused; ours: fine
            return
        except OSError as e:
            raise FetchError(f"cannot create {self.path}: {e.strerror}") from None
        os.close(fd)

    def write(self, data):
        """Write ``data`` atomically at the final name, mode 0600; :class:`FetchError` if not."""
        with self.lock:
            if self.closed:
                raise FetchError(f"{self.path} is closed: the server is stopping")
            self._write(data)

    def _write(self, data):
        self._check_name()
        try:
            atomic_write(self.dir_fd, self.name, data, directory=self.directory)
        except CcacheError as e:
            # In a sticky directory a rename fails over a name someone else planted just now.
            self._check_name()
            raise FetchError(e.detail) from None

    def release(self):
        """Close the directory, leaving the ticket where it is (``kerbauth-fetch`` once)."""
        with self.lock:
            if not self.closed:
                self.closed = True
                os.close(self.dir_fd)

    def remove(self):
        """Remove the ticket (if it is ours) and the directory made here; no more writes."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
                if st.st_uid == self.uid and not stat.S_ISDIR(st.st_mode):
                    os.unlink(self.name, dir_fd=self.dir_fd)
            except OSError:
                pass
            if self.created:
                try:
                    os.rmdir(self.directory)
                except OSError:
                    pass
            os.close(self.dir_fd)


def open_cache(path, create=True, uid=None):
    """A :class:`CacheTarget` for ``path``, or :class:`UnsafeCacheTarget` saying why not.

    Walks ``path``'s directories from ``/``, each opened with ``O_NOFOLLOW``
    relative to the one before and checked on its descriptor. The last one,
    the cache's own directory, is made (mode 0700) when missing and
    ``create`` is true; an existing one must be owned by ``uid`` (default:
    the effective uid) and not writable by group or others, or else be a
    sticky directory like /tmp, where the final name is claimed at once.
    The final name may be absent or ours, never someone else's.
    """
    uid = os.geteuid() if uid is None else uid
    path = os.path.normpath(path)
    parts = [p for p in path.split("/") if p]
    if not os.path.isabs(path) or not parts:
        raise FetchError(f"{path!r} is not an absolute file path")
    *dirs, _ = parts
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    created = False
    try:
        shown = ""
        for i, name in enumerate(dirs):
            st = os.fstat(fd)
            if not _shared_dir_ok(st, uid):
                raise UnsafeCacheTarget(
                    f"cannot use {path} for the Kerberos ticket: the directory {shown or '/'} is"
                    f" owned by {_owner(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o},"
                    f" so others than you can replace what is in it; {_WHAT_TO_DO}"
                )
            shown = f"{shown}/{name}"
            try:
                next_fd = _open_dir(name, fd, shown)
            except FileNotFoundError:
                if not (create and i == len(dirs) - 1):
                    raise FetchError(
                        f"cannot use {path} for the Kerberos ticket: {shown} does not exist"
                    ) from None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    created = True
                except FileExistsError:
                    pass  # made meanwhile, by whom is checked below
                except OSError as e:
                    raise FetchError(f"cannot create {shown}: {e.strerror}") from None
                next_fd = _open_dir(name, fd, shown)
            except OSError as e:
                raise FetchError(f"cannot open {shown}: {e.strerror}") from None
            os.close(fd)
            fd = next_fd
        if created:
            os.fchmod(fd, 0o700)  # whatever the umask
        st = os.fstat(fd)
        own = st.st_uid == uid and not (st.st_mode & 0o022)
        sticky = _shared_dir_ok(st, uid) and bool(st.st_mode & stat.S_ISVTX)
        if not (own or sticky):
            raise UnsafeCacheTarget(
                f"cannot use {path} for the Kerberos ticket: its directory {shown or '/'} is"
                f" owned by {_owner(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}, not"
                f" a directory of yours ({_owner(uid)}) that only you can write; {_WHAT_TO_DO}"
            )
        target = CacheTarget(path, fd, uid, created)
    except BaseException:
        os.close(fd)
        if created:
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass
        raise
    try:
        target.claim()
    except BaseException:
        target.remove()
        raise
    return target


def private_cache(uid=None):
    """A :class:`CacheTarget` in a new directory of the server's own (mkdtemp, mode 0700)."""
    try:
        directory = tempfile.mkdtemp(prefix="kerbauth-private-")
    except OSError as e:
        raise FetchError(f"cannot make a private directory for the ticket: {e.strerror}") from None
    try:
        target = open_cache(os.path.join(directory, "krb5cc"), create=False, uid=uid)
    except BaseException:
        os.rmdir(directory)
        raise
    target.created = True
    return target


def write_ticket(path, data, uid=None):
    """Write ``data`` to ``path`` atomically, mode 0600, owned by whoever runs this.

    ``path``'s directory must exist and be safe (:func:`open_cache`).
    """
    target = open_cache(path, create=False, uid=uid)
    try:
        target.write(data)
    finally:
        target.release()
