"""A jupyterhub-ldapauthenticator site's ``c.LDAPAuthenticator.*`` section, read by kerbauth.

The reference is ldapauthenticator 2.0 itself (installed): the same Config is given
to it and to kerbauth, both log users in against the same real slapd holding the
planetexpress directory its own tests use, and the names, groups and auth_state
keys its users read must be the same. Refusals are tables of Config cases.
"""

import contextlib
import logging
import re
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import ldap3
import pytest
from ldapauthenticator import LDAPAuthenticator
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.auth.ldap import legacy
from kerbauth.core.errors import ConfigError
from support.planetexpress import ADMIN_STAFF, PEOPLE_DN, SHIP_CREW
from support.slapd import make_client_cert, running_slapd, write_cert, write_key

NAME = "KerberosLDAPAuthenticator"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "ldap.md"


@pytest.fixture
def base(tmp_path, krb5_env):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    return c


def z2jh(c, server):
    """The section a zero-to-jupyterhub site writes for planetexpress (lookup_dn, StartTLS)."""
    a = c.LDAPAuthenticator
    a.server_address = server.host
    a.server_port = server.ldap_port
    a.tls_strategy = "before_bind"
    a.tls_kwargs = {"ca_certs_file": server.ca_file, "validate": ssl.CERT_REQUIRED}
    a.lookup_dn = True
    a.user_search_base = PEOPLE_DN
    a.user_attribute = "uid"
    a.lookup_dn_user_dn_attribute = "cn"
    return a


async def login(authenticator, username, password):
    return await authenticator.get_authenticated_user(
        None, {"username": username, "password": password}
    )


def seen_by_users(model):
    """What a user of ldapauthenticator reads of a login: name and its auth_state keys."""
    if model is None:
        return None
    state = model["auth_state"]
    return model["name"], state["ldap_groups"], state["user_attributes"]


# --- the same logins as ldapauthenticator's -------------------------------------------

# (label, the section beyond z2jh(), logins (typed name, password) to compare)
SAME_AS_LDAPAUTHENTICATOR = [
    (
        "allowed_groups and auth_state_attributes, anonymous lookup",
        {
            "allowed_groups": [SHIP_CREW],
            "auth_state_attributes": ["mail", "employeeType", "displayName"],
        },
        [("fry", "fry"), ("leela", "leela"), ("hermes", "hermes"), ("fry", "wrong")],
    ),
    (
        "search account, own search filter, two groups",
        {
            "lookup_dn_search_user": "cn=admin,dc=planetexpress,dc=com",
            "lookup_dn_search_password": "ADMIN",
            "lookup_dn_search_filter": "(&(objectClass=inetOrgPerson)({login_attr}={login}))",
            "allowed_groups": [ADMIN_STAFF, SHIP_CREW],
            "auth_state_attributes": ["givenName"],
        },
        [("hermes", "hermes"), ("fry", "fry"), ("professor", "professor"), ("amy", "amy")],
    ),
    (
        "log in by givenName, named by uid (use_lookup_dn_username)",
        {
            "user_attribute": "givenName",
            "lookup_dn_user_dn_attribute": "uid",
            "use_lookup_dn_username": True,
            "allow_all": True,
        },
        [("philip", "fry"), ("turanga", "leela"), ("fry", "fry")],
    ),
]


@pytest.mark.parametrize(
    "section, logins",
    [c[1:] for c in SAME_AS_LDAPAUTHENTICATOR],
    ids=[c[0] for c in SAME_AS_LDAPAUTHENTICATOR],
)
async def test_the_same_section_logs_in_the_same_users_as_ldapauthenticator(
    base, planetexpress, section, logins, caplog
):
    a = z2jh(base, planetexpress)
    for name, value in section.items():
        if value == "ADMIN":
            value = planetexpress.admin_password
        setattr(a, name, value)
    caplog.set_level(logging.INFO)
    reference = LDAPAuthenticator(config=base)
    kerbauth = KerberosLDAPAuthenticator(config=base)
    results = []
    for typed, password in logins:
        expected = seen_by_users(await login(reference, typed, password))
        found = seen_by_users(await login(kerbauth, typed, password))
        assert found == expected, typed
        results.append(found)
    # The comparison is not between two refusals: someone logs in, someone is refused.
    assert any(results) and None in results or section.get("allow_all")
    for old in section:
        new = legacy.SAME.get(old) or {
            "lookup_dn_search_filter": "user_search_filter",
            "use_lookup_dn_username": "hub_username_attribute",
            "allowed_groups": "allowed_groups",
            "allow_all": "allow_all",
        }.get(old)
        if new:
            line = f"kerbauth: ldapauthenticator option {old} read as {NAME}.{new}"
            assert caplog.text.count(line) == 1, line


