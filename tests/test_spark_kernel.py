"""The kernel `kerbauth kernelspec` writes runs pyspark as the user in a real spawned server.

Issue 13: the admin runs the command as they would on an edge node (here
``--master local[*]``: YARN cannot run here), the user's server finds the
kernel on its ``JUPYTER_PATH``, and the kernel is started through the
server's REST API and run over its websocket, as JupyterLab does. In the
kernel, pyspark's ``shell.py`` has made ``spark``; the kernel runs as the
user with the server's ``KRB5CCNAME``; Hadoop's ``UserGroupInformation`` in
the driver's JVM is the user's principal, logged in with Kerberos from that
cache; and a Spark job runs. Once with the hub writing the cache (keytab,
``delivery = "file"``), once with the server fetching it (``delivery =
"fetch"``).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from support.consumers import CORE_SITE
from support.kernel import running_kernel, user_token

BIN = os.path.dirname(sys.executable)
KERNEL = "pyspark-kerbauth-tests"
# Run in the kernel: what the notebook's Python and its driver's JVM see, as one JSON line.
PROBE = """
import json, os
UGI = spark._jvm.org.apache.hadoop.security.UserGroupInformation
ugi = UGI.getCurrentUser()
print(json.dumps({
    "uid": os.getuid(),
    "KRB5CCNAME": os.environ.get("KRB5CCNAME"),
    "jvm user.name": spark._jvm.java.lang.System.getProperty("user.name"),
    "security enabled": UGI.isSecurityEnabled(),
    "UGI user": ugi.getUserName(),
    "UGI method": ugi.getAuthenticationMethod().toString(),
    "UGI has Kerberos credentials": ugi.hasKerberosCredentials(),
    "master": spark.sparkContext.master,
    "count": spark.range(10).count(),
}))
"""


@pytest.fixture
def spark_site():
    """The admin's files: a Hadoop client configuration that expects Kerberos, and a
    prefix for the kernel; both readable by every user, removed afterwards."""
    root = tempfile.mkdtemp(prefix="kerbauth-spark-")
    try:
        os.chmod(root, 0o755)
        conf_dir = os.path.join(root, "hadoop-conf")
        os.mkdir(conf_dir)
        os.chmod(conf_dir, 0o755)
        with open(os.path.join(conf_dir, "core-site.xml"), "w") as f:
            f.write(CORE_SITE)
        os.chmod(os.path.join(conf_dir, "core-site.xml"), 0o644)
        yield root, conf_dir
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install_kernel(prefix, conf_dir, krb5_conf):
    """``kerbauth kernelspec`` as the admin runs it; the Jupyter data dir it wrote into."""
    done = subprocess.run(
        [
            os.path.join(BIN, "kerbauth"),
            "kernelspec",
            "--prefix",
            prefix,
            "--name",
            KERNEL,
            "--master",
            "local[*]",
            "--hadoop-conf-dir",
            conf_dir,
            "--krb5-conf",
            krb5_conf,
            # Only to make the test's JVM start and run faster on a busy machine (the
            # Java options also go through PYSPARK_SUBMIT_ARGS' quoting, with --krb5-conf's).
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.ui.showConsoleProgress=false",
            "--conf",
            "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "HADOOP_CONF_DIR")},
    )
    assert done.returncode == 0, done.stderr
    data_dir = os.path.join(prefix, "share", "jupyter")
    assert os.path.isfile(os.path.join(data_dir, "kernels", KERNEL, "kernel.json")), done.stdout
    return data_dir


def remove_jvm_perf_data(name):
    """Every JVM of the user (spark-submit's launcher, the driver) makes /tmp/hsperfdata_<name>,
    which outlives them and the test's account (a symlink there is left alone)."""
    shutil.rmtree(os.path.join(tempfile.gettempdir(), f"hsperfdata_{name}"), ignore_errors=True)


@pytest.mark.parametrize("mode", ["keytab", "fetch"])
def test_the_kernelspec_kernel_runs_pyspark_as_the_user(mode, served, spark_site, krb5_env):
    root, conf_dir = spark_site
    data_dir = install_kernel(root, conf_dir, krb5_env.env["KRB5_CONFIG"])
    user = served(mode, extra=f"c.Spawner.environment = {{'JUPYTER_PATH': {data_dir!r}}}\n")

    server_url = f"{user.hub.url}/user/{user.name}/"
    try:
        with running_kernel(server_url, user_token(user.hub, user.name), KERNEL) as kernel:
            run = kernel.execute(PROBE, timeout=180)
    finally:
        remove_jvm_perf_data(user.name)
    assert run.ok, run.describe()
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen == {
        "uid": user.account.uid,
        "KRB5CCNAME": user.env["KRB5CCNAME"],
        "jvm user.name": user.name,
        "security enabled": True,
        "UGI user": user.principal,
        "UGI method": "KERBEROS",
        "UGI has Kerberos credentials": True,
        "master": "local[*]",
        "count": 10,
    }, run.describe()
