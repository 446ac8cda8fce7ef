"""The ``krb5`` backend: tickets through the MIT library, without a kinit process.

The library calls run in a small pool of long-lived worker processes
(:mod:`kerbauth.core.backends.libkrb5_worker`; the hub's side of them is
:mod:`kerbauth.core.backends.worker_processes`), one request at a time each. A ticket costs
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
    worker for a new uid then costs a fork, not a Python start;
  :meth:`Krb5Backend.warm` starts that server (without root: the first
  worker) when the hub starts.

Why not an asyncio pool or a pool library: the callers are the hub's ticket
threads, so an asyncio pool would need a loop thread of its own and the same
bookkeeping (one uid a worker, the fork server, pidfd kills), which no pool
library offers.

Keytabs, passwords and caches go to the worker over its stdin and caches come
back over its stdout (base64 in JSON lines): nothing is written where the
caller must clean up, and the worker never opens a path of the hub's.
"""

import base64
import binascii
import contextlib
import importlib.util
import os
import sys
import threading
import time

from kerbauth.core.backends.children import check_run_as, describe, fd_name, start_error
from kerbauth.core.backends.scratch import remove_scratch, scratch_path
from kerbauth.core.backends.worker_processes import ForkedWorker, ForkServer, Worker
from kerbauth.core.errors import CAUSES, TicketError, cause_from_code
from kerbauth.core.keytab import read_keytab_bytes
from kerbauth.core.verify import KDCNotVerified

__all__ = ["Krb5Backend", "krb5_available"]


def krb5_available():
    """True when the krb5 bindings (``kerbauth[krb5]``) are installed."""
    return importlib.util.find_spec("krb5") is not None


class Krb5Backend:
    name = "krb5"

    def __init__(self, max_workers=4):
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers)
        self._lock = threading.Lock()
        self._idle = {}  # run_as -> [idle Worker], oldest first
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

    def verified_password_ticket(self, principal, password, renew_life, keytab_fd, server, timeout):
        """The kerberos-kdc login: a TGT for ``principal`` from ``password``, verified with
        ``server``'s key in the service keytab open at ``keytab_fd``; a FILE cache's bytes.

        Runs in a worker of the hub's own uid (it holds the service key), never
        a user's. A failed verification raises
        :class:`~kerbauth.core.verify.KDCNotVerified`.
        """
        request = {
            "op": "verified_password_ticket",
            "principal": principal,
            "password": password,
            "renew_life": renew_life,
            "keytab": base64.b64encode(read_keytab_bytes(keytab_fd, fd_name(keytab_fd))).decode(),
            "server": server,
        }
        return self._request(request, principal, timeout, None)

    def check_service_key(self, keytab_fd, server, timeout):
        """Raise TicketError unless the service keytab open at ``keytab_fd`` holds
        ``server``'s key (read by the library, in a worker of the hub's own uid)."""
        request = {
            "op": "check_service_key",
            "keytab": base64.b64encode(read_keytab_bytes(keytab_fd, fd_name(keytab_fd))).decode(),
            "server": server,
        }
        self._request(request, server, timeout, None)

    def renew_ticket(self, data, timeout, run_as=None):
        """The TGT in the cache bytes ``data``, renewed: the bytes of the new FILE cache."""
        request = {"op": "renew_ticket", "ccache": base64.b64encode(data).decode()}
        return self._request(request, "the ticket to renew", timeout, run_as)

    def warm(self):
        """Start now what the first request would wait for, so it costs what later ones do.

        A hub with root (workers run as the users): the fork server, which
        every worker is then forked from. A hub without root: one worker of
        its own uid, idle in the pool. Starting a process blocks for a few
        milliseconds (its Python start goes on in the background): call this
        off the event loop. Calling it again costs nothing.
        """
        if os.geteuid() == 0:
            if not self._forking_failed:
                try:
                    self._server()
                except OSError:
                    self._forking_failed = True
            return
        if not self._slots.acquire(blocking=False):
            return  # requests are running: the pool is warm
        try:
            with self._lock:
                if self._idle.get(None):
                    return
            self._put_back(self._take(None))
        finally:
            self._slots.release()

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
            if reply.get("stage") == "verify":
                raise KDCNotVerified(f"{principal}: {message}")
            cause = reply.get("cause")  # the worker's own: scratch directory, library start
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
            return Worker(run_as)
        try:
            return ForkedWorker(self._server(), run_as)
        except OSError:
            self._forking_failed = True
            return Worker(run_as)

    def _server(self):
        """The running fork server, started if there is none."""
        with self._lock:
            server = self._fork_server
            if server is None or not server.alive():
                if server is not None:
                    server.close()
                server = self._fork_server = None
                server = self._fork_server = ForkServer()
        return server

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
