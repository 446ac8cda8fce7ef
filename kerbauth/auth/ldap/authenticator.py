"""LDAP bind login plus a Kerberos ticket at spawn (``kerberos-ldap``).

The class reads the configuration and hands the LDAP work to the plain helpers
of :mod:`kerbauth.auth.ldap.directory`, on a thread pool of its own: the hub's
event loop never waits for the directory.
"""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Bool, CaselessStrEnum, Float, Integer, List, Set, Unicode, observe, validate

from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.auth.ldap.directory import Directory, DirectoryError, DirectoryUnavailable, UserQuery
from kerbauth.auth.limits import LoginLimits
from kerbauth.core.errors import TicketError
from kerbauth.core.names import InvalidUsername, check_username, log_safe
from kerbauth.hub.tickets import KerberosTickets

__all__ = ["KerberosLDAPAuthenticator"]

DEFAULT_GROUP_FILTER = (
    "(|(&(objectClass=groupOfNames)(member={user_dn}))"
    "(&(objectClass=groupOfUniqueNames)(uniqueMember={user_dn}))"
    "(&(objectClass=posixGroup)(memberUid={username})))"
)

# How long past login_timeout the event loop waits for the login's thread
# before answering 503 itself: the thread keeps to the deadline on its own;
# this only covers what it cannot bound (a hung DNS lookup).
BACKSTOP_GRACE = 2.0