# search_filter, after the bind: (label, the section beyond z2jh(), admitted, excluded).
# Each filter finds exactly one entry for the admitted login and none or two for the other.
SEARCH_FILTERS = [
    (
        "captains only",
        {
            "lookup_dn_user_dn_attribute": "uid",
            "search_filter": "(&({userattr}={username})(employeeType=Captain))",
            "attributes": ["employeeType"],
        },
        ("leela", "leela"),
        ("fry", "fry"),
    ),
    (
        "two entries found is a refusal",
        {"lookup_dn_user_dn_attribute": "uid", "search_filter": "(|(uid={username})(uid=fry))"},
        ("fry", "fry"),
        ("leela", "leela"),
    ),
    (
        "{username} is the looked-up name (use_lookup_dn_username)",
        {
            "user_attribute": "givenName",
            "lookup_dn_user_dn_attribute": "uid",
            "use_lookup_dn_username": True,
            "search_filter": "(&(uid={username})(employeeType=Delivery boy))",
        },
        ("philip", "fry"),
        ("leela", "leela"),
    ),
]


@pytest.mark.parametrize(
    "section, admitted, excluded",
    [c[1:] for c in SEARCH_FILTERS],
    ids=[c[0] for c in SEARCH_FILTERS],
)
async def test_search_filter_admits_and_excludes_as_ldapauthenticator_does(
    base, planetexpress, section, admitted, excluded, caplog
):
    a = z2jh(base, planetexpress)
    a.allow_all = True
    for name, value in section.items():
        setattr(a, name, value)
    caplog.set_level(logging.INFO)
    reference = LDAPAuthenticator(config=base)
    kerbauth = KerberosLDAPAuthenticator(config=base)
    for typed, password in (admitted, excluded):
        expected = seen_by_users(await login(reference, typed, password))
        assert seen_by_users(await login(kerbauth, typed, password)) == expected, typed
    assert (await login(kerbauth, *admitted)) is not None
    assert (await login(kerbauth, *excluded)) is None
    assert re.search(r"login_search_filter \(.*\) found (no|more than one) entry", caplog.text)
    line = f"ldapauthenticator option search_filter read as {NAME}.login_search_filter"
    assert caplog.text.count(line) == 1
    if "attributes" in section:
        assert caplog.text.count("ldapauthenticator option attributes read, without effect") == 1


async def test_login_search_filter_with_a_dn_template(base, slapd, caplog):
    # kerbauth's own option, without lookup_dn: searched as the user just bound.
    a = base.KerberosLDAPAuthenticator
    a.server_address = [f"127.0.0.1:{slapd.ldap_port}"]
    a.tls_ca_file = slapd.ca_file
    a.bind_dn_template = [f"uid={{username}},{slapd.people_dn}"]
    a.user_search_base = slapd.base_dn
    a.login_search_filter = "(&({user_attribute}={username})(mail=*))"
    a.allow_all = True
    kerbauth = KerberosLDAPAuthenticator(config=base)
    mark = slapd.log_mark()
    assert (await login(kerbauth, "alice", slapd.people["alice"].password))["name"] == "alice"
    seen = slapd.log_since(mark)
    # The filter's search runs on the connection bound as alice, after her bind.
    bound = re.search(r"conn=(\d+) op=\d+ BIND dn=\"uid=alice,", seen)
    assert bound, seen
    assert re.search(rf"conn={bound.group(1)} op=\d+ SRCH base=\"{slapd.base_dn}\" scope=2", seen)
    assert "(&(uid=alice)(mail=*))" in seen
    assert await login(kerbauth, "carol", slapd.people["carol"].password) is None  # no mail
    assert await login(kerbauth, "alice", "wrong") is None


