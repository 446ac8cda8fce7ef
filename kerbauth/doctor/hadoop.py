"""The checks for Hadoop's clients: the Hadoop configuration, and a JVM's login from the cache.

- ``hadoop``: the ``core-site.xml`` of ``--hadoop-conf-dir`` (default
  ``$HADOOP_CONF_DIR``) sets ``hadoop.security.authentication`` to
  ``kerberos`` (:func:`kerbauth.spark.hadoop.check_kerberos`); without it,
  pyspark's ``UserGroupInformation`` ignores the user's ticket.
- ``jvm``: for a site with Hadoop's clients (a Hadoop configuration is given),
  when Java is installed (``$JAVA_HOME/bin/java``, or ``java`` on
  PATH), a JVM running as the user logs in from a cache holding the ticket
  the ``ticket`` check got: a JAAS login with the JDK's ``Krb5LoginModule``
  from that cache (no keytab, no password), then the GSS-API credential it
  gives, as Hadoop, SPNEGO and JDBC clients do. The program is
  ``java/JvmLogin.java`` beside this module, run by the JDK's source
  launcher; on a JRE (no ``jdk.compiler`` module) or a Java older than 11
  the check is a Skip saying so. The JDK finds krb5.conf on its own (its
  ``java.security.krb5.conf`` property, or /etc/krb5.conf) and never reads
  ``KRB5_CONFIG``: when that is set, the JVM is given
  ``-Djava.security.krb5.conf`` with its first file, as a site's JVMs would
  need. The JDK's default realm must be the user's (Hadoop's default
  ``auth_to_local`` maps no other realm to user names) unless core-site.xml
  sets ``hadoop.security.auth_to_local``.
"""

import os
import pwd
import shutil
import subprocess

from kerbauth.core.backends.children import check_run_as
from kerbauth.core.backends.scratch import HubScratch
from kerbauth.core.errors import TicketError
from kerbauth.doctor.outcome import OK, PROBLEM, Skip
from kerbauth.spark.hadoop import AUTHENTICATION, HadoopConfError, check_kerberos, properties

__all__ = ["JVM_LOGIN_SOURCE", "JVM_FLOOR", "check_hadoop_conf", "check_jvm_login", "find_java"]

