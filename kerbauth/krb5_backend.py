"""The ``krb5`` backend: tickets through the MIT library, without a kinit process.

The library calls run in a small pool of long-lived worker processes
(:mod:`kerbauth.krb5_worker`), one request at a time each. A ticket costs
about a millisecond there, instead of the several milliseconds of starting
kinit. Workers are processes rather than threads for one reason: a request to
a KDC that never answers holds the library for about 27 s (MIT krb5 1.20,
measured) and no library setting shortens that. A worker that outlives
``timeout`` is killed, so the request really ends at the timeout and nothing
is left waiting behind the hub's back.
"""

import importlib.util
import json
import os
import select
import subprocess
import sys
import threading
import time

from .errors import TicketError, cause_from_message
from .keytab import keytab_path_for_fd

__all__ = ["Krb5Backend", "krb5_available"]


def krb5_available():
    """True when the krb5 bindings (``kerbauth[krb5]``) are installed."""
    return importlib.util.find_spec("krb5") is not None


class _Worker:
    def __init__(self):
        env = dict(os.environ)
        env.pop("KRB5CCNAME", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kerbauth.krb5_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._buffer = b""

    def call(self, request, deadline):
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(f"krb5 worker exited with status {self.proc.wait()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


class Krb5Backend:
    name = "krb5"

    def __init__(self, max_workers=4):
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers)
        self._idle = []
        self._lock = threading.Lock()

    def keytab_ticket(self, principal, keytab_fd, ccache_path, timeout):
        """Write a TGT for ``principal`` from the keytab at ``keytab_fd`` into ``ccache_path``."""
        self._request(
            {
                "op": "keytab_ticket",
                "principal": principal,
                "keytab": keytab_path_for_fd(keytab_fd),
                "ccache": ccache_path,
            },
            principal,
            timeout,
        )

    def password_ticket(self, principal, password, ccache_path, renew_life, timeout):
        """Write a TGT for ``principal`` from ``password`` to ``ccache_path``.

        ``renew_life`` (seconds, 0 for none) is the renewable life asked for.
        The password goes to the worker over its stdin pipe only.
        """
        self._request(
            {
                "op": "password_ticket",
                "principal": principal,
                "password": password,
                "renew_life": renew_life,
                "ccache": ccache_path,
            },
            principal,
            timeout,
        )

    def renew_ticket(self, source_path, ccache_path, timeout):
        """Renew the TGT in ``source_path`` and write the result to ``ccache_path``."""
        self._request(
            {"op": "renew_ticket", "source": source_path, "ccache": ccache_path},
            source_path,
            timeout,
        )

    def _request(self, request, principal, timeout):
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=timeout):
            raise TicketError(
                "timeout", f"no krb5 worker became free within {timeout} s for {principal}"
            )
        try:
            reply = self._call(request, principal, deadline, timeout)
        finally:
            self._slots.release()
        if not reply["ok"]:
            message = reply["message"]
            raise TicketError(cause_from_message(message), f"{principal}: {message}")

    def _call(self, request, principal, deadline, timeout):
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        reused = worker is not None
        if worker is None:
            worker = _Worker()
        try:
            reply = worker.call(request, deadline)
        except TimeoutError:
            worker.kill()
            raise TicketError(
                "timeout", f"the KDC did not answer for {principal} within {timeout} s"
            ) from None
        except (OSError, EOFError, ValueError) as e:
            worker.kill()
            if reused:
                # An idle worker that died (killed from outside, say): the
                # request never reached a KDC, so a fresh worker may try it.
                return self._call(request, principal, deadline, timeout)
            raise TicketError("other", f"krb5 worker failed: {e}") from None
        with self._lock:
            self._idle.append(worker)
        return reply

    def close(self):
        """Stop the idle workers (busy ones stop when they see their stdin close)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()
