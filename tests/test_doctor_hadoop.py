"""``kerbauth doctor --hadoop-conf-dir``: the Hadoop configuration, and a real JVM's login.

The doctor runs as its console script, as root, on a real realm and a real
local user whose keytab gives the ticket; the ``jvm`` check starts the JDK
installed here as that user. Each broken case asserts the line that names
the fault and its hint.
"""

import os
import shutil
import sys
import tempfile

import pytest

from support.consumers import CORE_SITE as KERBEROS_CORE_SITE
from support.doctor import run_doctor
from support.realm import add_principal, start_realm

SIMPLE_CORE_SITE = KERBEROS_CORE_SITE.replace(">kerberos<", ">simple<")


@pytest.fixture
def site_dir():
    """The config file, the keytab and the Hadoop configuration, reachable by a test user."""
    path = tempfile.mkdtemp(prefix="kerbauth-doctor-hadoop-")
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def hadoop_conf(site_dir, core_site=KERBEROS_CORE_SITE):
    conf_dir = os.path.join(site_dir, "hadoop")
    os.makedirs(conf_dir, exist_ok=True)
    write(os.path.join(conf_dir, "core-site.xml"), core_site)
    return conf_dir


def kerberos_site(k5, site_dir, name, *lines):
    """A PAM-mode config whose keytab (root's, 0600) holds ``name``'s key."""
    add_principal(k5, name, os.path.join(site_dir, f"{name}.keytab"))
    os.mkdir(os.path.join(site_dir, "cc"), 0o711)
    return write(
        os.path.join(site_dir, "jupyterhub_config.py"),
        "\n".join(
            [
                "c.JupyterHub.authenticator_class = 'kerberos-pam'",
                f"c.KerberosTickets.keytab_template = '{site_dir}/{{username}}.keytab'",
                f"c.KerberosTickets.ccache_dir = '{site_dir}/cc'",
                "c.KerberosTickets.kinit_path = '/usr/bin/kinit'",
                *lines,
            ]
        )
        + "\n",
    )


def doctor_env(krb5_config, **extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KRB5CCNAME", "HADOOP_CONF_DIR", "JAVA_HOME", "JDK_JAVA_OPTIONS")
    }
    return {**env, "KRB5_CONFIG": krb5_config, **extra}


def test_kerberos_hadoop_conf_and_a_jvm_login_as_the_user(realm, site_dir, make_user):
    user = make_user()
    config = kerberos_site(realm, site_dir, user.name)
    conf_dir = hadoop_conf(site_dir)
    env = doctor_env(realm.env["KRB5_CONFIG"])
    args = ("--user", user.name, "--hadoop-conf-dir", conf_dir)
    code, lines, output = run_doctor(config, env, *args)
    assert code == 0, output
    status, line = lines["hadoop"]
    assert status == "ok", output
    assert f"{conf_dir}/core-site.xml sets hadoop.security.authentication = kerberos" in line
    status, line = lines["jvm"]
    assert status == "ok", output
    principal = f"{user.name}@{realm.realm}"
    java = shutil.which("java")
    assert f"a JVM ({java}, uid {user.uid}) logged in from {user.name}'s cache as {principal}" in (
        line
    )
    assert f"(krb5.conf: {realm.env['KRB5_CONFIG']}, default realm {realm.realm})" in line
    assert list(lines)[-2:] == ["hadoop", "jvm"]  # after the ticket, PAM mode has no LDAP lines
    # The JVM wrote no perf data file in /tmp; the doctor's cache went with its directory.
    assert not os.path.exists(f"/tmp/hsperfdata_{user.name}")
    assert os.listdir(os.path.join(site_dir, "cc")) == []
    # The default is $HADOOP_CONF_DIR, as for Hadoop's own commands.
    _, lines, output = run_doctor(config, {**env, "HADOOP_CONF_DIR": conf_dir})
    assert lines["hadoop"][0] == "ok", output
    assert lines["jvm"][0] == "skip", output
    assert "give --user NAME" in lines["jvm"][1]


def test_a_hadoop_conf_without_kerberos_or_missing_is_the_problem(realm, site_dir):
    config = kerberos_site(realm, site_dir, "kbdoc-nobody")
    env = doctor_env(realm.env["KRB5_CONFIG"])
    conf_dir = hadoop_conf(site_dir, SIMPLE_CORE_SITE)
    code, lines, output = run_doctor(config, env, "--hadoop-conf-dir", conf_dir)
    assert code == 1, output
    core_site = os.path.join(conf_dir, "core-site.xml")
    assert lines["hadoop"][1] == (
        f"problem hadoop      {core_site} sets hadoop.security.authentication to 'simple', not"
        " 'kerberos': Hadoop clients would not use the user's Kerberos ticket  hint: use the"
        " cluster's client configuration, whose core-site.xml sets"
        " hadoop.security.authentication = kerberos"
    ), output
    missing = os.path.join(site_dir, "no-such-dir")
    code, lines, output = run_doctor(config, env, "--hadoop-conf-dir", missing)
    assert code == 1, output
    assert lines["hadoop"][1].startswith(
        f"problem hadoop      the Hadoop configuration directory {missing} does not exist  hint:"
    ), output
    # Not asked about at all: a Skip saying how to ask, and no JVM either.
    code, lines, output = run_doctor(config, env)
    assert code == 0, output
    assert lines["hadoop"] == (
        "skip",
        "skip    hadoop      give --hadoop-conf-dir DIR (or set HADOOP_CONF_DIR) to check"
        " Hadoop's clients",
    )
    assert lines["jvm"][0] == "skip"


