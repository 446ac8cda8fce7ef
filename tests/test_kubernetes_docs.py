"""docs/kubernetes.md cannot drift: every YAML and Python snippet in it is loaded here.

YAML is parsed (PyYAML) and its ``hub.config`` built into a traitlets Config
that configures the installed authenticator; Python snippets are executed
with a ``c = Config()`` as JupyterHub does, and the authenticator they name
is instantiated from it. The scopes are checked with JupyterHub's own code.
The hub tests (tests/test_fetch_hub.py) run the page's scope lines in a real
hub.
"""

import os
import re
from importlib.metadata import entry_points
from itertools import chain

import pytest
import yaml
from jupyterhub import roles, scopes
from traitlets.config import Config

from kerbauth.hub.api import SCOPE, SCOPE_DEFINITION

PAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "kubernetes.md"
)


def blocks(language):
    with open(PAGE) as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def run_python(snippet):
    c = Config()
    exec(compile(snippet, PAGE, "exec"), {"c": c, "get_config": lambda: c})  # noqa: S102
    return c


def authenticator_from(c):
    (found,) = [
        ep.load()
        for ep in entry_points(group="jupyterhub.authenticators")
        if ep.name == c.JupyterHub.authenticator_class
    ]
    return found(config=c)


@pytest.fixture
def jupyterhub_scopes(monkeypatch):
    """JupyterHub's scope table, restored afterwards (custom scopes are defined globally)."""
    monkeypatch.setattr(scopes, "scope_definitions", dict(scopes.scope_definitions))
    return scopes


def check_roles(load_roles):
    """The roles give the scope to users for themselves and to servers, keeping the defaults."""
    by_name = {role["name"]: role for role in load_roles}
    defaults = {role["name"]: role for role in roles.get_default_roles()}
    for name in ("user", "server"):
        role = by_name[name]
        roles._validate_role_name(role["name"])
        scopes._check_scopes_exist(role["scopes"])
        assert f"{SCOPE}!user" in role["scopes"]
        assert set(defaults[name]["scopes"]) <= set(role["scopes"]), name


def test_the_page_has_its_snippets():
    assert len(blocks("yaml")) == 1
    assert len(blocks("python")) == 3
    assert len(blocks("dockerfile")) == 2


def strict_roles_snippet():
    (snippet,) = [b for b in blocks("python") if "may not make API tokens" in b]
    return snippet


def test_the_strict_roles_are_the_users_self_without_tokens(jupyterhub_scopes):
    """The roles that keep users from making tokens: ``self`` minus ``tokens``, and the scope."""
    c = run_python(next(b for b in blocks("python") if "custom_scopes" in b))
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    default_roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    exec(compile(strict_roles_snippet(), PAGE, "exec"), {"c": c})  # noqa: S102
    by_name = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert set(by_name) == {"user", "server"}
    for role in by_name.values():
        roles._validate_role_name(role["name"])
        scopes._check_scopes_exist(role["scopes"])
    assert by_name["server"] == default_roles["server"]
    user_scopes = set(by_name["user"]["scopes"])
    assert f"{SCOPE}!user" in user_scopes
    # Everything ``self`` gives a user (expanded as JupyterHub does), except making tokens.
    expanded = set(chain.from_iterable(scopes._expand_scope(s.split("!")[0]) for s in user_scopes))
    given_by_self = {s.split("!")[0] for s in scopes._expand_self_scope("alice")}
    assert given_by_self - {"tokens"} <= expanded
    assert "tokens" not in expanded


def test_the_scope_snippet_defines_and_grants_kerbauths_scope(jupyterhub_scopes):
    scope_snippet = next(b for b in blocks("python") if "custom_scopes" in b)
    c = run_python(scope_snippet)
    assert c.JupyterHub.custom_scopes == SCOPE_DEFINITION
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    check_roles(c.JupyterHub.load_roles)


