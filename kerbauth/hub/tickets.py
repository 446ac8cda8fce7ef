"""``KerberosTickets``: the configuration section for tickets, shared by both login modes.

Both authenticators inherit from :class:`KerberosTickets`, so its options are
set as ``c.KerberosTickets.<name>`` whichever mode is used, and JupyterHub's
``--help-all`` lists them. This module holds the options and the rules
between them; what the class does comes from its mixins, one concern each:

- :mod:`kerbauth.hub.service`: obtaining and storing tickets, the hub's
  records, the resources (backend, thread pool, cache directory), start-up;
- :mod:`kerbauth.hub.password_tickets`: tickets from the login password and
  ``refresh_user``;
- :mod:`kerbauth.hub.delivery`: the ``file`` and ``fetch`` deliveries;
- :mod:`kerbauth.hub.spawn_policy`: the spawn hooks and shared servers;
- :mod:`kerbauth.hub.renewal_targets` and :mod:`kerbauth.hub.renewal`:
  keeping running servers' tickets fresh.
"""

import os

from traitlets import Bool, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from kerbauth.core.errors import ConfigError
from kerbauth.core.realm import default_realm
from kerbauth.hub.password_tickets import AUTH_STATE_KEY, PasswordTickets, delegation_option
from kerbauth.hub.renewal_targets import RenewalTargets
from kerbauth.hub.service import TicketService
from kerbauth.hub.spawn_policy import SpawnPolicy
from kerbauth.traits import Choice, Count, Seconds

__all__ = ["KerberosTickets", "AUTH_STATE_KEY"]


