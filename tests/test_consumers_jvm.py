"""The JVM takes the user's ticket: Hadoop's UserGroupInformation and a plain JAAS/GSS client.

In a real hub, with the user's real spawned server, in each way kerbauth
gives a ticket (:data:`support.served.MODES`: a keytab with the file
delivery, the login password, the fetch delivery), each client runs as the
user with only the server's environment (``KRB5CCNAME`` as the server has it)
and a ``HADOOP_CONF_DIR`` whose core-site.xml asks for Kerberos, as a
notebook's kernel has:

- ``Ugi`` (tests/support/java): Hadoop's login user from pyspark's own jars,
  which is what pyspark's JVM uses for HDFS and YARN;
- ``JvmLogin`` (the doctor's program, kerbauth/doctor/java): a JAAS login
  with the JDK's Krb5LoginModule from the ticket cache, then GSS-API
  credentials for initiating, which SPNEGO and SASL/GSSAPI clients use.

Pointed at an empty cache path, both report failure (once, in the keytab
mode: the clients read only ``KRB5CCNAME``). The JDK is pointed at the
realm's krb5.conf with ``-Djava.security.krb5.conf`` (it does not read
``KRB5_CONFIG``); without it, Hadoop cannot map the principal to a user name
at all.
"""

import os
import re
import shutil
import tempfile
import time

import pytest

from support.jvm import krb5_conf_option
from support.served import MODES

CORE_SITE = """<?xml version="1.0"?>
<configuration>
  <property><name>hadoop.security.authentication</name><value>kerberos</value></property>
</configuration>
"""


@pytest.fixture
def hadoop_conf_dir():
    """A Hadoop client configuration that asks for Kerberos, readable by any user."""
    path = tempfile.mkdtemp(prefix="kerbauth-hadoop-conf-")
    try:
        os.chmod(path, 0o755)
        core_site = os.path.join(path, "core-site.xml")
        with open(core_site, "w") as f:
            f.write(CORE_SITE)
        os.chmod(core_site, 0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def jvm_options(served):
    # C1 only: short runs start about twice as fast on a busy host.
    return (krb5_conf_option(served.realm.env), "-XX:TieredStopAtLevel=1")


def last_line(result):
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("mode", MODES)
def test_hadoop_ugi_and_jaas_log_in_as_the_user(mode, served, java_client, hadoop_conf_dir):
    s = served(mode)
    options = jvm_options(s)
    ugi_argv = java_client("Ugi", jvm_options=options)
    jaas_argv = java_client("JvmLogin", jvm_options=options, hadoop=False)
    hadoop = {"HADOOP_CONF_DIR": hadoop_conf_dir}

    ugi = s.run(ugi_argv, env=hadoop)
    assert last_line(ugi) == f"ok principal={s.principal} auth=KERBEROS credentials=true", (
        ugi.stdout + ugi.stderr
    )
    assert ugi.returncode == 0

    jaas = s.run(jaas_argv)
    left = s.ticket().end - time.time()
    match = re.fullmatch(
        rf"ok principal={re.escape(s.principal)} lifetime=(\d+) realm={s.realm.realm}",
        last_line(jaas),
    )
    assert match, jaas.stdout + jaas.stderr
    assert jaas.returncode == 0
    # The credential's remaining life is the ticket's in the server's cache (read as root).
    assert left - 120 < int(match[1]) <= left + 5

    if mode == "keytab":
        # The same clients, pointed at an empty cache path, report failure: what they
        # reported above is the server's ticket (they read only KRB5CCNAME, in every mode).
        empty = {"KRB5CCNAME": f"FILE:{s.account.home}/no-ticket"}
        ugi = s.run(ugi_argv, env={**hadoop, **empty})
        assert ugi.returncode == 1, ugi.stdout + ugi.stderr
        # Hadoop falls back to the OS user name, unauthenticated.
        assert last_line(ugi) == f"failed principal={s.name} auth=SIMPLE credentials=false"
        jaas = s.run(jaas_argv, env=empty)
        assert jaas.returncode == 1, jaas.stdout + jaas.stderr
        assert last_line(jaas) == (
            "failed LoginException: Unable to obtain Principal Name for authentication"
        )