async def test_a_refresh_keeps_the_auth_state_ldapauthenticator_users_read(base, planetexpress):
    a = z2jh(base, planetexpress)
    a.lookup_dn_search_user = "cn=admin,dc=planetexpress,dc=com"
    a.lookup_dn_search_password = planetexpress.admin_password
    a.allowed_groups = [ADMIN_STAFF, SHIP_CREW]
    base.Authenticator.enable_auth_state = True
    kerbauth = KerberosLDAPAuthenticator(config=base)
    model = await login(kerbauth, "hermes", "hermes")
    assert model["auth_state"]["ldap_groups"] == [ADMIN_STAFF]  # DNs, as ldapauthenticator's

    async def get_auth_state():
        return model["auth_state"]

    user = SimpleNamespace(
        name="hermes",
        admin=False,
        groups=[],
        user_info=model.get("user_info"),
        get_auth_state=get_auth_state,
    )
    refreshed = await kerbauth.refresh_user(user)
    # Still allowed, and ldap_groups still the DNs the login wrote (nothing changed).
    assert refreshed is True, refreshed


async def test_a_looked_up_name_that_cannot_be_a_username_is_refused_not_changed(
    base, planetexpress, caplog
):
    a = z2jh(base, planetexpress)
    a.use_lookup_dn_username = True  # named by cn: "Philip J. Fry"
    a.allow_all = True
    reference = await login(LDAPAuthenticator(config=base), "fry", "fry")
    assert reference["name"] == "philip j. fry"  # ldapauthenticator takes it as it is
    assert await login(KerberosLDAPAuthenticator(config=base), "fry", "fry") is None
    assert (
        "LDAP login of fry refused: the cn of its entry cn=Philip J. Fry,"
        f"{PEOPLE_DN} cannot be a hub username" in caplog.text
    )
    assert "LDAPAuthenticator.lookup_dn_user_dn_attribute" in caplog.text


async def test_the_certificate_is_verified_where_ldapauthenticator_did_not(base, planetexpress):
    a = z2jh(base, planetexpress)
    a.allow_all = True
    a.tls_kwargs = {"ca_certs_file": planetexpress.other_ca_file}
    # ldapauthenticator's Tls() verifies nothing by default: any certificate will do.
    assert (await login(LDAPAuthenticator(config=base), "fry", "fry"))["name"] == "fry"
    with pytest.raises(Exception, match="503"):
        await login(KerberosLDAPAuthenticator(config=base), "fry", "fry")


@pytest.fixture(scope="module")
def client_cert_slapd():
    """A slapd (the default people) that demands a client certificate signed by its CA."""
    with running_slapd(extra_conf=["TLSVerifyClient demand"]) as server:
        yield server


async def test_tls_kwargs_with_a_client_certificate(base, client_cert_slapd, tmp_path, caplog):
    s = client_cert_slapd
    key, cert = make_client_cert(s.ca_key, s.ca_cert)
    write_cert(str(tmp_path / "client.pem"), cert)
    write_key(str(tmp_path / "client.key"), key)
    a = base.LDAPAuthenticator
    a.server_address = "127.0.0.1"
    a.server_port = s.ldap_port
    a.tls_strategy = "before_bind"
    a.bind_dn_template = f"uid={{username}},{s.people_dn}"
    a.allow_all = True
    with_cert = {
        "ca_certs_file": s.ca_file,
        "validate": ssl.CERT_REQUIRED,
        "version": ssl.PROTOCOL_TLSv1_2,
        "ciphers": "ECDHE+AESGCM",
        "local_certificate_file": str(tmp_path / "client.pem"),
        "local_private_key_file": str(tmp_path / "client.key"),
    }
    a.tls_kwargs = with_cert
    caplog.set_level(logging.INFO)
    alice = ("alice", s.people["alice"].password)
    kerbauth = KerberosLDAPAuthenticator(config=base)
    assert (kerbauth.tls_minimum_version, kerbauth.tls_ciphers) == ("1.2", "ECDHE+AESGCM")
    assert kerbauth.tls_client_cert == str(tmp_path / "client.pem")
    assert kerbauth.tls_client_key == str(tmp_path / "client.key")
    for old, new in [
        ("local_certificate_file", "tls_client_cert"),
        ("local_private_key_file", "tls_client_key"),
        ("version", "tls_minimum_version"),
        ("ciphers", "tls_ciphers"),
    ]:
        line = f"ldapauthenticator option tls_kwargs[{old!r}] read as {NAME}.{new}"
        assert caplog.text.count(line) == 1, line
    mark = s.log_mark()
    assert (await login(LDAPAuthenticator(config=base), *alice))["name"] == "alice"
    assert (await login(kerbauth, *alice))["name"] == "alice"
    assert s.log_since(mark).count(f'BIND dn="{s.people["alice"].dn}" mech=SIMPLE') == 2
    # Without the certificate the server ends the handshake: ldapauthenticator fails
    # the login with the error, kerbauth answers 503 and logs which option may be why.
    a.tls_kwargs = {k: v for k, v in with_cert.items() if not k.startswith("local_")}
    with pytest.raises(ldap3.core.exceptions.LDAPException):
        await login(LDAPAuthenticator(config=base), *alice)
    caplog.clear()
    with pytest.raises(web.HTTPError) as refused:
        await login(KerberosLDAPAuthenticator(config=base), *alice)
    assert refused.value.status_code == 503
    assert "TLS failed: the server closed the connection" in caplog.text
    assert "tls_client_cert" in caplog.text


