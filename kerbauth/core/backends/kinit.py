"""The ``kinit`` backend: tickets from the kinit program.

Used when the krb5 bindings are not installed, or when a site wants its own
kinit. Keytab tickets work with MIT and Heimdal kinit; password tickets and
renewal use MIT kinit's ways (the password on stdin, ``-R``).

kinit runs as ``run_as`` (see :mod:`kerbauth.core.backends.children`) with a minimal
environment, in a scratch directory the hub made for it and gave to that uid:

- the keytab: its checked bytes in a sealed memory file passed as an
  inherited descriptor (``FILE:/dev/fd/N``), readable by ``run_as`` only; kinit
  cannot reopen the checked file itself as another uid, and nothing of the
  keytab is written to disk;
- the password: on kinit's stdin, never in argv or the environment;
- the cache to renew: a file in the scratch directory, owned by ``run_as``;
- the new cache: written by kinit in the scratch directory, read back
  without following links, then the directory is removed.

kinit is killed when the timeout passes, so a hung KDC costs at most
``timeout`` seconds; its stderr is read up to a cap. (The same as an asyncio
subprocess, with an event loop of its own on the caller's thread, cost 60 %
more of the hub's CPU a ticket: 7.5 ms against 4.7 ms, measured on 2 cores.)
"""

import contextlib
import os
import select
import subprocess
import time

from kerbauth.core.backends.children import (
    check_run_as,
    child_environment,
    describe,
    fd_name,
    keytab_memfd,
    run_as_options,
    start_error,
)
from kerbauth.core.backends.scratch import HubScratch, scratch_errors
from kerbauth.core.errors import TicketError, cause_from_message
from kerbauth.core.keytab import read_keytab_bytes

__all__ = ["KinitBackend"]

# What is kept of kinit's stderr: its error message is one line.
MAX_ERROR_BYTES = 64 * 1024


class KinitBackend:
    name = "kinit"

    def __init__(self, kinit_path="kinit"):
        self.kinit_path = kinit_path

    def warm(self):
        """Nothing to start ahead: each request is a kinit process of its own."""

    def close(self):
        """Nothing to stop: a kinit ends with its request."""

    def keytab_ticket(self, principal, keytab_fd, timeout, run_as=None):
        """A TGT for ``principal`` from the keytab open at ``keytab_fd``: a FILE cache's bytes."""
        data = read_keytab_bytes(keytab_fd, fd_name(keytab_fd))
        run_as = check_run_as(run_as)
        with (
            scratch_errors(principal),
            keytab_memfd(data, run_as) as memfd,
            HubScratch(run_as) as scratch,
        ):
            scratch.hand_over()
            argv = ["-k", "-t", f"FILE:/dev/fd/{memfd}", "-c", f"FILE:{scratch.path}/ccache"]
            self._run([*argv, "--", principal], principal, timeout, run_as, pass_fds=(memfd,))
            return scratch.read_cache("ccache", principal)

    def password_ticket(self, principal, password, renew_life, timeout, run_as=None):
        """A TGT for ``principal`` from ``password``: the bytes of a FILE cache.

        ``renew_life`` (seconds, 0 for none) is the renewable life asked for.
        The password goes to kinit's stdin only.
        """
        run_as = check_run_as(run_as)
        with scratch_errors(principal), HubScratch(run_as) as scratch:
            scratch.hand_over()
            argv = ["-c", f"FILE:{scratch.path}/ccache"]
            if renew_life:
                argv += ["-r", f"{int(renew_life)}s"]
            self._run(
                [*argv, "--", principal],
                principal,
                timeout,
                run_as,
                stdin=(password + "\n").encode(),
            )
            return scratch.read_cache("ccache", principal)

    def renew_ticket(self, data, timeout, run_as=None):
        """The TGT in the cache bytes ``data``, renewed: the bytes of the new FILE cache."""
        run_as = check_run_as(run_as)
        what = "the ticket to renew"
        with scratch_errors(what), HubScratch(run_as) as scratch:
            scratch.write("ccache", data)
            scratch.hand_over()
            self._run(["-R", "-c", f"FILE:{scratch.path}/ccache"], what, timeout, run_as)
            return scratch.read_cache("ccache", what)

    def _run(self, args, principal, timeout, run_as, pass_fds=(), stdin=None):
        deadline = time.monotonic() + timeout
        try:
            proc = subprocess.Popen(
                [self.kinit_path, *args],
                env=child_environment(),
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # the password prompt
                stderr=subprocess.PIPE,
                **run_as_options(run_as),
            )
        except OSError as e:
            raise start_error(self.kinit_path, run_as, e) from None
        try:
            returncode, errors = _wait(proc, stdin, deadline)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if returncode is None:
            raise TicketError(
                "timeout", f"{self.kinit_path} for {principal} did not finish within {timeout} s"
            )
        if returncode != 0:
            message = errors.decode("utf-8", "replace").strip() or f"exit status {returncode}"
            raise TicketError(
                cause_from_message(message), f"{self.kinit_path} (as {describe(run_as)}): {message}"
            )


def _wait(proc, stdin, deadline):
    """``(exit status or None at the deadline, the start of stderr)`` of ``proc``.

    ``stdin`` (bytes or None) is fed without blocking; only the first
    :data:`MAX_ERROR_BYTES` of stderr are kept. kinit runs as the user, whose
    own processes may trace it: whatever it writes costs the hub no more.
    """
    err = proc.stderr.fileno()
    pending = memoryview(stdin or b"")
    feed = proc.stdin.fileno() if stdin is not None else None
    if feed is not None:
        os.set_blocking(feed, False)
    kept, size = [], 0
    while err is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, b"".join(kept)
        # poll, not select: a busy hub has descriptors above select's 1024.
        poller = select.poll()
        poller.register(err, select.POLLIN)
        if feed is not None:
            poller.register(feed, select.POLLOUT)
        events = dict(poller.poll(remaining * 1000))
        readable, writable = err in events, feed is not None and feed in events
        if writable:
            try:
                pending = pending[os.write(feed, pending) :]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                proc.stdin.close()
                feed = None
        if readable:
            chunk = os.read(err, 65536)
            if not chunk:
                err = None
            elif size < MAX_ERROR_BYTES:
                kept.append(chunk[: MAX_ERROR_BYTES - size])
                size += len(kept[-1])
    try:
        return proc.wait(timeout=max(0, deadline - time.monotonic())), b"".join(kept)
    except subprocess.TimeoutExpired:
        return None, b"".join(kept)
