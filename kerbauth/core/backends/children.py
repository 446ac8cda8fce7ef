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
- :func:`check_run_as`, :func:`start_error`: whether this hub can run a
  child as ``run_as``, and what to say when it cannot.

The private directory each child writes its cache in is
:mod:`kerbauth.core.backends.scratch`.
"""

import contextlib
import fcntl
import os

from kerbauth.core.errors import TicketError

__all__ = [
    "child_environment",
    "check_run_as",
    "run_as_options",
    "describe",
    "fd_name",
    "start_error",
    "keytab_memfd",
]

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