# --- read onto the kerbauth options ---------------------------------------------------

# Two sections a site writes: a search for the user's DN, and a DN template.
Z = {"server_address": "ldap.corp", "lookup_dn": True, "user_search_base": "dc=corp"}
T = {"server_address": "ldap.corp", "bind_dn_template": "uid={username},dc=corp"}

# (label, c.LDAPAuthenticator.* beyond T, the kerbauth options it must give)
READ_AS = [
    ("one host", {"server_address": "ldap.corp"}, {"server_address": ["ldap.corp"]}),
    ("on_connect", {"tls_strategy": "on_connect"}, {"tls_strategy": "ldaps"}),
    ("use_ssl", {"use_ssl": True}, {"tls_strategy": "ldaps"}),
    (
        "TLS 1.2",
        {"tls_kwargs": {"version": ssl.PROTOCOL_TLSv1_2}},
        {"tls_minimum_version": "1.2"},
    ),
    ("ciphers", {"tls_kwargs": {"ciphers": "ECDHE+AESGCM"}}, {"tls_ciphers": "ECDHE+AESGCM"}),
    ("insecure", {"tls_strategy": "insecure"}, {"tls_strategy": "insecure"}),
    ("a template string", {}, {"bind_dn_template": ["uid={username},dc=corp"]}),
    ("the regex", {"valid_username_regex": "^[a-z]+$"}, {"username_pattern": "^[a-z]+$"}),
    (
        "lookup with a search account and filter",
        {
            "bind_dn_template": [],
            "lookup_dn": True,
            "user_search_base": "dc=corp",
            "lookup_dn_search_user": "cn=search,dc=corp",
            "lookup_dn_search_password": "pw",
            "lookup_dn_search_filter": "(&(objectClass=person)({login_attr}={login}))",
        },
        {
            "search_bind_dn": "cn=search,dc=corp",
            "search_bind_password": "pw",
            "user_search_filter": "(&(objectClass=person)({user_attribute}={username}))",
        },
    ),
    (
        "search_filter, without lookup_dn",
        {
            "user_search_base": "dc=corp",
            "user_attribute": "cn",
            "search_filter": "(&({userattr}={username})(employeeType=Captain))",
            "attributes": ["employeeType"],
        },
        {
            "login_search_filter": "(&({user_attribute}={username})(employeeType=Captain))",
            "user_search_base": "dc=corp",
            "user_attribute": "cn",
        },
    ),
    (
        "groups in one tree, the old filter",
        {
            "allowed_groups": ["cn=a,ou=groups,dc=corp", "cn=b,ou=teams,ou=groups,dc=corp"],
            "group_search_filter": "(|(member={userdn})(memberUid={uid}))",
        },
        {
            "group_search_base": "ou=groups,dc=corp",
            "group_search_filter": "(|(member={user_dn})(memberUid={username}))",
        },
    ),
    (
        "one group, the default filter",
        {"allowed_groups": ["cn=a,ou=groups,dc=corp"]},
        {
            "group_search_base": "cn=a,ou=groups,dc=corp",
            "group_search_filter": legacy.OLD_GROUP_FILTER,
        },
    ),
]


