"""The server side of the ``fetch`` delivery: get the ticket from the hub, keep it fresh.

Runs inside the user's server (its container, or its process on a shared
host), as the user. The hub gives the server three variables:

- ``KRB5CCNAME``: ``FILE:<path>``, where the ticket goes (container-local);
- ``KERBAUTH_TICKET_URL``: the hub's ``/hub/api/kerbauth/ticket``;
- ``KERBAUTH_RENEW_MARGIN``: seconds before the end at which to fetch again;

and JupyterHub itself gives it ``JUPYTERHUB_API_TOKEN``, which authenticates
the request. The token is sent in a header only; it is never put in argv or
written anywhere.

Where the ticket goes must be the server's own (:func:`open_cache`): every
directory on the way is opened without following symbolic links and checked
on its descriptor (owned by root or by the server's uid, not writable by
group or others unless sticky, as /tmp is); the cache's own directory is
made, mode 0700, when it does not exist (the default
``/tmp/kerbauth-fetch-{username}/krb5cc``) and must otherwise belong to the
server's uid (or be a sticky directory such as /tmp, where the name is then
claimed at once). A final name that exists and belongs to someone else is
refused (:class:`UnsafeCacheTarget`), never written through: on a shared
host another user may have planted it to hand the server their own ticket.

The cache is written atomically, relative to the directory's descriptor: a
temporary file created exclusively (mode 0600, no link followed), fsync,
rename over the final name, fsync of the directory. A reader sees the old
ticket or the new one, never a partial file; a symlink of the server's own
at the final name is replaced, not followed. :meth:`CacheTarget.remove`
takes the ticket (and the directory, if it was made here) away when the
server stops.

:class:`TicketKeeper` fetches at start and again before the ticket ends,
backing off (1, 2, 4, ... up to ``max_backoff`` seconds) while the hub or the
KDC fails, logging a failure streak once with its cause. It never raises into
its caller: the server goes on without a ticket until one comes.
"""

import errno
import json
import logging
import os
import pwd
import secrets
import signal
import ssl
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.request

from kerbauth.core.ccache import parse_ccache
from kerbauth.core.errors import CcacheError
from kerbauth.core.names import log_safe

