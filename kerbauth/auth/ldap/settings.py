"""What the LDAP options make: the rules between them, and the directory settings.

Plain functions over the configured authenticator (any object with the
options of :class:`~kerbauth.auth.ldap.options.LDAPOptions` and the
``Authenticator`` options they involve): :func:`check` refuses at start-up a
combination that cannot work, with a :class:`~kerbauth.core.errors.ConfigError`
naming the full option and the fix; :func:`build` reads the options into the
:class:`~kerbauth.auth.ldap.connection.Directory` and
:class:`~kerbauth.auth.ldap.queries.UserQuery` the directory code takes.
"""

import os
import re
import ssl

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

from kerbauth.auth.ldap.connection import Directory
from kerbauth.auth.ldap.login_filter import check_login_filter
from kerbauth.auth.ldap.queries import UserQuery, check_filter_template, directory_name
from kerbauth.auth.ldap.sasl import KerberosBind, check_kerberos_bind
from kerbauth.auth.ldap.tls import KeyNeedsPassphrase, tls_context
from kerbauth.core.address import parse_address
from kerbauth.core.errors import ConfigError
from kerbauth.core.names import InvalidUsername, check_username

__all__ = ["NAME", "check", "build"]

# How the options are written in jupyterhub_config.py: c.KerberosLDAPAuthenticator.*
NAME = "KerberosLDAPAuthenticator"
# user_info_attributes' default (JupyterHub 6): read only where the entry can be.
USER_INFO_DEFAULT = {"display_name": "displayName", "email": "mail"}


def check(options):
    """Refuse option combinations that cannot work, naming the option to fix."""
    if not options.server_address:
        raise ConfigError(f'{NAME}.server_address is empty: set it, e.g. ["ldap.corp.example"]')
    if options.lookup_dn and options.bind_dn_template:
        raise ConfigError(
            f"{NAME}.lookup_dn and {NAME}.bind_dn_template are both set: use one of them"
        )
    if not options.lookup_dn and not options.bind_dn_template:
        raise ConfigError(
            f"{NAME}.bind_dn_template is empty and {NAME}.lookup_dn is False:"
            " set one of them to say how a user's DN is found"
        )
    if options.lookup_dn and not options.user_search_base:
        raise ConfigError(f"{NAME}.lookup_dn requires {NAME}.user_search_base")
    if options.search_bind_dn and not options.search_bind_password:
        raise ConfigError(
            f"{NAME}.search_bind_dn requires {NAME}.search_bind_password"
            " (a bind with an empty password is anonymous)"
        )
    if options.search_bind_password and not options.search_bind_dn:
        raise ConfigError(f"{NAME}.search_bind_password requires {NAME}.search_bind_dn")
    for option in ("allowed_groups", "admin_groups", "manage_groups"):
        if getattr(options, option) and not options.group_search_base:
            raise ConfigError(f"{NAME}.{option} requires {NAME}.group_search_base")
    if options.auth_state_attributes and not options.enable_auth_state:
        options.log.warning(
            "kerbauth: %s.auth_state_attributes is set but"
            " Authenticator.enable_auth_state is False: the attributes are not kept",
            NAME,
        )
    budget = options.connect_timeout + options.receive_timeout
    if not options.login_timeout > budget:
        raise ConfigError(
            f"{NAME}.login_timeout ({options.login_timeout:g} s) must be more than"
            f" {NAME}.connect_timeout + {NAME}.receive_timeout ({budget:g} s): one server"
            " must have the time to accept the connection and answer"
        )
    _check_username_map(options)
    _check_entry_readable(options)
    _check_tls(options)
    _check_tls_client(options)
    _check_search_bind_mechanism(options)
    _check_filters(options)
    check_login_filter(options)
    _check_user_info(options)
    _check_modes(options)