def test_no_java_or_a_jre_is_a_skip_saying_so(realm, site_dir, make_user):
    user = make_user()
    config = kerberos_site(realm, site_dir, user.name)
    conf_dir = hadoop_conf(site_dir)
    args = ("--user", user.name, "--hadoop-conf-dir", conf_dir)
    # No JAVA_HOME and no java on PATH (the doctor's own console script and Python only).
    env = doctor_env(realm.env["KRB5_CONFIG"], PATH=os.path.dirname(sys.executable))
    code, lines, output = run_doctor(config, env, *args)
    assert lines["ticket"][0] == "ok", output
    assert lines["jvm"] == (
        "skip",
        "skip    jvm         no Java here (JAVA_HOME is not set and no java on PATH): no JVM"
        " login checked",
    ), output
    assert code == 0, output
    # A JAVA_HOME without bin/java is the problem, not a Skip: Hadoop's scripts use it.
    code, lines, output = run_doctor(config, {**env, "JAVA_HOME": site_dir}, *args)
    assert code == 1, output
    assert lines["jvm"][1] == (
        f"problem jvm         JAVA_HOME is {site_dir}, with no {site_dir}/bin/java  hint: fix"
        " JAVA_HOME"
    )
    # The JDK without its compiler module is what a JRE is to the java launcher (the same
    # "Module jdk.compiler not in boot Layer" as a jlink'ed runtime): no source launcher.
    jre = "--limit-modules java.base,java.security.jgss,jdk.security.auth"
    env = doctor_env(realm.env["KRB5_CONFIG"], JDK_JAVA_OPTIONS=jre)
    code, lines, output = run_doctor(config, env, *args)
    assert code == 0, output
    java = shutil.which("java")
    assert lines["jvm"][1] == (
        f"skip    jvm         {java} is a JRE (no jdk.compiler module): the JVM login check"
        " needs a JDK"
    ), output


def test_a_ticket_the_jdk_cannot_use_is_the_jvm_problem(site_dir, make_user):
    """A KDC that gives camellia session keys: MIT's library takes the ticket (the ticket
    line is ok), the JDK, which has no camellia, finds no ticket it can use in the cache."""
    user = make_user()
    k5 = start_realm(
        kdc_conf={
            "realms": {
                "$realm": {"supported_enctypes": "camellia256-cts-cmac:normal aes256-cts:normal"}
            }
        }
    )
    try:
        with open(k5.env["KRB5_CONFIG"]) as f:
            text = f.read()
        krb5_conf = write(
            os.path.join(site_dir, "krb5.conf"),
            text.replace(
                "[libdefaults]\n", "[libdefaults]\n\tdefault_tkt_enctypes = camellia256-cts-cmac\n"
            ),
        )
        config = kerberos_site(k5, site_dir, user.name)
        conf_dir = hadoop_conf(site_dir)
        code, lines, output = run_doctor(
            config, doctor_env(krb5_conf), "--user", user.name, "--hadoop-conf-dir", conf_dir
        )
    finally:
        k5.stop()
    assert code == 1, output
    assert lines["ticket"][0] == "ok", output
    principal = f"{user.name}@{k5.realm}"
    assert lines["jvm"][1] == (
        f"problem jvm         a JVM cannot log in from {user.name}'s cache of {principal}:"
        " LoginException: Unable to obtain Principal Name for authentication  hint: the JDK"
        " found no ticket it can use in the cache: none, an expired one, or one whose"
        " encryption type it refuses (klist -e shows it: the JDK has no camellia, and refuses"
        " des3 and rc4-hmac unless allow_weak_crypto): make the KDC issue aes tickets"
    ), output


def test_a_jdk_default_realm_hadoop_cannot_map_is_the_jvm_problem(realm, site_dir, make_user):
    """The krb5.conf the JVM reads names another default realm: the JAAS login works, but
    Hadoop's default auth_to_local maps only the default realm's principals to user names
    (UGI fails with "No rules applied"); with an auth_to_local of the site's, it is fine."""
    user = make_user()
    with open(realm.env["KRB5_CONFIG"]) as f:
        text = f.read()
    other = text.replace(f"default_realm = {realm.realm}", "default_realm = OTHER.TEST")
    assert other != text
    krb5_conf = write(os.path.join(site_dir, "krb5.conf"), other)
    config = kerberos_site(realm, site_dir, user.name, f"c.KerberosTickets.realm = '{realm.realm}'")
    conf_dir = hadoop_conf(site_dir)
    args = ("--user", user.name, "--hadoop-conf-dir", conf_dir)
    code, lines, output = run_doctor(config, doctor_env(krb5_conf), *args)
    assert code == 1, output
    principal = f"{user.name}@{realm.realm}"
    assert lines["jvm"][1] == (
        f"problem jvm         a JVM logged in as {principal}, but the JDK's default realm is"
        f' OTHER.TEST (krb5.conf: {krb5_conf}): Hadoop maps no user name to {principal} ("No'
        f' rules applied")  hint: set default_realm = {realm.realm} in the krb5.conf the JVMs'
        " read (-Djava.security.krb5.conf or /etc/krb5.conf, never KRB5_CONFIG), or map"
        f" {realm.realm} with hadoop.security.auth_to_local in core-site.xml"
    ), output
    mapped = KERBEROS_CORE_SITE.replace(
        "</configuration>",
        "  <property><name>hadoop.security.auth_to_local</name>"
        f"<value>RULE:[1:$1@$0](.*@{realm.realm})s/@.*//\nDEFAULT</value></property>\n"
        "</configuration>",
    )
    hadoop_conf(site_dir, mapped)
    code, lines, output = run_doctor(config, doctor_env(krb5_conf), *args)
    assert code == 0, output
    assert lines["jvm"][0] == "ok", output
    assert "default realm OTHER.TEST" in lines["jvm"][1]