@pytest.mark.parametrize("old, new", [c[1:] for c in READ_AS], ids=[c[0] for c in READ_AS])
def test_each_option_is_read_onto_the_kerbauth_option_of_the_same_meaning(base, old, new):
    for name, value in {**T, **old}.items():
        setattr(base.LDAPAuthenticator, name, value)
    authenticator = KerberosLDAPAuthenticator(config=base)
    for name, value in new.items():
        assert getattr(authenticator, name) == value, name


# --- refused at start-up --------------------------------------------------------------

# (label, c.LDAPAuthenticator.*, c.KerberosLDAPAuthenticator.*, the message's start)
REFUSED = [
    (
        "search_filter without user_search_base",
        {**T, "search_filter": "(uid={username})"},
        {},
        "LDAPAuthenticator.search_filter is searched with LDAPAuthenticator.user_search_base,"
        " which is not set",
    ),
    (
        "search_filter's {userattr} without user_attribute",
        {**T, "user_search_base": "dc=corp", "search_filter": "({userattr}={username})"},
        {},
        "LDAPAuthenticator.search_filter is searched with LDAPAuthenticator.user_attribute,"
        " which is not set",
    ),
    (
        "search_filter's {username} is another attribute's value",
        {
            **Z,
            "user_attribute": "uid",
            "lookup_dn_user_dn_attribute": "cn",
            "search_filter": "(cn={username})",
        },
        {},
        "LDAPAuthenticator.search_filter: its {username} is the entry's 'cn'"
        " (LDAPAuthenticator.lookup_dn_user_dn_attribute)",
    ),
    (
        "login_search_filter without user_search_base",
        T,
        {"login_search_filter": "(mail=*)"},
        f"{NAME}.login_search_filter is searched under {NAME}.user_search_base, which is empty",
    ),
    (
        "login_search_filter that is no filter",
        T,
        {"login_search_filter": "(mail=*", "user_search_base": "dc=corp"},
        f"{NAME}.login_search_filter: '(mail=*' is not a valid LDAP filter",
    ),
    (
        "lookup_dn and bind_dn_template",
        {**Z, **T},
        {},
        "LDAPAuthenticator.lookup_dn and LDAPAuthenticator.bind_dn_template are both set",
    ),
    (
        "an ldaps:// URL",
        {**T, "server_address": "ldaps://ldap.corp"},
        {},
        "LDAPAuthenticator.server_address 'ldaps://ldap.corp': give the host name only",
    ),
    (
        "no verification",
        {**T, "tls_kwargs": {"validate": ssl.CERT_NONE}},
        {},
        "LDAPAuthenticator.tls_kwargs['validate']: kerbauth always verifies",
    ),
    (
        "an old TLS version",
        {**T, "tls_kwargs": {"version": ssl.PROTOCOL_TLS_CLIENT}},
        {},
        "LDAPAuthenticator.tls_kwargs['version']: kerbauth speaks TLS 1.2 or 1.3 only",
    ),
    (
        "an unknown tls_kwargs key",
        {**T, "tls_kwargs": {"sni": "x"}},
        {},
        "LDAPAuthenticator.tls_kwargs['sni'] has no kerbauth equivalent",
    ),
    (
        "use_ssl against tls_strategy",
        {**T, "use_ssl": True, "tls_strategy": "before_bind"},
        {},
        "LDAPAuthenticator.use_ssl = True and LDAPAuthenticator.tls_strategy",
    ),
    (
        "use_lookup_dn_username without an attribute",
        {**Z, "use_lookup_dn_username": True},
        {},
        "LDAPAuthenticator.use_lookup_dn_username needs"
        " LDAPAuthenticator.lookup_dn_user_dn_attribute",
    ),
    (
        "not an option",
        {**T, "user_dn_template": "x"},
        {},
        "LDAPAuthenticator.user_dn_template is not an option",
    ),
    (
        "set in both sections",
        T,
        {"server_address": ["other.corp"]},
        f"LDAPAuthenticator.server_address and {NAME}.server_address are both set",
    ),
    (
        "allowed_groups in both",
        {**T, "allowed_groups": ["cn=g,dc=corp"]},
        {"allowed_groups": {"g"}},
        f"LDAPAuthenticator.allowed_groups and {NAME}.allowed_groups are both set",
    ),
    (
        "groups in two trees",
        {**T, "allowed_groups": ["cn=g,dc=a", "cn=h,dc=b"]},
        {},
        "LDAPAuthenticator.allowed_groups: the groups share no part of their DNs",
    ),
    (
        "admin_groups by name with old groups",
        {**T, "allowed_groups": ["cn=g,dc=corp"]},
        {"admin_groups": {"admins"}},
        "LDAPAuthenticator.allowed_groups is set, so auth_state's ldap_groups holds group DNs",
    ),
    (
        "a bad value",
        {**T, "server_port": "389x"},
        {},
        "LDAPAuthenticator.server_port:",
    ),
]

