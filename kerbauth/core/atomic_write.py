"""The one way kerbauth puts a ticket cache in place: atomic, owner and mode set on the file.

Both the hub's cache directory (:class:`kerbauth.core.cache_directory.CacheDirectory`)
and the user's server (:class:`kerbauth.server.cache_target.CacheTarget`) write
with :func:`atomic_write`, relative to a directory they hold open by descriptor
and have checked: nobody else can create, replace or link anything in it.

1. The bytes go into a new file of the writer's own in that directory
   (``O_CREAT | O_EXCL | O_NOFOLLOW``, a name with the writer's pid and a
   random part), so nothing planted can be written through.
2. Owner (when one is given) and mode 0600 are set on the descriptor
   (``fchown``, ``fchmod``), never on a path; then the bytes are written and
   flushed (``fsync``).
3. ``rename`` puts the file over the final name in one step: a reader sees the
   old cache or the new one, never an empty or partial file. A symlink or
   hardlink at the final name is replaced as a directory entry; the file it
   pointed to is not touched.
4. The directory is flushed.

On any error (a full disk, a read-only file system, a quota) the temporary
file goes, the previous cache is left as it was, and the error is a
:class:`~kerbauth.core.errors.CcacheError` naming the file and the cause.
"""

import os
import secrets

from kerbauth.core.errors import CcacheError

__all__ = ["atomic_write", "TEMP_PREFIX", "temp_pid"]

# Temporary names are ``.kerbauth-<pid>-<random>``: a later hub removes those of
# writers that no longer run (CacheDirectory.remove_stale).
TEMP_PREFIX = ".kerbauth-"

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_pid(name):
    """The pid in the temporary name ``name``, or None when it has none (or is not one)."""
    if not name.startswith(TEMP_PREFIX):
        return None
    pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def atomic_write(dir_fd, name, data, *, directory, uid=-1, gid=-1, mode=0o600, what="cache"):
    """Put ``data`` at ``name`` in the directory ``dir_fd`` atomically, mode 0600.

    ``uid``/``gid`` (-1: unchanged) become the file's owner, set on the
    descriptor before a byte is written. ``directory`` is the directory's path,
    and ``what`` the kind of file, for messages; ``mode`` is for a file that is
    no ticket (a kernelspec's kernel.json is 0644). Returns the final path;
    raises :class:`CcacheError`.
    """
    tmp = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
    target = os.path.join(directory, name)
    try:
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
    except OSError as e:
        raise CcacheError(f"cannot create a new {what} in {directory}: {e.strerror}") from None
    try:
        try:
            if (uid, gid) != (-1, -1):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise CcacheError(f"cannot write the {what} {target}: {e.strerror}") from None
    try:
        os.fsync(dir_fd)
    except OSError as e:
        raise CcacheError(f"cannot flush the {what} directory {directory}: {e.strerror}") from None
    return target
