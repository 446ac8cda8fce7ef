"""``KerberosTickets``: the configuration section for tickets, shared by both login modes.

Both authenticators inherit from :class:`KerberosTickets`, so its options are
set as ``c.KerberosTickets.<name>`` whichever mode is used, and JupyterHub's
``--help-all`` lists them. The class is a thin layer: it reads the options and
runs the plain ticket core (:mod:`kerbauth.core.tickets`) off the event loop.
"""

import asyncio
import base64
import functools
import os
import pwd
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from urllib.parse import urlparse

from jupyterhub.utils import maybe_future, url_path_join
from traitlets import Bool, CaselessStrEnum, Float, Integer, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from kerbauth.core import ccache, tickets
from kerbauth.core.backends.children import remove_stale_scratch
from kerbauth.core.cache_directory import CacheDirectory
from kerbauth.core.errors import TicketError
from kerbauth.core.names import InvalidUsername, check_username, log_safe
from kerbauth.hub import metrics
from kerbauth.hub.refusal import spawn_refusal
from kerbauth.hub.renewal import RenewalTarget, Renewer

__all__ = ["KerberosTickets", "AUTH_STATE_KEY"]

# Where a password ticket is kept in auth_state: the bytes of a FILE cache, base64.
AUTH_STATE_KEY = "kerberos_ccache"

# With delivery = "fetch", a keytab ticket fetched again within this many seconds is reused.
FETCH_REUSE_SECONDS = 10