# Options that do nothing in the mode chosen: (option, value, the mode's option, kerbauth's?)
NO_EFFECT_IN_MODE = [
    ("user_search_base", "dc=corp", "lookup_dn", False),
    ("user_attribute", "cn", "lookup_dn", False),
    ("lookup_dn_search_filter", "(cn={login})", "lookup_dn", False),
    ("lookup_dn_search_user", "cn=search", "lookup_dn", False),
    ("lookup_dn_search_password", "x", "lookup_dn", False),
    ("lookup_dn_user_dn_attribute", "cn", "lookup_dn", False),
    ("use_lookup_dn_username", True, "lookup_dn", False),
    ("group_search_filter", "(member={userdn})", "allowed_groups", False),
    ("user_search_base", "dc=corp", "lookup_dn", True),
    ("user_search_filter", "(cn={username})", "lookup_dn", True),
    ("user_attribute", "cn", "lookup_dn", True),
    ("group_search_filter", "(member={user_dn})", "group_search_base", True),
    ("group_name_attribute", "ou", "group_search_base", True),
    ("uid_number_attribute", "uid", "owner_from_ldap", True),
    ("gid_number_attribute", "gid", "owner_from_ldap", True),
]
for option, value, mode, own in NO_EFFECT_IN_MODE:
    section = "KerberosLDAPAuthenticator" if own else "LDAPAuthenticator"
    REFUSED.append(
        (
            f"{section}.{option} without {mode}",
            T,
            {option: value} if own else {},
            f"{section}.{option} has no effect without {section}.{mode}"
            if not own
            else f"{section}.{option} has no effect while {section}.{mode} is not set",
        )
    )
    if not own:
        REFUSED[-1] = (REFUSED[-1][0], {**T, option: value}, {}, REFUSED[-1][3])