__all__ = [
    "CacheTarget",
    "FetchError",
    "TicketKeeper",
    "UnsafeCacheTarget",
    "ccache_target",
    "fetch_ticket",
    "open_cache",
    "private_cache",
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


class UnsafeCacheTarget(FetchError):
    """``KRB5CCNAME`` names a place that is not (only) the server's own; never written to.

    The message names the path, what was found there (its owner, a link)
    and what to do.
    """


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


def _owner(uid):
    """``uid 1234 (mallory)``: who owns a file, for a message."""
    try:
        return f"uid {uid} ({log_safe(pwd.getpwuid(uid).pw_name)})"
    except KeyError:
        return f"uid {uid}"


_WHAT_TO_DO = (
    "remove it (or ask an administrator to), or set KerberosTickets.fetch_ccache_path"
    " (KRB5CCNAME) to a directory of your own"
)


def _shared_dir_ok(st, uid):
    """A directory on the way is safe when only root or ``uid`` can change its entries.

    Owned by root or ``uid``, and not writable by group or others unless
    sticky (as /tmp: others may add names there but cannot rename or remove
    ours).
    """
    if st.st_uid not in (0, uid):
        return False
    return not (st.st_mode & 0o022) or bool(st.st_mode & stat.S_ISVTX)


def _open_dir(name, dir_fd, shown):
    """``name`` under ``dir_fd`` as a directory descriptor, never through a symlink."""
    try:
        return os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise UnsafeCacheTarget(
            f"cannot use {shown} for the Kerberos ticket: it is {what}, owned by"
            f" {_owner(st.st_uid)}; {_WHAT_TO_DO}"
        ) from None


class CacheTarget:
    """A FILE cache path whose directory is held open and checked; see :func:`open_cache`."""

    def __init__(self, path, dir_fd, uid, created):
        self.path = path
        self.directory, self.name = os.path.split(path)
        self.dir_fd = dir_fd
        self.uid = uid
        self.created = created  # the directory was made here, so it goes at remove()
        self.lock = threading.Lock()
        self.closed = False

    def _check_name(self):
        """Refuse a final name that exists and is not ours (or is a directory)."""
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if st.st_uid != self.uid:
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file"
            raise UnsafeCacheTarget(
                f"cannot use {self.path} for the Kerberos ticket: {kind} of"
                f" {_owner(st.st_uid)} is already there, not yours ({_owner(self.uid)});"
                f" {_WHAT_TO_DO}"
            )
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeCacheTarget(
                f"cannot use {self.path} for the Kerberos ticket: it is a directory; {_WHAT_TO_DO}"
            )
        return st

    def claim(self):
        """Make the final name ours now (an empty file) when others could plant it.

        Only in a sticky directory others can write (/tmp): there, a name of
        ours cannot be replaced by anyone else afterwards.
        """
        st = os.fstat(self.dir_fd)
        if not (st.st_mode & 0o022) or self._check_name() is not None:
            return
        try:
            fd = os.open(
                self.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self.dir_fd,
            )
        except FileExistsError:
            self._check_name()  # planted meanwhile: refused; ours: fine
            return
        except OSError as e:
            raise FetchError(f"cannot create {self.path}: {e.strerror}") from None
        os.close(fd)

    def write(self, data):
        """Write ``data`` atomically at the final name, mode 0600; :class:`FetchError` if not."""
        with self.lock:
            if self.closed:
                raise FetchError(f"{self.path} is closed: the server is stopping")
            self._write(data)

    def _write(self, data):
        self._check_name()
        tmp = f".kerbauth-{secrets.token_hex(8)}"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self.dir_fd,
            )
        except OSError as e:
            raise FetchError(f"cannot create a file in {self.directory}: {e.strerror}") from None
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as e:
            try:
                os.unlink(tmp, dir_fd=self.dir_fd)
            except OSError:
                pass
            if e.errno == errno.EPERM:
                # A sticky directory: the name belongs to someone else (planted just now).
                self._check_name()
            raise FetchError(f"cannot write the ticket to {self.path}: {e.strerror}") from None
        try:
            os.fsync(self.dir_fd)
        except OSError:
            pass

    def release(self):
        """Close the directory, leaving the ticket where it is (``kerbauth-fetch`` once)."""
        with self.lock:
            if not self.closed:
                self.closed = True
                os.close(self.dir_fd)

    def remove(self):
        """Remove the ticket (if it is ours) and the directory made here; no more writes."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
                if st.st_uid == self.uid and not stat.S_ISDIR(st.st_mode):
                    os.unlink(self.name, dir_fd=self.dir_fd)
            except OSError:
                pass
            if self.created:
                try:
                    os.rmdir(self.directory)
                except OSError:
                    pass
            os.close(self.dir_fd)


def open_cache(path, create=True, uid=None):
    """A :class:`CacheTarget` for ``path``, or :class:`UnsafeCacheTarget` saying why not.

    Walks ``path``'s directories from ``/``, each opened with ``O_NOFOLLOW``
    relative to the one before and checked on its descriptor. The last one,
    the cache's own directory, is made (mode 0700) when missing and
    ``create`` is true; an existing one must be owned by ``uid`` (default:
    the effective uid) and not writable by group or others, or else be a
    sticky directory like /tmp, where the final name is claimed at once.
    The final name may be absent or ours, never someone else's.
    """
    uid = os.geteuid() if uid is None else uid
    path = os.path.normpath(path)
    parts = [p for p in path.split("/") if p]
    if not os.path.isabs(path) or not parts:
        raise FetchError(f"{path!r} is not an absolute file path")
    *dirs, _ = parts
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    created = False
    try:
        shown = ""
        for i, name in enumerate(dirs):
            st = os.fstat(fd)
            if not _shared_dir_ok(st, uid):
                raise UnsafeCacheTarget(
                    f"cannot use {path} for the Kerberos ticket: the directory {shown or '/'} is"
                    f" owned by {_owner(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o},"
                    f" so others than you can replace what is in it; {_WHAT_TO_DO}"
                )
            shown = f"{shown}/{name}"
            try:
                next_fd = _open_dir(name, fd, shown)
            except FileNotFoundError:
                if not (create and i == len(dirs) - 1):
                    raise FetchError(
                        f"cannot use {path} for the Kerberos ticket: {shown} does not exist"
                    ) from None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    created = True
                except FileExistsError:
                    pass  # made meanwhile, by whom is checked below
                except OSError as e:
                    raise FetchError(f"cannot create {shown}: {e.strerror}") from None
                next_fd = _open_dir(name, fd, shown)
            except OSError as e:
                raise FetchError(f"cannot open {shown}: {e.strerror}") from None
            os.close(fd)
            fd = next_fd
        if created:
            os.fchmod(fd, 0o700)  # whatever the umask
        st = os.fstat(fd)
        own = st.st_uid == uid and not (st.st_mode & 0o022)
        sticky = _shared_dir_ok(st, uid) and bool(st.st_mode & stat.S_ISVTX)
        if not (own or sticky):
            raise UnsafeCacheTarget(
                f"cannot use {path} for the Kerberos ticket: its directory {shown or '/'} is"
                f" owned by {_owner(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}, not"
                f" a directory of yours ({_owner(uid)}) that only you can write; {_WHAT_TO_DO}"
            )
        target = CacheTarget(path, fd, uid, created)
    except BaseException:
        os.close(fd)
        if created:
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass
        raise
    try:
        target.claim()
    except BaseException:
        target.remove()
        raise
    return target


def private_cache(uid=None):
    """A :class:`CacheTarget` in a new directory of the server's own (mkdtemp, mode 0700)."""
    try:
        directory = tempfile.mkdtemp(prefix="kerbauth-private-")
    except OSError as e:
        raise FetchError(f"cannot make a private directory for the ticket: {e.strerror}") from None
    try:
        target = open_cache(os.path.join(directory, "krb5cc"), create=False, uid=uid)
    except BaseException:
        os.rmdir(directory)
        raise
    target.created = True
    return target


