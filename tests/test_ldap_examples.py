"""The LDAP examples load as they are, and against the test directory let the right people in."""

import os

import pytest
from traitlets.config.loader import PyFileConfigLoader

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.core.errors import ConfigError

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    return PyFileConfigLoader(name, path=os.path.join(EXAMPLES, "ldap")).load_config()


@pytest.fixture
def openldap_env(slapd, krb5_env, tmp_path, ccache_dir, monkeypatch):
    monkeypatch.setenv("LDAP_SERVERS", f"127.0.0.1:{slapd.ldap_port} localhost:{slapd.ldap_port}")
    monkeypatch.setenv("LDAP_CA_FILE", slapd.ca_file)
    monkeypatch.setenv("LDAP_BASE_DN", slapd.base_dn)
    monkeypatch.setenv("KEYTAB_DIR", str(tmp_path))
    return ccache_dir


async def test_openldap_example_against_the_test_directory(slapd, openldap_env):
    config = load_example("jupyterhub_config.py")
    config.KerberosTickets.ccache_dir = openldap_env
    authenticator = KerberosLDAPAuthenticator(config=config)
    people = slapd.people

    async def login(name):
        return await authenticator.get_authenticated_user(
            None, {"username": name, "password": people[name].password}
        )

    alice, bob, carol = await login("alice"), await login("bob"), await login("carol")
    assert alice["name"] == "alice" and alice["admin"] is True
    assert bob["name"] == "bob" and bob["admin"] is False
    assert carol is None, "carol is in no allowed group"
    assert authenticator.ticket_owner(type("U", (), {"name": "bob"})) == (
        people["bob"].uid_number,
        people["bob"].gid_number,
    )


def test_active_directory_example_loads_and_passes_the_startup_checks(
    krb5_env, monkeypatch, tmp_path
):
    monkeypatch.setenv("AD_BIND_PASSWORD", "from-a-secret")
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "0" * 64)
    config = load_example("jupyterhub_config_ad.py")
    config.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    authenticator = KerberosLDAPAuthenticator(config=config)
    directory, query = authenticator._ldap_settings()
    assert directory.tls_strategy == "ldaps"
    assert [str(s) for s in directory.servers] == ["dc1.corp.example:636", "dc2.corp.example:636"]
    assert query.search_base == "DC=corp,DC=example" and not query.bind_dn_templates
    assert authenticator.password_tickets is True
    assert authenticator.normalize_username("CORP\\Alice") == "alice"
    assert authenticator.normalize_username("alice@corp.example") == "alice"


def test_active_directory_example_wants_the_service_password(krb5_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AD_BIND_PASSWORD", raising=False)
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "0" * 64)
    config = load_example("jupyterhub_config_ad.py")
    config.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    with pytest.raises(ConfigError) as refused:
        KerberosLDAPAuthenticator(config=config)
    assert str(refused.value) == (
        "KerberosLDAPAuthenticator.search_bind_dn requires"
        " KerberosLDAPAuthenticator.search_bind_password (a bind with an empty password"
        " is anonymous)"
    )
