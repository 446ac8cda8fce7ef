"""The processes that parse files users control: kinit and the krb5 workers.

A keytab in a user's home and a cache the user wrote are hostile input for
the Kerberos library. The process that parses them runs as ``run_as``, a
``(uid, gid)`` pair (the user's own, normally) with no supplementary groups,
so a library bug hit by a crafted file gives its author nothing beyond their
own uid; or, with ``run_as=None``, as the hub itself (a hub without root).

This module holds what both backends share:

- :func:`child_environment`: the few variables a child sees (no
  ``JUPYTERHUB_CRYPT_KEY``, no ``KRB5CCNAME``, nothing with a secret);
- :func:`run_as_options`: the :mod:`subprocess` arguments for ``run_as``;
- :func:`keytab_memfd`: the checked keytab's bytes in a sealed, unnamed file
  (``memfd``) the child can read as ``run_as``: a child cannot reopen the
  checked file itself (reopening ``/dev/fd/N`` checks permissions, and a
  root-owned keytab is root's only), and the bytes never touch a disk;
- scratch directories: a fresh private directory (mode 0700, owned by the
  uid the child runs as) for the cache the child writes, named
  ``kerbauth-<hub pid>-<random>`` in the temporary directory, read back
  without following links and removed; :func:`remove_stale_scratch` removes
  those left by hub processes that were killed.
"""

import contextlib
import fcntl
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
    "child_environment",
    "run_as_options",
    "keytab_memfd",
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

# The variables a child keeps. Kerberos: where the configuration is
# (KRB5_CONFIG, KRB5_KDC_PROFILE), tracing (KRB5_TRACE) and the replay cache
# (KRB5RCACHE*): what an administrator sets on purpose for the library. Never
# KRB5CCNAME, KRB5_KTNAME or KRB5_CLIENT_KTNAME: the backend names the
# keytab and the cache itself, and an inherited one must not redirect them.
# TMPDIR: where the worker makes its scratch directory.
_KEPT = (
    "PATH",
    "LANG",
    "TZ",
    "TMPDIR",
    "KRB5_CONFIG",
    "KRB5_KDC_PROFILE",
    "KRB5_TRACE",
    "KRB5RCACHEDIR",
    "KRB5RCACHETYPE",
    "KRB5RCACHENAME",
)
# Locale: every child runs under LC_ALL=C, with no LANGUAGE, whatever the
# hub's LANG and LC_* say (LANG is passed on; LC_ALL overrides it): kinit's
# messages are then the C locale's on every host, and those are the words
# kerbauth.core.errors.cause_from_message knows. (The krb5 worker's causes
# come from error codes; its messages, in the log, are the C locale's too.)
# The worker is the hub's Python: it imports kerbauth the way the hub did.
_PYTHON = ("PYTHONPATH", "PYTHONHOME")


def child_environment(environ=None, python=False):
    """The environment of a kinit process (``python=False``) or a krb5 worker.

    Only the variables Kerberos and Python need are kept from ``environ``
    (default ``os.environ``); ``LC_ALL`` is ``C`` and ``LANGUAGE`` unset, so
    that kinit's error texts are the C locale's, which kerbauth recognises.
    """
    environ = os.environ if environ is None else environ
    names = _KEPT + (_PYTHON if python else ())
    env = {name: environ[name] for name in names if name in environ}
    env["LC_ALL"] = "C"
    env.setdefault("PATH", os.defpath)
    return env


def check_run_as(run_as):
    """``run_as`` as a pair of ints, or None; a TicketError when this process cannot use it.

    Only root can start a process as another uid (and drop supplementary
    groups); a hub without root passes ``None``, or its own uid and gid, which
    mean the same.
    """
    if run_as is None:
        return None
    uid, gid = int(run_as[0]), int(run_as[1])
    if os.geteuid() != 0:
        if (uid, gid) == (os.geteuid(), os.getegid()):
            return None
        raise TicketError(
            "config",
            f"cannot run the ticket request as uid {uid}: the hub is not root, so it cannot"
            " start processes as another uid",
        )
    return uid, gid


def run_as_options(run_as):
    """Keyword arguments for :mod:`subprocess` that run the child as ``run_as``."""
    options = {"cwd": "/", "close_fds": True}
    if run_as is not None:
        uid, gid = run_as
        options.update(user=uid, group=gid, extra_groups=[])
    return options


def describe(run_as):
    """``"uid 1000"`` or ``"the hub's uid"``, for messages."""
    return "the hub's uid" if run_as is None else f"uid {run_as[0]}"


def fd_name(fd):
    """The path behind the descriptor ``fd``, for messages."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"descriptor {fd}"


def start_error(program, run_as, error):
    """The TicketError for a child that could not be started."""
    if isinstance(error, PermissionError) and run_as is not None:
        if error.errno == 1:  # EPERM: setuid refused, the hub is not root
            why = "the hub is not root, so it cannot start processes as another uid"
        else:
            why = (
                f"{program} (and, for the krb5 worker, the hub's Python and kerbauth)"
                f" must be readable and executable by uid {run_as[0]}"
            )
        return TicketError("config", f"cannot run {program} as uid {run_as[0]}: {error}; {why}")
    return TicketError("config", f"cannot run {program} as {describe(run_as)}: {error}")


@contextlib.contextmanager
def keytab_memfd(data, run_as):
    """A sealed memfd holding ``data``, readable by ``run_as``, as ``FILE:/dev/fd/N`` can.

    The descriptor is inheritable by the child (``pass_fds``); the child's
    reopening of ``/dev/fd/N`` is checked against the memfd's owner and mode
    (0400, owned by ``run_as``). Sealed: nobody can change it once written.
    """
    fd = os.memfd_create("kerbauth-keytab", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
        )
        os.fchmod(fd, 0o400)
        if run_as is not None:
            os.fchown(fd, *run_as)
        yield fd
    finally:
        os.close(fd)


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