def write_ticket(path, data, uid=None):
    """Write ``data`` to ``path`` atomically, mode 0600, owned by whoever runs this.

    ``path``'s directory must exist and be safe (:func:`open_cache`).
    """
    target = open_cache(path, create=False, uid=uid)
    try:
        target.write(data)
    finally:
        target.release()


def next_fetch_delay(times, now, margin):
    """Seconds until the ticket with ``times`` should be fetched again.

    ``margin`` seconds before its end, or at half its life when it lives
    shorter than twice the margin (the hub's renewal rule), never sooner than
    :data:`MIN_DELAY`.
    """
    lead = min(margin, (times.end - times.start) / 2)
    return max(MIN_DELAY, times.end - lead - now)


class TicketKeeper:
    """Fetches the ticket into ``target`` now and again before it ends, on a daemon thread.

    ``target`` is a :class:`CacheTarget`. ``on_unsafe(error)``, if given, is
    called when the target turns out to be someone else's at a write; it
    returns a new target to use (the server extension's private one) or
    None to go on failing.
    """

    def __init__(
        self,
        *,
        url,
        token,
        target,
        margin=1800.0,
        max_backoff=60.0,
        timeout=30.0,
        ssl_context=None,
        on_unsafe=None,
        log,
    ):
        self.url = url
        self.ssl_context = ssl_context
        self.token = token
        self.target = target
        self.on_unsafe = on_unsafe
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
        try:
            self.target.write(data)
        except UnsafeCacheTarget as e:
            replacement = self.on_unsafe(e) if self.on_unsafe is not None else None
            if replacement is None:
                raise
            old, self.target = self.target, replacement
            old.remove()  # only what is ours there goes
            self.target.write(data)
        self.fetched += 1
        return times

    @property
    def path(self):
        return self.target.path

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

    def stop(self, timeout=None):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def close(self, timeout=5.0):
        """Stop, then remove the ticket and the directory made for it (at the server's stop)."""
        self.stop(timeout)
        self.target.remove()


def keeper_from_environ(environ, log, target=None, **kwargs):
    """A :class:`TicketKeeper` configured from the server's environment, or None.

    None when the hub did not ask for the fetch delivery (no
    ``KERBAUTH_TICKET_URL``), so an image with kerbauth installed behaves as
    before under any other hub. The cache named by ``KRB5CCNAME`` is opened
    (:func:`open_cache`: its directory made if missing) unless ``target`` is
    given; :class:`UnsafeCacheTarget` when it is not the server's own.
    """
    url = environ.get(ENV_URL)
    if not url:
        return None
    path = ccache_target(environ.get("KRB5CCNAME", ""))
    try:
        margin = float(environ.get(ENV_MARGIN) or 1800)
    except ValueError:
        raise FetchError(f"{ENV_MARGIN}={environ.get(ENV_MARGIN)!r} is not a number") from None
    ssl_context = ssl_context_from_environ(environ)
    return TicketKeeper(
        url=url,
        token=environ.get("JUPYTERHUB_API_TOKEN", ""),
        target=open_cache(path) if target is None else target,
        margin=margin,
        ssl_context=ssl_context,
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
        " the server. Exit status 0 when a ticket was written, 1 when none could be fetched,"
        " 2 for a wrong environment, 3 when KRB5CCNAME names a place that is not yours"
        " (another user's file or directory: nothing is written there).",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep running: fetch again before the ticket ends, retry with backoff on"
        " failure; on SIGTERM or SIGINT remove the ticket (and the directory made for it)"
        " and exit (for an entrypoint: kerbauth-fetch --keep & exec jupyterhub-singleuser)",
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
    except UnsafeCacheTarget as e:
        log.error("kerbauth: %s", e)
        return 3
    except FetchError as e:
        log.error("kerbauth: %s", e)
        return 2
    if keeper is None:
        log.error("kerbauth: %s is not set: the hub does not deliver tickets by fetch", ENV_URL)
        return 2
    if args.keep:
        return _keep(keeper, log)
    try:
        times = keeper.fetch_once()
    except UnsafeCacheTarget as e:
        log.error("kerbauth: %s", e)
        return 3
    except FetchError as e:
        log.error("kerbauth: no ticket: %s", e)
        return 1
    finally:
        keeper.target.release()
    log.info("kerbauth: ticket of %s written to %s", times.principal, keeper.path)
    return 0


def _keep(keeper, log):
    """``--keep``: fetch until SIGTERM or SIGINT, then remove the ticket."""

    unsafe = []

    def stop(signum, frame):
        keeper.stopped.set()

    def give_up(error):
        # Someone else's file took the name: the server's KRB5CCNAME cannot be changed from here.
        unsafe.append(error)
        keeper.stopped.set()

    keeper.on_unsafe = give_up
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        keeper.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        keeper.target.remove()
    if unsafe:
        log.error("kerbauth: stopped: %s", unsafe[0])
        return 3
    log.info("kerbauth: stopped; the ticket in %s is removed", keeper.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
