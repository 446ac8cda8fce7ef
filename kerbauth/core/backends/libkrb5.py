"""The ``krb5`` backend: tickets through the MIT library, without a kinit process.

The library calls run in a small pool of long-lived worker processes
(:mod:`kerbauth.core.backends.libkrb5_worker`), one request at a time each. A ticket costs
about a millisecond there, instead of the several milliseconds of starting
kinit. Workers are processes rather than threads for two reasons:

- a request to a KDC that never answers holds the library for about 27 s
  (MIT krb5 1.20, measured) and no library setting shortens that. A worker
  that outlives ``timeout`` is killed, so the request really ends at the
  timeout and nothing is left waiting behind the hub's back;
- a worker runs as the uid its requests are for (``run_as``, see
  :mod:`kerbauth.core.backends.children`), so the library parses a user's keytab or cache
  with that user's privileges only. A worker serves one uid; the pool holds
  at most ``max_workers`` workers in all, and an idle worker of another uid
  is closed to make room. A hub with root forks them from a fork server of
  its own (:func:`kerbauth.core.backends.libkrb5_worker.fork_server`, one more process): a
  worker for a new uid then costs a fork, not a Python start.

Keytabs, passwords and caches go to the worker over its stdin and caches come
back over its stdout (base64 in JSON lines): nothing is written where the
caller must clean up, and the worker never opens a path of the hub's.
"""

import base64
import binascii
import contextlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from kerbauth.core.backends.children import (
    MAX_CHILD_CACHE_BYTES,
    check_run_as,
    child_environment,
    describe,
    fd_name,
    remove_scratch,
    run_as_options,
    scratch_path,
    start_error,
)
from kerbauth.core.errors import CAUSES, TicketError, cause_from_code
from kerbauth.core.keytab import read_keytab_bytes

__all__ = ["Krb5Backend", "krb5_available"]

# The longest reply line read from a worker: a 4 MiB cache in base64 and the JSON around it.
# The module the workers run (``python -s -m``), as the user each serves.
WORKER = "kerbauth.core.backends.libkrb5_worker"

_MAX_REPLY = MAX_CHILD_CACHE_BYTES * 4 // 3 + 4096


def krb5_available():
    """True when the krb5 bindings (``kerbauth[krb5]``) are installed."""
    return importlib.util.find_spec("krb5") is not None


class _Channel:
    """The pipes to one worker: a request line out, a reply line back, within a deadline."""

    def __init__(self, to_worker, from_worker):
        self.to_worker = to_worker  # a writable binary file
        self.from_worker = from_worker  # a readable descriptor
        self.answered = False
        self._buffer = b""

    def call(self, request, deadline):
        self.to_worker.write(json.dumps(request).encode() + b"\n")
        self.to_worker.flush()
        fd = self.from_worker
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_REPLY:
                raise ValueError(f"an answer longer than {_MAX_REPLY} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            # poll, not select: a busy hub has descriptors above select's 1024.
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if poller.poll(remaining * 1000):
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(self.exit_message())
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply = json.loads(line)
        self.answered = True
        return reply

    def exit_message(self):
        return "the krb5 worker exited"


class _Worker(_Channel):
    """A worker started as a process of its own (``run_as`` None: the hub's uid)."""

    def __init__(self, run_as):
        self.run_as = run_as
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-m", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(python=True),
            **run_as_options(run_as),
        )
        self.pid = self.proc.pid
        super().__init__(self.proc.stdin, self.proc.stdout.fileno())

    def exit_message(self):
        return f"the krb5 worker exited with status {self.proc.wait()}"

    @property
    def status(self):
        return self.proc.returncode

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self):
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


