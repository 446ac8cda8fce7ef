"""The server side of the ``fetch`` delivery: get the ticket from the hub, keep it fresh.

Runs inside the user's server (its container, or its process on a shared
host), as the user. The hub gives the server three variables:

- ``KRB5CCNAME``: ``FILE:<path>``, where the ticket goes (container-local);
- ``KERBAUTH_TICKET_URL``: the hub's ``/hub/api/kerbauth/ticket``;
- ``KERBAUTH_RENEW_MARGIN``: seconds before the end at which to fetch again;

and JupyterHub itself gives it ``JUPYTERHUB_API_TOKEN``, which authenticates
the request. The token is sent in a header only; it is never put in argv or
written anywhere.

The cache is written atomically: a temporary file in the same directory
(created exclusively, mode 0600), fsync, rename over the final name, fsync of
the directory. A reader sees the old ticket or the new one, never a partial
file; a symlink planted at the final name is replaced, not followed.

:class:`TicketKeeper` fetches at start and again before the ticket ends,
backing off (1, 2, 4, ... up to ``max_backoff`` seconds) while the hub or the
KDC fails, logging a failure streak once with its cause. It never raises into
its caller: the server goes on without a ticket until one comes.
"""

import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request

from .ccache import parse_ccache
from .errors import CcacheError

__all__ = [
    "FetchError",
    "TicketKeeper",
    "ccache_target",
    "fetch_ticket",
    "write_ticket",
    "next_fetch_delay",
    "keeper_from_environ",
    "main",
]

ENV_URL = "KERBAUTH_TICKET_URL"
ENV_MARGIN = "KERBAUTH_RENEW_MARGIN"
MAX_CACHE_BYTES = 4 * 1024 * 1024
MIN_DELAY = 5.0  # seconds between two fetches when all goes well


