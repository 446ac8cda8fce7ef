"""Configuration: the KerberosTickets section, its checks, its help, the entry points."""

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from traitlets.config import Config

import kerbauth
from kerbauth import KerberosLDAPAuthenticator, KerberosPAMAuthenticator, KerberosTickets
from kerbauth.core.errors import ConfigError

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


def test_every_option_has_a_help_text_with_an_example_and_version_not_the_default():
    """autodoc-traits and ``--help-all`` print each default: the help does not repeat it."""
    for name, trait in KerberosTickets.class_traits(config=True).items():
        help_text = trait.help
        assert len(help_text) > 60, name
        assert "Example" in help_text or "e.g." in help_text, name
        assert "versionadded" in help_text, name
        assert "Default:" not in help_text and "(the default)" not in help_text, name


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
    KerberosPAMAuthenticator(config=base_config).start()
    assert "through the krb5 backend" in caplog.text


def test_the_constructor_starts_nothing(base_config, caplog):
    """Only the configuration is read: no backend, thread pool, cache directory or renewal
    until ``start()`` (or a first use), so ``kerbauth doctor`` can build the class as it is."""
    caplog.set_level("INFO")
    authenticator = KerberosPAMAuthenticator(config=base_config)
    assert not os.path.lexists(base_config.KerberosTickets.ccache_dir)
    assert (authenticator._executor, authenticator._renewer, authenticator.cache_dir) == (
        None,
        None,
        None,
    )
    assert caplog.text == ""
    authenticator.check_config()  # the rules between options: still nothing made
    assert not os.path.lexists(base_config.KerberosTickets.ccache_dir)
    authenticator.start()
    assert os.path.isdir(base_config.KerberosTickets.ccache_dir)
    assert authenticator.ticket_backend.name == "krb5"
    executor, backend, closed = authenticator._ticket_executor, authenticator.ticket_backend, []
    backend.close = lambda close=backend.close: (closed.append(backend), close())
    authenticator.close()  # what start() made is stopped again
    assert closed == [backend] and executor._shutdown and authenticator._executor is None


# (label, options, exact message); refused when the option is set (config load)
# or at start() (the rules between options), always with a ConfigError.
BAD_CONFIGS = [
    (
        "unknown backend",
        {"backend": "heimdal-magic"},
        "KerberosTickets.backend must be one of '', 'krb5', 'kinit', not 'heimdal-magic'",
    ),
    (
        "unknown delivery",
        {"delivery": "carrier-pigeon"},
        "KerberosTickets.delivery must be one of 'file', 'fetch', not 'carrier-pigeon'",
    ),
    (
        "zero timeout",
        {"timeout": 0},
        "KerberosTickets.timeout must be a positive number of seconds, not 0.0",
    ),
    (
        "timeout not a number",
        {"timeout": "10"},
        "KerberosTickets.timeout must be a number of seconds, not '10'",
    ),
    (
        "negative renew margin",
        {"renew_margin": -5},
        "KerberosTickets.renew_margin must be a positive number of seconds, not -5.0",
    ),
    (
        "zero renew interval",
        {"renew_interval": 0},
        "KerberosTickets.renew_interval must be a positive number of seconds, not 0.0",
    ),
    (
        "zero backoff",
        {"renew_max_backoff": 0},
        "KerberosTickets.renew_max_backoff must be a positive number of seconds, not 0.0",
    ),
    (
        "negative renew lifetime",
        {"renew_lifetime": -1},
        "KerberosTickets.renew_lifetime must be zero or more seconds, not -1.0",
    ),
    (
        "no concurrency",
        {"ticket_concurrency": 0},
        "KerberosTickets.ticket_concurrency must be at least 1, not 0",
    ),
    (
        "concurrency of one",
        {"ticket_concurrency": 1},
        "KerberosTickets.ticket_concurrency must be at least 2, not 1: renewal sweeps use"
        " all ticket threads but one, which stays free so that spawns and logins never"
        " wait behind a sweep",
    ),
    (
        "interval not below the margin",
        {"renew_interval": 1800, "renew_margin": 1800},
        "KerberosTickets.renew_interval (1800 s) must be shorter than"
        " KerberosTickets.renew_margin (1800 s): a look at the tickets that fails must be"
        " followed by another before they run out",
    ),
    (
        "no keytab template",
        {"keytab_template": ""},
        "KerberosTickets.keytab_template is not set: kerbauth cannot get tickets"
        ' (set it, e.g. "/home/{username}/{username}.keytab", or set'
        " KerberosTickets.required = False to start servers without tickets)",
    ),
    (
        "password tickets without auth_state",
        {"password_tickets": True},
        "KerberosTickets.password_tickets requires Authenticator.enable_auth_state = True"
        " (and JUPYTERHUB_CRYPT_KEY)",
    ),
    (
        "fetch path with another field",
        {"fetch_ccache_path": "/tmp/{user}/krb5cc"},
        "KerberosTickets.fetch_ccache_path may use only {username}, not '/tmp/{user}/krb5cc'",
    ),
    (
        "relative fetch path",
        {"fetch_ccache_path": "krb5cc_{username}"},
        "KerberosTickets.fetch_ccache_path must be an absolute file path without '.' or"
        " '..', not 'krb5cc_{username}'",
    ),
    (
        "world-writable cache dir",
        {"ccache_dir": "/tmp"},
        "KerberosTickets.ccache_dir /tmp is writable by group or others",
    ),
    (
        "relative cache dir",
        {"ccache_dir": "run/kerbauth"},
        "KerberosTickets.ccache_dir must be an absolute path, not 'run/kerbauth'",
    ),
]


@pytest.mark.parametrize("label,options,message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_option(base_config, label, options, message):
    for name, value in options.items():
        setattr(base_config.KerberosTickets, name, value)
    with pytest.raises(ConfigError) as info:
        KerberosPAMAuthenticator(config=base_config).start()
    assert str(info.value).startswith(message), str(info.value)
    if "ccache_dir" not in options:
        assert not os.path.lexists(base_config.KerberosTickets.ccache_dir), "nothing was made"


def test_realm_missing_everywhere_is_refused(base_config, tmp_path, monkeypatch):
    empty = tmp_path / "krb5.conf"
    empty.write_text("[libdefaults]\n dns_lookup_kdc = false\n")
    monkeypatch.setenv("KRB5_CONFIG", str(empty))
    authenticator = KerberosPAMAuthenticator(config=base_config)
    with pytest.raises(ConfigError) as info:
        authenticator.start()
    assert str(info.value) == (
        "KerberosTickets.realm is not set and krb5.conf names no default_realm"
    )


def test_without_keytab_template_and_not_required_the_hub_starts(base_config, caplog):
    base_config.KerberosTickets.keytab_template = ""
    base_config.KerberosTickets.required = False
    authenticator = KerberosPAMAuthenticator(config=base_config).start()
    assert authenticator.ticket_backend is None
    assert "keytab_template is not set" in caplog.text


def test_version_is_exported():
    assert kerbauth.__version__
