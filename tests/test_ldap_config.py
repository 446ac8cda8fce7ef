"""KerberosLDAPAuthenticator's options: their help, and the rules checked when config loads."""

import ast
import ssl
from pathlib import Path

import pytest
from jupyterhub.auth import Authenticator
from traitlets.config import Config

import kerbauth
from kerbauth import KerberosLDAPAuthenticator, KerberosTickets
from kerbauth.core.errors import ConfigError
from support.imports import loaded_by, top_level

NAME = "KerberosLDAPAuthenticator"


@pytest.fixture
def base(tmp_path, krb5_env):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    c.KerberosLDAPAuthenticator.server_address = ["ldap.corp.example"]
    c.KerberosLDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=corp"]
    return c


def own_options():
    inherited = set(KerberosTickets.class_traits()) | set(Authenticator.class_traits())
    return {
        name: trait
        for name, trait in KerberosLDAPAuthenticator.class_traits(config=True).items()
        if name not in inherited
    }


def test_every_ldap_option_has_a_help_text_with_default_example_and_version():
    options = own_options()
    assert {"server_address", "tls_strategy", "bind_dn_template", "admin_groups"} <= set(options)
    for name, trait in options.items():
        assert len(trait.help) > 80, name
        # The default is printed by autodoc-traits and --help-all, not repeated in the help.
        assert "Default" not in trait.help and "(the default)" not in trait.help, name
        assert "e.g." in trait.help or "Example" in trait.help, name
        assert ".. versionadded:: 0.1" in trait.help or ".. versionadded:: 0.2" in trait.help, name


