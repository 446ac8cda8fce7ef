"""The worker process of the krb5 backend (``python -m kerbauth.core.backends.libkrb5_worker``).

It reads one JSON request a line on stdin and answers one JSON line on
stdout; keytabs and caches travel in both directions as base64 inside the
JSON, so the worker never opens a file of the user's or the hub's. It runs as
the uid the hub chose for it (the user's own, normally: see
:mod:`kerbauth.core.backends.children`) and serves that uid's requests only.

It is single-threaded and keeps one krb5 context, which MIT requires to be
used by one thread at a time. The hub kills a worker whose request outlives
the timeout (MIT krb5 1.20 has no setting that bounds how long it waits for a
KDC that never answers: 27 s was measured); the worker exits when its stdin
closes, so it never outlives the hub.

Each request works in a scratch directory of its own, whose path the hub
chose (``kerbauth-<hub pid>-<random>`` in the temporary directory): made here
(mode 0700, this uid's), removed when the request ends. The keytab is never
written there: it goes into an unnamed memory file (``memfd``), which the
library reads as ``FILE:/proc/self/fd/N``. The worker makes itself
non-dumpable, so other processes of its uid cannot trace it, read its memory
or open its descriptors while it holds a key or a ticket.

Only the standard library, ``krb5``, the cache size cap of
:mod:`kerbauth.core.ccache` and :mod:`kerbauth.core.verify` (the
kerberos-kdc mode's verification, ctypes on libkrb5) are imported here
(kerbauth's own package, which the ``-m`` start imports first, is kept light
for that).
"""

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import sys
import traceback

import krb5

from kerbauth.core import verify
from kerbauth.core.ccache import MAX_CCACHE_BYTES as MAX_CACHE_BYTES

_PR_SET_DUMPABLE = 4
_PR_SET_NAME = 15
# The process name (``comm``, what ``ps`` and ``pgrep`` show) of a worker.
WORKER_NAME = b"kerbauth-worker"


class ScratchError(Exception):
    """The scratch directory could not be made (the hub reports it as a config error)."""


def keytab_ticket(ctx, scratch, principal, keytab):
    data = base64.b64decode(keytab)
    fd = os.memfd_create("kerbauth-keytab", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        princ = krb5.parse_name_flags(ctx, principal.encode())
        kt = krb5.kt_resolve(ctx, f"FILE:/proc/self/fd/{fd}".encode())
        opt = krb5.get_init_creds_opt_alloc(ctx)
        creds = krb5.get_init_creds_keytab(ctx, princ, opt, keytab=kt)
        del kt
    finally:
        os.close(fd)
    return _store(ctx, princ, creds, scratch)


def password_ticket(ctx, scratch, principal, password, renew_life):
    princ = krb5.parse_name_flags(ctx, principal.encode())
    opt = krb5.get_init_creds_opt_alloc(ctx)
    if renew_life:
        krb5.get_init_creds_opt_set_renew_life(opt, int(renew_life))
    creds = krb5.get_init_creds_password(ctx, princ, opt, password=password.encode())
    return _store(ctx, princ, creds, scratch)


def verified_password_ticket(ctx, scratch, principal, password, renew_life, keytab, server):
    """The kerberos-kdc login: a TGT from ``password``, verified with ``server``'s key in
    ``keytab`` (the hub's service keytab) before it is handed back (kerbauth.core.verify)."""
    princ = krb5.parse_name_flags(ctx, principal.encode())
    opt = krb5.get_init_creds_opt_alloc(ctx)
    if renew_life:
        krb5.get_init_creds_opt_set_renew_life(opt, int(renew_life))
    creds = krb5.get_init_creds_password(ctx, princ, opt, password=password.encode())
    verify.verify_credentials(
        krb5.marshal_credentials(ctx, creds), base64.b64decode(keytab), server
    )
    return _store(ctx, princ, creds, scratch)


def check_service_key(ctx, scratch, keytab, server):
    """Whether the service keytab holds ``server``'s key (the hub's start-up check)."""
    verify.check_service_key(base64.b64decode(keytab), server)
    return b""


def renew_ticket(ctx, scratch, ccache):
    source = os.path.join(scratch, "source")
    fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(ccache))
    old = krb5.cc_resolve(ctx, b"FILE:" + source.encode())
    princ = krb5.cc_get_principal(ctx, old)
    creds = krb5.get_renewed_creds(ctx, princ, old)
    return _store(ctx, princ, creds, scratch)


def _store(ctx, principal, creds, scratch):
    path = os.path.join(scratch, "ccache")
    cache = krb5.cc_resolve(ctx, b"FILE:" + path.encode())
    krb5.cc_initialize(ctx, cache, principal)
    krb5.cc_store_cred(ctx, cache, creds)
    del cache
    return _read_cache(path)