# Options that only act in a mode: (option, the option(s) that turn the mode on).
MODE_OPTIONS = (
    ("user_search_base", ("lookup_dn", "login_search_filter")),
    ("user_search_filter", "lookup_dn"),
    ("user_attribute", ("lookup_dn", "login_search_filter")),
    ("group_search_filter", "group_search_base"),
    ("group_name_attribute", "group_search_base"),
    ("uid_number_attribute", "owner_from_ldap"),
    ("gid_number_attribute", "owner_from_ldap"),
)


def binds_by_name(options):
    """Whether a user binds with a name that is not a DN (a UPN ``{username}@corp``, or
    ``CORP\\{username}``, as Active Directory takes): then kerbauth has no DN of the
    user's entry to read after the bind."""
    if options.lookup_dn:
        return False
    for template in options.bind_dn_template:
        try:
            parse_dn(template.replace("{username}", "x"))
        except LDAPInvalidDnError:
            return True
    return False


def _check_entry_readable(options):
    """What is read from the user's entry needs its DN: refused after a bind by name."""
    if not binds_by_name(options):
        return
    wanted = [
        option
        for option in ("auth_state_attributes", "owner_from_ldap", "hub_username_attribute")
        if getattr(options, option, None)
    ]
    if options.user_info_attributes != USER_INFO_DEFAULT:
        wanted.append("user_info_attributes")
    if wanted:
        raise ConfigError(
            f"{NAME}.{wanted[0]} reads the user's entry, but {NAME}.bind_dn_template binds"
            " with a name that is not a DN (a UPN or DOMAIN\\name), so there is no entry"
            f" to read: find users with {NAME}.lookup_dn = True (see Active Directory in"
            " the docs), or remove it"
        )


def _check_modes(options):
    """Refuse an option changed from its default in a mode where it does nothing."""
    for option, modes in MODE_OPTIONS:
        modes = (modes,) if isinstance(modes, str) else modes
        if any(getattr(options, m, None) for m in modes) or not options.has_trait(option):
            continue
        if getattr(options, option) != options.trait_defaults(option):
            nor = "".join(f" (nor {NAME}.{m})" for m in modes[1:])
            raise ConfigError(
                f"{NAME}.{option} has no effect while {NAME}.{modes[0]} is not set{nor}:"
                f" remove it, or set {modes[0]}"
            )


# An attribute description (RFC 4512): a name or an OID, with options (";lang-de").
_ATTRIBUTE = re.compile(r"([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)*)(;[A-Za-z0-9-]+)*")


def _check_user_info(options):
    for key, attribute in options.user_info_attributes.items():
        if not key or not _ATTRIBUTE.fullmatch(attribute):
            raise ConfigError(
                f"{NAME}.user_info_attributes: {key!r}: {attribute!r} is not a user_info key"
                " mapped to an LDAP attribute name"
            )


def _check_tls(options):
    if not options.tls_ca_file:
        return
    if options.tls_strategy == "insecure":
        raise ConfigError(f'{NAME}.tls_ca_file is set but {NAME}.tls_strategy is "insecure"')
    if not os.path.isfile(options.tls_ca_file):
        raise ConfigError(f"{NAME}.tls_ca_file {options.tls_ca_file!r} is not a file")
    try:
        tls_context(options.tls_ca_file)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"{NAME}.tls_ca_file {options.tls_ca_file!r} holds no usable PEM CA certificate ({e})"
        ) from None


def _tls_options(options):
    """The TLS client options as :func:`tls_context` takes them."""
    return {
        "minimum_version": options.tls_minimum_version,
        "ciphers": options.tls_ciphers,
        "client_cert": options.tls_client_cert,
        "client_key": options.tls_client_key,
    }


