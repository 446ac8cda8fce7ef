"""The krb5 backend's worker processes, seen from the hub: start, talk to, kill.

A :class:`Worker` is a process of its own (``python -s -m`` the worker
module, :mod:`kerbauth.core.backends.libkrb5_worker`); a :class:`ForkedWorker`
is forked by the hub's root :class:`ForkServer` for one uid, and killed through
its pidfd, so a reused pid is never hit. Both talk over pipes
(:class:`WorkerChannel`): one JSON request line out, one reply line back,
within a deadline; a worker that misses it is killed by the pool
(:class:`kerbauth.core.backends.libkrb5.Krb5Backend`).
"""

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from kerbauth.core.backends.children import child_environment, run_as_options
from kerbauth.core.backends.scratch import MAX_CHILD_CACHE_BYTES

__all__ = ["WORKER", "WorkerChannel", "Worker", "ForkServer", "ForkedWorker"]

# The module the workers run (``python -s -m``), as the user each serves.
WORKER = "kerbauth.core.backends.libkrb5_worker"

# The longest reply line read from a worker: a 4 MiB cache in base64 and the JSON around it.
_MAX_REPLY = MAX_CHILD_CACHE_BYTES * 4 // 3 + 4096


class WorkerChannel:
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


class Worker(WorkerChannel):
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


class ForkServer:
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


class ForkedWorker(WorkerChannel):
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
        if self._exited(5):
            self._close()
        else:
            self.kill()

    def _close(self):
        with contextlib.suppress(OSError):
            self.to_worker.close()
        for fd in (self.from_worker, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
