"""Reading a jupyterhub-ldapauthenticator configuration (``c.LDAPAuthenticator.*``).

A site moving from jupyterhub-ldapauthenticator 2.0 changes only
``c.JupyterHub.authenticator_class`` (and adds the ticket options): its
``c.LDAPAuthenticator.*`` section is read by :func:`apply` when the
authenticator starts, each option onto one kerbauth option of the same meaning,
and each logged once ("ldapauthenticator option X read as
KerberosLDAPAuthenticator.Y"). Nothing of ldapauthenticator is imported: the
option names are listed here (a test compares them with its class).

An option kerbauth has no equivalent for, or one that has no effect in the
mode the section chooses (``user_search_base`` without ``lookup_dn``...), is
refused with a :class:`~kerbauth.core.errors.ConfigError` naming it and the fix;
so is an option set both here and as ``c.KerberosLDAPAuthenticator.*`` (which
one was meant cannot be known). The only options read without an effect are
the three that have none in ldapauthenticator 2.0 either (``escape_userdn``,
``group_attributes``, ``attributes``), ``use_ssl = False`` (likewise), and
``lookup_dn_user_dn_attribute`` without ``use_lookup_dn_username``: each is
logged as such.

:func:`translate` (a plain function) turns the section into kerbauth options,
:func:`apply` sets them on the authenticator. ``use_lookup_dn_username`` is
read onto ``hub_username_attribute`` (:mod:`kerbauth.auth.ldap.naming`),
``search_filter`` onto ``login_search_filter`` (:mod:`kerbauth.auth.ldap.login_filter`).
"""

import ssl

from ldap3.core import exceptions as ldap_errors
from ldap3.utils.dn import parse_dn

from kerbauth.auth.ldap.groups import same_dn
from kerbauth.auth.ldap.login_filter import USED_BY_SEARCH_FILTER, legacy_search_filter
from kerbauth.core.errors import ConfigError

__all__ = [
    "SECTION",
    "OPTIONS",
    "Translation",
    "translate",
    "apply",
    "legacy_auth_state",
]

SECTION = "LDAPAuthenticator"
NAME = "KerberosLDAPAuthenticator"

# ldapauthenticator's group filter (its {userdn} and {uid} written as kerbauth's placeholders).
OLD_GROUP_FILTER = "(|(member={user_dn})(uniqueMember={user_dn})(memberUid={username}))"

# The options of ldapauthenticator 2.0's LDAPAuthenticator class (its own, not Authenticator's).
OPTIONS = frozenset(
    {
        "allowed_groups",
        "attributes",
        "auth_state_attributes",
        "bind_dn_template",
        "escape_userdn",
        "group_attributes",
        "group_search_filter",
        "lookup_dn",
        "lookup_dn_search_filter",
        "lookup_dn_search_password",
        "lookup_dn_search_user",
        "lookup_dn_user_dn_attribute",
        "search_filter",
        "server_address",
        "server_port",
        "tls_kwargs",
        "tls_strategy",
        "use_lookup_dn_username",
        "use_ssl",
        "user_attribute",
        "user_search_base",
        "valid_username_regex",
    }
)

# Read as they are, onto the kerbauth option of the same meaning.
SAME = {
    "server_port": "server_port",
    "bind_dn_template": "bind_dn_template",
    "lookup_dn": "lookup_dn",
    "user_search_base": "user_search_base",
    "user_attribute": "user_attribute",
    "lookup_dn_search_user": "search_bind_dn",
    "lookup_dn_search_password": "search_bind_password",
    "auth_state_attributes": "auth_state_attributes",
    "valid_username_regex": "username_pattern",
}

# Options that have no effect in ldapauthenticator 2.0 either: read, logged, not used.
NO_EFFECT = {
    "escape_userdn": "removed in ldapauthenticator 2.0; DNs are always escaped",
    "group_attributes": (
        "the attributes ldapauthenticator asks of a group and never reads;"
        " a group's name is read from KerberosLDAPAuthenticator.group_name_attribute"
    ),
    "attributes": (
        "the attributes ldapauthenticator fetches with search_filter's search and never"
        " reads; auth_state_attributes says what is kept"
    ),
}