# (label, options to set, the message the hub refuses to start with)
BAD_CONFIGS = [
    ("no server", {"server_address": []}, f"{NAME}.server_address is empty"),
    (
        "URL instead of host",
        {"server_address": ["ldaps://ldap.corp.example"]},
        f"{NAME}.server_address: 'ldaps://ldap.corp.example' is not a host name",
    ),
    (
        "bad port",
        {"server_address": ["ldap:99999"]},
        f"{NAME}.server_address: 'ldap:99999' has an invalid port",
    ),
    (
        "server_port out of range",
        {"server_port": 70000},
        f"{NAME}.server_port must be at most 65535, not 70000",
    ),
    (
        "neither template nor lookup",
        {"bind_dn_template": []},
        f"{NAME}.bind_dn_template is empty and {NAME}.lookup_dn is False",
    ),
    (
        "both template and lookup",
        {"lookup_dn": True, "user_search_base": "dc=corp"},
        f"{NAME}.lookup_dn and {NAME}.bind_dn_template are both set",
    ),
    (
        "lookup without a base",
        {"bind_dn_template": [], "lookup_dn": True},
        f"{NAME}.lookup_dn requires {NAME}.user_search_base",
    ),
    (
        "template without {username}",
        {"bind_dn_template": ["uid=alice,dc=corp"]},
        f"{NAME}.bind_dn_template 'uid=alice,dc=corp' has no {{username}}",
    ),
    (
        "service DN without password",
        {"search_bind_dn": "cn=svc,dc=corp"},
        f"{NAME}.search_bind_dn requires {NAME}.search_bind_password",
    ),
    (
        "service password without DN",
        {"search_bind_password": "secret"},
        f"{NAME}.search_bind_password requires {NAME}.search_bind_dn",
    ),
    (
        "allowed_groups without a base",
        {"allowed_groups": {"hub-users"}},
        f"{NAME}.allowed_groups requires {NAME}.group_search_base",
    ),
    (
        "admin_groups without a base",
        {"admin_groups": {"hub-admins"}},
        f"{NAME}.admin_groups requires {NAME}.group_search_base",
    ),
    (
        "manage_groups without a base",
        {"manage_groups": True},
        f"{NAME}.manage_groups requires {NAME}.group_search_base",
    ),
    (
        "unknown TLS strategy",
        {"tls_strategy": "tls"},
        f"{NAME}.tls_strategy must be one of 'starttls', 'ldaps', 'insecure', not 'tls'",
    ),
    (
        "CA file with insecure",
        {"tls_strategy": "insecure", "tls_ca_file": "/etc/hostname"},
        f'{NAME}.tls_ca_file is set but {NAME}.tls_strategy is "insecure"',
    ),
    (
        "missing CA file",
        {"tls_ca_file": "/nonexistent/ca.pem"},
        f"{NAME}.tls_ca_file '/nonexistent/ca.pem' is not a file",
    ),
    (
        "CA file that holds no certificate",
        {"tls_ca_file": "/etc/hostname"},
        f"{NAME}.tls_ca_file '/etc/hostname' holds no usable PEM CA certificate",
    ),
    (
        "bad search filter",
        {
            "bind_dn_template": [],
            "lookup_dn": True,
            "user_search_base": "dc=corp",
            "user_search_filter": "(uid={username}",
        },
        f"{NAME}.user_search_filter: '(uid={{username}}' is not a valid LDAP filter",
    ),
    (
        "search filter without {username}",
        {
            "bind_dn_template": [],
            "lookup_dn": True,
            "user_search_base": "dc=corp",
            "user_search_filter": "(uid=alice)",
        },
        f"{NAME}.user_search_filter has no {{username}}",
    ),
    (
        "unknown placeholder in the group filter",
        {"group_search_filter": "(member={dn})"},
        f"{NAME}.group_search_filter: '(member={{dn}})': unknown or malformed placeholder",
    ),
    ("zero timeout", {"receive_timeout": 0}, f"{NAME}.receive_timeout must be a positive"),
    (
        "timeout as text",
        {"receive_timeout": "5"},
        f"{NAME}.receive_timeout must be a number of seconds, not '5'",
    ),
    ("negative timeout", {"connect_timeout": -1}, f"{NAME}.connect_timeout must be a positive"),
    ("no threads", {"executor_threads": 0}, f"{NAME}.executor_threads must be at least 1"),
    ("zero login timeout", {"login_timeout": 0}, f"{NAME}.login_timeout must be a positive"),
    (
        "login timeout within one server's timeouts",
        {"login_timeout": 10},
        f"{NAME}.login_timeout (10 s) must be more than {NAME}.connect_timeout +"
        f" {NAME}.receive_timeout (10 s)",
    ),
    (
        "tiny response cap",
        {"max_response_bytes": 1000},
        f"{NAME}.max_response_bytes must be at least 65536",
    ),
    (
        "username_map chain",
        {"username_map": {"a": "b", "b": "c"}},
        "Authenticator.username_map maps 'a' to 'b', which it maps to 'c':"
        " a chain is not followed; map 'a' to the final name directly",
    ),
    (
        "username_map key that never matches",
        {"username_map": {"Alice": "bob"}},
        "Authenticator.username_map key 'Alice' never matches: names are lowercased",
    ),
    (
        "username_map to a name JupyterHub would change",
        {"username_map": {"alice": "Bob"}},
        "Authenticator.username_map maps 'alice' to 'Bob', which is not a normalised name"
        " (JupyterHub would make it 'bob')",
    ),
    (
        "username_map to an unusable name",
        {"username_map": {"alice": "../bob"}},
        "Authenticator.username_map maps 'alice' to an unusable name",
    ),
    (
        "attributes of an entry a UPN bind does not name",
        {"bind_dn_template": ["{username}@corp.example"], "auth_state_attributes": ["mail"]},
        f"{NAME}.auth_state_attributes reads the user's entry, but {NAME}.bind_dn_template"
        " binds with a name that is not a DN",
    ),
    (
        "user_info of an entry a DOMAIN\\name bind does not name",
        {"bind_dn_template": ["CORP\\{username}"], "user_info_attributes": {"name": "cn"}},
        f"{NAME}.user_info_attributes reads the user's entry",
    ),
]


