"""Configuration: the KerberosTickets section, its checks, its help, the entry points."""

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from traitlets.config import Config

import kerbauth
from kerbauth import KerberosLDAPAuthenticator, KerberosPAMAuthenticator, KerberosTickets

AUTHENTICATORS = [KerberosPAMAuthenticator, KerberosLDAPAuthenticator]


@pytest.fixture
def base_config(tmp_path, krb5_env):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    # What the LDAP mode needs to start at all (nothing is contacted here).
    c.KerberosLDAPAuthenticator.server_address = ["ldap.corp.example"]
    c.KerberosLDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=corp,dc=example"]
    return c


def test_entry_points_name_both_authenticators():
    found = {ep.name: ep.load() for ep in entry_points(group="jupyterhub.authenticators")}
    assert found["kerberos-pam"] is KerberosPAMAuthenticator
    assert found["kerberos-ldap"] is KerberosLDAPAuthenticator


def test_every_option_has_a_help_text_with_default_and_version():
    for name, trait in KerberosTickets.class_traits(config=True).items():
        help_text = trait.help
        assert len(help_text) > 60, name
        assert "Default" in help_text or "default" in help_text, name
        assert "versionadded" in help_text, name


def test_help_all_lists_every_kerberos_tickets_option():
    jupyterhub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
    out = subprocess.run([jupyterhub, "--help-all"], capture_output=True, text=True, check=True)
    for name in KerberosTickets.class_traits(config=True):
        assert f"--KerberosTickets.{name}=" in out.stdout, name


@pytest.mark.parametrize("cls", AUTHENTICATORS, ids=lambda c: c.__name__)
def test_one_section_configures_both_modes(cls, base_config):
    base_config.KerberosTickets.realm = "XX.COM"
    base_config.KerberosTickets.principal_template = "{username}/pg-dmp-workbench2@{realm}"
    base_config.KerberosTickets.backend = "kinit"
    base_config.KerberosTickets.timeout = 3
    authenticator = cls(config=base_config)
    assert authenticator.realm == "XX.COM"
    assert authenticator.ticket_backend.name == "kinit"
    assert authenticator.timeout == 3
    principal, keytab, cache = authenticator._ticket_paths("alice")
    assert principal == "alice/pg-dmp-workbench2@XX.COM"
    assert keytab == base_config.KerberosTickets.keytab_template.format(username="alice")
    assert cache == os.path.join(base_config.KerberosTickets.ccache_dir, "krb5cc_alice")


def test_realm_defaults_to_krb5_conf(base_config, krb5_env):
    assert KerberosPAMAuthenticator(config=base_config).realm == krb5_env.realm


def test_backend_defaults_to_krb5_when_installed(base_config):
    assert KerberosPAMAuthenticator(config=base_config).ticket_backend.name == "krb5"


def test_startup_logs_the_backend(base_config, caplog):
    caplog.set_level("INFO")
    KerberosPAMAuthenticator(config=base_config)
    assert "through the krb5 backend" in caplog.text


BAD_CONFIGS = [
    ("unknown backend", {"backend": "heimdal-magic"}, "KerberosTickets.backend"),
    ("zero timeout", {"timeout": 0}, "KerberosTickets.timeout"),
    ("no concurrency", {"ticket_concurrency": 0}, "KerberosTickets.ticket_concurrency"),
    ("no keytab template", {"keytab_template": ""}, "KerberosTickets.keytab_template"),
    ("world-writable cache dir", {"ccache_dir": "/tmp"}, "KerberosTickets.ccache_dir /tmp"),
    ("relative cache dir", {"ccache_dir": "run/kerbauth"}, "KerberosTickets.ccache_dir"),
]


@pytest.mark.parametrize("label,options,message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_option(base_config, label, options, message):
    for name, value in options.items():
        setattr(base_config.KerberosTickets, name, value)
    with pytest.raises(Exception) as info:
        KerberosPAMAuthenticator(config=base_config)
    assert message in str(info.value)


def test_realm_missing_everywhere_is_refused(base_config, tmp_path, monkeypatch):
    empty = tmp_path / "krb5.conf"
    empty.write_text("[libdefaults]\n dns_lookup_kdc = false\n")
    monkeypatch.setenv("KRB5_CONFIG", str(empty))
    with pytest.raises(ValueError, match="KerberosTickets.realm is not set"):
        KerberosPAMAuthenticator(config=base_config)


def test_without_keytab_template_and_not_required_the_hub_starts(base_config, caplog):
    base_config.KerberosTickets.keytab_template = ""
    base_config.KerberosTickets.required = False
    authenticator = KerberosPAMAuthenticator(config=base_config)
    assert authenticator.ticket_backend is None
    assert "keytab_template is not set" in caplog.text


def test_version_is_exported():
    assert kerbauth.__version__