JVM_LOGIN_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java", "JvmLogin.java")
# The JVM's time at least, whatever --timeout says: the source launcher compiles
# the program before it runs (2-4 s on a busy host).
JVM_FLOOR = 30.0
# What the JVM keeps of the doctor's environment: no KRB5CCNAME (the cache is
# named on its command line), nothing with a secret. JAVA_TOOL_OPTIONS and
# JDK_JAVA_OPTIONS are how an administrator sets options for every JVM.
_JAVA_KEPT = ("PATH", "LANG", "TZ", "JAVA_HOME", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")
# No perf data file (it would stay in /tmp/hsperfdata_<user>); C1 only, which
# compiles and runs the short program about twice as fast.
_JVM_OPTIONS = ("-XX:-UsePerfData", "-XX:TieredStopAtLevel=1")
_CACHE_NAME = "krb5cc"
_SOURCE_NAME = os.path.basename(JVM_LOGIN_SOURCE)
# Hadoop's rules from principals to user names; the default maps only the
# principals of the JDK's default realm.
AUTH_TO_LOCAL = "hadoop.security.auth_to_local"

_NO_TICKET_HINT = (
    "the JDK found no ticket it can use in the cache: none, an expired one, or one whose"
    " encryption type it refuses (klist -e shows it: the JDK has no camellia, and refuses"
    " des3 and rc4-hmac unless allow_weak_crypto): make the KDC issue aes tickets"
)
_KRB5_CONF_HINT = (
    "the JDK reads -Djava.security.krb5.conf=FILE or /etc/krb5.conf, never KRB5_CONFIG:"
    " give the JVMs the hub's krb5.conf (JAVA_TOOL_OPTIONS, spark.driver.extraJavaOptions)"
)
# Words of the JDK's failures -> what to do about them.
_JVM_HINTS = (
    ("Unable to obtain Principal Name", _NO_TICKET_HINT),
    ("default realm", _KRB5_CONF_HINT),
    ("krb5.conf", _KRB5_CONF_HINT),
)


def check_hadoop_conf(site):
    if not site.hadoop_conf_dir:
        raise Skip("give --hadoop-conf-dir DIR (or set HADOOP_CONF_DIR) to check Hadoop's clients")
    try:
        path = check_kerberos(os.path.abspath(site.hadoop_conf_dir))
        site.facts["hadoop_properties"] = properties(path)
    except HadoopConfError as e:
        return (
            PROBLEM,
            str(e),
            "use the cluster's client configuration, whose core-site.xml sets"
            f" {AUTHENTICATION} = kerberos",
        )
    return (OK, f"{path} sets {AUTHENTICATION} = kerberos", "")


def find_java(environ=None):
    """The ``java`` a Hadoop client would run: ``$JAVA_HOME/bin/java``, else ``java`` on PATH.

    None when there is neither; a JAVA_HOME without an executable ``bin/java``
    is returned as it is, for the check to say so.
    """
    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    if home:
        return os.path.join(home, "bin", "java")
    return shutil.which("java", path=environ.get("PATH", os.defpath))


def _krb5_conf_option(environ):
    paths = [p for p in environ.get("KRB5_CONFIG", "").split(":") if p]
    return [f"-Djava.security.krb5.conf={paths[0]}"] if paths else []


def check_jvm_login(site):
    if not site.hadoop_conf_dir:
        raise Skip("give --hadoop-conf-dir DIR (or set HADOOP_CONF_DIR) to check a JVM's login")
    java = find_java()
    if java is None:
        raise Skip("no Java here (JAVA_HOME is not set and no java on PATH): no JVM login checked")
    if not os.access(java, os.X_OK):
        return (PROBLEM, f"JAVA_HOME is {os.environ['JAVA_HOME']}, with no {java}", "fix JAVA_HOME")
    if site.username is None:
        raise Skip("give --user NAME to check that a JVM logs in from their ticket")
    got = site.facts.get("ticket")
    if got is None:
        raise Skip("needs the ticket the ticket line gets")
    data, principal, uid, gid = got
    options = _krb5_conf_option(os.environ)
    krb5_conf = options[0].partition("=")[2] if options else "the JDK's own krb5.conf"
    timeout = max(site.timeout, JVM_FLOOR)
    try:
        with open(JVM_LOGIN_SOURCE, "rb") as f:
            source = f.read()
        run_as = check_run_as((uid, gid)) if uid != os.geteuid() else None
        # The program beside the cache, in a private directory of the user's: the JVM
        # runs as them, who may not be able to read the doctor's installation.
        with HubScratch(run_as) as scratch:
            scratch.write(_CACHE_NAME, data)
            scratch.write(_SOURCE_NAME, source)
            scratch.hand_over()
            program = os.path.join(scratch.path, _SOURCE_NAME)
            argv = [java, *_JVM_OPTIONS, *options, program]
            result = _run_java(argv + [os.path.join(scratch.path, _CACHE_NAME)], run_as, timeout)
    except TicketError as e:
        return (PROBLEM, f"cannot run a JVM as uid {uid}: {e.detail}", "")
    except subprocess.TimeoutExpired:
        return (PROBLEM, f"{java} did not log in within {timeout:g} s", "")
    except OSError as e:
        return (PROBLEM, f"cannot run {java}: {e}", "")
    output = result.stdout.strip().splitlines()
    last = output[-1] if output else ""
    if result.returncode == 0 and last.startswith("ok "):
        fields = dict(word.partition("=")[::2] for word in last.split()[1:])
        if fields.get("principal") != principal:
            return (
                PROBLEM,
                f"a JVM logged in from the cache of {principal} as {fields.get('principal')}",
                "",
            )
        realm, jdk_realm = principal.rpartition("@")[2], fields.get("realm", "-")
        mapped = AUTH_TO_LOCAL in site.facts.get("hadoop_properties", {})
        if jdk_realm != realm and not mapped:
            return (
                PROBLEM,
                f"a JVM logged in as {principal}, but the JDK's default realm is"
                f" {'none' if jdk_realm == '-' else jdk_realm} (krb5.conf: {krb5_conf}):"
                f' Hadoop maps no user name to {principal} ("No rules applied")',
                f"set default_realm = {realm} in the krb5.conf the JVMs read (-Djava.security"
                f".krb5.conf or /etc/krb5.conf, never KRB5_CONFIG), or map {realm} with"
                f" {AUTH_TO_LOCAL} in core-site.xml",
            )
        return (
            OK,
            f"a JVM ({java}, uid {uid}) logged in from {site.username}'s cache as"
            f" {principal}, with Kerberos credentials for {fields.get('lifetime')} s"
            f" (krb5.conf: {krb5_conf}, default realm {jdk_realm})",
            "",
        )
    said = " ".join(result.stderr.split())
    if "jdk.compiler" in said:
        raise Skip(f"{java} is a JRE (no jdk.compiler module): the JVM login check needs a JDK")
    if "Could not find or load main class" in said:
        raise Skip(f"{java} has no source launcher (Java 11 or later): no JVM login checked")
    failure = last.removeprefix("failed ") if last.startswith("failed ") else said[-300:]
    hint = next((hint for words, hint in _JVM_HINTS if words in failure), "")
    return (
        PROBLEM,
        f"a JVM cannot log in from {site.username}'s cache of {principal}: {failure}",
        hint,
    )


def _run_java(argv, run_as, timeout):
    env = {name: os.environ[name] for name in _JAVA_KEPT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env["LC_ALL"] = "C"
    options = {}
    if run_as is not None:
        uid, gid = run_as
        try:
            name = pwd.getpwuid(uid).pw_name
            groups = os.getgrouplist(name, gid)
        except KeyError:  # no account (the fetch delivery's users): no other groups
            groups = []
        options = {"user": uid, "group": gid, "extra_groups": groups}
    return subprocess.run(
        argv,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,
    )