@pytest.mark.parametrize("old, new, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_section_that_kerbauth_cannot_honour_is_refused_at_startup(base, old, new, message):
    for name, value in old.items():
        setattr(base.LDAPAuthenticator, name, value)
    for name, value in new.items():
        setattr(base.KerberosLDAPAuthenticator, name, value)
    with pytest.raises(ConfigError) as info:
        KerberosLDAPAuthenticator(config=base)
    assert str(info.value).startswith(message)


def test_options_without_effect_in_ldapauthenticator_are_logged_not_refused(base, caplog):
    for name, value in {**T, "escape_userdn": True, "group_attributes": ["member"]}.items():
        setattr(base.LDAPAuthenticator, name, value)
    base.LDAPAuthenticator.use_ssl = False
    KerberosLDAPAuthenticator(config=base)
    for option in ("escape_userdn", "group_attributes", "use_ssl"):
        assert f"ldapauthenticator option {option} read, without effect:" in caplog.text


# --- the migration table --------------------------------------------------------------


def migration_table():
    """Old option -> its row, from the table in docs/ldap.md's migration section."""
    text = DOCS.read_text()
    section = text.split("## Coming from jupyterhub-ldapauthenticator", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        found = re.match(r"\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def test_the_migration_table_covers_every_option_of_ldapauthenticator():
    options = set(LDAPAuthenticator.class_own_traits(config=True))
    assert options == legacy.OPTIONS
    rows = migration_table()
    assert set(rows) == options
    for option in legacy.SAME:
        assert f"`{legacy.SAME[option]}`" in rows[option], option
    for option in legacy.REFUSED:
        assert "refused" in rows[option], option


# --- the drop-in, in a real hub -------------------------------------------------------

# A zero-to-jupyterhub site's hub.config for ldapauthenticator, as it is, with the one
# line changed and the ticket options added.
Z2JH_SITE = """
import os
c.JupyterHub.authenticator_class = "kerberos-ldap"
c.Authenticator.enable_auth_state = True
c.LDAPAuthenticator.server_address = "127.0.0.1"
c.LDAPAuthenticator.server_port = int(os.environ["LDAP_PORT"])
c.LDAPAuthenticator.tls_kwargs = {"ca_certs_file": os.environ["LDAP_CA_FILE"]}
c.LDAPAuthenticator.lookup_dn = True
c.LDAPAuthenticator.user_search_base = "ou=people,dc=planetexpress,dc=com"
c.LDAPAuthenticator.user_attribute = "uid"
c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "cn"
c.LDAPAuthenticator.allowed_groups = ["cn=ship_crew,ou=people,dc=planetexpress,dc=com"]
c.LDAPAuthenticator.auth_state_attributes = ["mail"]
c.LDAPAuthenticator.admin_users = {"leela"}
c.KerberosTickets.keytab_template = os.environ["KEYTAB_DIR"] + "/{username}.keytab"
c.KerberosTickets.ccache_dir = os.environ["CCACHE_DIR"]
"""


Z2JH_LOGINS = [("fry", "fry"), ("leela", "leela"), ("hermes", "hermes"), ("fry", "bender")]


def what_users_see(hub, logins):
    """Each login's answer, and each user's admin flag and the auth_state keys read."""
    answers = [hub.login(name, password).status_code for name, password in logins]
    users = {}
    for name in sorted({name for name, _ in logins}):
        response = hub.api("GET", f"/users/{name}")
        if response.status_code == 200:
            model = response.json()
            state = model["auth_state"]
            users[name] = (model["admin"], state["ldap_groups"], state["user_attributes"])
    return answers, users


def test_a_z2jh_ldapauthenticator_config_runs_a_hub_with_one_line_changed(
    hub_factory, planetexpress, krb5_env, tmp_path, ccache_dir
):
    env = {
        "LDAP_PORT": str(planetexpress.ldap_port),
        "LDAP_CA_FILE": planetexpress.ca_file,
        "KEYTAB_DIR": str(tmp_path),
        "CCACHE_DIR": ccache_dir,
        "KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"],
        "JUPYTERHUB_CRYPT_KEY": "ab" * 32,
    }
    hub = hub_factory(Z2JH_SITE, env=env)
    seen = what_users_see(hub, Z2JH_LOGINS)
    # The reference: the same file with ldapauthenticator's class.
    reference_site = Z2JH_SITE.replace('"kerberos-ldap"', '"ldapauthenticator.LDAPAuthenticator"')
    assert seen == what_users_see(hub_factory(reference_site, env=env), Z2JH_LOGINS)
    answers, users = seen
    assert answers == [302, 302, 403, 403]  # hermes is not in ship_crew; a wrong password
    assert users == {
        "fry": (False, [SHIP_CREW], {"mail": ["fry@planetexpress.com"]}),
        "leela": (True, [SHIP_CREW], {"mail": ["leela@planetexpress.com"]}),
    }
    log = hub.log_text()
    for old, new in [
        ("server_address", "server_address"),
        ("tls_kwargs['ca_certs_file']", "tls_ca_file"),
        ("lookup_dn", "lookup_dn"),
        ("allowed_groups", "allowed_groups"),
        ("admin_users", "admin_users"),
    ]:
        line = f"kerbauth: ldapauthenticator option {old} read as {NAME}.{new}\n"
        assert log.count(line) == 1, line


# The same site naming users by uid while they log in by givenName (use_lookup_dn_username),
# with a search account and a search_filter: the refresh reads the entry at the DN the
# login kept, and applies the filter again.
RENAMED_SITE = """
import os
c.JupyterHub.authenticator_class = "kerberos-ldap"
c.Authenticator.enable_auth_state = True
c.Authenticator.auth_refresh_age = 2
c.LDAPAuthenticator.server_address = "127.0.0.1"
c.LDAPAuthenticator.server_port = int(os.environ["LDAP_PORT"])
c.LDAPAuthenticator.tls_kwargs = {"ca_certs_file": os.environ["LDAP_CA_FILE"]}
c.LDAPAuthenticator.lookup_dn = True
c.LDAPAuthenticator.lookup_dn_search_user = "cn=admin,dc=planetexpress,dc=com"
c.LDAPAuthenticator.lookup_dn_search_password = os.environ["LDAP_SEARCH_PASSWORD"]
c.LDAPAuthenticator.user_search_base = "ou=people,dc=planetexpress,dc=com"
c.LDAPAuthenticator.user_attribute = "givenName"
c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "uid"
c.LDAPAuthenticator.use_lookup_dn_username = True
c.LDAPAuthenticator.search_filter = "(&(uid={username})(!(employeeType=Retired)))"
c.LDAPAuthenticator.allowed_groups = ["cn=ship_crew,ou=people,dc=planetexpress,dc=com"]
c.KerberosTickets.keytab_template = os.environ["KEYTAB_DIR"] + "/{username}.keytab"
c.KerberosTickets.ccache_dir = os.environ["CCACHE_DIR"]
"""

FRY_DN = f"cn=Philip J. Fry,{PEOPLE_DN}"


def until(condition, what, deadline=30):
    """Poll ``condition()`` until true; fail naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def changed(server, dn, attribute, value, operation):
    """``value`` added to (MODIFY_ADD) or deleted from (MODIFY_DELETE) an attribute of an
    entry of the (shared) planetexpress directory; the change undone at the end."""

    def change(operation):
        conn = server.admin_connection()
        try:
            assert conn.modify(dn, {attribute: [(operation, [value])]}), conn.result
        finally:
            conn.unbind()

    change(operation)
    try:
        yield
    finally:
        change(ldap3.MODIFY_DELETE if operation == ldap3.MODIFY_ADD else ldap3.MODIFY_ADD)


def test_a_renamed_users_filter_and_group_removal_are_seen_at_the_next_refresh(
    hub_factory, planetexpress, krb5_env, tmp_path, ccache_dir
):
    hub = hub_factory(
        RENAMED_SITE,
        env={
            "LDAP_PORT": str(planetexpress.ldap_port),
            "LDAP_CA_FILE": planetexpress.ca_file,
            "LDAP_SEARCH_PASSWORD": planetexpress.admin_password,
            "KEYTAB_DIR": str(tmp_path),
            "CCACHE_DIR": ccache_dir,
            "KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"],
            "JUPYTERHUB_CRYPT_KEY": "cd" * 32,
        },
    )
    session, response = hub.login_session("philip", "fry")  # givenName Philip, uid fry
    try:
        assert response.status_code == 302
        state = hub.api("GET", "/users/fry").json()["auth_state"]
        assert state["ldap_dn"] == FRY_DN and state["ldap_login_name"] == "philip"
        assert state["ldap_groups"] == [SHIP_CREW]

        def home():
            return session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=60)

        assert home().status_code == 200

        def sent_to_login():
            response = home()
            return response.status_code == 302 and "/hub/login" in response.headers["Location"]

        # Retired: search_filter excludes fry, at the next refresh and at login.
        with changed(planetexpress, FRY_DN, "employeeType", "Retired", ldap3.MODIFY_ADD):
            until(sent_to_login, "fry (philip), retired, asked to log in again")
            assert hub.login("philip", "fry").status_code == 403
        assert "fry no longer matches KerberosLDAPAuthenticator.login_search_filter" in (
            hub.log_text()
        )
        session.close()
        session, response = hub.login_session("philip", "fry")
        assert response.status_code == 302 and home().status_code == 200
        # Out of ship_crew: seen at the next refresh.
        with changed(planetexpress, SHIP_CREW, "member", FRY_DN, ldap3.MODIFY_DELETE):
            until(sent_to_login, "fry (philip), out of ship_crew, asked to log in again")
            assert hub.login("philip", "fry").status_code == 403
        log = hub.log_text()
        assert "fry is no longer allowed by the directory" in log
        assert "checked at login only" not in log
    finally:
        session.close()
