"""docs/spark.md cannot drift: every command it shows is run, and its output compared.

The page's console blocks are run as they stand, with the page's example
names and paths replaced by the test's (:func:`places`): ``#`` lines as root
(``kerbauth kernelspec`` in this process, with its system-wide directory
moved into the test's; ``kerbauth doctor`` as the installed command against
the test hub's config), ``$`` lines as the user in a real spawned server with
only that server's environment. The lines under a command are its output;
``...`` stands for any text. Its XML block is the core-site.xml the commands
read, its kernel.json block must be what the command wrote, and its Python
blocks run as the user: UGI in a real pyspark JVM started from the kernel's
environment, requests-gssapi against a real SPNEGO httpd. Only the PyHive and
impyla snippets are merely compiled: no HiveServer2 or Impala runs here.
"""

import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import pytest

from kerbauth import cli
from kerbauth.spark import kernelspec

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "spark.md")
KERBAUTH = os.path.join(os.path.dirname(sys.executable), "kerbauth")


def blocks(language):
    """The page's fenced blocks of ``language``, list items' indentation removed."""
    with open(PAGE) as f:
        text = f.read()
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```$", text, re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(body) for _, body in found]


def commands(block):
    """``(prompt, command, expected output)`` of each command of a console block."""
    found = []
    for line in block.splitlines():
        if line.startswith(("# ", "$ ")):
            found.append([line[0], line[2:], []])
        else:
            found[-1][2].append(line)
    return [(prompt, command, "\n".join(output)) for prompt, command, output in found]


def matches(expected, actual):
    """Whether ``actual`` is the ``expected`` output: a line ``...`` stands for any lines
    (none too), ``...`` in a line for any text."""
    want, got = expected.splitlines(), actual.rstrip("\n").splitlines()

    def match(i, j):
        if i == len(want):
            return j == len(got)
        if want[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        line = ".*".join(re.escape(part) for part in want[i].split("..."))
        return j < len(got) and re.fullmatch(line, got[j]) is not None and match(i + 1, j + 1)

    return match(0, 0)


def substitute(text, places):
    for page, test in places.items():
        text = re.sub(rf"(?<![\w/.-]){re.escape(page)}(?![\w-])", lambda _, test=test: test, text)
    return text


def make_distribution(root):
    """A Spark distribution's layout (what ``kerbauth kernelspec`` reads of one)."""
    for d in ("bin", "jars", "python/pyspark", "python/lib"):
        os.makedirs(os.path.join(root, d))
    for f in ("bin/spark-submit", "python/pyspark/__init__.py", "python/pyspark/shell.py"):
        open(os.path.join(root, f), "w").close()
    with zipfile.ZipFile(os.path.join(root, "python/lib/py4j-0.10.9.9-src.zip"), "w") as z:
        z.writestr("py4j/__init__.py", "")


@pytest.fixture
def shared_dir():
    """A directory every user can read (tmp_path is root's alone), removed afterwards."""
    path = tempfile.mkdtemp(prefix="kerbauth-spark-docs-")
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_kerbauth(argv):
    """``kerbauth kernelspec`` in this process: (status, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(argv)
    return status, out.getvalue()


def test_every_command_of_the_page(served, spnego_httpd, shared_dir, monkeypatch):
    user = served("keytab")
    httpd = spnego_httpd(user.realm)
    realm = user.realm.realm
    hadoop_conf = os.path.join(shared_dir, "hadoop-conf")
    os.makedirs(hadoop_conf)
    (core_site,) = blocks("xml")
    for name, text in (("core-site.xml", core_site), ("yarn-site.xml", "<configuration/>\n")):
        with open(os.path.join(hadoop_conf, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(hadoop_conf, name), 0o644)
    os.chmod(hadoop_conf, 0o755)
    make_distribution(os.path.join(shared_dir, "spark"))
    system_data = os.path.join(shared_dir, "share", "jupyter")
    monkeypatch.setattr(kernelspec, "SYSTEM_DATA_DIR", system_data)
    # The page's commands, as they stand, in an admin's shell that sets neither.
    monkeypatch.delenv("SPARK_HOME", raising=False)
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    places = {
        "/opt/jupyterhub/bin/python": sys.executable,
        "/opt/jupyterhub/etc/krb5.conf": user.env["KRB5_CONFIG"],
        "/opt/spark": os.path.join(shared_dir, "spark"),
        "/etc/hadoop/conf": hadoop_conf,
        "/usr/local/share/jupyter": system_data,
        "/etc/jupyterhub/jupyterhub_config.py": user.hub.config_path,
        "http://livy.example.com:8998/sessions": httpd.url,
        "HTTP/livy.example.com": "HTTP/localhost",
        "alice": user.name,
        "EXAMPLE.COM": realm,
    }

    ran = []
    for block in blocks("console"):
        for prompt, command, expected in commands(block):
            command = substitute(command, places)
            argv = shlex.split(command)
            if argv[:2] == ["kerbauth", "kernelspec"]:
                status, output = run_kerbauth(argv[1:])
            elif prompt == "#":
                if argv[0] == "kerbauth":
                    argv[0] = KERBAUTH
                done = subprocess.run(
                    argv if argv[0] == KERBAUTH else ["bash", "-c", command],
                    env=user.hub.env if argv[0] == KERBAUTH else None,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                status, output = done.returncode, done.stdout + done.stderr
            else:
                done = user.run(["bash", "-c", command])
                status, output = done.returncode, done.stdout + done.stderr
            expected = substitute(expected, places)
            refusal = expected.startswith("kerbauth kernelspec: ")
            assert (status, matches(expected, output)) == (1 if refusal else 0, True), (
                f"{prompt} {command}\nexpected:\n{expected}\ngot ({status}):\n{output}"
            )
            ran.append(argv[0])
    assert ran.count("kerbauth") >= 6 and "klist" in ran and "curl" in ran, ran

    # The kernel.json shown is the one the command wrote, the same as the page's.
    (shown,) = [b for b in blocks("json") if '"argv"' in b]
    kernels = os.path.join(system_data, "kernels")
    with open(os.path.join(kernels, "pyspark", "kernel.json")) as f:
        assert json.load(f) == json.loads(substitute(shown, places))
    (sparkmagic,) = [b for b in blocks("json") if "kernel_python_credentials" in b]
    assert json.loads(sparkmagic)["kernel_python_credentials"]["auth"] == "Kerberos"

    # In a notebook on the local kernel: Hadoop's UGI is the user, with Kerberos.
    with open(os.path.join(kernels, "pyspark-local", "kernel.json")) as f:
        local = json.load(f)
    (ugi,) = [b for b in blocks("python") if "UserGroupInformation" in b]
    notebook = (
        "import os\nexec(open(os.environ['PYTHONSTARTUP']).read())\n" + ugi + "spark.stop()\n"
    )
    # No hsperfdata directory of the user's left in /tmp by the JVMs (spark-submit's too),
    # and C1 alone: the JVMs start sooner on a busy machine.
    env = {**local["env"], "JAVA_TOOL_OPTIONS": "-XX:-UsePerfData -XX:TieredStopAtLevel=1"}
    done = user.run([local["argv"][0], "-c", notebook], env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == [f"{user.principal} (auth:KERBEROS)", "True"]

    # requests-gssapi, as sparkmagic reaches Livy.
    (spnego,) = [b for b in blocks("python") if "HTTPSPNEGOAuth" in b]
    done = user.run([sys.executable, "-c", substitute(spnego, places)])
    assert (done.returncode, done.stdout, done.stderr) == (0, "200\n", "")

    # No HiveServer2 or Impala here: their snippets at least compile.
    for snippet in blocks("python"):
        ast.parse(snippet)
    assert len(blocks("python")) == 4
