"""Java clients for the tests: the programs in tests/support/java/, on pyspark's jars.

The pyspark package carries the jars of a Spark distribution, Hadoop's client
among them (``UserGroupInformation``, ``KerberosAuthenticator``): what a
notebook's JVM runs. ``java_client`` (session-scoped) compiles every program
in tests/support/java/ once into a directory any user can read, and returns
``argv(main_class, *args, jvm_options=(), hadoop=True)``, the command that
runs one of them (``hadoop=False``: without pyspark's jars). The doctor's
``JvmLogin`` (kerbauth/doctor/java), the plain JAAS/GSS client, is compiled
with them.

The JDK reads ``KRB5CCNAME`` (with its ``FILE:`` prefix) itself, but not
``KRB5_CONFIG``: the test realm's krb5.conf is handed over with
``-Djava.security.krb5.conf`` (:func:`krb5_conf_option`), as a site whose
krb5.conf is not /etc/krb5.conf would do.
"""

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

JAVA_SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java")


def spark_home():
    """The pyspark package's directory: a Spark home with ``jars/``."""
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def jars():
    return os.path.join(spark_home(), "jars")


# Of pyspark's jars, the ones Hadoop's client classes need (UGI, AuthenticatedURL):
# the same classes the notebook's JVM loads, at half the start-up time of all
# ~250 jars on the class path.
HADOOP_CLIENT_JARS = ("hadoop-client-api-*.jar", "hadoop-client-runtime-*.jar", "slf4j-api-*.jar")


def hadoop_classpath():
    found = [sorted(glob.glob(os.path.join(jars(), pattern))) for pattern in HADOOP_CLIENT_JARS]
    assert all(found), f"pyspark's jars lack one of {HADOOP_CLIENT_JARS}"
    return ":".join(paths[-1] for paths in found)


def krb5_conf_option(env):
    """The JVM option that points the JDK at the krb5.conf named by ``env["KRB5_CONFIG"]``."""
    return f"-Djava.security.krb5.conf={env['KRB5_CONFIG']}"


@pytest.fixture(scope="session")
def java_client():
    out = tempfile.mkdtemp(prefix="kerbauth-java-")
    try:
        os.chmod(out, 0o755)
        # With the doctor's JvmLogin (the plain JAAS/GSS client), which kerbauth ships.
        from kerbauth.doctor.hadoop import JVM_LOGIN_SOURCE

        sources = [*sorted(glob.glob(os.path.join(JAVA_SOURCES, "*.java"))), JVM_LOGIN_SOURCE]
        if sources:
            subprocess.run(
                ["javac", "-J-XX:-UsePerfData", "-nowarn", "-cp", hadoop_classpath(), "-d", out]
                + sources,
                check=True,
                capture_output=True,
                text=True,
            )
        for root, dirs, files in os.walk(out):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)

        def argv(main_class, *args, jvm_options=(), hadoop=True):
            # hadoop=False: the JDK alone (a plain JAAS/GSS client starts faster without jars/).
            classpath = f"{out}:{hadoop_classpath()}" if hadoop else out
            # No perf data file: a JVM leaves /tmp/hsperfdata_<user> behind otherwise.
            return ["java", "-XX:-UsePerfData", *jvm_options, "-cp", classpath, main_class, *args]

        yield argv
    finally:
        shutil.rmtree(out, ignore_errors=True)
