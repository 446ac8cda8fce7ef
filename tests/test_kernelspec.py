"""``kerbauth kernelspec``: the PySpark kernel it writes, where, and what it refuses.

Real files throughout: the installed pyspark package (a Spark home of its own),
a Spark distribution's layout built in tmp_path, real Pythons probed for
ipykernel and pyspark, jupyter_client reading what was written, and one real
spark-submit JVM started from the kernel's environment to show that
``PYSPARK_SUBMIT_ARGS`` reaches Spark as written. The kernel itself runs in a
real spawned server in the consumer tests (tests/support/kernel.py).
"""

import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap
import zipfile

import pyspark
import pytest

from kerbauth import cli
from kerbauth.spark import kernelspec

PYSPARK = os.path.dirname(os.path.abspath(pyspark.__file__))
(PYSPARK_PY4J,) = [
    os.path.join(PYSPARK, "python", "lib", f)
    for f in os.listdir(os.path.join(PYSPARK, "python", "lib"))
    if f.startswith("py4j-")
]
KERBEROS = (
    "<configuration><property><name>hadoop.security.authentication</name>"
    "<value>{}</value></property></configuration>\n"
)
ENV_KEYS = {
    "SPARK_HOME",
    "HADOOP_CONF_DIR",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYSPARK_PYTHON",
    "PYSPARK_SUBMIT_ARGS",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No Spark, Hadoop or Jupyter location from the environment the tests run in."""
    for var in ("SPARK_HOME", "HADOOP_CONF_DIR", "JUPYTER_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def hadoop_conf(tmp_path):
    """A cluster's client configuration: core-site.xml with Kerberos, yarn-site.xml."""
    conf = tmp_path / "hadoop-conf"
    conf.mkdir()
    (conf / "core-site.xml").write_text(KERBEROS.format("kerberos"))
    (conf / "yarn-site.xml").write_text("<configuration/>\n")
    return str(conf)


def make_spark(root, layout):
    """A Spark home in ``layout`` ("distribution" or "package"), with one py4j zip."""
    os.makedirs(root / "bin")
    (root / "bin" / "spark-submit").write_text("#!/bin/sh\n")
    (root / "bin" / "spark-submit").chmod(0o755)
    (root / "jars").mkdir()
    os.makedirs(root / "python" / "lib")
    with zipfile.ZipFile(root / "python" / "lib" / "py4j-0.10.9.9-src.zip", "w") as z:
        z.writestr("py4j/__init__.py", "")
    code = root / "python" / "pyspark" if layout == "distribution" else root
    code.mkdir(exist_ok=True)
    (code / "__init__.py").write_text("")
    (code / "shell.py").write_text("spark = sc = None\n")
    return str(root)


@pytest.fixture
def distribution(tmp_path):
    return make_spark(tmp_path / "spark-4.0.0-bin-hadoop3", "distribution")


def python_wrapper(path, python, pythonpath=None):
    """An executable that runs ``python``, with ``pythonpath`` when given (a kernel's Python
    set up otherwise than this one)."""
    set_path = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""
    path.write_text(f'#!/bin/sh\n{set_path}exec {shlex.quote(python)} "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fake_package(tmp_path):
    """The pip package's layout in tmp_path, and a Python that imports it (and ipykernel)."""
    site = tmp_path / "site"
    home = make_spark(site / "pyspark", "package")
    return home, python_wrapper(tmp_path / "python-fake", sys.executable, str(site))


def kernelspec_cli(capsys, *argv):
    """``kerbauth kernelspec ARGV`` in this process: (status, stdout, stderr)."""
    status = cli.main(["kernelspec", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def read_kernel(path):
    with open(path) as f:
        return json.load(f)


def test_a_kernel_from_the_pyspark_package(capsys, hadoop_conf, tmp_path):
    """The installed pyspark package as the Spark home (the default, with no SPARK_HOME):
    every variable the kernel needs, files readable by all whatever the umask, no ticket."""
    old_umask = os.umask(0o077)
    try:
        status, out, err = kernelspec_cli(
            capsys, "--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path / "p")
        )
    finally:
        os.umask(old_umask)
    directory = tmp_path / "p" / "share" / "jupyter" / "kernels" / "pyspark"
    path = directory / "kernel.json"
    assert (status, out, err) == (0, f"wrote {path}\n", "")
    spec = read_kernel(path)
    assert spec["argv"] == [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert spec["display_name"] == "PySpark (YARN)"
    assert spec["language"] == "python"
    env = spec["env"]
    assert set(env) == ENV_KEYS
    assert env["SPARK_HOME"] == PYSPARK
    assert env["HADOOP_CONF_DIR"] == hadoop_conf
    # The package is imported by the kernel's Python itself; py4j's zip comes from Spark.
    assert env["PYTHONPATH"] == PYSPARK_PY4J
    assert env["PYTHONSTARTUP"] == os.path.join(PYSPARK, "shell.py")
    assert os.path.isfile(env["PYTHONSTARTUP"])
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert shlex.split(env["PYSPARK_SUBMIT_ARGS"]) == [
        "--master",
        "yarn",
        "--deploy-mode",
        "client",
        "--name",
        "PySpark (YARN)",
        # The executors' tokens come again from the cache the hub keeps fresh.
        "--conf",
        "spark.kerberos.renewal.credentials=ccache",
        "pyspark-shell",
    ]
    for made in (directory, directory.parent, directory.parent.parent):
        assert stat.S_IMODE(made.stat().st_mode) == 0o755, made
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(directory) == ["kernel.json"]  # no temporary file left
    # Each user's kernel runs with its own server's ticket: nothing of one is written.
    text = path.read_text()
    for word in ("KRB5CCNAME", "krb5cc", "principal", "keytab", "KRB5_CONFIG"):
        assert word not in text


def test_a_kernel_from_a_spark_distribution(
    capsys, hadoop_conf, distribution, tmp_path, monkeypatch
):
    """SPARK_HOME and HADOOP_CONF_DIR from the environment; Spark's python directory and
    py4j's zip on the path, its own shell.py at start-up."""
    monkeypatch.setenv("SPARK_HOME", distribution)
    monkeypatch.setenv("HADOOP_CONF_DIR", hadoop_conf)
    status, out, err = kernelspec_cli(capsys, "--master", "local[*]", "--prefix", str(tmp_path))
    assert (status, err) == (0, "")
    env = read_kernel(out.split()[1])["env"]
    assert env["SPARK_HOME"] == distribution
    assert env["HADOOP_CONF_DIR"] == hadoop_conf
    python_dir = os.path.join(distribution, "python")
    py4j = os.path.join(python_dir, "lib", "py4j-0.10.9.9-src.zip")
    assert env["PYTHONPATH"] == f"{python_dir}:{py4j}"
    assert env["PYTHONSTARTUP"] == os.path.join(python_dir, "pyspark", "shell.py")
    assert shlex.split(env["PYSPARK_SUBMIT_ARGS"])[:6] == [
        "--master",
        "local[*]",
        "--deploy-mode",
        "client",
        "--name",
        "PySpark (local[*])",
    ]


def test_a_pip_layout_imported_by_the_kernels_python(capsys, hadoop_conf, fake_package, tmp_path):
    """The package layout found through --python alone: its py4j zip, its shell.py."""
    home, python = fake_package
    status, out, err = kernelspec_cli(
        capsys, "--python", python, "--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path)
    )
    assert (status, err) == (0, "")
    spec = read_kernel(out.split()[1])
    assert spec["argv"][0] == python
    assert spec["env"]["SPARK_HOME"] == home
    assert spec["env"]["PYTHONPATH"] == os.path.join(home, "python", "lib", "py4j-0.10.9.9-src.zip")
    assert spec["env"]["PYTHONSTARTUP"] == os.path.join(home, "shell.py")


@pytest.mark.parametrize("layout", ["distribution", "package"])
@pytest.mark.parametrize("zips", [0, 2])
def test_py4j_must_be_exactly_one_zip(capsys, hadoop_conf, tmp_path, layout, zips):
    home = make_spark(tmp_path / "pyspark", layout)
    lib = os.path.join(home, "python", "lib")
    os.unlink(os.path.join(lib, "py4j-0.10.9.9-src.zip"))
    for version in ("0.10.9.7", "0.10.9.9")[:zips]:
        open(os.path.join(lib, f"py4j-{version}-src.zip"), "w").close()
    python = python_wrapper(tmp_path / "python", sys.executable, str(tmp_path))
    argv = ["--spark-home", home, "--python", python, "--hadoop-conf-dir", hadoop_conf]
    status, out, err = kernelspec_cli(capsys, *argv, "--prefix", str(tmp_path / "p"))
    expected = (
        f"{lib} has no py4j-*-src.zip, which pyspark needs"
        if not zips
        else f"{lib} has 2 py4j zips, not one: py4j-0.10.9.7-src.zip, py4j-0.10.9.9-src.zip"
    )
    assert (status, out, err) == (1, "", f"kerbauth kernelspec: {expected}\n")
    assert not (tmp_path / "p").exists()


def refusals():
    """(label, arguments (with {tmp}, {conf}, {spark}), a part of the one-line message)."""
    return [
        ("no Hadoop conf", ["--spark-home", "{spark}"], "no Hadoop configuration directory"),
        ("conf dir missing", ["--hadoop-conf-dir", "{tmp}/none"], "{tmp}/none does not exist"),
        ("no core-site", ["--hadoop-conf-dir", "{tmp}/empty"], "{tmp}/empty/core-site.xml does no"),
        ("simple auth", ["--hadoop-conf-dir", "{simple}"], "to 'simple', not 'kerberos'"),
        ("yarn, no yarn-site", ["--hadoop-conf-dir", "{kerberos_only}"], "has no yarn-site.xml"),
        ("spark home missing", ["--spark-home", "{tmp}/none"], "the Spark home {tmp}/none does"),
        ("not a spark home", ["--spark-home", "{tmp}"], "{tmp} is not a Spark home"),
        ("no pyspark", ["--spark-home", "{no_pyspark}"], "has no PySpark: neither python/"),
        ("other python", ["--spark-home", "{package}"], "imports pyspark from {real_pyspark}"),
        ("master", ["--master", "spark://h:7077"], "--master 'spark://h:7077': use yarn, local"),
        ("master local[0]", ["--master", "local[0]"], "use yarn, local, local[N] or local[*]"),
        ("cluster mode", ["--deploy-mode", "cluster"], "cluster mode would run the driver in"),
        ("name with /", ["--name", "a/b"], "--name 'a/b': a kernel's name is letters"),
        ("name ..", ["--name", ".."], "(not only dots)"),
        ("name é", ["--name", "pyspark-é"], "a kernel's name is letters"),
        ("display name", ["--display-name", " "], "--display-name ' ': give a non-empty"),
        ("app name", ["--app-name", "a\nb"], "--app-name 'a\\nb': give a non-empty line"),
        ("python missing", ["--python", "{tmp}/none"], "--python {tmp}/none: no executable"),
        ("python not exec", ["--python", "{tmp}/core-site.xml"], "no executable file there"),
        ("not a python", ["--python", "/bin/true"], "--python /bin/true does not run as a Py"),
        ("no ipykernel", ["--python", "/usr/bin/python3"], "cannot import ipykernel, which"),
        ("no spark found", ["--python", "{bare_python}"], "no Spark: give --spark-home, set SP"),
        ("conf without =", ["--conf", "spark.x"], "--conf 'spark.x': give KEY=VALUE with a"),
        ("conf not spark", ["--conf", "hive.x=1"], "with a Spark property (spark.*) as KEY"),
        ("conf master", ["--conf", "spark.master=local"], "--conf spark.master: use --master"),
        ("conf mode", ["--conf", "spark.submit.deployMode=client"], "use --deploy-mode"),
        ("conf keytab", ["--conf", "spark.kerberos.keytab=/k"], "each must run with its own"),
        ("conf principal", ["--conf", "spark.yarn.principal=a@R"], "not a principal or cache"),
        ("conf ccache", ["--conf", "spark.executorEnv.KRB5CCNAME=/t"], "its own ticket"),
        ("conf twice", ["--conf", "spark.a=1", "--conf", "spark.a=2"], "spark.a is given twice"),
        ("conf control", ["--conf", "spark.a=1\n2"], "--conf spark.a: the value has a control"),
        ("conf dollar", ["--conf", "spark.a=$HOME"], "jupyter_client expands '$' in a kernel"),
        ("krb5 missing", ["--krb5-conf", "{tmp}/none"], "--krb5-conf {tmp}/none: no such file"),
        ("krb5 space", ["--krb5-conf", "{tmp}/a b"], "Spark splits Java options at spaces"),
        (
            "krb5 twice",
            ["--krb5-conf", "{tmp}/core-site.xml", "--conf",
             "spark.driver.extraJavaOptions=-Djava.security.krb5.conf=/k"],
            "--krb5-conf and --conf spark.driver.extraJavaOptions with",
        ),
    ]  # fmt: skip


@pytest.mark.parametrize(("label", "argv", "message"), refusals(), ids=[r[0] for r in refusals()])
def test_refusals(
    capsys, tmp_path, monkeypatch, hadoop_conf, fake_package, distribution, label, argv, message
):
    """Each refusal is one line on stderr, exit status 1, and nothing written."""
    monkeypatch.setenv("HADOOP_CONF_DIR", hadoop_conf)
    (tmp_path / "core-site.xml").write_text(KERBEROS.format("kerberos"))
    (tmp_path / "a b").write_text("")
    (tmp_path / "empty").mkdir()
    simple = tmp_path / "simple"
    simple.mkdir()
    (simple / "core-site.xml").write_text(KERBEROS.format("simple"))
    kerberos_only = tmp_path / "kerberos-only"
    kerberos_only.mkdir()
    (kerberos_only / "core-site.xml").write_text(KERBEROS.format("Kerberos"))
    no_pyspark = make_spark(tmp_path / "no-pyspark", "distribution")
    os.unlink(os.path.join(no_pyspark, "python", "pyspark", "__init__.py"))
    fake_ipykernel = tmp_path / "fake-ipykernel"
    (fake_ipykernel / "ipykernel").mkdir(parents=True)
    (fake_ipykernel / "ipykernel" / "__init__.py").write_text("")
    places = {
        "tmp": str(tmp_path),
        "spark": distribution,
        "simple": str(simple),
        "kerberos_only": str(kerberos_only),
        "no_pyspark": no_pyspark,
        "package": fake_package[0],
        "real_pyspark": os.path.realpath(PYSPARK),
        "bare_python": python_wrapper(
            tmp_path / "python-bare", "/usr/bin/python3", str(fake_ipykernel)
        ),
    }
    if label == "no Hadoop conf":
        monkeypatch.delenv("HADOOP_CONF_DIR")
    full = [a.format(**places) for a in argv]
    status, out, err = kernelspec_cli(capsys, *full, "--prefix", str(tmp_path / "p"))
    assert (status, out) == (1, "")
    assert err.startswith("kerbauth kernelspec: ") and err.endswith("\n")
    assert err.count("\n") == 1, err
    assert message.format(**places) in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "argv",
    [["--user", "--prefix", "/x"], ["--sys-prefix", "--user"], ["--master"], ["--nope"]],
)
def test_usage_errors_are_argparses(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(["kernelspec", *argv])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("usage: kerbauth")


def test_where_kernels_go(capsys, hadoop_conf, tmp_path, monkeypatch):
    """Each location flag puts the kernel where Jupyter looks (jupyter_core's own paths), and
    jupyter_client reads it there."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_core import paths

    def where(*flags):
        status, out, err = kernelspec_cli(capsys, "--hadoop-conf-dir", hadoop_conf, *flags)
        assert (status, err) == (0, "")
        path = out.split()[1]
        assert path.endswith("/pyspark/kernel.json")
        return os.path.dirname(os.path.dirname(path))

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert where("--user") == os.path.join(paths.jupyter_data_dir(), "kernels")
    assert where("--user") == str(home / ".local/share/jupyter/kernels")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert where("--user") == os.path.join(paths.jupyter_data_dir(), "kernels")
    assert where("--user") == str(tmp_path / "xdg/jupyter/kernels")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert where("--user") == os.path.join(paths.jupyter_data_dir(), "kernels")
    assert where("--user") == str(tmp_path / "data/kernels")
    spec = KernelSpecManager().get_kernel_spec("pyspark")
    assert spec.env["HADOOP_CONF_DIR"] == hadoop_conf
    assert spec.argv[-2:] == ["-f", "{connection_file}"]

    assert where("--prefix", str(tmp_path / "pre")) == str(tmp_path / "pre/share/jupyter/kernels")
    monkeypatch.chdir(tmp_path)
    assert where("--prefix", "") == str(tmp_path / "share/jupyter/kernels")  # not system-wide

    # The environment's and the system's directories, as Jupyter names them...
    assert paths.ENV_JUPYTER_PATH[0] == os.path.join(sys.prefix, "share", "jupyter")
    assert paths.SYSTEM_JUPYTER_PATH[0] == kernelspec.SYSTEM_DATA_DIR
    # ...and, not to write into this machine's, the same code with them moved.
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "env"))
    assert where("--sys-prefix") == str(tmp_path / "env/share/jupyter/kernels")
    monkeypatch.setattr(kernelspec, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    assert where() == str(tmp_path / "system/kernels")


def test_idempotent_and_replaced_when_changed(capsys, hadoop_conf, tmp_path):
    argv = ["--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path), "--name", "PySpark"]
    status, out, _ = kernelspec_cli(capsys, *argv)
    path = tmp_path / "share/jupyter/kernels/pyspark/kernel.json"  # lower case, as Jupyter's
    assert (status, out) == (0, f"wrote {path}\n")
    before = path.stat()
    text = path.read_text()

    assert kernelspec_cli(capsys, *argv) == (0, f"unchanged {path}\n", "")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    assert kernelspec_cli(capsys, *argv, "--conf", "spark.executor.memory=4g") == (
        0,
        f"replaced {path}\n",
        "",
    )
    assert path.stat().st_ino != before.st_ino
    assert "spark.executor.memory=4g" in read_kernel(path)["env"]["PYSPARK_SUBMIT_ARGS"]

    # The same content with the wrong mode is written again, 0644.
    path.write_text(text)
    path.chmod(0o600)
    assert kernelspec_cli(capsys, *argv)[1] == f"replaced {path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == text
    assert os.listdir(path.parent) == ["kernel.json"]


def test_never_over_a_kernel_it_did_not_write(capsys, hadoop_conf, tmp_path):
    """A kernel of someone else's, a symlink at kernel.json or at the kernel's directory:
    refused, and what they point at untouched."""
    kernels = tmp_path / "share/jupyter/kernels"
    argv = ["--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path)]

    theirs = kernels / "python3" / "kernel.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('{"argv": ["python3"], "display_name": "Python 3", "language": "python"}')
    status, _, err = kernelspec_cli(capsys, *argv, "--name", "python3")
    assert status == 1
    assert f"{theirs} is a kernel kerbauth did not write: choose another --name" in err
    assert json.loads(theirs.read_text())["display_name"] == "Python 3"

    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (kernels / "linked").mkdir()
    (kernels / "linked" / "kernel.json").symlink_to(victim)
    status, _, err = kernelspec_cli(capsys, *argv, "--name", "linked")
    assert status == 1
    assert "is a kernel kerbauth did not write" in err
    assert victim.read_text() == "{}"
    assert (kernels / "linked" / "kernel.json").is_symlink()

    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    (kernels / "dirlink").symlink_to(victim_dir)
    status, _, err = kernelspec_cli(capsys, *argv, "--name", "dirlink")
    assert status == 1
    assert f"cannot make the kernel's directory {kernels / 'dirlink'}" in err
    assert os.listdir(victim_dir) == []


def test_renewal_from_the_ticket_cache_on_yarn_only(capsys, hadoop_conf, tmp_path):
    """YARN gets spark.kerberos.renewal.credentials=ccache unless the admin says otherwise;
    a local master has no executors to renew tokens for."""

    def submit_args(*argv):
        status, out, err = kernelspec_cli(
            capsys, "--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path), *argv
        )
        assert (status, err) == (0, "")
        return shlex.split(read_kernel(out.split()[1])["env"]["PYSPARK_SUBMIT_ARGS"])

    assert "spark.kerberos.renewal.credentials=ccache" in submit_args()
    given = submit_args("--conf", "spark.kerberos.renewal.credentials=keytab")
    assert [a for a in given if "renewal" in a] == ["spark.kerberos.renewal.credentials=keytab"]
    assert not [a for a in submit_args("--master", "local") if "renewal" in a]


def test_conf_values_reach_spark_as_written(capsys, hadoop_conf, tmp_path):
    """Values with spaces and quotes, and --krb5-conf, go through PYSPARK_SUBMIT_ARGS into a
    real spark-submit JVM started from the kernel's environment as pyspark starts it."""
    krb5 = tmp_path / "krb5.conf"
    krb5.write_text("[libdefaults]\n")
    odd = """it's "quoted" & spaced"""
    status, out, err = kernelspec_cli(
        capsys,
        *("--hadoop-conf-dir", hadoop_conf, "--prefix", str(tmp_path), "--master", "local[1]"),
        *("--app-name", "Team's (PySpark)", "--krb5-conf", str(krb5)),
        *("--conf", f"spark.kerbauth.odd={odd}"),
        # (TieredStopAtLevel=1: the JVM starts sooner on a busy machine.)
        *(
            "--conf",
            "spark.driver.extraJavaOptions=-Dkerbauth.opt='two words' -XX:TieredStopAtLevel=1",
        ),
    )
    assert (status, err) == (0, "")
    env = read_kernel(out.split()[1])["env"]
    assert shlex.split(env["PYSPARK_SUBMIT_ARGS"]) == [
        *("--master", "local[1]", "--deploy-mode", "client", "--name", "Team's (PySpark)"),
        *("--conf", f"spark.kerbauth.odd={odd}"),
        "--conf",
        "spark.driver.extraJavaOptions=-Dkerbauth.opt='two words' -XX:TieredStopAtLevel=1"
        f" -Djava.security.krb5.conf={krb5}",
        "pyspark-shell",
    ]
    probe = textwrap.dedent(
        """
        import json
        from pyspark.java_gateway import launch_gateway
        gateway = launch_gateway()
        get = gateway.jvm.System.getProperty
        names = ["spark.app.name", "spark.master", "spark.kerbauth.odd", "kerbauth.opt",
                 "java.security.krb5.conf", "spark.submit.deployMode"]
        print(json.dumps({name: get(name) for name in names}))
        gateway.shutdown()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "JAVA_TOOL_OPTIONS": "-XX:-UsePerfData",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "spark.app.name": "Team's (PySpark)",
        "spark.master": "local[1]",
        "spark.kerbauth.odd": odd,
        "kerbauth.opt": "two words",
        "java.security.krb5.conf": str(krb5),
        "spark.submit.deployMode": "client",
    }


def test_the_installed_commands(hadoop_conf, tmp_path):
    """``kerbauth kernelspec`` (the console script) and ``python -m kerbauth.cli kernelspec``,
    as an admin runs them: a kernel written, a refusal with status 1."""
    kerbauth = os.path.join(os.path.dirname(sys.executable), "kerbauth")
    for n, command in enumerate([[kerbauth], [sys.executable, "-m", "kerbauth.cli"]]):
        prefix = str(tmp_path / f"p{n}")
        argv = [*command, "kernelspec", "--hadoop-conf-dir", hadoop_conf, "--prefix", prefix]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        path = os.path.join(prefix, "share/jupyter/kernels/pyspark/kernel.json")
        assert (done.returncode, done.stdout, done.stderr) == (0, f"wrote {path}\n", "")
        assert read_kernel(path)["env"]["SPARK_HOME"] == PYSPARK
        done = subprocess.run(
            [*argv, "--deploy-mode", "cluster"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1
        assert done.stderr.startswith("kerbauth kernelspec: --deploy-mode 'cluster': a kernel")