class KerberosTickets(LoggingConfigurable):
    """Gives every spawned server a Kerberos ticket of its own user.

    At spawn (``pre_spawn_start``) the user's TGT is obtained from their
    keytab and written to a cache file the user owns; the server gets it as
    ``KRB5CCNAME``. At stop (``post_spawn_stop``) the cache is removed.
    """

    realm = Unicode(
        "",
        config=True,
        help="""
        The Kerberos realm of the users' principals, e.g. ``"CORP.EXAMPLE.COM"``.

        Default: the ``default_realm`` of krb5.conf (``$KRB5_CONFIG`` or
        /etc/krb5.conf).

        .. versionadded:: 0.1
        """,
    )

    principal_template = Unicode(
        "{username}@{realm}",
        config=True,
        help="""
        How a user's principal is built from their JupyterHub username.

        ``{username}`` and ``{realm}`` are replaced; the username is checked
        first (letters, digits, ``.``, ``_`` and ``-`` only), so it cannot add
        an instance or a realm of its own. The principal is never taken from
        the keytab. Example: ``"{username}/pg-dmp-workbench2@{realm}"``.
        Default: ``"{username}@{realm}"``.

        .. versionadded:: 0.1
        """,
    )

    keytab_template = Unicode(
        "",
        config=True,
        help="""
        Path of each user's keytab; ``{username}`` is replaced.

        Example: ``"/home/{username}/{username}.keytab"``. The keytab must be
        a regular file (a symlink, FIFO or device is refused) owned by root or
        by the user, with no access for group or others (mode 0600 or 0400).
        No default: it must be set.

        .. versionadded:: 0.1
        """,
    )

    ccache_dir = Unicode(
        "/run/kerbauth",
        config=True,
        help="""
        Directory of the ticket caches, one file per user (``krb5cc_<username>``).

        It must be owned by the user the hub runs as (root) and writable by
        nobody else; a symlink or a group/world-writable directory such as
        /tmp is refused. A missing directory is created with mode 0711.
        Example: ``"/run/kerbauth"`` (the default).

        .. versionadded:: 0.1
        """,
    )

    backend = Unicode(
        "",
        config=True,
        help="""
        How tickets are requested: ``"krb5"`` (the MIT library, in a pool of
        worker processes; needs ``pip install kerbauth[krb5]``) or
        ``"kinit"`` (runs the kinit program, MIT or Heimdal).

        Default: ``"krb5"`` when the krb5 bindings are installed, ``"kinit"``
        otherwise. The hub logs which one it uses.

        .. versionadded:: 0.1
        """,
    )

    kinit_path = Unicode(
        "kinit",
        config=True,
        help="""
        The kinit program used by the ``"kinit"`` backend, e.g.
        ``"/usr/bin/kinit"``. Default: ``"kinit"`` from ``$PATH``.

        .. versionadded:: 0.1
        """,
    )

    timeout = Float(
        10,
        config=True,
        help="""
        Seconds one ticket request may take before it is abandoned and its
        kinit or worker process killed, e.g. ``5``. Default: 10.

        .. versionadded:: 0.1
        """,
    )

    required = Bool(
        True,
        config=True,
        help="""
        Whether a server may start only with a ticket.

        True (the default): when no ticket can be obtained, the spawn is
        refused with a message the user can act on, and the cause is logged.
        False: the server starts without a ticket (no ``KRB5CCNAME``) and a
        warning is logged.

        .. versionadded:: 0.1
        """,
    )

    ticket_concurrency = Integer(
        4,
        config=True,
        help="""
        How many ticket requests may run at once; more wait their turn.
        Bounds the threads, kinit processes and krb5 workers kerbauth uses,
        e.g. ``8``. Default: 4.

        .. versionadded:: 0.1
        """,
    )

    password_tickets = Bool(
        False,
        config=True,
        help="""
        Get each user's ticket from the password they log in with, instead of
        from a keytab (for sites without per-user keytabs, typical with
        Active Directory).

        At login a renewable TGT is requested with the password just typed
        (the password itself is not kept); the ticket is kept in JupyterHub's
        encrypted auth_state, written to the user's cache at spawn, and renewed
        until its renew-until time. After that, the user is asked to log in
        again; their running server keeps running and gets the new ticket.
        Needs ``c.Authenticator.enable_auth_state = True`` (and
        ``JUPYTERHUB_CRYPT_KEY``) and the ``krb5`` backend. Example: ``True``.
        Default: False.

        .. versionadded:: 0.1
        """,
    )

    renew_lifetime = Float(
        7 * 24 * 3600,
        config=True,
        help="""
        The renewable life, in seconds, asked for password tickets
        (``password_tickets``); the KDC may grant less. Example: ``86400``.
        Default: 604800 (7 days).

        .. versionadded:: 0.1
        """,
    )

    renew_margin = Float(
        1800,
        config=True,
        help="""
        Seconds before a running server's ticket ends at which the hub gets it
        a new one, e.g. ``3600``. A ticket that lives shorter than twice this
        is renewed at half its life instead. Default: 1800 (30 minutes).

        .. versionadded:: 0.1
        """,
    )

    renew_interval = Float(
        60,
        config=True,
        help="""
        Seconds between two looks at the running servers' tickets, e.g.
        ``300``. Keep it well below ``renew_margin``. Default: 60.

        .. versionadded:: 0.1
        """,
    )

    renew_max_backoff = Float(
        60,
        config=True,
        help="""
        Longest wait, in seconds, between two renewal attempts for a user
        whose renewal keeps failing (a KDC that is down, say). Attempts back
        off 1, 2, 4, ... seconds up to this, and go on until the KDC is back.
        Default: 60.

        .. versionadded:: 0.1
        """,
    )

    tickets_for_shared_servers = Bool(
        False,
        config=True,
        help="""
        Whether a server that is shared with other users gets a Kerberos ticket.

        With JupyterHub's sharing (5.0 and later), whoever a server is shared
        with works inside it as its owner: a terminal there runs as the owner
        and can read the owner's ticket cache, so the collaborator acts on the
        cluster (HDFS, YARN, Hive) as the owner. False (the default): a shared
        server gets no ticket. At spawn that is treated like any other missing
        ticket (see ``required``); a server shared while it runs loses its
        ticket at the next renewal check (its cache is removed, a warning
        logged), and the fetch delivery refuses it. True: tickets are given
        whether the server is shared or not, for sites that accept that
        sharing a server means sharing one's identity. Example: ``True``.

        .. versionadded:: 0.2
        """,
    )

    delivery = CaselessStrEnum(
        ["file", "fetch"],
        default_value="file",
        config=True,
        help="""
        How a server gets its ticket: ``"file"`` or ``"fetch"``.

        ``"file"`` (the default): the hub, running as root on the host where
        the servers run (LocalProcessSpawner, SystemdSpawner, a shared
        ``ccache_dir`` mount), writes the cache into ``ccache_dir``, owned by
        the user, and renews it there.

        ``"fetch"``: for servers in containers (KubeSpawner, DockerSpawner)
        and hubs that run without root (the zero-to-jupyterhub hub pod, uid
        1000, all capabilities dropped). The hub writes no file and changes no
        owner: each server fetches its own user's ticket from the hub API
        (``GET /hub/api/kerbauth/ticket``) with its ``JUPYTERHUB_API_TOKEN``,
        and writes it to ``fetch_ccache_path`` inside its container, at start
        and again before it ends (the kerbauth server extension, or the
        ``kerbauth-fetch`` command). The server's token needs the scope
        ``custom:kerbauth:ticket``: see docs/kubernetes.md. Keytabs
        (``keytab_template``) stay on the hub and must be owned by root or by
        the user the hub runs as, with mode 0600 or 0400. Example:
        ``"fetch"``.

        .. versionadded:: 0.1
        """,
    )

    fetch_ccache_path = Unicode(
        "/tmp/kerbauth-fetch-{username}/krb5cc",
        config=True,
        help="""
        With ``delivery = "fetch"``: where, inside the server's own container
        (or on its host), the server writes its ticket; ``{username}`` is
        replaced by the (checked) username. The server gets it as
        ``KRB5CCNAME=FILE:<path>``.

        Must be an absolute file path. The server makes the file's directory
        (mode 0700) if it is missing, and uses the place only if it is its
        own: every directory on the way owned by root or the server's user
        and not writable by others (or sticky, as /tmp), the last one owned
        by the server's user (or a sticky one such as /tmp itself), and no
        file of anyone else at the name. Otherwise (another user planted it
        on a shared host) the server writes to a new private directory and
        sets its ``KRB5CCNAME`` to that instead; the reason is in the
        server's log. The ticket (and the directory, if the server made it)
        is removed when the server stops. Default:
        ``"/tmp/kerbauth-fetch-{username}/krb5cc"``, a directory of the
        server's own, which no other user can take over. Example:
        ``"/home/jovyan/.krb5cc"``.

        .. versionadded:: 0.1
        .. versionchanged:: 0.2
           The default was ``"/tmp/krb5cc_kerbauth_{username}"``, a name
           another user of a shared /tmp could create first.
        """,
    )

    @validate("fetch_ccache_path")
    def _check_fetch_ccache_path(self, proposal):
        path = proposal.value
        try:
            filled = path.format(username="u")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"KerberosTickets.fetch_ccache_path may use only {{username}}, not {path!r}"
            ) from None
        if (
            not os.path.isabs(filled)
            or filled.endswith("/")
            or {".", ".."} & set(filled.split("/"))
        ):
            raise ValueError(
                f"KerberosTickets.fetch_ccache_path must be an absolute file path"
                f" without '.' or '..', not {path!r}"
            )
        return path

    @validate("backend")
    def _check_backend(self, proposal):
        if proposal.value not in ("", "krb5", "kinit"):
            raise ValueError(
                f'KerberosTickets.backend must be "krb5" or "kinit", not {proposal.value!r}'
            )
        return proposal.value

    @validate("timeout")
    def _check_timeout(self, proposal):
        if not proposal.value > 0:
            raise ValueError("KerberosTickets.timeout must be a positive number of seconds")
        return proposal.value

    @validate("renew_margin", "renew_interval", "renew_max_backoff")
    def _check_renewal_seconds(self, proposal):
        if not proposal.value > 0:
            raise ValueError(
                f"KerberosTickets.{proposal.trait.name} must be a positive number of seconds"
            )
        return proposal.value

    @validate("ticket_concurrency")
    def _check_concurrency(self, proposal):
        if proposal.value < 1:
            raise ValueError("KerberosTickets.ticket_concurrency must be at least 1")
        return proposal.value

    @default("realm")
    def _default_realm(self):
        return tickets.default_realm() or ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._ticket_executor = ThreadPoolExecutor(
            self.ticket_concurrency, thread_name_prefix="kerbauth-ticket"
        )
        # The hub's own records, the only truth about tickets it gave:
        # username -> TicketTimes of the ticket last written for that user, and
        # (password tickets) username -> the cache bytes the hub obtained.
        self._issued = {}
        self._hub_tickets = {}
        # username -> the ticket request in flight for that user (one at a time).
        self._in_flight = {}
        self._shared_warned = set()
        self.cache_dir = None
        self.ticket_backend = self._make_ticket_backend()
        self.renewer = Renewer(
            targets=self._renewal_targets,
            executor=self._ticket_executor,
            margin=self.renew_margin,
            interval=self.renew_interval,
            max_backoff=self.renew_max_backoff,
            log=self.log,
            on_result=self._renewal_result,
            # One ticket thread stays free for spawns and logins during a sweep.
            lanes=self.ticket_concurrency - 1,
        )
        self._start_renewal()

    def _make_ticket_backend(self):
        """Check the options that go together and make the backend; log what is used.

        A hub whose tickets cannot work refuses to start, with the option to fix
        in the message, rather than failing every spawn later.
        """
        if self.password_tickets:
            if not self.enable_auth_state:
                raise ValueError(
                    "KerberosTickets.password_tickets requires"
                    " Authenticator.enable_auth_state = True (and JUPYTERHUB_CRYPT_KEY)"
                )
            if self.backend == "kinit":
                raise ValueError(
                    'KerberosTickets.password_tickets requires KerberosTickets.backend = "krb5"'
                )
        elif not self.keytab_template:
            if self.required:
                raise ValueError(
                    "KerberosTickets.keytab_template is not set: kerbauth cannot get tickets"
                    ' (set it, e.g. "/home/{username}/{username}.keytab", or set'
                    " KerberosTickets.required = False to start servers without tickets)"
                )
            self.log.warning("kerbauth: KerberosTickets.keytab_template is not set; no tickets")
            return None
        if not self.realm:
            raise ValueError(
                "KerberosTickets.realm is not set and krb5.conf names no default_realm"
            )
        if self.delivery == "file":
            self.cache_dir = CacheDirectory(self.ccache_dir, log=self.log).open()
        # What a hub that was killed (kill -9) left in its scratch directories.
        remove_stale_scratch(log=self.log)
        backend = tickets.make_backend(
            "krb5" if self.password_tickets else self.backend,
            self.kinit_path,
            max_workers=self.ticket_concurrency,
        )
        self.log.info(
            "kerbauth: tickets for %s from %s through the %s backend, %s",
            self.principal_template.replace("{realm}", self.realm),
            "the login password" if self.password_tickets else self.keytab_template,
            backend.name,
            f"caches in {self.ccache_dir}"
            if self.delivery == "file"
            else f"fetched by the servers into {self.fetch_ccache_path}",
        )
        return backend

    # --- pieces a subclass may override -------------------------------------------

    def ticket_owner(self, user):
        """The ``(uid, gid)`` the cache of ``user`` is given: the local account's."""
        try:
            entry = pwd.getpwnam(user.name)
        except KeyError:
            raise TicketError(
                "config", f"there is no local account {log_safe(user.name)!r} to own the cache"
            ) from None
        return entry.pw_uid, entry.pw_gid

    # --- the ticket itself -------------------------------------------------------

    def _ticket_paths(self, username):
        """``(principal, keytab, cache)`` of ``username``; TicketError for a hostile name."""
        try:
            return (
                tickets.build_principal(self.principal_template, username, self.realm),
                tickets.keytab_path(self.keytab_template, username),
                tickets.ccache_path(self.ccache_dir, username),
            )
        except InvalidUsername as e:
            raise TicketError("config", str(e)) from None

    def _run_as(self, uid, gid):
        """Who the backend's process runs as: the user, when the hub can switch to them."""
        return (uid, gid) if os.geteuid() == 0 and uid != 0 else None

    def _store_sync(self, username, data, uid, gid):
        """Write the cache bytes ``data`` to ``username``'s cache; record what was given."""
        times = ccache.parse_ccache(data, "the new ticket")
        self.cache_dir.write(tickets.ccache_name(username), data, uid, gid)
        self._issued[username] = times
        return times

    def _obtain_ticket_sync(self, user, purpose="spawn"):
        """A keytab ticket into ``user``'s cache; ``(principal, cache, times)``."""
        if self.ticket_backend is None:
            raise TicketError("config", "KerberosTickets.keytab_template is not set")

        def work():
            principal, keytab, cache = self._ticket_paths(user.name)
            uid, gid = self.ticket_owner(user)
            data = tickets.keytab_ticket_bytes(
                self.ticket_backend,
                principal=principal,
                keytab=keytab,
                keytab_owner=uid,
                timeout=self.timeout,
                run_as=self._run_as(uid, gid),
            )
            return principal, cache, self._store_sync(user.name, data, uid, gid)

        return self._timed(purpose, work)

    async def _login_ticket(self, user):
        """``(auth_state, ticket bytes)`` of ``user`` (password_tickets); TicketError
        without one.

        auth_state (written by the hub only) says whether the user holds a login
        ticket at all; of it and the hub's own copy in memory (renewed, maybe not
        saved yet), the one that ends later is used.
        """
        auth_state = await user.get_auth_state() or {}
        stored = None
        if auth_state.get(AUTH_STATE_KEY):
            try:
                stored = base64.b64decode(auth_state[AUTH_STATE_KEY])
                stored_end = ccache.parse_ccache(stored, "the ticket in auth_state").end
            except (TicketError, ValueError):
                stored = None
        if stored is None:
            self._hub_tickets.pop(user.name, None)
            raise TicketError(
                "expired", "no ticket from the login in auth_state; the user must log in again"
            )
        kept = self._hub_tickets.get(user.name)
        if kept is not None and ccache.parse_ccache(kept).end >= stored_end:
            return auth_state, kept
        self._hub_tickets[user.name] = stored
        return auth_state, stored

    async def _single_flight(self, key, make):
        """Run ``make()`` (a coroutine) for ``key``, or wait for the one already running.

        One user's ticket requests never hold more than one ticket thread: a
        second spawn, fetch or renewal of the same user while one runs shares
        its result (or its error).
        """
        running = self._in_flight.get(key)
        if running is None:
            running = asyncio.ensure_future(make())
            self._in_flight[key] = running
            running.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(running)

    async def obtain_ticket(self, user):
        """Get ``user`` a fresh ticket in their cache; return ``(principal, cache path)``.

        Runs on kerbauth's own thread pool, one request per user at a time;
        raises :class:`TicketError`.
        """
        return await self._single_flight(user.name, lambda: self._obtain(user))

    async def _obtain(self, user):
        loop = asyncio.get_running_loop()
        if self.password_tickets:
            auth_state, data = await self._login_ticket(user)
            principal, cache, renewed = await loop.run_in_executor(
                self._ticket_executor, self._password_cache_sync, user, data
            )
            if renewed:
                await self._save_hub_ticket(user)
        else:
            principal, cache, _ = await loop.run_in_executor(
                self._ticket_executor, self._obtain_ticket_sync, user
            )
        self.renewer.wake()
        return principal, cache

    async def remove_ticket(self, user):
        """Remove ``user``'s cache, if there is one, and forget what was given."""
        self._issued.pop(user.name, None)
        if self.cache_dir is None:
            return False
        try:
            name = tickets.ccache_name(user.name)
        except InvalidUsername:
            return False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ticket_executor, self.cache_dir.remove, name)

    # --- tickets from the login password ---------------------------------------------

    def _timed(self, purpose, work):
        """Run ``work()``, counting its time and its failure cause in the metrics.

        An OSError on the way (a full disk, a read-only file system) becomes a
        TicketError with its cause, like every other failure.
        """
        started = time.monotonic()
        try:
            try:
                result = work()
            except OSError as e:
                raise TicketError("ccache", f"{purpose}: {e}") from None
        except TicketError as e:
            metrics.TICKET_FAILURES.labels(e.cause, purpose).inc()
            raise
        metrics.TICKET_REQUEST_SECONDS.labels(self.ticket_backend.name, purpose).observe(
            time.monotonic() - started
        )
        return result

    def _login_ticket_sync(self, username, password):
        principal, _, _ = self._ticket_paths(username)
        run_as = None
        if self.delivery == "file":
            try:
                run_as = self._run_as(*self.ticket_owner(SimpleNamespace(name=username)))
            except TicketError:
                run_as = None
        data = self._timed(
            "login",
            lambda: tickets.password_ticket(
                self.ticket_backend,
                principal=principal,
                password=password,
                renew_life=self.renew_lifetime,
                timeout=self.timeout,
                run_as=run_as,
            ),
        )
        self._hub_tickets[username] = data
        if self.cache_dir is not None and self.cache_dir.exists(tickets.ccache_name(username)):
            # A running server gets the new ticket at once (a login after
            # the old one ran out, typically).
            uid, gid = self.ticket_owner(SimpleNamespace(name=username))
            self._timed("login", lambda: self._store_sync(username, data, uid, gid))
        return data

    async def get_authenticated_user(self, handler, data):
        """Log in as usual; with ``password_tickets``, also get a ticket from the password."""
        authenticated = await super().get_authenticated_user(handler, data)
        if authenticated is None or not self.password_tickets:
            return authenticated
        username = authenticated["name"]
        loop = asyncio.get_running_loop()
        try:
            blob = await loop.run_in_executor(
                self._ticket_executor, self._login_ticket_sync, username, data.get("password")
            )
        except TicketError as e:
            if self.required:
                self.log.error("kerbauth: no ticket for %s at login: %s", log_safe(username), e)
                raise
            self.log.warning("kerbauth: logging %s in without a ticket: %s", log_safe(username), e)
            return authenticated
        auth_state = dict(authenticated.get("auth_state") or {})
        auth_state[AUTH_STATE_KEY] = base64.b64encode(blob).decode("ascii")
        authenticated["auth_state"] = auth_state
        return authenticated

    def _password_cache_sync(self, user, data):
        """Write the hub's password ticket to the user's cache, renewed first if it is due.

        ``(principal, cache, renewed)``.
        """
        principal, _, cache = self._ticket_paths(user.name)
        ticket = ccache.parse_ccache(data, "the ticket in auth_state")
        if ticket.principal != principal:
            raise TicketError("config", f"auth_state holds {ticket.principal}, not {principal}")
        if self.renewer.is_due((ticket.start, ticket.end), self.renewer.clock()) and (
            ticket.renew_till > ticket.end
        ):
            self._renew_password_ticket_sync(user)
            return principal, cache, True
        uid, gid = self.ticket_owner(user)
        self._timed("spawn", lambda: self._store_sync(user.name, data, uid, gid))
        return principal, cache, False

    def _renew_password_ticket_sync(self, user):
        """Renew the hub's copy of ``user``'s password ticket and write it to their cache.

        The user's cache file is never read: it is theirs to change, and what
        they write there must not decide when they log in again.
        """
        principal, _, _ = self._ticket_paths(user.name)
        data = self._hub_tickets.get(user.name)
        if data is None:
            raise TicketError("expired", f"the hub holds no ticket of {principal}; log in again")
        current = ccache.parse_ccache(data, "the hub's ticket")
        if current.renew_till <= current.end:
            raise TicketError(
                "expired",
                f"the ticket of {principal} cannot be renewed past"
                f" {time.ctime(current.end)}; the user must log in again",
            )
        # With the fetch delivery there is no local account: the hub renews as itself.
        uid, gid = self.ticket_owner(user) if self.cache_dir is not None else (None, None)

        def work():
            renewed = tickets.renew_ticket_bytes(
                self.ticket_backend,
                data=data,
                principal=principal,
                timeout=self.timeout,
                run_as=self._run_as(uid, gid) if uid is not None else None,
            )
            self._hub_tickets[user.name] = renewed
            if self.cache_dir is None:
                return ccache.parse_ccache(renewed)
            return self._store_sync(user.name, renewed, uid, gid)

        return self._timed("renewal", work)

    def _refresh_password_cache_sync(self, user):
        """A renewal sweep's work for a password ticket: renew the hub's copy when it is
        due, else write it as it is (after a hub restart the hub has no record of what
        the cache holds); its (start, end)."""
        data = self._hub_tickets.get(user.name)
        if data is not None:
            ticket = ccache.parse_ccache(data, "the hub's ticket")
            if not self.renewer.is_due((ticket.start, ticket.end), self.renewer.clock()):
                uid, gid = self.ticket_owner(user)
                times = self._timed("renewal", lambda: self._store_sync(user.name, data, uid, gid))
                return times.start, times.end
        times = self._renew_password_ticket_sync(user)
        return times.start, times.end

    async def _save_hub_ticket(self, user):
        """Save the hub's copy of ``user``'s password ticket in auth_state, if it is newer."""
        data = self._hub_tickets.get(user.name)
        if data is None:
            return
        auth_state = dict(await user.get_auth_state() or {})
        blob = base64.b64encode(data).decode("ascii")
        if auth_state.get(AUTH_STATE_KEY) != blob:
            auth_state[AUTH_STATE_KEY] = blob
            await user.save_auth_state(auth_state)

    async def refresh_user(self, user, handler=None):
        """With ``password_tickets``: keep auth_state's ticket current, or ask for a new login.

        Decided from the hub's own copy of the ticket (renewed by the hub) and
        auth_state (written by the hub), never from the user's cache file.
        When the ticket can no longer be renewed and is about to end, False
        makes JupyterHub ask the user to log in again (their server keeps
        running).
        """
        result = await maybe_future(super().refresh_user(user, handler))
        if result is False or not self.password_tickets:
            return result
        try:
            auth_state, data = await self._login_ticket(user)
        except TicketError:
            return False
        ticket = ccache.parse_ccache(data, "the hub's ticket")
        if ticket.renew_till <= ticket.end and self.renewer.is_due(
            (ticket.start, ticket.end), self.renewer.clock()
        ):
            self.log.info(
                "kerbauth: the ticket of %s can no longer be renewed; asking for a new login",
                log_safe(user.name),
            )
            return False
        blob = base64.b64encode(data).decode("ascii")
        if auth_state.get(AUTH_STATE_KEY) != blob:
            auth_state = dict(auth_state)
            auth_state[AUTH_STATE_KEY] = blob
            return {"name": user.name, "auth_state": auth_state}
        return True

    # --- renewal -------------------------------------------------------------------

    def _running_users(self):
        """The hub's users with at least one active server (empty outside a hub)."""
        users = getattr(self.parent, "users", None)
        if users is None or not hasattr(users, "values"):
            return []
        return [u for u in users.values() if any(s.active for s in u.spawners.values())]

    def _inspect_cache(self, username, principal):
        """What ``username``'s cache holds now: "ok", "foreign" or "absent"."""
        data = self.cache_dir.read(tickets.ccache_name(username))
        if data is None:
            return "absent"
        try:
            found = ccache.parse_ccache(data).principal
        except TicketError:
            return "foreign"
        return "ok" if found == principal else "foreign"

    async def _renewal_targets(self):
        if self.cache_dir is None:
            return []
        targets = []
        for user in self._running_users():
            try:
                principal, _, _ = self._ticket_paths(user.name)
            except TicketError:
                continue
            if self._shared_without_tickets(user):
                await self._drop_shared(user)
                continue
            self._shared_warned.discard(user.name)  # shared again later: warned again
            after = None
            if self.password_tickets:
                if user.name not in self._hub_tickets:
                    try:
                        await self._login_ticket(user)  # after a hub restart
                    except TicketError:
                        continue
                renew = functools.partial(self._refresh_password_cache_sync, user)
                after = functools.partial(self._save_hub_ticket, user)
            else:
                renew = functools.partial(self._renew_keytab_sync, user)
            issued = self._issued.get(user.name)
            targets.append(
                RenewalTarget(
                    key=user.name,
                    times=(issued.start, issued.end) if issued else None,
                    inspect=functools.partial(self._inspect_cache, user.name, principal),
                    renew=renew,
                    after=after,
                )
            )
        return targets

    def _renew_keytab_sync(self, user):
        _, _, times = self._obtain_ticket_sync(user, "renewal")
        return times.start, times.end

    def _renewal_result(self, key, error, seconds):
        metrics.TICKETS_EXPIRING.set(self.renewer.expiring)

    def _start_renewal(self):
        """Start the renewal loop if there is a running event loop (there is in a hub)."""
        if self.ticket_backend is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.renewer.start()

    # --- shared servers -------------------------------------------------------------

    def _shared_without_tickets(self, user, spawner=None):
        """Whether a server of ``user`` that runs (or ``spawner``, about to) is shared with
        other users while ``tickets_for_shared_servers`` is off. All of a user's servers
        share one cache, so one shared server exposes it."""
        if self.tickets_for_shared_servers:
            return False
        spawners = [s for s in getattr(user, "spawners", {}).values() if s.active]
        if spawner is not None:
            spawners.append(spawner)
        for s in spawners:
            orm_spawner = getattr(s, "orm_spawner", None)
            if getattr(orm_spawner, "shares", None) or getattr(orm_spawner, "share_codes", None):
                return True
        return False

    async def _drop_shared(self, user):
        """A server shared while it runs loses its ticket (logged once)."""
        if user.name not in self._shared_warned:
            self._shared_warned.add(user.name)
            self.log.warning(
                "kerbauth: a server of %s is shared with other users; its Kerberos ticket is"
                " removed and not renewed (KerberosTickets.tickets_for_shared_servers is False)",
                log_safe(user.name),
            )
        await self.remove_ticket(user)

    def _refuse_shared(self, user, spawner=None):
        if self._shared_without_tickets(user, spawner):
            raise TicketError(
                "shared",
                f"a server of {log_safe(user.name)} is shared with other users"
                " (KerberosTickets.tickets_for_shared_servers is False)",
            )

    # --- the fetch delivery ---------------------------------------------------------

    def _fetch_keytab_ticket_sync(self, username):
        if self.ticket_backend is None:
            raise TicketError("config", "KerberosTickets.keytab_template is not set")

        def work():
            principal, keytab, _ = self._ticket_paths(username)
            return tickets.keytab_ticket_bytes(
                self.ticket_backend,
                principal=principal,
                keytab=keytab,
                keytab_owner=os.geteuid(),
                timeout=self.timeout,
            )

        return self._timed("fetch", work)

    def _fetch_password_ticket_sync(self, user, data):
        """``(cache bytes, renewed)``: the hub's password ticket, renewed when it is due."""
        principal, _, _ = self._ticket_paths(user.name)
        ticket = ccache.parse_ccache(data, "the hub's ticket")
        if ticket.principal != principal:
            raise TicketError("config", f"auth_state holds {ticket.principal}, not {principal}")
        now = self.renewer.clock()
        if not self.renewer.is_due((ticket.start, ticket.end), now):
            return data, False
        if ticket.renew_till <= ticket.end:
            if ticket.end > now:
                return data, False
            raise TicketError(
                "expired",
                f"the ticket of {principal} ended at {time.ctime(ticket.end)} and cannot be"
                " renewed; the user must log in again",
            )
        self._renew_password_ticket_sync(user)
        return self._hub_tickets[user.name], True

    async def fetch_ticket(self, user):
        """The bytes of a FILE cache with ``user``'s current TGT (``delivery = "fetch"``).

        With a keytab, a fresh ticket each time; with ``password_tickets``, the
        hub's ticket, renewed (and saved back to auth_state) when it is due.
        Runs on kerbauth's thread pool, one request per user at a time;
        raises :class:`TicketError`.
        """
        self._refuse_shared(user)
        return await self._single_flight(user.name, lambda: self._fetch(user))

    async def _fetch(self, user):
        loop = asyncio.get_running_loop()
        if self.password_tickets:
            _, data = await self._login_ticket(user)
            data, renewed = await loop.run_in_executor(
                self._ticket_executor, self._fetch_password_ticket_sync, user, data
            )
            if renewed:
                await self._save_hub_ticket(user)
            return data
        # A server asks at start and before the end; a user's code asking in a
        # loop gets the same ticket again for a few seconds, not a KDC request each.
        reused = self._fetched.get(user.name)
        if reused and time.monotonic() - reused[0] < FETCH_REUSE_SECONDS:
            return reused[1]
        data = await loop.run_in_executor(
            self._ticket_executor, self._fetch_keytab_ticket_sync, user.name
        )
        now = time.monotonic()
        for name in [n for n, (t, _) in self._fetched.items() if now - t >= FETCH_REUSE_SECONDS]:
            del self._fetched[name]
        self._fetched[user.name] = (now, data)
        return data

    @property
    def _fetched(self):
        """username -> (monotonic time, cache bytes) of the last keytab ticket fetched."""
        return self.__dict__.setdefault("_kerbauth_fetched", {})

    def get_handlers(self, app):
        """The login handlers, plus ``/hub/api/kerbauth/ticket`` with ``delivery = "fetch"``."""
        parent = getattr(super(), "get_handlers", None)
        handlers = list(parent(app)) if parent else []
        if self.delivery == "fetch":
            from kerbauth.hub.api import TICKET_PATH, TicketHandler

            handlers.append((f"/api/{TICKET_PATH}", TicketHandler))
        return handlers

    def _fetch_environment(self, user, spawner):
        """What a server needs to fetch its ticket: ``KRB5CCNAME`` and the handler's URL."""
        from kerbauth.hub.api import TICKET_PATH

        path = self.fetch_ccache_path.format(username=check_username(user.name))
        hub = getattr(spawner, "hub", None)
        api_url = hub.api_url if hub is not None else ""
        connect_url = getattr(spawner, "hub_connect_url", None)
        if connect_url:
            # As JupyterHub builds JUPYTERHUB_API_URL for the server.
            api_url = url_path_join(connect_url, urlparse(api_url).path)
        return {
            "KRB5CCNAME": f"FILE:{path}",
            "KERBAUTH_TICKET_URL": url_path_join(api_url, TICKET_PATH),
            "KERBAUTH_RENEW_MARGIN": f"{self.renew_margin:g}",
        }

    async def _pre_spawn_fetch(self, user, spawner):
        """``delivery = "fetch"``: check a ticket can be had, tell the server where to get it."""
        try:
            try:
                check_username(user.name)
            except InvalidUsername as e:
                raise TicketError("config", str(e)) from None
            self._refuse_shared(user, spawner)
            data = await self.fetch_ticket(user)
        except TicketError as e:
            self._no_ticket_at_spawn(user, e)
            return
        environment = dict(spawner.environment)
        environment.update(self._fetch_environment(user, spawner))
        spawner.environment = environment
        self.log.info(
            "kerbauth: the server of %s will fetch its ticket (%s) into %s",
            log_safe(user.name),
            ccache.parse_ccache(data).principal,
            environment["KRB5CCNAME"],
        )

    # --- JupyterHub's spawn hooks ------------------------------------------------

    def _no_ticket_at_spawn(self, user, error):
        """``required``: refuse the spawn (the user sees why); otherwise log and go on."""
        if self.required:
            self.log.error(
                "kerbauth: no ticket for %s, spawn refused: %s", log_safe(user.name), error
            )
            raise spawn_refusal(error) from error
        self.log.warning(
            "kerbauth: starting %s's server without a Kerberos ticket"
            " (KerberosTickets.required is False): %s",
            log_safe(user.name),
            error,
        )

    async def pre_spawn_start(self, user, spawner):
        """Give the server a ticket: write the cache, set ``KRB5CCNAME``."""
        await maybe_future(super().pre_spawn_start(user, spawner))
        if self.delivery == "fetch":
            await self._pre_spawn_fetch(user, spawner)
            return
        self._start_renewal()
        try:
            self._refuse_shared(user, spawner)
            principal, cache = await self.obtain_ticket(user)
        except TicketError as e:
            self._no_ticket_at_spawn(user, e)
            return
        environment = dict(spawner.environment)
        environment["KRB5CCNAME"] = f"FILE:{cache}"
        if os.environ.get("KRB5_CONFIG"):
            environment["KRB5_CONFIG"] = os.environ["KRB5_CONFIG"]
        spawner.environment = environment
        self.log.info("kerbauth: ticket for %s written to %s", principal, cache)

    async def post_spawn_stop(self, user, spawner):
        """Remove the server's ticket cache."""
        await maybe_future(super().post_spawn_stop(user, spawner))
        others = [s for s in getattr(user, "spawners", {}).values() if s is not spawner]
        if any(s.active for s in others) or self.delivery == "fetch":
            # One cache serves all of a user's servers; another one still runs.
            # (With "fetch", the hub keeps no cache: the server's goes with it.)
            return
        if await self.remove_ticket(user):
            self.log.info("kerbauth: removed the ticket cache of %s", log_safe(user.name))