# No kerbauth equivalent: refused, with the fix (none left).
REFUSED = {}

# Options that only do something with lookup_dn = True in ldapauthenticator.
NEEDS_LOOKUP_DN = (
    "user_search_base",
    "user_attribute",
    "lookup_dn_search_filter",
    "lookup_dn_search_user",
    "lookup_dn_search_password",
    "lookup_dn_user_dn_attribute",
    "use_lookup_dn_username",
)

_TLS_STRATEGIES = {"before_bind": "starttls", "on_connect": "ldaps", "insecure": "insecure"}

# tls_kwargs keys (ldap3's Tls) -> the kerbauth option, when this kerbauth has it.
_TLS_KWARGS = {
    "ca_certs_file": "tls_ca_file",
    "ciphers": "tls_ciphers",
    "local_certificate_file": "tls_client_cert",
    "local_private_key_file": "tls_client_key",
}


class Translation:
    """What :func:`translate` makes of a section.

    ``options``: kerbauth option -> value; ``read``: ``(old, new)`` pairs to log;
    ``unused``: ``(old, why)`` pairs read without effect; ``allowed_groups``: the
    old ``allowed_groups`` in their order (for ``ldap_groups``), or None.
    """

    def __init__(self):
        self.options = {}
        self.read = []
        self.unused = []
        self.allowed_groups = None
        self.notes = []

    def set(self, old, new, value):
        self.options[new] = value
        self.read.append((old, new))


def _old(option):
    return f"{SECTION}.{option}"


def _is_set(section, option):
    """Whether the section sets ``option`` to something ldapauthenticator acts on."""
    return option in section and section[option] not in (None, "", [], {}, False)


def _common_base(dns, option):
    """The deepest entry all of ``dns`` are in or under (a single DN: itself)."""
    try:
        parsed = [parse_dn(dn) for dn in dns]
    except ldap_errors.LDAPInvalidDnError as e:
        raise ConfigError(f"{_old(option)}: {e}: list group DNs") from None
    common = []
    for parts in zip(*(reversed(p) for p in parsed), strict=False):
        keys = {(attr.lower(), value.lower()) for attr, value, _ in parts}
        if len(keys) != 1:
            break
        common.insert(0, parts[0])
    if not common:
        raise ConfigError(
            f"{_old(option)}: the groups share no part of their DNs: set"
            f" {NAME}.group_search_base to where they are"
        )
    return ",".join(f"{attr}={value}" for attr, value, _ in common)


def _tls_version(value, option):
    """ldap3's ``version`` (an ``ssl.PROTOCOL_*``) as kerbauth's ``tls_minimum_version``:
    TLS 1.2 (the only one of them still safe) is read as "at least 1.2"."""
    if value == getattr(ssl, "PROTOCOL_TLSv1_2", object()):
        return "1.2"
    raise ConfigError(
        f"{_old(option)}: kerbauth speaks TLS 1.2 or 1.3 only; remove it, or set"
        f' {NAME}.tls_minimum_version = "1.2" or "1.3"'
    )


