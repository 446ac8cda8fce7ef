"""docs/kubernetes.md cannot drift: every YAML, Python and shell snippet in it is loaded here.

Python snippets are executed with a ``c = Config()`` as JupyterHub does, and
the authenticator they name is instantiated from it; the scopes are checked
with JupyterHub's own code. Each ``yaml`` block is a values file of the chart
(its first line names it: ``# config.yaml: ...``); each, and the
``secrets.yaml`` the page's shell lines write, is merged over the chart's
``values.yaml`` as helm merges values and validated against the chart's own
``values.schema.yaml`` (zero-to-jupyterhub 4.4.0, read from the public test
data, see support.testdata). The options under ``hub.config`` are checked
against the classes they name, the database settings log a hub in to a real
MariaDB and PostgreSQL (support.hubdb), and the network policies are read as
Kubernetes applies them. The hub tests (tests/test_fetch_hub.py) run the
page's scope lines and ``hub.config`` in a real hub.
"""

import builtins
import functools
import ipaddress
import os
import re
import stat
import subprocess
import types
from importlib.metadata import entry_points
from itertools import chain

import jsonschema
import jupyterhub
import pytest
import sqlalchemy
import yaml
from jupyterhub import orm, roles, scopes
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator
from jupyterhub.crypto import CryptKeeper, _validate_key
from sqlalchemy.engine import make_url
from traitlets.config import Config

import support.testdata
from kerbauth import KerberosTickets
from kerbauth.hub.api import SCOPE, SCOPE_DEFINITION

PAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "kubernetes.md"
)
CHART = "4.4.0"  # the chart the page names, and the test data folder z2jh-<CHART>


def page_text():
    with open(PAGE) as f:
        return f.read()


def blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", page_text(), re.DOTALL | re.MULTILINE)


def run_python(snippet, c=None):
    c = Config() if c is None else c
    exec(compile(snippet, PAGE, "exec"), {"c": c, "get_config": lambda: c})  # noqa: S102
    return c


def authenticator_from(c):
    (found,) = [
        ep.load()
        for ep in entry_points(group="jupyterhub.authenticators")
        if ep.name == c.JupyterHub.authenticator_class
    ]
    return found(config=c)


def scope_snippet(major):
    """The page's scope lines for JupyterHub ``major``."""
    (snippet,) = [
        b
        for b in blocks("python")
        if b.startswith("# The scope servers need") and f"JupyterHub {major}.\n" in b
    ]
    return snippet


# --- the chart's values files -------------------------------------------------------------


def values_files():
    """The page's values files by name: its ``yaml`` blocks, each named on its first line."""
    files = {}
    for block in blocks("yaml"):
        match = re.match(r"# ([\w.-]+\.yaml): ", block)
        assert match, f"a yaml block of the page does not say which values file it is:\n{block}"
        files[match.group(1)] = yaml.safe_load(block)
    return files


def chart_values():
    return values_files()["config.yaml"]


def chart_file(name):
    with open(os.path.join(support.testdata.testdata(f"z2jh-{CHART}"), name)) as f:
        return yaml.safe_load(f)


def helm_merge(base, override):
    """``override`` over ``base`` as helm merges values: maps key by key, a null removes."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def installed(*files):
    """The values helm renders with: the chart's defaults, then each file in turn."""
    values = chart_file("values.yaml")
    for file in files:
        values = helm_merge(values, file)
    return values


@functools.cache
def schema_validator():
    return jsonschema.Draft7Validator(chart_file("values.schema.yaml"))


def schema_errors(values):
    validator = schema_validator()
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