class KerberosTickets(
    SpawnPolicy, PasswordTickets, RenewalTargets, TicketService, LoggingConfigurable
):
    """Gives every spawned server a Kerberos ticket of its own user.

    At spawn (``pre_spawn_start``) the user's TGT is obtained from their
    keytab (or login password) and delivered: written to a cache file the user
    owns, or fetched by the server; the server gets it as ``KRB5CCNAME``.
    While it runs, the ticket is renewed; at stop the cache is removed.

    Made from its configuration only: the constructor reads the options and
    starts nothing. :meth:`check_config` checks the rules between options
    (no side effects; what ``kerbauth doctor`` calls); :meth:`start` checks
    them too, then makes the backend and the cache directory, warms the
    backend and starts renewal. JupyterHub calls :meth:`start` at start-up
    (through ``check_allow_config``); outside a hub the first use does.
    """

    realm = Unicode(
        "",
        config=True,
        help="""
        The Kerberos realm of the users' principals, e.g. ``"CORP.EXAMPLE.COM"``.

        Unset (``""``): the ``default_realm`` of krb5.conf (``$KRB5_CONFIG``
        or /etc/krb5.conf, with its included files).

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
        It must be set, unless ``password_tickets``, SPNEGO with delegation
        (``KerberosSPNEGO.keytab``) or ``required = False``. A user whose login
        brought a ticket (the password, a delegated TGT) gets that one instead.

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
        Example: ``"/var/lib/kerbauth/caches"``.

        .. versionadded:: 0.1
        """,
    )

    backend = Choice(
        ["", "krb5", "kinit"],
        default_value="",
        config=True,
        help="""
        How tickets are requested: ``"krb5"`` (the MIT library, in a pool of
        worker processes; needs ``pip install kerbauth[krb5]``) or
        ``"kinit"`` (runs the kinit program, MIT or Heimdal), e.g. ``"kinit"``.

        Unset (``""``): ``"krb5"`` when the krb5 bindings are installed,
        ``"kinit"`` otherwise. The hub logs which one it uses.

        .. versionadded:: 0.1
        """,
    )

    kinit_path = Unicode(
        "kinit",
        config=True,
        help="""
        The kinit program used by the ``"kinit"`` backend, e.g.
        ``"/usr/bin/kinit"``; a bare name is looked up in ``$PATH``.

        .. versionadded:: 0.1
        """,
    )

    timeout = Seconds(
        10,
        config=True,
        help="""
        Seconds one ticket request may take before it is abandoned and its
        kinit or worker process killed, e.g. ``5``.

        .. versionadded:: 0.1
        """,
    )

    required = Bool(
        True,
        config=True,
        help="""
        Whether a server may start only with a ticket.

        True: when no ticket can be obtained, the spawn is
        refused with a message the user can act on, and the cause is logged.
        False: the server starts without a ticket (no ``KRB5CCNAME``) and a
        warning is logged. Example: ``False``.

        .. versionadded:: 0.1
        """,
    )

    ticket_concurrency = Count(
        4,
        minimum=1,
        config=True,
        help="""
        How many ticket requests may run at once; more wait their turn.
        Bounds the threads, kinit processes and krb5 workers kerbauth uses,
        e.g. ``8``. At least 2: renewal sweeps use all but one, which stays
        free for spawns and logins.

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
        ``JUPYTERHUB_CRYPT_KEY``). Either backend works: ``kinit`` reads the
        password on its standard input and renews with ``kinit -R``.
        Example: ``True``.

        .. versionadded:: 0.1
        .. versionchanged:: 0.2
           Works with the ``kinit`` backend too (it needed ``krb5``).
        """,
    )

    renew_lifetime = Seconds(
        7 * 24 * 3600,
        allow_zero=True,
        config=True,
        help="""
        The renewable life, in seconds, asked for password tickets
        (``password_tickets``); the KDC may grant less, and 0 asks for a
        ticket that is not renewable. Example: ``86400`` (one day).

        .. versionadded:: 0.1
        """,
    )

    renew_margin = Seconds(
        1800,
        config=True,
        help="""
        Seconds before a running server's ticket ends at which the hub gets it
        a new one, e.g. ``3600``. A ticket that lives shorter than twice this
        is renewed at half its life instead. Must be longer than
        ``renew_interval``.

        .. versionadded:: 0.1
        """,
    )

    renew_interval = Seconds(
        60,
        config=True,
        help="""
        The longest wait, in seconds, between two looks at the running servers'
        tickets, e.g. ``300``; a look comes sooner when a ticket is due. Must be
        shorter than ``renew_margin``, so that a look that fails (a KDC or disk
        error) is followed by another before a ticket's last ``renew_margin``
        seconds have run out.

        .. versionadded:: 0.1
        """,
    )

    renew_max_backoff = Seconds(
        60,
        config=True,
        help="""
        Longest wait, in seconds, between two renewal attempts for a user
        whose renewal keeps failing (a KDC that is down, say). Attempts back
        off 1, 2, 4, ... seconds (less a random tenth, so servers that failed
        together do not retry together) up to this, and go on until the KDC is
        back. Example: ``30``.

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
        cluster (HDFS, YARN, Hive) as the owner. False: a shared
        server gets no ticket. At spawn that is treated like any other missing
        ticket (see ``required``); a server shared while it runs loses its
        ticket at the next renewal check (its cache is removed, a warning
        logged), and the fetch delivery refuses it. True: tickets are given
        whether the server is shared or not, for sites that accept that
        sharing a server means sharing one's identity. Example: ``True``.

        .. versionadded:: 0.2
        """,
    )

    delivery = Choice(
        ["file", "fetch"],
        default_value="file",
        config=True,
        help="""
        How a server gets its ticket: ``"file"`` or ``"fetch"``.

        ``"file"``: the hub, running as root on the host where
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
        is removed when the server stops. The default is a directory of the
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
            raise ConfigError(
                f"KerberosTickets.fetch_ccache_path may use only {{username}}, not {path!r}"
            ) from None
        if (
            not os.path.isabs(filled)
            or filled.endswith("/")
            or {".", ".."} & set(filled.split("/"))
        ):
            raise ConfigError(
                f"KerberosTickets.fetch_ccache_path must be an absolute file path"
                f" without '.' or '..', not {path!r}"
            )
        return path

    @validate("ticket_concurrency")
    def _check_concurrency(self, proposal):
        if proposal.value < 2:
            raise ConfigError(
                f"KerberosTickets.ticket_concurrency must be at least 2, not {proposal.value}:"
                " renewal sweeps use all ticket threads but one, which stays free so that"
                " spawns and logins never wait behind a sweep"
            )
        return proposal.value

    @default("realm")
    def _default_realm(self):
        return default_realm() or ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_records()

    def check_config(self):
        """Refuse options that cannot work together, with a :class:`ConfigError` naming
        the option to fix. Reads the configuration only (and krb5.conf for the realm)."""
        delegation = delegation_option(self)
        if self.password_tickets and not self.enable_auth_state:
            raise ConfigError(
                "KerberosTickets.password_tickets requires"
                " Authenticator.enable_auth_state = True (and JUPYTERHUB_CRYPT_KEY)"
            )
        if delegation and not self.keytab_template and not self.enable_auth_state:
            raise ConfigError(
                f"{delegation} without KerberosTickets.keytab_template or password_tickets"
                " gives tickets only by delegation, kept in auth_state: it requires"
                " Authenticator.enable_auth_state = True (and JUPYTERHUB_CRYPT_KEY)"
            )
        if not (self.password_tickets or delegation or self.keytab_template):
            if self.required:
                raise ConfigError(
                    "KerberosTickets.keytab_template is not set: kerbauth cannot get tickets"
                    ' (set it, e.g. "/home/{username}/{username}.keytab", or set'
                    " KerberosTickets.required = False to start servers without tickets)"
                )
            return
        if not self.realm:
            raise ConfigError(
                "KerberosTickets.realm is not set and krb5.conf names no default_realm"
            )
        if self.renew_interval >= self.renew_margin:
            raise ConfigError(
                f"KerberosTickets.renew_interval ({self.renew_interval:g} s) must be shorter"
                f" than KerberosTickets.renew_margin ({self.renew_margin:g} s): a look at the"
                " tickets that fails must be followed by another before they run out"
            )

    def check_allow_config(self):
        """JupyterHub's start-up check of the authenticator (5.0 and later): kerbauth starts
        here, so a hub whose tickets cannot work refuses to start, naming the option."""
        super().check_allow_config()
        self.start()