def _check_readable(option, path):
    if not os.path.isfile(path):
        raise ConfigError(f"{NAME}.{option} {path!r} is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ConfigError(f"{NAME}.{option} {path!r} cannot be read: {e.strerror}") from None


def _check_tls_client(options):
    """tls_minimum_version, tls_ciphers, tls_client_cert and tls_client_key."""
    changed = [
        o for o in ("tls_ciphers", "tls_client_cert", "tls_client_key") if getattr(options, o)
    ] + (["tls_minimum_version"] if options.tls_minimum_version != "1.2" else [])
    if changed and options.tls_strategy == "insecure":
        raise ConfigError(
            f'{NAME}.{changed[0]} is set but {NAME}.tls_strategy is "insecure" (no TLS at all)'
        )
    if options.tls_ciphers and options.tls_minimum_version == "1.3":
        raise ConfigError(
            f'{NAME}.tls_ciphers cannot be combined with {NAME}.tls_minimum_version = "1.3":'
            " a cipher string chooses TLS 1.2 suites only, so it would be ignored"
        )
    if options.tls_client_key and not options.tls_client_cert:
        raise ConfigError(f"{NAME}.tls_client_key requires {NAME}.tls_client_cert")
    if options.tls_ciphers:
        try:
            ssl.create_default_context().set_ciphers(options.tls_ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"{NAME}.tls_ciphers {options.tls_ciphers!r}: OpenSSL selects no cipher from it"
                ' (give an OpenSSL cipher string, e.g. "ECDHE+AESGCM")'
            ) from None
    if not options.tls_client_cert:
        return
    for option in ("tls_client_cert", "tls_client_key"):
        if getattr(options, option):
            _check_readable(option, getattr(options, option))
    files = f"{NAME}.tls_client_cert {options.tls_client_cert!r}" + (
        f" with {NAME}.tls_client_key {options.tls_client_key!r}" if options.tls_client_key else ""
    )
    try:
        tls_context(None, **_tls_options(options))
    except KeyNeedsPassphrase:
        raise ConfigError(
            f"{files}: the key is protected by a passphrase, which the hub cannot type;"
            " store it without one (openssl pkey), readable by the hub only"
        ) from None
    except ssl.SSLError as e:
        raise ConfigError(
            f"{files}: not a PEM certificate and its matching private key ({e.reason or e})"
        ) from None


def _check_search_bind_mechanism(options):
    """search_bind_mechanism and the options it needs or excludes."""
    kerberos = ("search_bind_principal", "search_bind_keytab")
    if options.search_bind_mechanism == "simple":
        for option in kerberos:
            if getattr(options, option):
                raise ConfigError(
                    f'{NAME}.{option} is set but {NAME}.search_bind_mechanism is "simple":'
                    ' set search_bind_mechanism = "gssapi" to use it'
                )
        return
    for option in ("search_bind_dn", "search_bind_password"):
        if getattr(options, option):
            raise ConfigError(
                f'{NAME}.{option} is set but {NAME}.search_bind_mechanism is "gssapi":'
                " the search account is search_bind_principal; remove it"
            )
    for option in kerberos:
        if not getattr(options, option):
            raise ConfigError(f'{NAME}.search_bind_mechanism = "gssapi" requires {NAME}.{option}')
    _check_readable("search_bind_keytab", options.search_bind_keytab)
    if os.stat(options.search_bind_keytab).st_mode & 0o004:
        options.log.warning(
            "kerbauth: %s.search_bind_keytab %r is readable by every local user:"
            " anyone can bind as %s; make it readable by the hub only",
            NAME,
            options.search_bind_keytab,
            options.search_bind_principal,
        )
    bind = KerberosBind(options.search_bind_principal, options.search_bind_keytab)
    try:
        check_kerberos_bind(bind)
    except ImportError as e:
        raise ConfigError(
            f'{NAME}.search_bind_mechanism = "gssapi" needs the Python package gssapi ({e})'
        ) from None
    except ValueError as e:
        raise ConfigError(
            f"{NAME}.search_bind_keytab {options.search_bind_keytab!r} gives no ticket for"
            f" {NAME}.search_bind_principal {options.search_bind_principal!r}: {e}"
        ) from None


def _check_filters(options):
    try:
        check_filter_template(
            options.user_search_filter, user_attribute=options.user_attribute, username="x"
        )
    except ValueError as e:
        raise ConfigError(f"{NAME}.user_search_filter: {e}") from None
    if "{username}" not in options.user_search_filter:
        raise ConfigError(f"{NAME}.user_search_filter has no {{username}}")
    try:
        check_filter_template(options.group_search_filter, user_dn="uid=x,dc=example", username="x")
    except ValueError as e:
        raise ConfigError(f"{NAME}.group_search_filter: {e}") from None


def _check_username_map(options):
    """Refuse a ``username_map`` that does not map each name once, to a final name.

    JupyterHub applies the map again to the name a login returns; so each
    value must map to itself (a chain ``a -> b -> c`` would make the result
    depend on how often it is applied), and keys must be normalised names (a
    key with capitals never matches).
    """
    option = "Authenticator.username_map"
    mapping = options.username_map
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"{option}: {key!r}: {value!r} is not a name mapped to a name")
        if directory_name(key, options.login_domains) != key:
            raise ConfigError(
                f"{option} key {key!r} never matches: names are lowercased and"
                f" stripped of a listed domain before the map is applied"
                f" (write {directory_name(key, options.login_domains)!r})"
            )
        target = mapping.get(value, value)
        if target != value:
            raise ConfigError(
                f"{option} maps {key!r} to {value!r}, which it maps to {target!r}:"
                f" a chain is not followed; map {key!r} to the final name directly"
            )
        if directory_name(value, options.login_domains) != value:
            raise ConfigError(
                f"{option} maps {key!r} to {value!r}, which is not a normalised name"
                f" (JupyterHub would make it {options.normalize_username(value)!r})"
            )
        try:
            check_username(value)
        except InvalidUsername as e:
            raise ConfigError(f"{option} maps {key!r} to an unusable name: {e}") from None