UNAVAILABLE_MESSAGE = (
    "The directory server could not be reached, so your login could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)


class StringList(List):
    """A list of strings; one string is taken as a list of one."""

    def __init__(self, default_value=None, **kwargs):
        super().__init__(Unicode(), default_value=default_value or [], **kwargs)

    def validate(self, obj, value):
        if isinstance(value, str):
            value = [value]
        return super().validate(obj, value)


# Options that change how the directory is reached or queried.
_DIRECTORY_OPTIONS = (
    "server_address",
    "server_port",
    "tls_strategy",
    "tls_ca_file",
    "connect_timeout",
    "receive_timeout",
    "login_timeout",
    "max_response_bytes",
    "bind_dn_template",
    "lookup_dn",
    "user_search_base",
    "user_attribute",
    "user_search_filter",
    "search_bind_dn",
    "search_bind_password",
    "group_search_base",
    "group_search_filter",
    "group_name_attribute",
    "auth_state_attributes",
    "owner_from_ldap",
    "uid_number_attribute",
    "gid_number_attribute",
)


class KerberosLDAPAuthenticator(LoginLimits, KerberosTickets, Authenticator):
    """Log in with an LDAP bind; each server gets the user's Kerberos ticket.

    The user's entry is found from ``bind_dn_template`` or by a search
    (``lookup_dn``); their password is checked by binding as that entry. The
    directory is reached over StartTLS (default) or LDAPS with its
    certificate verified, with connect and receive timeouts, failing over
    to the next of ``server_address`` when a server cannot be used.
    """

    # --- where the directory is --------------------------------------------------------

    server_address = StringList(
        config=True,
        help="""
        The LDAP servers, tried in order: a server that refuses the
        connection, does not answer within the timeouts or fails the TLS
        check is skipped and the next one is asked. Each is a host name or
        address, optionally with ``:port``. One string is taken as a list of
        one. Example: ``["ldap1.corp.example", "ldap2.corp.example:1389"]``.
        Default: empty; it must be set.

        .. versionadded:: 0.1
        """,
    )

    server_port = Integer(
        0,
        config=True,
        help="""
        The port of servers in ``server_address`` that name none. Default: 0,
        meaning 389 (``starttls`` and ``insecure``) or 636 (``ldaps``).
        Example: ``1389``.

        .. versionadded:: 0.1
        """,
    )

    tls_strategy = CaselessStrEnum(
        ldap_directory.TLS_STRATEGIES,
        default_value="starttls",
        config=True,
        help="""
        How the connection is protected. Default: ``"starttls"``.

        ``"starttls"``: plain LDAP upgraded to TLS with StartTLS
        before anything else is sent. ``"ldaps"``: TLS from the first byte
        (port 636). ``"insecure"``: no TLS at all; passwords cross the
        network in clear text, for tests only. With TLS, the server's
        certificate must chain to a trusted CA (``tls_ca_file``) and name the
        host it was reached as. Example: ``"ldaps"``.

        .. versionadded:: 0.1
        """,
    )

    tls_ca_file = Unicode(
        "",
        config=True,
        help="""
        PEM file of the CA certificates that may sign the LDAP servers'
        certificates, e.g. ``"/etc/ssl/certs/corp-ca.pem"``. Default: empty,
        meaning the system's trusted CAs. Certificates are always verified:
        there is no option to turn that off short of ``tls_strategy =
        "insecure"``.

        .. versionadded:: 0.1
        """,
    )

    connect_timeout = Float(
        5,
        config=True,
        help="""
        Seconds to wait for a server to accept the TCP connection before
        trying the next one, e.g. ``2``. Default: 5.

        .. versionadded:: 0.1
        """,
    )

    receive_timeout = Float(
        5,
        config=True,
        help="""
        Seconds to wait for each answer of a server (StartTLS, the TLS
        handshake, a bind, a search) before giving up on it and trying the
        next one, e.g. ``2``. A server that accepts connections and never
        answers costs this long once per login. Default: 5.

        .. versionadded:: 0.1
        """,
    )

    login_timeout = Float(
        30,
        config=True,
        help="""
        Seconds one login may take in all, over every server of
        ``server_address``: past it, the login is refused with the "could not
        be reached" message (HTTP 503) and its thread is free again. Each
        server gets the time left divided by the servers not yet tried, so a
        server that trickles its answers (one byte at a time keeps each
        ``receive_timeout`` from expiring) cannot keep the next one from being
        asked. Must be more than ``connect_timeout + receive_timeout``.
        Default: 30, enough for two silent servers with the default timeouts
        (2 x (5 + 5) s) and a slow search, and well below the 60 s after which
        proxies commonly give up on a request. Example: ``15``.

        .. versionadded:: 0.2
        """,
    )

    max_response_bytes = Integer(
        4 * 1024 * 1024,
        config=True,
        help="""
        Bytes one login may read from one server (all its answers together:
        the bind, the user's entry, the group search). A server that sends
        more, or announces an answer that would be more, counts as failed and
        the next one is asked. This keeps a hostile or broken server from
        growing the hub's memory. Default: 4194304 (4 MiB): a group search
        answer is about 100-200 bytes a group, so thousands of groups fit many
        times over. Example: ``16777216``.

        .. versionadded:: 0.2
        """,
    )

    executor_threads = Integer(
        8,
        config=True,
        help="""
        How many LDAP logins may run at once, each on a thread of its own;
        more wait their turn. The hub's event loop never waits for LDAP.
        Example: ``16``. Default: 8.

        .. versionadded:: 0.1
        """,
    )

    # --- finding the user's entry ------------------------------------------------------

    bind_dn_template = StringList(
        config=True,
        help="""
        DNs to bind as, tried in order until one accepts the password;
        ``{username}`` is replaced by the (normalised, DN-escaped) username.
        One string is taken as a list of one. Set this or ``lookup_dn``.
        Example: ``["uid={username},ou=people,dc=corp,dc=example",
        "uid={username},ou=staff,dc=corp,dc=example"]``. Default: empty.

        .. versionadded:: 0.1
        """,
    )

    lookup_dn = Bool(
        False,
        config=True,
        help="""
        Find the user's DN by a search instead of ``bind_dn_template``: bind
        as ``search_bind_dn`` (anonymously if it is empty), search
        ``user_search_base`` with ``user_search_filter``, then bind as the one
        entry found with the user's password. No entry or more than one:
        login refused. Needed for Active Directory, where DNs contain the
        display name. Example: ``True``. Default: False.

        .. versionadded:: 0.1
        """,
    )

    user_search_base = Unicode(
        "",
        config=True,
        help="""
        Where to search for users when ``lookup_dn`` is True (the whole
        subtree), e.g. ``"ou=people,dc=corp,dc=example"``. Default: empty.

        .. versionadded:: 0.1
        """,
    )

    user_attribute = Unicode(
        "uid",
        config=True,
        help="""
        The attribute that holds the login name, used by
        ``user_search_filter``. Default: ``"uid"`` (OpenLDAP). Example:
        ``"sAMAccountName"`` (Active Directory).

        .. versionadded:: 0.1
        """,
    )

    user_search_filter = Unicode(
        "({user_attribute}={username})",
        config=True,
        help="""
        The filter that finds a user's entry when ``lookup_dn`` is True;
        ``{user_attribute}`` is replaced by ``user_attribute`` and
        ``{username}`` by the filter-escaped username. Default:
        ``"({user_attribute}={username})"``. Example (Active Directory,
        enabled accounts only): ``"(&(objectCategory=person)(sAMAccountName={username})
        (!(userAccountControl:1.2.840.113556.1.4.803:=2)))"``.

        .. versionadded:: 0.1
        """,
    )

    search_bind_dn = Unicode(
        "",
        config=True,
        help="""
        DN of the service account that searches for users (``lookup_dn``),
        reads their attributes and groups, and looks up ticket owners
        (``owner_from_ldap``). Default: empty, meaning searches are anonymous
        and, after a login, made as the user. Example:
        ``"cn=jupyterhub,ou=services,dc=corp,dc=example"``.

        .. versionadded:: 0.1
        """,
    )

    search_bind_password = Unicode(
        "",
        config=True,
        help="""
        Password of ``search_bind_dn``. Keep it out of the config file, e.g.
        ``os.environ["LDAP_SEARCH_PASSWORD"]``. Default: empty.

        .. versionadded:: 0.1
        """,
    )

    login_domains = StringList(
        config=True,
        help="""
        Domains users may type with their name. ``alice@corp.example`` and
        ``CORP\\alice`` log in as ``alice`` when ``corp.example`` and
        ``CORP`` are listed (case does not matter); a name with any other
        domain is refused. Example: ``["corp.example", "CORP"]``. Default:
        empty (a name with a domain is refused).

        .. versionadded:: 0.1
        """,
    )

    # --- groups ------------------------------------------------------------------------

    group_search_base = Unicode(
        "",
        config=True,
        help="""
        Where to look for the groups a user belongs to (the whole subtree),
        e.g. ``"ou=groups,dc=corp,dc=example"``. Needed by
        ``allowed_groups``, ``admin_groups`` and ``manage_groups``. Default:
        empty (no group lookup).

        .. versionadded:: 0.1
        """,
    )

    group_search_filter = Unicode(
        DEFAULT_GROUP_FILTER,
        config=True,
        help="""
        The filter that finds a user's groups; ``{user_dn}`` and
        ``{username}`` are replaced by the filter-escaped DN and username.
        Default: a filter that finds groupOfNames (``member``),
        groupOfUniqueNames (``uniqueMember``) and posixGroup (``memberUid``)
        groups. Example
        (Active Directory, nested groups too):
        ``"(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={user_dn}))"``.

        .. versionadded:: 0.1
        """,
    )

    group_name_attribute = Unicode(
        "cn",
        config=True,
        help="""
        The attribute of a group entry that holds its name: what
        ``allowed_groups`` and ``admin_groups`` may list, and the name of the
        JupyterHub group with ``manage_groups``. Default: ``"cn"``.
        Example: ``"sAMAccountName"``.

        .. versionadded:: 0.1
        """,
    )

    allowed_groups = Set(
        Unicode(),
        config=True,
        help="""
        Members of these LDAP groups may log in (as well as
        ``allowed_users``, and members of ``admin_groups``). Each is a group
        name (its ``group_name_attribute``) or a full DN. Example:
        ``{"hub-users", "cn=data-science,ou=groups,dc=corp,dc=example"}``.
        Default: empty. Needs ``group_search_base``.

        .. versionadded:: 0.1
        """,
    ).tag(allow_config=True)

    admin_groups = Set(
        Unicode(),
        config=True,
        help="""
        Members of these LDAP groups are JupyterHub admins; when set, a user
        who has left them loses admin at their next login (unless listed in
        ``admin_users``). Names or DNs, as in ``allowed_groups``. Example:
        ``{"hub-admins"}``. Default: empty. Needs ``group_search_base``.

        .. versionadded:: 0.1
        """,
    ).tag(allow_config=True)

    # --- what is kept about the user ---------------------------------------------------

    auth_state_attributes = StringList(
        config=True,
        help="""
        Attributes of the user's entry kept in auth_state under
        ``ldap_attributes`` (each a list of strings), next to ``ldap_dn`` and,
        with a group search, ``ldap_groups``. Needs
        ``c.Authenticator.enable_auth_state = True``. Example:
        ``["mail", "displayName"]``. Default: empty.

        .. versionadded:: 0.1
        """,
    )

    owner_from_ldap = Bool(
        False,
        config=True,
        help="""
        Give each user's ticket cache the uid and gid of their LDAP entry
        (``uid_number_attribute``, ``gid_number_attribute``) instead of those
        of the local account of the same name: for servers that run as the
        directory's uid, in containers for instance. They are read at login;
        after a hub restart, from the directory with ``search_bind_dn``.
        Example: ``True``. Default: False.

        .. versionadded:: 0.1
        """,
    )

    uid_number_attribute = Unicode(
        "uidNumber",
        config=True,
        help="""
        The attribute holding a user's numeric uid (``owner_from_ldap``).
        Default: ``"uidNumber"``. Example: ``"uidNumber"``.

        .. versionadded:: 0.1
        """,
    )

    gid_number_attribute = Unicode(
        "gidNumber",
        config=True,
        help="""
        The attribute holding a user's numeric primary gid
        (``owner_from_ldap``). Default: ``"gidNumber"``. Example:
        ``"gidNumber"``.

        .. versionadded:: 0.1
        """,
    )

    # --- checks of single options ------------------------------------------------------

    @validate("server_address")
    def _check_server_address(self, proposal):
        for entry in proposal.value:
            try:
                ldap_directory.parse_server(entry, 389)
            except ValueError as e:
                raise ValueError(
                    f"KerberosLDAPAuthenticator.server_address: {e}"
                    ' (give "host" or "host:port"; set tls_strategy for LDAPS)'
                ) from None
        return proposal.value

    @validate("connect_timeout", "receive_timeout")
    def _check_timeouts(self, proposal):
        if not proposal.value > 0:
            raise ValueError(
                f"KerberosLDAPAuthenticator.{proposal.trait.name} must be a positive number"
                " of seconds"
            )
        return proposal.value

    @validate("login_timeout")
    def _check_login_timeout(self, proposal):
        if not proposal.value > 0:
            raise ValueError(
                "KerberosLDAPAuthenticator.login_timeout must be a positive number of seconds"
            )
        return proposal.value

    @validate("max_response_bytes")
    def _check_max_response_bytes(self, proposal):
        if proposal.value < 65536:
            raise ValueError(
                "KerberosLDAPAuthenticator.max_response_bytes must be at least 65536"
                " (a bind answer with a referral or a single entry can take kilobytes)"
            )
        return proposal.value

    @validate("server_port")
    def _check_port(self, proposal):
        if not 0 <= proposal.value < 65536:
            raise ValueError("KerberosLDAPAuthenticator.server_port must be 0 or a TCP port")
        return proposal.value

    @validate("executor_threads")
    def _check_threads(self, proposal):
        if proposal.value < 1:
            raise ValueError("KerberosLDAPAuthenticator.executor_threads must be at least 1")
        return proposal.value

    @validate("bind_dn_template")
    def _check_templates(self, proposal):
        for template in proposal.value:
            if "{username}" not in template:
                raise ValueError(
                    f"KerberosLDAPAuthenticator.bind_dn_template {template!r} has no {{username}}"
                )
        return proposal.value

    @observe(*_DIRECTORY_OPTIONS)
    def _directory_changed(self, change):
        self._settings = None

    # --- startup -----------------------------------------------------------------------

    def __init__(self, **kwargs):
        self._settings = None
        super().__init__(**kwargs)
        self._check_ldap_config()
        self._ldap_executor = ThreadPoolExecutor(
            self.executor_threads, thread_name_prefix="kerbauth-ldap"
        )
        # username -> (uid, gid) read at login, for owner_from_ldap.
        self._owners = {}
        self._ldap_settings()
        if self.tls_strategy == "insecure":
            self.log.warning(
                "kerbauth: KerberosLDAPAuthenticator.tls_strategy is insecure:"
                " passwords are sent to the LDAP server unencrypted"
            )

    def _check_ldap_config(self):
        """Refuse option combinations that cannot work, naming the option to fix."""
        name = "KerberosLDAPAuthenticator"
        if not self.server_address:
            raise ValueError(f'{name}.server_address is empty: set it, e.g. ["ldap.corp.example"]')
        if self.lookup_dn and self.bind_dn_template:
            raise ValueError(
                f"{name}.lookup_dn and {name}.bind_dn_template are both set: use one of them"
            )
        if not self.lookup_dn and not self.bind_dn_template:
            raise ValueError(
                f"{name}.bind_dn_template is empty and {name}.lookup_dn is False:"
                " set one of them to say how a user's DN is found"
            )
        if self.lookup_dn and not self.user_search_base:
            raise ValueError(f"{name}.lookup_dn requires {name}.user_search_base")
        if self.search_bind_dn and not self.search_bind_password:
            raise ValueError(
                f"{name}.search_bind_dn requires {name}.search_bind_password"
                " (a bind with an empty password is anonymous)"
            )
        if self.search_bind_password and not self.search_bind_dn:
            raise ValueError(f"{name}.search_bind_password requires {name}.search_bind_dn")
        for option in ("allowed_groups", "admin_groups", "manage_groups"):
            if getattr(self, option) and not self.group_search_base:
                raise ValueError(f"{name}.{option} requires {name}.group_search_base")
        if self.auth_state_attributes and not self.enable_auth_state:
            self.log.warning(
                "kerbauth: %s.auth_state_attributes is set but"
                " Authenticator.enable_auth_state is False: the attributes are not kept",
                name,
            )
        if not self.login_timeout > self.connect_timeout + self.receive_timeout:
            raise ValueError(
                f"{name}.login_timeout ({self.login_timeout:g} s) must be more than"
                f" {name}.connect_timeout + {name}.receive_timeout"
                f" ({self.connect_timeout + self.receive_timeout:g} s): one server must"
                " have the time to accept the connection and answer"
            )
        self._check_username_map()
        if self.tls_ca_file:
            if self.tls_strategy == "insecure":
                raise ValueError(f'{name}.tls_ca_file is set but {name}.tls_strategy is "insecure"')
            if not os.path.isfile(self.tls_ca_file):
                raise ValueError(f"{name}.tls_ca_file {self.tls_ca_file!r} is not a file")
        try:
            ldap_directory.check_filter_template(
                self.user_search_filter, user_attribute=self.user_attribute, username="x"
            )
        except ValueError as e:
            raise ValueError(f"{name}.user_search_filter: {e}") from None
        if "{username}" not in self.user_search_filter:
            raise ValueError(f"{name}.user_search_filter has no {{username}}")
        try:
            ldap_directory.check_filter_template(
                self.group_search_filter, user_dn="uid=x,dc=example", username="x"
            )
        except ValueError as e:
            raise ValueError(f"{name}.group_search_filter: {e}") from None

    def _check_username_map(self):
        """Refuse a ``username_map`` that does not map each name once, to a final name.

        JupyterHub applies the map again to the name a login returns; so
        each value must map to itself (a chain ``a -> b -> c`` would make the
        result depend on how often it is applied), and keys must be
        normalised names (a key with capitals never matches).
        """
        option = "Authenticator.username_map"
        for key, value in self.username_map.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"{option}: {key!r}: {value!r} is not a name mapped to a name")
            if self._directory_name(key) != key:
                raise ValueError(
                    f"{option} key {key!r} never matches: names are lowercased and"
                    f" stripped of a listed domain before the map is applied"
                    f" (write {self._directory_name(key)!r})"
                )
            target = self.username_map.get(value, value)
            if target != value:
                raise ValueError(
                    f"{option} maps {key!r} to {value!r}, which it maps to {target!r}:"
                    f" a chain is not followed; map {key!r} to the final name directly"
                )
            if self._directory_name(value) != value:
                raise ValueError(
                    f"{option} maps {key!r} to {value!r}, which is not a normalised name"
                    f" (JupyterHub would make it {self.normalize_username(value)!r})"
                )
            try:
                check_username(value)
            except InvalidUsername as e:
                raise ValueError(f"{option} maps {key!r} to an unusable name: {e}") from None

    def _ldap_settings(self):
        """``(Directory, UserQuery)`` built from the current options."""
        if self._settings is None:
            default_port = 636 if self.tls_strategy == "ldaps" else 389
            directory = Directory(
                servers=[
                    ldap_directory.parse_server(entry, self.server_port or default_port)
                    for entry in self.server_address
                ],
                tls_strategy=self.tls_strategy,
                context=(
                    None
                    if self.tls_strategy == "insecure"
                    else ldap_directory.tls_context(self.tls_ca_file)
                ),
                connect_timeout=self.connect_timeout,
                receive_timeout=self.receive_timeout,
                login_timeout=self.login_timeout,
                max_response_bytes=self.max_response_bytes,
            )
            attributes = list(self.auth_state_attributes)
            if self.owner_from_ldap:
                attributes += [self.uid_number_attribute, self.gid_number_attribute]
            query = UserQuery(
                bind_dn_templates=[] if self.lookup_dn else list(self.bind_dn_template),
                search_base=self.user_search_base if self.lookup_dn else "",
                search_filter=self.user_search_filter,
                user_attribute=self.user_attribute,
                search_bind_dn=self.search_bind_dn,
                search_bind_password=self.search_bind_password,
                attributes=attributes,
                group_search_base=self.group_search_base,
                group_search_filter=self.group_search_filter,
                group_name_attribute=self.group_name_attribute,
            )
            self._settings = (directory, query)
        return self._settings

    # --- usernames ---------------------------------------------------------------------

    def _directory_name(self, typed):
        """The name the directory is asked about: ``typed`` with spaces and a listed
        domain (``alice@corp.example``, ``CORP\\alice``) removed, lowercased.

        Lowercased because the hub's names are (JupyterHub lowercases them),
        and the entry must be a function of the hub's name: ``uid`` (core
        schema), ``sAMAccountName`` and ``cn`` compare without case, so
        ``uid=Bob,...`` and ``uid=bob,...`` are one entry and the bind reaches
        the account the user typed. Where the naming attribute does compare
        case (a custom caseExactMatch schema), an entry spelt ``Bob`` cannot
        log in at all, rather than being taken for ``bob``.
        """
        name = typed.strip()
        domains = {d.lower() for d in self.login_domains}
        if "\\" in name:
            domain, _, rest = name.partition("\\")
            if domain.lower() in domains:
                name = rest
        elif "@" in name:
            rest, _, domain = name.rpartition("@")
            if domain.lower() in domains:
                name = rest
        return name.lower()

    def normalize_username(self, username):
        """The hub's name for ``username``: the directory's name (spaces and a listed
        domain removed, lowercased), then ``username_map``, applied once.

        The configuration check makes this a fixed point:
        ``normalize_username(normalize_username(x)) == normalize_username(x)``,
        so JupyterHub normalising the name a login returns changes nothing.
        """
        name = self._directory_name(username)
        return self.username_map.get(name, name)

    # --- login -------------------------------------------------------------------------

    async def authenticate(self, handler, data):
        """Check the username and password against the directory, off the event loop.

        The directory is asked about the name the user typed (spaces and a
        listed domain removed, lowercased); the hub's name is derived from
        it once (``username_map``) and must be a fixed point of
        :meth:`normalize_username`. Both are validated before anything is
        sent; an empty or blank password is refused without a bind. The
        whole check has ``login_timeout`` (the thread keeps to it; the event
        loop gives up a little after it in any case).
        """
        data = data or {}
        typed = data.get("username") or ""
        password = data.get("password") or ""
        username = self._directory_name(typed)
        try:
            check_username(username)
        except InvalidUsername as e:
            self.log.warning("kerbauth: LDAP login refused: %s", e)
            return None
        hub_name = self.username_map.get(username, username)
        if self.normalize_username(hub_name) != hub_name:
            self.log.error(
                "kerbauth: LDAP login of %s refused: Authenticator.username_map maps it to %s,"
                " which it maps again to %s; map each name to its final name",
                log_safe(username),
                log_safe(hub_name),
                log_safe(self.normalize_username(hub_name)),
            )
            return None
        try:
            check_username(hub_name)
        except InvalidUsername as e:
            self.log.error("kerbauth: LDAP login refused: username_map gives %s", e)
            return None
        if not self.validate_username(hub_name):
            self.log.warning(
                "kerbauth: LDAP login refused: %s does not match username_pattern",
                log_safe(hub_name),
            )
            return None
        if not password.strip():
            self.log.warning(
                "kerbauth: LDAP login of %s refused: empty password", log_safe(username)
            )
            return None
        # One name's logins one at a time, and a client whose logins keep
        # failing (wrong passwords, or answers that never come) throttled:
        # see LoginLimits. A refused attempt costs no LDAP thread.
        async with self.login_attempt(handler, username) as attempt:
            result = await self._check_password(username, password)
            if result is not None:
                attempt.succeeded()
        if result is None:
            self.log.warning(
                "kerbauth: the LDAP directory refused the login of %s", log_safe(username)
            )
            return None
        self.log.info(
            "kerbauth: %s logged in as %s (LDAP server %s)%s",
            log_safe(username),
            result.dn,
            result.server,
            "" if hub_name == username else f", hub user {hub_name} (username_map)",
        )
        auth_state = {
            "ldap_dn": result.dn,
            "ldap_attributes": {
                name: result.attributes.get(name, []) for name in self.auth_state_attributes
            },
        }
        model = {"name": hub_name, "auth_state": auth_state}
        if result.groups is not None:
            auth_state["ldap_groups"] = sorted({name for _, name in result.groups})
            auth_state["ldap_group_dns"] = [dn for dn, _ in result.groups]
            if self.manage_groups:
                model["groups"] = auth_state["ldap_groups"]
        if self.owner_from_ldap:
            if hub_name == username:
                self._remember_owner(hub_name, result.attributes)
            else:
                # The cache belongs to the hub user: read the owner from their
                # entry (as after a restart), not from the one that logged in.
                self._owners.pop(hub_name, None)
        return model

    async def _check_password(self, username, password):
        """:func:`ldap_directory.check_login` on the pool, within ``login_timeout``.

        LoginResult or None; raises the 503 HTTPError when the directory could
        not answer in time.
        """
        directory, query = self._ldap_settings()
        deadline = time.monotonic() + self.login_timeout
        future = self._ldap_executor.submit(
            ldap_directory.check_login, directory, query, username, password, self.log, deadline
        )
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), self.login_timeout + BACKSTOP_GRACE
            )
        except TimeoutError:
            future.cancel()
            self.log.error(
                "kerbauth: LDAP login of %s not checked: no result within login_timeout"
                " (%g s) and %g s more; its thread is stuck outside the LDAP conversation"
                " (a DNS lookup?)",
                log_safe(username),
                self.login_timeout,
                BACKSTOP_GRACE,
            )
            raise web.HTTPError(503, UNAVAILABLE_MESSAGE) from None
        except DirectoryUnavailable as e:
            self.log.error("kerbauth: LDAP login of %s not checked: %s", log_safe(username), e)
            raise web.HTTPError(503, UNAVAILABLE_MESSAGE) from None
        except DirectoryError as e:
            self.log.error("kerbauth: LDAP login of %s failed: %s", log_safe(username), e)
            return None

    # --- groups ------------------------------------------------------------------------

    def _member_of(self, authentication, wanted):
        """Whether the login in ``authentication`` found the user in any of ``wanted``."""
        state = (authentication or {}).get("auth_state") or {}
        dns = state.get("ldap_group_dns") or []
        names = {n.casefold() for n in state.get("ldap_groups") or []}
        for entry in wanted:
            if "=" in entry:
                if any(ldap_directory.same_dn(entry, dn) for dn in dns):
                    return True
            elif entry.casefold() in names:
                return True
        return False

    def check_allowed(self, username, authentication=None):
        """Allowed: ``allow_all``, ``allowed_users``, ``allowed_groups`` or ``admin_groups``."""
        if super().check_allowed(username, authentication):
            return True
        return self._member_of(authentication, self.allowed_groups | self.admin_groups)

    def is_admin(self, handler, authentication):
        """Admin if in ``admin_users`` or an ``admin_groups`` group; with ``admin_groups``
        set, not admin otherwise (so leaving the group takes admin away)."""
        if super().is_admin(handler, authentication):
            return True
        if self.admin_groups:
            return self._member_of(authentication, self.admin_groups)
        return None

    # --- who owns the ticket cache -----------------------------------------------------

    def _owner_from_attributes(self, username, attributes):
        def number(attribute):
            values = attributes.get(attribute) or []
            if len(values) != 1 or not values[0].strip().isdigit():
                raise TicketError(
                    "config",
                    f"the LDAP entry of {log_safe(username)!r} has no single numeric {attribute}",
                )
            return int(values[0])

        uid = number(self.uid_number_attribute)
        gid = number(self.gid_number_attribute)
        if uid == 0:
            raise TicketError(
                "config", f"the LDAP entry of {log_safe(username)!r} has uid 0; refused"
            )
        return uid, gid

    def _remember_owner(self, username, attributes):
        try:
            self._owners[username] = self._owner_from_attributes(username, attributes)
        except TicketError as e:
            self._owners.pop(username, None)
            self.log.warning("kerbauth: %s; its server cannot get a ticket", e.detail)

    def ticket_owner(self, user):
        """With ``owner_from_ldap``: the uidNumber/gidNumber of the user's LDAP entry.

        Taken from the last login; after a hub restart, read from the directory
        (this runs on a ticket thread, never on the event loop).
        """
        if not self.owner_from_ldap:
            return super().ticket_owner(user)
        owner = self._owners.get(user.name)
        if owner is not None:
            return owner
        directory, query = self._ldap_settings()
        try:
            found = ldap_directory.lookup_user(directory, query, user.name, self.log)
        except DirectoryError as e:
            raise TicketError("other", f"LDAP lookup of the owner of the cache: {e}") from None
        if found is None:
            raise TicketError(
                "config", f"no LDAP entry for {log_safe(user.name)!r} to own the cache"
            )
        owner = self._owner_from_attributes(user.name, found[1])
        self._owners[user.name] = owner
        return owner