def _read_cache(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise ValueError("the new cache is not a regular file with one link")
        data = f.read(MAX_CACHE_BYTES + 1)
    if len(data) > MAX_CACHE_BYTES:
        raise ValueError(f"the new cache is larger than {MAX_CACHE_BYTES} bytes")
    return data


OPERATIONS = {
    "keytab_ticket": keytab_ticket,
    "password_ticket": password_ticket,
    "renew_ticket": renew_ticket,
    "verified_password_ticket": verified_password_ticket,
    "check_service_key": check_service_key,
}


def _make_scratch(path):
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        raise ScratchError(
            f"cannot make the scratch directory {path} as uid {os.getuid()}: {e.strerror}"
            " (the temporary directory must be writable by the users tickets are made for)"
        ) from None


def handle(ctx, request):
    """The reply (a dict) to one request."""
    operation = OPERATIONS[request.pop("op")]
    scratch = request.pop("scratch")
    try:
        _make_scratch(scratch)
        try:
            data = operation(ctx, scratch, **request)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except ScratchError as e:
        return {"ok": False, "cause": "config", "message": str(e)}
    except verify.VerifyError as e:  # the AS exchange worked; its answer is not verified
        return {"ok": False, "code": e.code, "stage": e.stage, "message": str(e)}
    except krb5.Krb5Error as e:  # the hub finds the cause from the code (kerbauth.core.errors)
        return {"ok": False, "code": e.err_code, "message": str(e)}
    except OSError as e:  # a full or read-only temporary directory, say
        return {"ok": False, "cause": "ccache", "message": f"scratch directory {scratch}: {e}"}
    except Exception as e:  # a malformed cache or keytab: the request fails, not the worker
        return {"ok": False, "message": f"{type(e).__name__}: {e}"}
    return {"ok": True, "ccache": base64.b64encode(data).decode()}


def _prctl(option, value):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _not_dumpable():
    """No core dumps, no ptrace and no /proc/<pid>/{mem,fd,environ} for other processes."""
    _prctl(_PR_SET_DUMPABLE, 0)


def serve(stdin, stdout):
    _not_dumpable()
    _prctl(_PR_SET_NAME, ctypes.c_char_p(WORKER_NAME))
    try:
        ctx, failed = krb5.init_context(), None
    except krb5.Krb5Error as e:  # krb5.conf unreadable for this uid, say: each request says so
        ctx, failed = (
            None,
            {
                "ok": False,
                "cause": "config",
                "message": f"the Kerberos library cannot start as uid {os.getuid()}: {e}",
            },
        )
    for line in stdin:
        reply = failed or handle(ctx, json.loads(line))
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def _become(uid, gid):
    """Drop to ``uid``/``gid`` for good, with no supplementary groups."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise OSError(f"could not become uid {uid} gid {gid}")


def _reap(signum=None, frame=None):
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def fork_server(control):
    """Start warm workers for the hub: one ``fork`` per ``{"uid", "gid"}`` asked on ``control``.

    Run by a hub with root, as root, so that a worker for a new uid costs a
    fork (about a millisecond) instead of starting Python and importing the
    library (about 80 ms of CPU). It parses nothing but the hub's requests
    (two numbers and two pipe descriptors). The new worker drops to the uid
    and gid, with no supplementary groups, before it reads anything; the hub
    gets back its pid and a pidfd, with which it can kill it without ever
    hitting a reused pid. The server exits when the hub closes ``control``.
    """
    os.close(os.pidfd_open(os.getpid()))  # no pidfds (Linux < 5.3): exit, the hub falls back
    signal.signal(signal.SIGCHLD, _reap)
    try:
        _fork_loop(control)
    finally:
        # Workers still busy finish their request and exit (their stdin is
        # the hub's): wait for them, so none is left for init to reap.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        with contextlib.suppress(ChildProcessError):
            while True:
                os.wait()


def _fork_loop(control):
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 2)
        except OSError:
            return
        if not message:
            return
        ask = json.loads(message)
        # SIGCHLD waits until the pidfd is open: a worker that died at once is
        # not reaped (and its pid not freed) before the hub holds it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                _worker_child(control, fds, int(ask["uid"]), int(ask["gid"]))
            pidfd = os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in fds:
            os.close(fd)
        try:
            socket.send_fds(control, [json.dumps({"pid": pid}).encode()], [pidfd])
        finally:
            os.close(pidfd)


def _worker_child(control, fds, uid, gid):
    status = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        control.close()
        _become(uid, gid)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        for fd in fds:
            os.close(fd)
        serve(open(0, encoding="utf-8", closefd=False), open(1, "w", closefd=False))
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


if __name__ == "__main__":
    if sys.argv[1:] == ["--fork-server"]:
        fork_server(socket.socket(fileno=0))
    else:
        serve(sys.stdin, sys.stdout)