def test_the_charts_config_yaml(jupyterhub_scopes, krb5_env, tmp_path):
    (text,) = blocks("yaml")
    values = yaml.safe_load(text)
    hub = values["hub"]

    # kerbauth and LDAP, in fetch mode, configure the installed authenticator.
    c = Config(hub["config"])
    assert c.JupyterHub.authenticator_class == "kerberos-ldap"
    assert "ccache_dir" not in c.KerberosTickets
    # Where file mode would make it (the default may exist on a host that ran other tests).
    c.KerberosTickets.ccache_dir = str(tmp_path / "never-made")
    authenticator = authenticator_from(c)
    assert authenticator.delivery == "fetch"
    assert authenticator.realm == "CORP.EXAMPLE.COM"
    assert authenticator.server_address and authenticator.bind_dn_template
    assert "alice" in authenticator.admin_users
    assert not os.path.exists(authenticator.ccache_dir)  # the hub makes no cache directory

    # The scope: defined in hub.config, granted by hub.loadRoles (the chart's dict form).
    assert c.JupyterHub.custom_scopes == SCOPE_DEFINITION
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    load_roles = [{"name": name, **role} for name, role in hub["loadRoles"].items()]
    check_roles(load_roles)
    scope_snippet = next(b for b in blocks("python") if "custom_scopes" in b)
    assert run_python(scope_snippet).JupyterHub.load_roles == load_roles

    # The keytabs: the Secret read-only in the init container only, copied 0400 as uid 1000.
    volumes = {v["name"]: v for v in hub["extraVolumes"]}
    mounts = {m["name"]: m for m in hub["extraVolumeMounts"]}
    secret = next(name for name, v in volumes.items() if "secret" in v)
    assert volumes[secret]["secret"]["secretName"] == "kerbauth-keytabs"
    assert secret not in mounts
    keytabs = os.path.dirname(authenticator.keytab_template)
    mount = next(m for m in mounts.values() if m["mountPath"] == keytabs)
    assert mount["readOnly"] is True and "emptyDir" in volumes[mount["name"]]
    (init,) = hub["initContainers"]
    assert init["securityContext"]["runAsUser"] == 1000
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert init_mounts[secret]["readOnly"] is True
    assert "install -m 0400" in init["command"][-1] and keytabs in init["command"][-1]
    krb5_mount = mounts["krb5-conf"]["mountPath"]
    assert hub["extraEnv"]["KRB5_CONFIG"].startswith(krb5_mount + "/")
    assert volumes["krb5-conf"]["configMap"]["name"] == "krb5-conf"

    # Database, proxy, ingress, user image and its krb5.conf.
    assert hub["db"]["type"] in ("mysql", "postgres")
    assert hub["db"]["url"].startswith(("postgresql", "mysql"))
    assert values["proxy"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is True and values["ingress"]["hosts"]
    single = values["singleuser"]
    assert single["image"]["name"] and single["image"]["tag"]
    user_mounts = {m["name"]: m for m in single["storage"]["extraVolumeMounts"]}
    assert single["extraEnv"]["KRB5_CONFIG"].startswith(user_mounts["krb5-conf"]["mountPath"])
    assert all(secret != v["name"] for v in single["storage"]["extraVolumes"])


def test_the_dockerspawner_config_configures_the_installed_authenticator(krb5_env):
    snippet = next(b for b in blocks("python") if "DockerSpawner" in b)
    c = run_python(snippet)
    authenticator = authenticator_from(c)
    assert authenticator.delivery == "fetch"
    assert c.JupyterHub.spawner_class == "docker"
    assert c.JupyterHub.hub_connect_ip


def test_the_dockerfiles_build_on_the_charts_hub_image_and_install_kerbauth():
    hub_image, user_image = blocks("dockerfile")
    assert re.match(r"FROM quay\.io/jupyterhub/k8s-hub:\d+\.\d+\.\d+\n", hub_image)
    for dockerfile in (hub_image, user_image):
        assert re.search(r"pip install --no-cache-dir kerbauth\b", dockerfile)
        assert "krb5-user" in dockerfile
        assert re.search(r"^USER (1000|\$\{NB_UID\})$", dockerfile, re.MULTILINE)
