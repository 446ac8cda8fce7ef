"""The LDAP login's options: declared here, checked and read by :mod:`.settings`.

:class:`LDAPOptions` is a mixin of :class:`~kerbauth.KerberosLDAPAuthenticator`; its options
are written ``c.KerberosLDAPAuthenticator.*``. A single option is checked by its trait type
when it is set; the rules between options are checked at start-up
(:func:`kerbauth.auth.ldap.settings.check`), and the options become the plain settings the
directory code takes (:func:`kerbauth.auth.ldap.settings.build`). Every refusal is a
:class:`~kerbauth.core.errors.ConfigError` naming the option.
"""

from traitlets import All, Bool, Dict, Set, Unicode, observe, validate

from kerbauth.auth.ldap import settings
from kerbauth.auth.ldap.connection import TLS_STRATEGIES
from kerbauth.auth.ldap.groups import DEFAULT_GROUP_FILTER
from kerbauth.auth.ldap.naming import NamingOptions
from kerbauth.core.address import parse_address
from kerbauth.core.errors import ConfigError
from kerbauth.traits import Choice, Count, Seconds, StringList

__all__ = ["LDAPOptions"]

NAME = settings.NAME


class LDAPOptions(NamingOptions):
    """The options of the LDAP login; see the module's docstring."""

    options_named_by_subclass = True  # c.KerberosLDAPAuthenticator.*, in messages too

    # --- where the directory is --------------------------------------------------------

    server_address = StringList(
        config=True,
        help="""
        The LDAP servers, tried in order: a server that refuses the
        connection, does not answer within the timeouts or fails the TLS
        check is skipped and the next one is asked. Each is a host name or
        address, optionally with ``:port`` (``[v6 address]:port``). One string
        is taken as a list of one. It must be set. Example:
        ``["ldap1.corp.example", "ldap2.corp.example:1389"]``.

        .. versionadded:: 0.1
        """,
    )
    server_port = Count(
        0,
        maximum=65535,
        config=True,
        help="""
        The port of servers in ``server_address`` that name none; 0 means
        389 (``starttls`` and ``insecure``) or 636 (``ldaps``). Example: ``1389``.

        .. versionadded:: 0.1
        """,
    )
    tls_strategy = Choice(
        TLS_STRATEGIES,
        default_value="starttls",
        config=True,
        help="""
        How the connection is protected. ``"starttls"``: plain LDAP upgraded
        to TLS with StartTLS before anything else is sent. ``"ldaps"``: TLS
        from the first byte (port 636). ``"insecure"``: no TLS at all;
        passwords cross the network in clear text, for tests only. With TLS,
        the server's certificate must chain to a trusted CA (``tls_ca_file``)
        and name the host it was reached as. Example: ``"ldaps"``.

        .. versionadded:: 0.1
        """,
    )
    tls_ca_file = Unicode(
        "",
        config=True,
        help="""
        PEM file of the CA certificates that may sign the LDAP servers'
        certificates; empty: the system's trusted CAs. Certificates are
        always verified: there is no option to turn that off short of
        ``tls_strategy = "insecure"``. Example: ``"/etc/ssl/certs/corp-ca.pem"``.

        .. versionadded:: 0.1
        """,
    )
    connect_timeout = Seconds(
        5.0,
        config=True,
        help="""
        Seconds to wait for a server to accept the TCP connection before
        trying the next one. Example: ``2``.

        .. versionadded:: 0.1
        """,
    )
    receive_timeout = Seconds(
        5.0,
        config=True,
        help="""
        Seconds to wait for each answer of a server (StartTLS, the TLS
        handshake, a bind, a search) before giving up on it and trying the
        next one. A server that accepts connections and never answers costs
        this long once per login. Example: ``2``.

        .. versionadded:: 0.1
        """,
    )
    login_timeout = Seconds(
        30.0,
        config=True,
        help="""
        Seconds one login may take in all, over every server of
        ``server_address``: past it, the login is refused with the "could not
        be reached" message (HTTP 503) and its thread is free again. Each
        server gets the time left divided by the servers not yet tried, so a
        server that trickles its answers (one byte at a time keeps each
        ``receive_timeout`` from expiring) cannot keep the next one from being
        asked. Must be more than ``connect_timeout + receive_timeout``. The
        default is enough for two silent servers with the default timeouts
        and a slow search, and well below the 60 s after which proxies
        commonly give up on a request. Example: ``15``.

        .. versionadded:: 0.2
        """,
    )
    max_response_bytes = Count(
        4 * 1024 * 1024,
        minimum=65536,
        config=True,
        help="""
        Bytes one login may read from one server (all its answers together:
        the bind, the user's entry, the group search). A server that sends
        more, or announces an answer that would be more, counts as failed and
        the next one is asked: a hostile or broken server cannot grow the
        hub's memory. A group search answer is about 100-200 bytes a group,
        so the default holds thousands of groups many times over. At least
        65536: a bind answer with a referral or a single entry can take
        kilobytes. Example: ``16777216``.

        .. versionadded:: 0.2
        """,
    )
    executor_threads = Count(
        8,
        minimum=1,
        config=True,
        help="""
        How many LDAP logins may run at once, each on a thread of its own;
        more wait their turn. The hub's event loop never waits for LDAP.
        Example: ``16``.

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
        "uid={username},ou=staff,dc=corp,dc=example"]``.

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
        display name. Example: ``True``.

        .. versionadded:: 0.1
        """,
    )
    user_search_base = Unicode(
        "",
        config=True,
        help="""
        Where to search for users when ``lookup_dn`` is True (the whole
        subtree). Example: ``"ou=people,dc=corp,dc=example"``.

        .. versionadded:: 0.1
        """,
    )
    user_attribute = Unicode(
        "uid",
        config=True,
        help="""
        The attribute that holds the login name, used by
        ``user_search_filter``: ``"uid"`` in OpenLDAP. Example:
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
        ``{username}`` by the filter-escaped username. Example (Active
        Directory, enabled accounts only): ``"(&(objectCategory=person)(sAMAccountName={username})
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
        (``owner_from_ldap``). Empty, and no Kerberos bind
        (``search_bind_mechanism``): searches are anonymous and, after a login,
        made as the user. Example: ``"cn=jupyterhub,ou=services,dc=corp,dc=example"``.

        .. versionadded:: 0.1
        """,
    )
    search_bind_password = Unicode(
        "",
        config=True,
        help="""
        Password of ``search_bind_dn``. Keep it out of the config file, e.g.
        ``os.environ["LDAP_SEARCH_PASSWORD"]``.

        .. versionadded:: 0.1
        """,
    )
    login_domains = StringList(
        config=True,
        help="""
        Domains users may type with their name. ``alice@corp.example`` and
        ``CORP\\alice`` log in as ``alice`` when ``corp.example`` and
        ``CORP`` are listed (case does not matter); a name with any other
        domain is refused, and so is any name with a domain while this is
        empty. Example: ``["corp.example", "CORP"]``.

        .. versionadded:: 0.1
        """,
    )

    # --- groups ------------------------------------------------------------------------

    group_search_base = Unicode(
        "",
        config=True,
        help="""
        Where to look for the groups a user belongs to (the whole subtree);
        empty: no group lookup. Needed by ``allowed_groups``,
        ``admin_groups`` and ``manage_groups``. Example:
        ``"ou=groups,dc=corp,dc=example"``.

        .. versionadded:: 0.1
        """,
    )
    group_search_filter = Unicode(
        DEFAULT_GROUP_FILTER,
        config=True,
        help="""
        The filter that finds a user's groups; ``{user_dn}`` and
        ``{username}`` are replaced by the filter-escaped DN and username.
        The default finds groupOfNames (``member``), groupOfUniqueNames
        (``uniqueMember``) and posixGroup (``memberUid``) groups. Example
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
        JupyterHub group with ``manage_groups``. Example: ``"sAMAccountName"``.

        .. versionadded:: 0.1
        """,
    )
    allowed_groups = Set(
        Unicode(),
        config=True,
        help="""
        Members of these LDAP groups may log in (as well as
        ``allowed_users``, and members of ``admin_groups``). Each is a group
        name (its ``group_name_attribute``) or a full DN. Needs
        ``group_search_base``. Example:
        ``{"hub-users", "cn=data-science,ou=groups,dc=corp,dc=example"}``.

        .. versionadded:: 0.1
        """,
    ).tag(allow_config=True)
    admin_groups = Set(
        Unicode(),
        config=True,
        help="""
        Members of these LDAP groups are JupyterHub admins; when set, one who has
        left them loses admin at their next login or refresh (with ``search_bind_dn``;
        not if in ``admin_users``). Names or DNs, as in ``allowed_groups``. Needs
        ``group_search_base``. Example: ``{"hub-admins"}``.

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
        ``["mail", "displayName"]``.

        .. versionadded:: 0.1
        """,
    )
    user_info_attributes = Dict(
        value_trait=Unicode(),
        default_value=settings.USER_INFO_DEFAULT,
        config=True,
        help="""
        JupyterHub 6 (5 has none): the user's ``user_info``, each key from the first value
        of an attribute of their entry, sent at every login (a missing attribute leaves its
        key out; empty, or the default after a bind by UPN: none sent). Not secret: the
        REST API shows it to whoever may read the user's name, and their servers show
        ``display_name``. Example: ``{"display_name": "cn"}``.

        .. versionadded:: 0.2
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
        Example: ``True``.

        .. versionadded:: 0.1
        """,
    )
    uid_number_attribute = Unicode(
        "uidNumber",
        config=True,
        help="""
        The attribute holding a user's numeric uid (``owner_from_ldap``).
        Example: ``"employeeUid"``.

        .. versionadded:: 0.1
        """,
    )
    gid_number_attribute = Unicode(
        "gidNumber",
        config=True,
        help="""
        The attribute holding a user's numeric primary gid
        (``owner_from_ldap``). Example: ``"employeeGid"``.

        .. versionadded:: 0.1
        """,
    )

    # --- checks ------------------------------------------------------------------------

    @validate("server_address")
    def _check_server_address(self, proposal):
        for entry in proposal.value:
            try:
                parse_address(entry, 389)
            except ValueError as e:
                raise ConfigError(
                    f"{NAME}.server_address: {e}"
                    ' (give "host" or "host:port"; set tls_strategy for LDAPS)'
                ) from None
        return proposal.value

    @validate("bind_dn_template")
    def _check_templates(self, proposal):
        for template in proposal.value:
            if "{username}" not in template:
                raise ConfigError(f"{NAME}.bind_dn_template {template!r} has no {{username}}")
        return proposal.value

    def check_ldap_options(self):
        """Refuse option combinations that cannot work (ConfigError naming the option)."""
        settings.check(self)

    _settings = None

    @observe(All)
    def _option_changed(self, change):
        if change["name"] in _OWN_OPTIONS:
            self._settings = None  # built again, from the new value, when next asked for

    def _ldap_settings(self):
        """``(Directory, UserQuery)`` built from the current options (kept until one changes)."""
        if self._settings is None:
            self._settings = settings.build(self)
        return self._settings


# The LDAP options, all of which the settings are built from.
_OWN_OPTIONS = frozenset(LDAPOptions.class_own_traits())