def _tls(section, t, has_option):
    """tls_strategy, use_ssl and tls_kwargs."""
    strategy = None
    if "tls_strategy" in section:
        value = section["tls_strategy"]
        name = str(getattr(value, "name", value))
        if name not in _TLS_STRATEGIES:
            raise ConfigError(
                f"{_old('tls_strategy')} {name!r} is not one of before_bind, on_connect, insecure"
            )
        strategy = _TLS_STRATEGIES[name]
        t.set("tls_strategy", "tls_strategy", strategy)
    if section.get("use_ssl"):
        if strategy not in (None, "ldaps"):
            raise ConfigError(
                f"{_old('use_ssl')} = True and {_old('tls_strategy')} = {name!r} disagree:"
                ' remove use_ssl (it means tls_strategy = "on_connect")'
            )
        t.set("use_ssl", "tls_strategy", "ldaps")
        strategy = "ldaps"
    elif "use_ssl" in section:
        t.unused.append(("use_ssl", "use_ssl = False has no effect in ldapauthenticator 2.0"))
    for key, value in (section.get("tls_kwargs") or {}).items():
        option = f"tls_kwargs[{key!r}]"
        if key == "validate":
            if value != ssl.CERT_REQUIRED:
                raise ConfigError(
                    f"{_old(option)}: kerbauth always verifies the LDAP server's certificate:"
                    " give the CA that signed it in tls_kwargs['ca_certs_file'] (or"
                    f" {NAME}.tls_ca_file), or, on a test network only, set"
                    f' {_old("tls_strategy")} = "insecure"'
                )
            t.unused.append((option, "kerbauth always requires a verified certificate"))
            continue
        if key == "version" and has_option("tls_minimum_version"):
            t.set(option, "tls_minimum_version", _tls_version(value, option))
            continue
        new = _TLS_KWARGS.get(key)
        if new is None or not has_option(new):
            known = ", ".join(f"{k} ({NAME}.{v})" for k, v in _TLS_KWARGS.items())
            raise ConfigError(
                f"{_old(option)} has no kerbauth equivalent here; kerbauth reads {known}"
                f" when this version has them: use the {NAME} options instead"
            )
        t.set(option, new, value)
    if strategy != "insecure" and not (section.get("tls_kwargs") or {}).get("ca_certs_file"):
        t.notes.append(
            "ldapauthenticator did not verify the LDAP server's certificate; kerbauth does,"
            " against the system's CAs unless tls_kwargs['ca_certs_file'] or"
            f" {NAME}.tls_ca_file names the CA that signed it"
        )


def translate(section, has_option=lambda name: True):
    """The kerbauth options a ``c.LDAPAuthenticator`` section (a mapping) stands for.

    ``has_option(name)`` says whether this kerbauth has the option ``name``
    (the TLS ones of ``tls_kwargs`` may not be there). Returns a
    :class:`Translation`; raises ConfigError naming the old option.
    """
    t = Translation()
    lookup = bool(section.get("lookup_dn"))
    for option in NEEDS_LOOKUP_DN:
        if option in USED_BY_SEARCH_FILTER and _is_set(section, "search_filter"):
            continue
        if _is_set(section, option) and not lookup:
            raise ConfigError(
                f"{_old(option)} has no effect without {_old('lookup_dn')} = True:"
                " remove it, or set lookup_dn"
            )
    if lookup and _is_set(section, "bind_dn_template"):
        raise ConfigError(
            f"{_old('lookup_dn')} and {_old('bind_dn_template')} are both set: kerbauth binds"
            " as the DN the search found; remove bind_dn_template"
        )
    for option in sorted(REFUSED):
        if _is_set(section, option):
            raise ConfigError(f"{_old(option)} is not supported: {REFUSED[option]}")
    if "server_address" in section:
        address = section["server_address"]
        if isinstance(address, str) and "://" in address:
            raise ConfigError(
                f"{_old('server_address')} {address!r}: give the host name only; ldaps://"
                f' is {_old("tls_strategy")} = "on_connect"'
            )
        servers = [address] if isinstance(address, str) else address
        t.set("server_address", "server_address", servers)
    _tls(section, t, has_option)
    for old, new in SAME.items():
        if old in section and section[old] is not None:
            t.set(old, new, section[old])
    if "lookup_dn_search_filter" in section and lookup:
        search_filter = section["lookup_dn_search_filter"] or "({login_attr}={login})"
        t.set(
            "lookup_dn_search_filter",
            "user_search_filter",
            search_filter.replace("{login_attr}", "{user_attribute}").replace(
                "{login}", "{username}"
            ),
        )
    if _is_set(section, "search_filter"):
        t.set("search_filter", "login_search_filter", legacy_search_filter(section, _is_set))
    if section.get("use_lookup_dn_username"):
        attribute = section.get("lookup_dn_user_dn_attribute")
        if not attribute:
            raise ConfigError(
                f"{_old('use_lookup_dn_username')} needs {_old('lookup_dn_user_dn_attribute')}:"
                " the attribute whose value becomes the hub's username"
            )
        t.set("use_lookup_dn_username", "hub_username_attribute", attribute)
    elif _is_set(section, "lookup_dn_user_dn_attribute") and "{username}" not in t.options.get(
        "login_search_filter", ""
    ):
        t.unused.append(
            (
                "lookup_dn_user_dn_attribute",
                "it names the hub user only with use_lookup_dn_username = True",
            )
        )
    for option, why in NO_EFFECT.items():
        if option in section:
            t.unused.append((option, why))
    if "group_search_filter" in section and not section.get("allowed_groups"):
        raise ConfigError(
            f"{_old('group_search_filter')} has no effect without {_old('allowed_groups')}:"
            " remove it, or list the groups"
        )
    groups = list(section.get("allowed_groups") or [])
    if groups:
        t.allowed_groups = groups
        t.set("allowed_groups", "allowed_groups", set(groups))
        t.options["group_search_base"] = _common_base(groups, "allowed_groups")
        old_filter = section.get("group_search_filter") or OLD_GROUP_FILTER
        t.options["group_search_filter"] = old_filter.replace("{userdn}", "{user_dn}").replace(
            "{uid}", "{username}"
        )
        if "group_search_filter" in section:
            t.read.append(("group_search_filter", "group_search_filter"))
    return t