@pytest.fixture(scope="module")
def secrets_yaml(tmp_path_factory):
    """The ``secrets.yaml`` the page's shell lines write (run by sh in a directory of its own)."""
    (lines,) = [b for b in blocks("sh") if "> secrets.yaml" in b]
    directory = tmp_path_factory.mktemp("secrets")
    done = subprocess.run(
        ["sh", "-e", "-c", lines],
        cwd=directory,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    path = directory / "secrets.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the umask: nobody else reads it
    with open(path) as f:
        return yaml.safe_load(f)


def test_the_page_has_its_snippets():
    assert set(values_files()) == {"config.yaml", "config-hub-egress.yaml", "config-mysql.yaml"}
    assert len(blocks("yaml")) == 3
    assert len(blocks("python")) == 4
    assert len(blocks("dockerfile")) == 2


def test_the_page_names_the_current_chart_and_its_jupyterhub():
    """The chart version of the test data, the hub image of that version, and its JupyterHub."""
    text = page_text()
    app_version = chart_file("Chart.yaml")["appVersion"]
    major, minor = app_version.split(".")[:2]
    (helm,) = [b for b in blocks("sh") if "helm upgrade --install" in b]
    assert f"--version {CHART} " in helm
    assert re.findall(r"k8s-hub:(\S+)", text) == [CHART]
    assert re.findall(r"--version (\S+)", text) == [CHART]
    assert f"chart {CHART} is JupyterHub {major}.{minor}" in " ".join(text.split())
    # The chart's hub image comes from the chart's own release (its tag is the chart version).
    assert chart_file("values.yaml")["hub"]["image"]["name"] == "quay.io/jupyterhub/k8s-hub"
    scope_snippet(int(major))  # the scope lines of the chart's JupyterHub are there


@pytest.mark.parametrize("name", ["config.yaml", "config-hub-egress.yaml", "config-mysql.yaml"])
def test_each_values_file_passes_the_charts_schema(name):
    files = values_files()
    assert schema_errors(installed(files[name])) == []
    if name != "config.yaml":
        assert schema_errors(installed(files["config.yaml"], files[name])) == []


def test_the_written_secrets_pass_the_charts_schema_and_jupyterhubs_checks(secrets_yaml):
    assert schema_errors(installed(chart_values(), secrets_yaml)) == []
    cookie = secrets_yaml["hub"]["cookieSecret"]
    (key,) = secrets_yaml["hub"]["config"]["CryptKeeper"]["keys"]
    token = secrets_yaml["proxy"]["secretToken"]
    assert len(bytes.fromhex(cookie)) == 32  # JupyterHub's cookie secret: 32 bytes, hex
    assert len(JupyterHub(cookie_secret=cookie).cookie_secret) == 32  # as JupyterHub reads it
    assert len(_validate_key(key)) == 32  # a valid CryptKeeper key
    assert len({cookie, key, token}) == 3 and len(token) == 64
    # The chart would generate them; config.yaml does not hold any secret.
    values = chart_values()
    assert "cookieSecret" not in values["hub"] and "secretToken" not in values["proxy"]
    assert "CryptKeeper" not in values["hub"]["config"] and "password" not in values["hub"]["db"]


@pytest.mark.parametrize(
    "path, misspelled",
    [
        (("ingress",), {"tsl": [{"hosts": ["jupyter.corp.example.com"]}]}),
        (("hub", "db"), {"pasword": "secret"}),
        (("proxy", "service"), {"typ": "ClusterIP"}),
        (("singleuser", "networkPolicy"), {"egres": []}),
        (("hub", "networkPolicy", "egressAllowRules"), {"privateIP": False}),
        (("hub", "config"), {"kerberosTickets": {"delivery": "fetch"}}),
    ],
)
def test_the_schema_check_refuses_a_misspelled_key(path, misspelled):
    """The chart's schema allows no unknown key in these places: a typo fails the check."""
    values = installed(chart_values())
    node = values
    for key in path:
        node = node[key]
    node.update(misspelled)
    errors = schema_errors(values)
    (key,) = misspelled
    assert errors and all(e.startswith(".".join(path) + ":") for e in errors), errors
    assert any(repr(key) in e for e in errors), errors


# --- hub.config: the options of the classes it names ---------------------------------------


def configurable(name):
    known = {
        "JupyterHub": JupyterHub,
        "Authenticator": Authenticator,
        "CryptKeeper": CryptKeeper,
        "KerberosTickets": KerberosTickets,
    }
    for ep in entry_points(group="jupyterhub.authenticators"):
        if ep.value.startswith("kerbauth"):
            cls = ep.load()
            known[cls.__name__] = cls
    assert name in known, f"hub.config.{name}: not a class these tests know"
    return known[name]


def unknown_options(config):
    """The ``hub.config`` keys that are no configurable option of the class they are under."""
    return [
        f"{name}.{key}"
        for name, options in config.items()
        for key in options
        if key not in configurable(name).class_traits(config=True)
    ]


def test_every_hub_config_option_is_an_option_of_its_class(secrets_yaml):
    assert unknown_options(chart_values()["hub"]["config"]) == []
    assert unknown_options(secrets_yaml["hub"]["config"]) == []
    # The check can fail: the schema lets any key of a class through, this does not.
    typo = {"KerberosTickets": {"fetch_cache_path": "/tmp/x"}, "JupyterHub": {"db_kwarg": {}}}
    assert schema_errors(installed(chart_values(), {"hub": {"config": typo}})) == []
    assert unknown_options(typo) == ["KerberosTickets.fetch_cache_path", "JupyterHub.db_kwarg"]


# --- the scope ---------------------------------------------------------------------------


@pytest.fixture
def jupyterhub_scopes(monkeypatch):
    """JupyterHub's scope table, restored afterwards (custom scopes are defined globally)."""
    monkeypatch.setattr(scopes, "scope_definitions", dict(scopes.scope_definitions))
    return scopes


def check_server_role(role):
    """The ``server`` role: its default scopes and kerbauth's, for the server's own user."""
    (default,) = [r for r in roles.get_default_roles() if r["name"] == "server"]
    roles._validate_role_name(role["name"])
    scopes._check_scopes_exist(role["scopes"])
    assert f"{SCOPE}!user" in role["scopes"]
    assert set(default["scopes"]) <= set(role["scopes"])


def check_roles(load_roles):
    """The roles give the scope to users for themselves and to servers, keeping the defaults."""
    by_name = {role["name"]: role for role in load_roles}
    (user_default,) = [r for r in roles.get_default_roles() if r["name"] == "user"]
    user = by_name["user"]
    roles._validate_role_name(user["name"])
    scopes._check_scopes_exist(user["scopes"])
    assert f"{SCOPE}!user" in user["scopes"]
    assert set(user_default["scopes"]) <= set(user["scopes"])
    check_server_role(by_name["server"])


def strict_roles_snippet():
    (snippet,) = [b for b in blocks("python") if "may not make API tokens" in b]
    return snippet


def test_the_strict_roles_are_the_users_self_without_tokens(jupyterhub_scopes):
    """The roles that keep users from making tokens: ``self`` minus ``tokens``, and the scope."""
    c = run_python(scope_snippet(5))
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


def test_the_jupyterhub_5_lines_redefine_the_user_and_server_roles(jupyterhub_scopes):
    c = run_python(scope_snippet(5))
    assert c.JupyterHub.custom_scopes == SCOPE_DEFINITION
    assert "extra_user_scopes" not in c.JupyterHub
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    check_roles(c.JupyterHub.load_roles)


def test_the_jupyterhub_6_lines_add_the_scope_to_the_default_user_role(jupyterhub_scopes):
    """``extra_user_scopes`` for users, the ``server`` role as on 5, the ``user`` role untouched."""
    c = run_python(scope_snippet(6))
    assert c.JupyterHub.custom_scopes == SCOPE_DEFINITION
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    extra = list(c.JupyterHub.extra_user_scopes)
    assert extra == [f"{SCOPE}!user"]
    scopes._check_scopes_exist(extra)
    (server,) = c.JupyterHub.load_roles  # redefining "user" would make JupyterHub ignore extra
    assert server["name"] == "server"
    check_server_role(server)
    # The option is JupyterHub 6's; the 5 lines are the way on 5 (the hub tests run both).
    has_option = "extra_user_scopes" in JupyterHub.class_traits(config=True)
    assert has_option == (jupyterhub.version_info[0] >= 6)
    if has_option:
        assert JupyterHub(config=c).extra_user_scopes == set(extra)


# --- the chart's config.yaml -------------------------------------------------------------


def test_the_charts_config_yaml(jupyterhub_scopes, krb5_env, tmp_path):
    values = chart_values()
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
    assert not os.path.exists(authenticator.ccache_dir)  # the hub makes no cache directory
    # Admins by name and by directory group.
    assert "alice" in authenticator.admin_users
    assert authenticator.admin_groups == {"hub-admins"} and authenticator.group_search_base

    # The scope: defined in hub.config, granted by hub.loadRoles (the chart's dict form).
    assert c.JupyterHub.custom_scopes == SCOPE_DEFINITION
    scopes.define_custom_scopes(c.JupyterHub.custom_scopes)
    load_roles = [{"name": name, **role} for name, role in hub["loadRoles"].items()]
    check_roles(load_roles)
    assert run_python(scope_snippet(5)).JupyterHub.load_roles == load_roles

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

    # Proxy behind the Ingress, with TLS for the host it serves.
    assert values["proxy"]["service"]["type"] == "ClusterIP"
    ingress = values["ingress"]
    assert ingress["enabled"] is True and ingress["hosts"]
    (tls,) = ingress["tls"]
    assert tls["hosts"] == ingress["hosts"] and tls["secretName"]

    # The user image and its krb5.conf; no keytab ever in a user's pod.
    single = values["singleuser"]
    assert single["image"]["name"] and single["image"]["tag"]
    user_mounts = {m["name"]: m for m in single["storage"]["extraVolumeMounts"]}
    assert single["extraEnv"]["KRB5_CONFIG"].startswith(user_mounts["krb5-conf"]["mountPath"])
    assert all(secret != v["name"] for v in single["storage"]["extraVolumes"])


# --- the database ------------------------------------------------------------------------


DRIVERS = {  # what the page's URLs name, and the pip package of each driver
    "postgres": ("postgresql+psycopg", '"psycopg[binary]"'),
    "mysql": ("mysql+pymysql", "PyMySQL"),
}


def db_password_env(hub):
    """The name of the hub's variable from the Secret ``jupyterhub-db`` (its key ``password``)."""
    (name,) = [
        name
        for name, value in hub["extraEnv"].items()
        if isinstance(value, dict)
        and value["valueFrom"]["secretKeyRef"] == {"name": "jupyterhub-db", "key": "password"}
    ]
    return name


def hub_db_url(hub, environ):
    """``c.JupyterHub.db_url`` after the page's ``hub.extraConfig``, run with ``environ``.

    As in the chart's hub, ``c.JupyterHub.db_url`` is ``hub.db.url`` when the
    extra configuration runs. ``os.environ`` is ``environ`` for the snippet
    alone: no password goes into this process's environment.
    """
    (code,) = hub["extraConfig"].values()
    fake_os = types.SimpleNamespace(environ=environ)

    def imports(name, *args, **kwargs):
        return fake_os if name == "os" else __import__(name, *args, **kwargs)

    c = Config()
    c.JupyterHub.db_url = hub["db"]["url"]
    own_builtins = {**vars(builtins), "__import__": imports}
    exec(compile(code, PAGE, "exec"), {"c": c, "__builtins__": own_builtins})  # noqa: S102
    return c.JupyterHub.db_url


def test_the_database_urls_name_the_drivers_the_hub_image_installs():
    files = values_files()
    (hub_image, _) = blocks("dockerfile")
    (pip,) = [line for line in hub_image.splitlines() if "pip install" in line]
    (secret,) = [b for b in blocks("sh") if "create secret generic jupyterhub-db" in b]
    assert "--from-file=password=" in secret  # the password on no command line
    for values in (installed(files["config.yaml"]), installed(*files.values())):
        db = values["hub"]["db"]
        url = make_url(db["url"])
        driver, package = DRIVERS[db["type"]]
        assert url.drivername == driver and url.password is None
        assert url.get_dialect().import_dbapi()  # SQLAlchemy's dialect imports the driver
        assert package in pip.split()
        assert not db.get("password")  # from the Secret, not from config.yaml
        # The password joins the URL, escaped; the rest of the URL is unchanged.
        password = "p@ss:w/rd%#?&=é"
        joined = make_url(hub_db_url(values["hub"], {db_password_env(values["hub"]): password}))
        assert joined.password == password
        parts = ("drivername", "username", "host", "port", "database", "query")
        assert [getattr(joined, p) for p in parts] == [getattr(url, p) for p in parts]


@pytest.mark.parametrize(
    "kind, files",
    [("postgresql", ["config.yaml"]), ("mariadb", ["config.yaml", "config-mysql.yaml"])],
)
def test_the_database_settings_log_the_hub_in_to_a_real_server(kind, files, hub_database):
    """The documented URL (its host this test's server) and the password from the Secret.

    JupyterHub's own session factory opens the new database, makes its tables
    and stamps it with alembic (a connection made from the URL alone), with
    the URL of the page's ``hub.extraConfig`` and the variable the Secret
    fills; without that password the server refuses the hub.
    """
    pages = values_files()
    hub = installed(*(pages[name] for name in files))["hub"]
    database = hub_database(kind)
    documented = make_url(hub["db"]["url"])
    assert documented.drivername == database.driver
    assert (documented.username, documented.database) == ("jupyterhub", "jupyterhub")
    # This test's server in place of the site's host; the rest as documented.
    hub["db"]["url"] = documented.set(host="127.0.0.1", port=database.port).render_as_string()
    url = hub_db_url(hub, {db_password_env(hub): database.password})

    # A new database: JupyterHub makes its tables and stamps it (alembic, from the URL alone).
    session_factory = orm.new_session_factory(url)
    engine = session_factory.kw["bind"]
    try:
        with session_factory() as db:
            assert db.query(orm.User).count() == 0
        assert "users" in sqlalchemy.inspect(engine).get_table_names()
        if kind == "mariadb":
            with engine.connect() as connection:
                charset = connection.exec_driver_sql("SELECT @@character_set_client").scalar()
            assert charset == "utf8mb4"  # the URL's charset=utf8mb4
    finally:
        engine.dispose()

    # Without the Secret's password, the documented URL is refused.
    with pytest.raises(sqlalchemy.exc.OperationalError):
        orm.new_session_factory(hub["db"]["url"])


# --- the network policies ----------------------------------------------------------------

PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
METADATA = ipaddress.ip_address("169.254.169.254")


def _private(ip):
    return any(ip in network for network in PRIVATE)


def _peer_matches(peer, ip):
    block = peer["ipBlock"]  # the page opens addresses, not pods
    inside = ip in ipaddress.ip_network(block["cidr"])
    return inside and not any(ip in ipaddress.ip_network(n) for n in block.get("except", []))


def _port_matches(rule_port, protocol, port):
    low = rule_port["port"]
    high = rule_port.get("endPort", low)
    return rule_port.get("protocol", "TCP") == protocol and low <= port <= high


def _rule_allows(rule, peers_key, ip, protocol, port):
    peers = rule.get(peers_key) or []
    ports = rule.get("ports") or []
    return (not peers or any(_peer_matches(p, ip) for p in peers)) and (
        not ports or any(_port_matches(p, protocol, port) for p in ports)
    )


def egress_allowed(policy, address, protocol, port):
    """Whether the chart's NetworkPolicy of ``policy`` (values) lets a pod connect out.

    The allow rules as the chart's schema describes them, and the ``egress``
    rules as Kubernetes applies them (any peer, any port of a rule).
    """
    ip = ipaddress.ip_address(address)
    allow = policy["egressAllowRules"]
    if allow["nonPrivateIPs"] and not _private(ip) and ip != METADATA:
        return True
    if allow["privateIPs"] and _private(ip):
        return True
    if allow["dnsPortsPrivateIPs"] and _private(ip) and port == 53:
        return True
    return any(_rule_allows(rule, "to", ip, protocol, port) for rule in policy["egress"])


def ingress_allowed(policy, address, protocol, port):
    """Whether a connection from ``address`` to the pod is allowed by the ``ingress`` rules."""
    ip = ipaddress.ip_address(address)
    return any(_rule_allows(rule, "from", ip, protocol, port) for rule in policy["ingress"])


KDCS = ["10.20.0.10", "10.20.0.11"]
LDAP = ["10.20.0.20", "10.20.0.21"]
HADOOP = ["10.30.0.5", "10.30.0.200"]
HADOOP_PORTS = [8020, 9820, 9870, 9866, 9864, 8032, 8030, 8088, 10000, 8998]
NOTEBOOKS_NEED = (
    [(kdc, proto, port) for kdc in KDCS for proto in ("TCP", "UDP") for port in (88, 464)]
    + [(server, "TCP", port) for server in LDAP for port in (389, 636)]
    + [(node, "TCP", port) for node in HADOOP for port in HADOOP_PORTS]
)
STILL_CLOSED = [  # what the page does not open stays closed: privateIPs stays false
    ("10.20.0.10", "TCP", 22),
    ("10.30.0.5", "TCP", 22),
    ("10.96.0.50", "TCP", 8020),  # a service of the cluster's own
    ("192.168.1.10", "TCP", 88),
    ("172.16.0.1", "TCP", 10000),
]


def test_user_pods_reach_the_kdc_ldap_and_hadoop_only_when_the_page_opens_them():
    default = installed()["singleuser"]["networkPolicy"]
    policy = installed(chart_values())["singleuser"]["networkPolicy"]
    # The chart's default: public addresses and DNS yes, the private services no.
    assert egress_allowed(default, "203.0.113.7", "TCP", 443)
    assert egress_allowed(default, "10.20.0.53", "UDP", 53)
    assert [need for need in NOTEBOOKS_NEED if egress_allowed(default, *need)] == []
    # The page's egress opens each of them, and nothing else private.
    assert [need for need in NOTEBOOKS_NEED if not egress_allowed(policy, *need)] == []
    assert [other for other in STILL_CLOSED if egress_allowed(policy, *other)] == []
    assert policy["egressAllowRules"]["privateIPs"] is False
    # Spark's executors and ApplicationMaster reach the driver's two fixed ports, only those.
    assert ingress_allowed(policy, "10.30.0.5", "TCP", 7078)
    assert ingress_allowed(policy, "10.30.0.200", "TCP", 7079)
    assert not ingress_allowed(policy, "10.30.0.5", "TCP", 8888)
    assert not ingress_allowed(policy, "10.20.0.10", "TCP", 7078)
    assert not ingress_allowed(default, "10.30.0.5", "TCP", 7078)


HUB_NEEDS = (
    [(kdc, proto, 88) for kdc in KDCS for proto in ("TCP", "UDP")]
    + [(server, "TCP", port) for server in LDAP for port in (389, 636)]
    + [("10.20.0.30", "TCP", 5432), ("10.20.0.30", "TCP", 3306), ("10.0.0.2", "TCP", 6443)]
)


def test_the_hub_pod_reaches_what_it_talks_to_with_the_default_and_the_narrowed_policy():
    files = values_files()
    default = installed(files["config.yaml"])["hub"]["networkPolicy"]
    narrowed = installed(files["config.yaml"], files["config-hub-egress.yaml"])["hub"]
    policy = narrowed["networkPolicy"]
    assert [need for need in HUB_NEEDS if not egress_allowed(default, *need)] == []
    assert [need for need in HUB_NEEDS if not egress_allowed(policy, *need)] == []
    # Narrowed: private addresses the hub does not talk to are closed.
    assert not egress_allowed(policy, "10.30.0.5", "TCP", 8020)
    assert not egress_allowed(policy, "10.20.0.10", "TCP", 464)
    assert egress_allowed(default, "10.30.0.5", "TCP", 8020)
    # The database port it opens is the one of the URL (either kind).
    for values in (installed(files["config.yaml"]), installed(*files.values())):
        port = make_url(values["hub"]["db"]["url"]).port
        assert egress_allowed(policy, "10.20.0.30", "TCP", port)


# --- the other snippets ------------------------------------------------------------------


def test_the_dockerspawner_config_configures_the_installed_authenticator(krb5_env):
    snippet = next(b for b in blocks("python") if "DockerSpawner" in b)
    c = run_python(snippet)
    authenticator = authenticator_from(c)
    assert authenticator.delivery == "fetch"
    assert c.JupyterHub.spawner_class == "docker"
    assert c.JupyterHub.hub_connect_ip


def test_the_dockerfiles_build_on_the_charts_hub_image_and_install_kerbauth():
    hub_image, user_image = blocks("dockerfile")
    assert re.match(rf"FROM quay\.io/jupyterhub/k8s-hub:{re.escape(CHART)}\n", hub_image)
    # The hub image's own Python (where the chart's JupyterHub is), by its pip.
    assert re.search(r"^RUN python3 -m pip install --no-cache-dir kerbauth\b", hub_image, re.M)
    assert re.search(r"pip install --no-cache-dir kerbauth\b", user_image)
    for dockerfile in (hub_image, user_image):
        assert "krb5-user" in dockerfile
        assert re.search(r"^USER (1000|\$\{NB_UID\})$", dockerfile, re.MULTILINE)