@pytest.mark.parametrize(
    "options, message", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_config_that_cannot_work_is_refused_at_startup(base, options, message):
    for name, value in options.items():
        setattr(base.KerberosLDAPAuthenticator, name, value)
    with pytest.raises(ConfigError) as info:
        KerberosLDAPAuthenticator(config=base)
    assert str(info.value).startswith(message)


# (label, options, what the directory settings become)
GOOD_CONFIGS = [
    (
        "one string is a list of one",
        {"server_address": "ldap.corp.example", "bind_dn_template": "uid={username},dc=corp"},
        {"servers": ["ldap.corp.example:389"], "templates": ["uid={username},dc=corp"]},
    ),
    (
        "failover list with ports",
        {"server_address": ["a.corp:1389", "b.corp", "[::1]:636"]},
        {"servers": ["a.corp:1389", "b.corp:389", "[::1]:636"]},
    ),
    ("ldaps port", {"tls_strategy": "LDAPS"}, {"servers": ["ldap.corp.example:636"]}),
    ("server_port", {"server_port": 1636}, {"servers": ["ldap.corp.example:1636"]}),
    (
        "lookup",
        {"bind_dn_template": [], "lookup_dn": True, "user_search_base": "dc=corp"},
        {"templates": [], "search_base": "dc=corp"},
    ),
    (
        "default timeouts and cap",
        {},
        {
            "connect_timeout": 5,
            "receive_timeout": 5,
            "login_timeout": 30,
            "max_response_bytes": 4 * 1024 * 1024,
        },
    ),
    (
        "a login timeout and cap",
        {"login_timeout": 12.5, "max_response_bytes": 16 * 1024 * 1024},
        {"login_timeout": 12.5, "max_response_bytes": 16 * 1024 * 1024},
    ),
]


@pytest.mark.parametrize(
    "options, expected", [c[1:] for c in GOOD_CONFIGS], ids=[c[0] for c in GOOD_CONFIGS]
)
def test_config_is_read_into_directory_settings(base, options, expected):
    for name, value in options.items():
        setattr(base.KerberosLDAPAuthenticator, name, value)
    directory, query = KerberosLDAPAuthenticator(config=base)._ldap_settings()
    found = {
        "servers": [str(s) for s in directory.servers],
        "templates": query.bind_dn_templates,
        "search_base": query.search_base,
        "connect_timeout": directory.connect_timeout,
        "receive_timeout": directory.receive_timeout,
        "login_timeout": directory.login_timeout,
        "max_response_bytes": directory.max_response_bytes,
    }
    for key, value in expected.items():
        assert found[key] == value, key


def test_changing_an_option_later_is_applied(base):
    authenticator = KerberosLDAPAuthenticator(config=base)
    authenticator.receive_timeout = 1.5
    authenticator.server_address = ["b.corp"]
    directory, _ = authenticator._ldap_settings()
    assert directory.receive_timeout == 1.5
    assert [str(s) for s in directory.servers] == ["b.corp:389"]


def test_tls_is_verified_by_default(base):
    authenticator = KerberosLDAPAuthenticator(config=base)
    assert authenticator.tls_strategy == "starttls"
    directory, _ = authenticator._ldap_settings()
    assert directory.context.check_hostname is True
    assert directory.context.verify_mode == ssl.CERT_REQUIRED


def test_allowed_groups_count_as_allow_config(base):
    base.KerberosLDAPAuthenticator.group_search_base = "ou=groups,dc=corp"
    base.KerberosLDAPAuthenticator.admin_groups = {"hub-admins"}
    assert KerberosLDAPAuthenticator(config=base).any_allow_config is True


@pytest.mark.parametrize(
    "username_map",
    [{}, {"alice": "bob"}, {"alice": "bob", "carol": "bob", "bob": "bob"}, {"a.b": "ab"}],
    ids=["none", "one alias", "two aliases and an identity", "dotted"],
)
def test_normalize_username_is_a_fixed_point(base, username_map):
    """JupyterHub normalises the name a login returns again: that must change nothing."""
    base.KerberosLDAPAuthenticator.username_map = username_map
    base.KerberosLDAPAuthenticator.login_domains = ["corp.example", "CORP"]
    authenticator = KerberosLDAPAuthenticator(config=base)
    for typed in ["alice", "Alice", " alice ", "alice@corp.example", "CORP\\Alice", "bob", "a.b"]:
        once = authenticator.normalize_username(typed)
        assert authenticator.normalize_username(once) == once, typed
    assert authenticator.normalize_username("CORP\\Alice") == username_map.get("alice", "alice")


# --- what the LDAP modules load ---------------------------------------------------------

PLAIN_LDAP_MODULES = [
    f"kerbauth.auth.ldap.{name}"
    for name in ("connection", "queries", "directory", "groups", "settings")
]


def test_the_plain_ldap_modules_load_no_framework_and_no_pam():
    """What the doctor and the authenticator share runs without JupyterHub, tornado,
    traitlets or PAM."""
    loaded = top_level(loaded_by(*PLAIN_LDAP_MODULES))
    assert "ldap3" in loaded
    assert not loaded & {"jupyterhub", "tornado", "traitlets", "pamela", "sqlalchemy"}, loaded


def test_the_ldap_login_adds_no_pam_and_the_pam_login_no_ldap():
    """pamela comes with JupyterHub's own ``jupyterhub.auth`` (which imports it to offer
    PAMAuthenticator), never through kerbauth's LDAP modules; ldap3 never with PAM."""
    # Loaded exactly when JupyterHub's module loads it (6.x and 5.x do, in a try).
    ldap_login = top_level(loaded_by("kerbauth.auth.ldap.authenticator"))
    assert ("pamela" in ldap_login) == ("pamela" in top_level(loaded_by("jupyterhub.auth")))
    for path in (Path(kerbauth.__file__).parent / "auth" / "ldap").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.partition(".")[0] == "pamela" for n in names), path
    assert "ldap3" not in top_level(loaded_by("kerbauth.auth.pam"))