def apply(authenticator):
    """Read ``c.LDAPAuthenticator.*`` onto ``authenticator``; the Translation, or None.

    Authenticator options written in that section (``c.LDAPAuthenticator.allowed_users``)
    are read onto the same option, as they were for ldapauthenticator's subclass.
    """
    config = authenticator.config
    if SECTION not in config or not config[SECTION]:
        return None
    section = dict(config[SECTION])
    own = config[NAME] if NAME in config else {}
    traits = authenticator.traits(config=True)
    old_options = {k: v for k, v in section.items() if k in OPTIONS}
    t = translate(old_options, has_option=traits.__contains__)
    for name, value in section.items():
        if name in OPTIONS:
            continue
        if name not in traits:
            raise ConfigError(
                f"{_old(name)} is not an option of ldapauthenticator 2.0 nor of JupyterHub's"
                " Authenticator"
            )
        t.set(name, name, value)
    for new in t.options:
        if new in own:
            olds = [old for old, n in t.read if n == new] or ["allowed_groups"]
            raise ConfigError(
                f"{_old(olds[0])} and {NAME}.{new} are both set: which one is meant cannot"
                " be told; keep one of them"
            )
    for new, value in t.options.items():
        try:
            setattr(authenticator, new, value)
        except Exception as e:  # a ConfigError, or a TraitError: the wrong type
            olds = [old for old, n in t.read if n == new] or [new]
            raise ConfigError(f"{_old(olds[0])}: {e}") from None
    if t.allowed_groups is not None and any("=" not in g for g in authenticator.admin_groups):
        raise ConfigError(
            f"{_old('allowed_groups')} is set, so auth_state's ldap_groups holds group DNs as"
            f" ldapauthenticator's did: write {NAME}.admin_groups as DNs too"
        )
    for old, new in t.read:
        authenticator.log.info(
            "kerbauth: ldapauthenticator option %s read as %s.%s", old, NAME, new
        )
    for old, why in t.unused:
        authenticator.log.warning(
            "kerbauth: ldapauthenticator option %s read, without effect: %s", old, why
        )
    for note in t.notes:
        authenticator.log.warning("kerbauth: %s", note)
    return t


def legacy_auth_state(translation, auth_state, attributes):
    """The auth_state keys ldapauthenticator's users read, added to kerbauth's.

    ``user_attributes``: each of ``auth_state_attributes``, a list of strings
    (empty for one the entry lacks); ``ldap_groups``: the ``allowed_groups``
    the user is in, as written and in their order (kerbauth's group names
    move to ``ldap_group_names``).
    """

    auth_state["user_attributes"] = dict(attributes)
    if translation.allowed_groups is not None:
        found = auth_state.get("ldap_group_dns") or []
        auth_state["ldap_group_names"] = auth_state.get("ldap_groups", [])
        auth_state["ldap_groups"] = [
            group for group in translation.allowed_groups if any(same_dn(group, dn) for dn in found)
        ]
    else:
        auth_state.setdefault("ldap_groups", [])
    return auth_state