def build(options):
    """``(Directory, UserQuery)`` from the current options."""
    default_port = 636 if options.tls_strategy == "ldaps" else 389
    insecure = options.tls_strategy == "insecure"
    directory = Directory(
        servers=[
            parse_address(entry, options.server_port or default_port)
            for entry in options.server_address
        ],
        tls_strategy=options.tls_strategy,
        context=None if insecure else tls_context(options.tls_ca_file, **_tls_options(options)),
        connect_timeout=options.connect_timeout,
        receive_timeout=options.receive_timeout,
        login_timeout=options.login_timeout,
        max_response_bytes=options.max_response_bytes,
    )
    attributes = list(options.auth_state_attributes)
    if options.owner_from_ldap:
        attributes += [options.uid_number_attribute, options.gid_number_attribute]
    # The authenticator says whether it sends user_info (JupyterHub 6 keeps it; 5.x has none).
    naming = getattr(options, "hub_username_attribute", "")
    if naming and naming not in attributes:
        attributes.append(naming)
    # After a bind by name (a UPN) there is no entry to read: no user_info then.
    if getattr(options, "sends_user_info", False) and not binds_by_name(options):
        attributes += [a for a in options.user_info_attributes.values() if a not in attributes]
    query = UserQuery(
        bind_dn_templates=[] if options.lookup_dn else list(options.bind_dn_template),
        search_base=options.user_search_base if options.lookup_dn else "",
        search_filter=options.user_search_filter,
        user_attribute=options.user_attribute,
        search_bind_dn=options.search_bind_dn,
        search_bind_password=options.search_bind_password,
        search_bind_kerberos=(
            KerberosBind(options.search_bind_principal, options.search_bind_keytab)
            if options.search_bind_mechanism == "gssapi"
            else None
        ),
        attributes=attributes,
        group_search_base=options.group_search_base,
        group_search_filter=options.group_search_filter,
        group_name_attribute=options.group_name_attribute,
        login_filter=getattr(options, "login_search_filter", ""),
        login_filter_base=options.user_search_base,
        login_filter_name_attribute=naming,
    )
    return directory, query