class _ForkServer:
    """The hub's root fork server (:func:`.libkrb5_worker.fork_server`): warm workers."""

    def __init__(self):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-s",
                    "-m",
                    WORKER,
                    "--fork-server",
                ],
                stdin=theirs,
                stdout=subprocess.DEVNULL,
                env=child_environment(python=True),
                cwd="/",
                close_fds=True,
            )
        except BaseException:
            self.control.close()
            raise
        finally:
            theirs.close()
        self.lock = threading.Lock()

    def alive(self):
        return self.proc.poll() is None

    def fork(self, run_as, fds):
        """``(pid, pidfd)`` of a new worker for ``run_as`` on the pipe ends ``fds``."""
        ask = json.dumps({"uid": run_as[0], "gid": run_as[1]}).encode()
        with self.lock:
            socket.send_fds(self.control, [ask], fds)
            message, received, _, _ = socket.recv_fds(self.control, 4096, 1)
        if not message or len(received) != 1:
            for fd in received:
                os.close(fd)
            raise OSError("the krb5 fork server did not answer")
        return json.loads(message)["pid"], received[0]

    def close(self):
        self.control.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _ForkedWorker(_Channel):
    """A worker forked by the fork server, running as ``run_as``; killed through its pidfd."""

    def __init__(self, server, run_as):
        self.run_as = run_as
        child_in, to_worker = os.pipe()
        from_worker, child_out = os.pipe()
        try:
            self.pid, self.pidfd = server.fork(run_as, [child_in, child_out])
        except BaseException:
            for fd in (to_worker, from_worker):
                os.close(fd)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        super().__init__(os.fdopen(to_worker, "wb"), from_worker)

    status = None  # reaped by the fork server

    def alive(self):
        return not self._exited(0)

    def _exited(self, timeout):
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def kill(self):
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self._exited(5)
        self._close()

    def close(self):
        with contextlib.suppress(OSError):
            self.to_worker.close()
        if not self._exited(5):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            self._exited(5)
        self._close()

    def _close(self):
        with contextlib.suppress(OSError):
            self.to_worker.close()
        for fd in (self.from_worker, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Krb5Backend:
    name = "krb5"

    def __init__(self, max_workers=4):
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers)
        self._lock = threading.Lock()
        self._idle = {}  # run_as -> [idle _Worker], oldest first
        self._processes = 0  # workers alive, busy or idle
        self._fork_server = None  # started on the first request with a run_as
        self._forking_failed = False

    def keytab_ticket(self, principal, keytab_fd, timeout, run_as=None):
        """A TGT for ``principal`` from the keytab open at ``keytab_fd``: a FILE cache's bytes.

        The keytab's bytes are read from the descriptor (checked against the
        caps of :mod:`kerbauth.core.keytab` again) and sent to the worker.
        """
        data = read_keytab_bytes(keytab_fd, fd_name(keytab_fd))
        request = {
            "op": "keytab_ticket",
            "principal": principal,
            "keytab": base64.b64encode(data).decode(),
        }
        return self._request(request, principal, timeout, run_as)

    def password_ticket(self, principal, password, renew_life, timeout, run_as=None):
        """A TGT for ``principal`` from ``password``: the bytes of a FILE cache.

        ``renew_life`` (seconds, 0 for none) is the renewable life asked for.
        The password goes to the worker over its stdin pipe only.
        """
        request = {
            "op": "password_ticket",
            "principal": principal,
            "password": password,
            "renew_life": renew_life,
        }
        return self._request(request, principal, timeout, run_as)

    def renew_ticket(self, data, timeout, run_as=None):
        """The TGT in the cache bytes ``data``, renewed: the bytes of the new FILE cache."""
        request = {"op": "renew_ticket", "ccache": base64.b64encode(data).decode()}
        return self._request(request, "the ticket to renew", timeout, run_as)

    def _request(self, request, principal, timeout, run_as):
        run_as = check_run_as(run_as)
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=timeout):
            raise TicketError(
                "timeout", f"no krb5 worker became free within {timeout} s for {principal}"
            )
        try:
            reply = self._call(request, principal, deadline, timeout, run_as)
        finally:
            self._slots.release()
        if not reply.get("ok"):
            message = str(reply.get("message"))
            cause = reply.get(
                "cause"
            )  # the worker's own failures: scratch directory, library start
            if cause not in CAUSES:
                cause = cause_from_code(reply.get("code"), renewing=request["op"] == "renew_ticket")
            raise TicketError(cause, f"{principal}: {message}")
        try:
            return base64.b64decode(reply["ccache"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise TicketError("other", f"{principal}: the krb5 worker sent no cache") from None

    def _take(self, run_as):
        """An idle worker for ``run_as``, or a new one (closing another uid's idle one if full)."""
        victim = None
        with self._lock:
            idle = self._idle.get(run_as)
            if idle:
                return idle.pop()
            if self._processes >= self.max_workers:
                # This request holds a slot, so at most max_workers - 1 workers
                # are busy: an idle one (of another uid) exists.
                victim = min(
                    (workers[0] for workers in self._idle.values() if workers),
                    key=lambda w: w.idle_since,
                )
                self._idle[victim.run_as].remove(victim)
                self._processes -= 1
            self._processes += 1
        if victim is not None:
            victim.close()
        try:
            return self._start(run_as)
        except OSError as e:
            with self._lock:
                self._processes -= 1
            raise start_error(f"the krb5 worker ({sys.executable})", run_as, e) from None

    def _start(self, run_as):
        """A new worker: a fork of the fork server for another uid, its own process otherwise.

        A kernel without pidfds (before Linux 5.3) or any other failure of the
        fork server falls back to starting a process for each worker (about
        80 ms of CPU each instead of a few).
        """
        if run_as is None or self._forking_failed:
            return _Worker(run_as)
        try:
            with self._lock:
                server = self._fork_server
                if server is None or not server.alive():
                    if server is not None:
                        server.close()
                    server = self._fork_server = None
                    server = self._fork_server = _ForkServer()
            return _ForkedWorker(server, run_as)
        except OSError:
            self._forking_failed = True
            return _Worker(run_as)

    def _put_back(self, worker):
        worker.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(worker.run_as, []).append(worker)

    def _discard(self, worker):
        worker.kill()
        with self._lock:
            self._processes -= 1

    def _call(self, request, principal, deadline, timeout, run_as):
        worker = self._take(run_as)
        scratch = scratch_path()
        try:
            reply = worker.call({**request, "scratch": scratch}, deadline)
        except TimeoutError:
            self._discard(worker)
            with contextlib.suppress(OSError):
                remove_scratch(scratch)
            raise TicketError(
                "timeout", f"the KDC did not answer for {principal} within {timeout} s"
            ) from None
        except (OSError, EOFError, ValueError) as e:
            reused = worker.answered
            self._discard(worker)
            with contextlib.suppress(OSError):
                remove_scratch(scratch)
            if reused:
                # An idle worker that died (killed from outside, say): the
                # request never reached a KDC, so a fresh worker may try it.
                return self._call(request, principal, deadline, timeout, run_as)
            status = worker.status
            if isinstance(e, EOFError) and status is not None and status > 0:
                raise TicketError(
                    "config",
                    f"the krb5 worker running as {describe(run_as)} exited with status {status}"
                    " before it answered: can that uid run the hub's Python and import kerbauth?"
                    " (the worker's own error is in the hub's log)",
                ) from None
            raise TicketError(
                "other", f"the krb5 worker running as {describe(run_as)} failed: {e}"
            ) from None
        self._put_back(worker)
        return reply

    def close(self):
        """Stop the idle workers (busy ones stop when they see their stdin close)."""
        with self._lock:
            idle = [w for workers in self._idle.values() for w in workers]
            self._idle = {}
            self._processes -= len(idle)
        for worker in idle:
            worker.close()
        with self._lock:
            server, self._fork_server = self._fork_server, None
        if server is not None:
            server.close()