class FetchError(Exception):
    """A ticket could not be fetched or written; the message says why."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would send the token's header on to the new place."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def ssl_context_from_environ(environ):
    """The TLS context for JupyterHub's ``internal_ssl``, or None when it is off.

    JupyterHub gives each server its certificate, key and the internal CA as
    ``JUPYTERHUB_SSL_CERTFILE``, ``JUPYTERHUB_SSL_KEYFILE`` and
    ``JUPYTERHUB_SSL_CLIENT_CA``; the hub is verified against that CA and the
    server presents its certificate.
    """
    ca = environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        if environ.get("JUPYTERHUB_SSL_CERTFILE"):
            context.load_cert_chain(
                environ["JUPYTERHUB_SSL_CERTFILE"], environ.get("JUPYTERHUB_SSL_KEYFILE") or None
            )
    except (OSError, ssl.SSLError) as e:
        raise FetchError(f"cannot load JupyterHub's internal TLS files: {e}") from None
    return context


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


def _error_message(error):
    """The ``message`` of a JupyterHub JSON error answer, if there is one."""
    try:
        body = error.read(4096)
        return json.loads(body).get("message") or ""
    except Exception:  # noqa: BLE001 - only for a nicer message
        return ""


def fetch_ticket(url, token, timeout=30.0, ssl_context=None):
    """``(bytes, TicketTimes)`` of the ticket the hub at ``url`` gives ``token``'s owner.

    Raises :class:`FetchError` naming the cause (refused, unreachable, not a
    ticket). The body is never logged.
    """
    if not token:
        raise FetchError("JUPYTERHUB_API_TOKEN is not set")
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{ENV_URL}={url!r} is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        headers={"Authorization": f"token {token}", "Accept": "application/octet-stream"},
    )
    try:
        opener = _OPENER
        if ssl_context is not None:
            opener = urllib.request.build_opener(
                _NoRedirects, urllib.request.HTTPSHandler(context=ssl_context)
            )
        with opener.open(request, timeout=timeout) as response:
            data = response.read(MAX_CACHE_BYTES + 1)
    except urllib.error.HTTPError as e:
        message = _error_message(e)
        hint = (
            " (the server's token lacks the scope custom:kerbauth:ticket?)" if e.code == 403 else ""
        )
        raise FetchError(
            f"the hub refused the ticket request: {e.code} {e.reason}"
            + (f": {message}" if message else "")
            + hint
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"cannot reach the hub at {url}: {reason}") from None
    if len(data) > MAX_CACHE_BYTES:
        raise FetchError(f"the hub's answer from {url} is too large for a ticket cache")
    try:
        times = parse_ccache(data, "the hub's answer")
    except CcacheError as e:
        raise FetchError(str(e)) from None
    return data, times


def write_ticket(path, data):
    """Write ``data`` to ``path`` atomically, mode 0600, owned by whoever runs this."""
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kerbauth-", dir=directory)
    except OSError as e:
        raise FetchError(f"cannot create a file in {directory}: {e.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FetchError(f"cannot write the ticket to {path}: {e.strerror}") from None
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def next_fetch_delay(times, now, margin):
    """Seconds until the ticket with ``times`` should be fetched again.

    ``margin`` seconds before its end, or at half its life when it lives
    shorter than twice the margin (the hub's renewal rule), never sooner than
    :data:`MIN_DELAY`.
    """
    lead = min(margin, (times.end - times.start) / 2)
    return max(MIN_DELAY, times.end - lead - now)


class TicketKeeper:
    """Fetches the ticket into ``path`` now and again before it ends, on a daemon thread."""

    def __init__(
        self,
        *,
        url,
        token,
        path,
        margin=1800.0,
        max_backoff=60.0,
        timeout=30.0,
        ssl_context=None,
        log,
    ):
        self.url = url
        self.ssl_context = ssl_context
        self.token = token
        self.path = path
        self.margin = margin
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.log = log
        self.failures = 0
        self.fetched = 0
        self.stopped = threading.Event()
        self.thread = None

    def fetch_once(self):
        """Fetch and write the ticket; its TicketTimes. Raises :class:`FetchError`."""
        data, times = fetch_ticket(self.url, self.token, self.timeout, self.ssl_context)
        if times.end <= time.time():
            raise FetchError(
                f"the hub's ticket for {times.principal} has already ended (log in again?)"
            )
        write_ticket(self.path, data)
        self.fetched += 1
        return times

    def step(self):
        """One attempt; the seconds to wait before the next one. Never raises."""
        try:
            times = self.fetch_once()
        except Exception as e:  # noqa: BLE001 - a failure must never reach the server
            self.failures += 1
            if self.failures == 1:
                self.log.warning(
                    "kerbauth: no Kerberos ticket from %s into %s: %s; retrying with backoff",
                    self.url,
                    self.path,
                    e,
                )
            else:
                self.log.debug("kerbauth: ticket fetch failed again (%d): %s", self.failures, e)
            return min(self.max_backoff, 2.0 ** (self.failures - 1))
        if self.failures:
            self.log.info("kerbauth: ticket fetch works again after %d failure(s)", self.failures)
        self.failures = 0
        delay = next_fetch_delay(times, time.time(), self.margin)
        self.log.info(
            "kerbauth: Kerberos ticket of %s written to %s, valid until %s; next fetch in %.0f s",
            times.principal,
            self.path,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(times.end)),
            delay,
        )
        return delay

    def run(self):
        while not self.stopped.is_set():
            delay = self.step()
            self.stopped.wait(delay)

    def start(self):
        """Run in a daemon thread (it never blocks the server's start or its stop)."""
        self.thread = threading.Thread(target=self.run, name="kerbauth-fetch", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


def keeper_from_environ(environ, log, **kwargs):
    """A :class:`TicketKeeper` configured from the server's environment, or None.

    None when the hub did not ask for the fetch delivery (no
    ``KERBAUTH_TICKET_URL``), so an image with kerbauth installed behaves as
    before under any other hub.
    """
    url = environ.get(ENV_URL)
    if not url:
        return None
    path = ccache_target(environ.get("KRB5CCNAME", ""))
    try:
        margin = float(environ.get(ENV_MARGIN) or 1800)
    except ValueError:
        raise FetchError(f"{ENV_MARGIN}={environ.get(ENV_MARGIN)!r} is not a number") from None
    return TicketKeeper(
        url=url,
        token=environ.get("JUPYTERHUB_API_TOKEN", ""),
        path=path,
        margin=margin,
        ssl_context=ssl_context_from_environ(environ),
        log=log,
        **kwargs,
    )


def main(argv=None):
    """``kerbauth-fetch``: fetch the server's ticket once, or keep it fresh (``--keep``)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="kerbauth-fetch",
        description="Fetch this server's Kerberos ticket from the hub into $KRB5CCNAME"
        " (KerberosTickets.delivery = 'fetch'). Reads KRB5CCNAME, KERBAUTH_TICKET_URL,"
        " KERBAUTH_RENEW_MARGIN and JUPYTERHUB_API_TOKEN from the environment the hub gives"
        " the server. Exit status 0 when a ticket was written.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep running: fetch again before the ticket ends, retry with backoff on"
        " failure (for an entrypoint: kerbauth-fetch --keep & exec jupyterhub-singleuser)",
    )
    parser.add_argument(
        "--max-backoff",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait between two failed attempts with --keep (default: 60)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s] %(message)s")
    log = logging.getLogger("kerbauth-fetch")
    try:
        keeper = keeper_from_environ(os.environ, log, max_backoff=args.max_backoff)
    except FetchError as e:
        log.error("kerbauth: %s", e)
        return 2
    if keeper is None:
        log.error("kerbauth: %s is not set: the hub does not deliver tickets by fetch", ENV_URL)
        return 2
    if args.keep:
        try:
            keeper.run()
        except KeyboardInterrupt:
            return 0
        return 0
    try:
        times = keeper.fetch_once()
    except FetchError as e:
        log.error("kerbauth: no ticket: %s", e)
        return 1
    log.info("kerbauth: ticket of %s written to %s", times.principal, keeper.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
