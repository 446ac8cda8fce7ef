"""``kerbauth kernelspec``: the Jupyter kernelspec of a PySpark kernel that runs as its user.

IPython (``ipykernel_launcher``) with PySpark's ``shell.py`` as ``PYTHONSTARTUP``
(``spark`` and ``sc`` defined); ``kernel.json`` names the Spark home (a Spark
distribution, or the pip package ``pyspark``, which its Python must import),
the Hadoop configuration, the Python path and ``PYSPARK_SUBMIT_ARGS``, and no
ticket, cache or user: the kernel inherits its server's ``KRB5CCNAME``. The
file is written atomically, mode 0644 in a 0755 directory, and left as it is
when it would not change (docs/spark.md).
"""

import glob
import json
import os
import re
import shlex
import stat
import subprocess
import sys

from kerbauth.core.atomic_write import atomic_write
from kerbauth.core.errors import CcacheError
from kerbauth.spark.hadoop import HadoopConfError, check_kerberos

__all__ = ["KernelspecError", "add_arguments", "run", "build", "install", "kernels_dir"]

SYSTEM_DATA_DIR = "/usr/local/share/jupyter"
NAME = re.compile(r"[a-zA-Z0-9._-]+")
MASTER = re.compile(r"yarn|local(\[([1-9][0-9]*|\*)\])?")
CONF_KEY = re.compile(r"spark\.[^\s=$]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
KRB5_OPTION = "-Djava.security.krb5.conf="
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
# On YARN, the driver gets the executors' delegation tokens again from the ticket
# cache the hub keeps fresh (Spark's default, "keytab", needs a keytab the kernel has not).
RENEWAL = ("spark.kerberos.renewal.credentials", "ccache")
# Set by the command's own flags, so never by --conf.
OWN_KEYS = {
    "spark.master": "--master",
    "spark.submit.deployMode": "--deploy-mode",
    "spark.app.name": "--app-name",
}
# A kernelspec is shared by every user of the host: a principal or keytab in it
# would run everyone's Spark as one principal instead of each user's ticket.
IDENTITY_KEYS = {f"spark.{a}.{b}" for a in ("kerberos", "yarn") for b in ("principal", "keytab")}
MARKER = {"kerbauth": "kernelspec"}
# What the kernel's Python reports: whether it has ipykernel, where its pyspark is.
PROBE = (
    "import importlib.util as u, json, os\n"
    "s = u.find_spec('pyspark')\n"
    "print(json.dumps({'ipykernel': u.find_spec('ipykernel') is not None,"
    " 'pyspark': s and s.origin and os.path.dirname(s.origin)}))\n"
)


class KernelspecError(ValueError):
    """Arguments that cannot make a working kernel, or a kernel that cannot be written."""


def add_arguments(parser):
    """The command's arguments, on ``parser`` (the ``kernelspec`` subparser of kerbauth)."""
    spark = parser.add_argument_group("Spark and Hadoop").add_argument
    spark(
        "--spark-home",
        metavar="DIR",
        help="the Spark to run: a Spark distribution or the"
        " pyspark package's directory (default: $SPARK_HOME, else the pyspark of --python)",
    )
    spark(
        "--hadoop-conf-dir",
        metavar="DIR",
        help="the cluster's Hadoop client configuration,"
        " whose core-site.xml sets hadoop.security.authentication to kerberos"
        " (default: $HADOOP_CONF_DIR)",
    )
    spark("--master", default="yarn", help="yarn, local, local[N] or local[*] (default: yarn)")
    spark(
        "--deploy-mode",
        default="client",
        metavar="MODE",
        help="client, the only mode a notebook's kernel can use (default: client)",
    )
    spark(
        "--app-name",
        metavar="NAME",
        help="the Spark application's name, as YARN shows it (default: the display name)",
    )
    spark(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark property for the kernel's sessions, e.g. spark.executor.memory=4g"
        " (repeatable)",
    )
    spark(
        "--krb5-conf",
        metavar="PATH",
        help="the krb5.conf for the driver's JVM, which"
        " ignores KRB5_CONFIG (default: none, the JVM reads /etc/krb5.conf)",
    )
    kernel = parser.add_argument_group("the kernel").add_argument
    kernel(
        "--name",
        default="pyspark",
        help="the kernel's directory name: letters, digits, '.', '_', '-' (default: pyspark)",
    )
    kernel(
        "--display-name",
        metavar="TEXT",
        help="the name the launcher shows (default: 'PySpark (YARN)' or 'PySpark (MASTER)')",
    )
    kernel(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="the kernel's Python, with"
        " ipykernel; also PYSPARK_PYTHON, the executors' (default: this one, %(default)s)",
    )
    where = parser.add_argument_group(f"where (default: system-wide, {SYSTEM_DATA_DIR})")
    where = where.add_mutually_exclusive_group().add_argument
    where(
        "--user",
        action="store_true",
        help="in your Jupyter data directory ($JUPYTER_DATA_DIR, else ~/.local/share/jupyter)",
    )
    where(
        "--sys-prefix",
        action="store_true",
        help=f"in this Python's environment ({sys.prefix}/share/jupyter)",
    )
    where("--prefix", metavar="DIR", help="in DIR/share/jupyter")


def run(args):
    """Build and install the kernel; the exit status (refusals go to stderr, status 1)."""
    try:
        spec = build(args)
        path, outcome = install(kernels_dir(args), args.name.lower(), spec)
    except KernelspecError as e:
        print(f"kerbauth kernelspec: {e}", file=sys.stderr)
        return 1
    print(f"{outcome} {path}")
    return 0


def kernels_dir(args, environ=os.environ):
    """Where kernels go, as ``jupyter kernelspec install`` puts them (``share/jupyter/kernels``)."""
    if args.user:
        share = environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        data = environ.get("JUPYTER_DATA_DIR") or os.path.join(share, "jupyter")
    elif args.sys_prefix:
        data = os.path.join(sys.prefix, "share", "jupyter")
    elif args.prefix is not None:
        data = os.path.join(args.prefix, "share", "jupyter")
    else:
        data = SYSTEM_DATA_DIR
    return os.path.join(os.path.abspath(data), "kernels")


def build(args, environ=os.environ):
    """The kernel.json (a dict) the arguments make; KernelspecError when they cannot work."""
    name = args.name
    if not NAME.fullmatch(name) or not name.strip("."):
        raise KernelspecError(
            f"--name {name!r}: a kernel's name is letters, digits, '.', '_' and '-' (not only dots)"
        )
    if not MASTER.fullmatch(args.master):
        raise KernelspecError(
            f"--master {args.master!r}: use yarn, local, local[N] or local[*]"
            " (a kernel's driver runs on this host)"
        )
    if args.deploy_mode != "client":
        raise KernelspecError(
            f"--deploy-mode {args.deploy_mode!r}: a kernel is the driver, so it runs here"
            " (client); cluster mode would run the driver in YARN, away from the notebook"
        )
    display = args.display_name or f"PySpark ({'YARN' if args.master == 'yarn' else args.master})"
    app_name = args.app_name or display
    for flag, text in (("--display-name", display), ("--app-name", app_name)):
        if not text.strip() or CONTROL.search(text):
            raise KernelspecError(f"{flag} {text!r}: give a non-empty line of text")

    python, found = kernel_python(args.python)
    spark_home = args.spark_home or environ.get("SPARK_HOME") or found["pyspark"]
    if not spark_home:
        raise KernelspecError(
            f"no Spark: give --spark-home, set SPARK_HOME, or install pyspark for {python}"
        )
    python_path, startup = spark_layout(os.path.abspath(spark_home), python, found)
    hadoop_conf = args.hadoop_conf_dir or environ.get("HADOOP_CONF_DIR")
    try:
        check_kerberos(hadoop_conf)
    except HadoopConfError as e:
        raise KernelspecError(str(e)) from None
    hadoop_conf = os.path.abspath(hadoop_conf)
    if args.master == "yarn" and not os.path.isfile(os.path.join(hadoop_conf, "yarn-site.xml")):
        raise KernelspecError(
            f"{hadoop_conf} has no yarn-site.xml: --master yarn would look for the"
            " ResourceManager at 0.0.0.0:8032; copy the cluster's yarn-site.xml there"
        )

    submit = ["--master", args.master, "--deploy-mode", "client", "--name", app_name]
    conf = spark_conf(args.conf, args.krb5_conf)
    if args.master == "yarn":
        conf.setdefault(*RENEWAL)
    for key, value in conf.items():
        submit += ["--conf", f"{key}={value}"]
    env = {
        "SPARK_HOME": os.path.abspath(spark_home),
        "HADOOP_CONF_DIR": hadoop_conf,
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONSTARTUP": startup,
        "PYSPARK_PYTHON": python,
        "PYSPARK_SUBMIT_ARGS": shlex.join([*submit, "pyspark-shell"]),
    }
    for var, value in env.items():
        # jupyter_client expands $NAME in a kernelspec's env from the server's environment.
        if "$" in value:
            raise KernelspecError(
                f"{var} would be {value!r}: jupyter_client expands '$' in a kernel's"
                " environment; use paths and values without '$'"
            )
    return {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display,
        "language": "python",
        "env": env,
        "metadata": MARKER,
    }


def kernel_python(path):
    """The kernel's Python as an absolute path (links kept: a venv's python is one), and
    what it reports (:data:`PROBE`)."""
    python = os.path.abspath(path)
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise KernelspecError(f"--python {python}: no executable file there")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    try:
        done = subprocess.run(
            [python, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
        )
        found = json.loads(done.stdout)
        has_ipykernel = found["ipykernel"]
    except (OSError, subprocess.TimeoutExpired, ValueError, TypeError, KeyError):
        raise KernelspecError(f"--python {python} does not run as a Python") from None
    if not has_ipykernel:
        raise KernelspecError(
            f"--python {python} cannot import ipykernel, which runs the kernel:"
            f" {python} -m pip install ipykernel"
        )
    return python, found


def spark_layout(home, python, found):
    """``(PYTHONPATH entries, shell.py)`` of the Spark home ``home``, either layout."""
    if not os.path.isdir(home):
        raise KernelspecError(f"the Spark home {home} does not exist")
    submit = os.path.join(home, "bin", "spark-submit")
    if not os.path.isfile(submit) or not os.path.isdir(os.path.join(home, "jars")):
        raise KernelspecError(
            f"{home} is not a Spark home: it needs bin/spark-submit and jars/"
            " (a Spark distribution, or the pyspark package's directory)"
        )
    zips = sorted(glob.glob(os.path.join(glob.escape(home), "python", "lib", "py4j-*-src.zip")))
    if not zips:
        raise KernelspecError(f"{home}/python/lib has no py4j-*-src.zip, which pyspark needs")
    if len(zips) > 1:
        names = ", ".join(os.path.basename(z) for z in zips)
        raise KernelspecError(f"{home}/python/lib has {len(zips)} py4j zips, not one: {names}")
    distribution = os.path.join(home, "python", "pyspark")
    if os.path.isfile(os.path.join(distribution, "__init__.py")):
        return [os.path.join(home, "python"), zips[0]], os.path.join(distribution, "shell.py")
    if not os.path.isfile(os.path.join(home, "__init__.py")):
        raise KernelspecError(
            f"{home} has no PySpark: neither python/pyspark/ (a Spark distribution)"
            " nor the pyspark package's own files"
        )
    imported = found["pyspark"] and os.path.realpath(found["pyspark"])
    if imported != os.path.realpath(home):
        raise KernelspecError(
            f"{home} is the pyspark package, but --python {python} imports"
            f" {'pyspark from ' + imported if imported else 'no pyspark'}: give the Python"
            " it is installed in, or a Spark distribution's --spark-home"
        )
    return [zips[0]], os.path.join(home, "shell.py")


def spark_conf(pairs, krb5_conf):
    """``--conf KEY=VALUE`` pairs, checked, as an ordered dict; ``--krb5-conf`` joins the
    driver's Java options."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not CONF_KEY.fullmatch(key):
            raise KernelspecError(
                f"--conf {pair!r}: give KEY=VALUE with a Spark property (spark.*) as KEY"
            )
        if key in OWN_KEYS:
            raise KernelspecError(f"--conf {key}: use {OWN_KEYS[key]}")
        if key in IDENTITY_KEYS or "KRB5CCNAME" in key:
            raise KernelspecError(
                f"--conf {key}: every user's kernel reads this file; each must run with"
                " its own ticket (KRB5CCNAME, from the user's server), not a principal"
                " or cache named here"
            )
        if key in conf:
            raise KernelspecError(f"--conf {key} is given twice")
        if CONTROL.search(value):
            raise KernelspecError(f"--conf {key}: the value has a control character")
        conf[key] = value
    if krb5_conf:
        path = os.path.abspath(krb5_conf)
        if not os.path.isfile(path):
            raise KernelspecError(f"--krb5-conf {path}: no such file")
        if re.search(r"[\s'\"\\]", path):
            raise KernelspecError(
                f"--krb5-conf {path!r}: Spark splits Java options at spaces and quotes;"
                " use a path without them"
            )
        options = conf.get(DRIVER_JAVA_OPTIONS, "")
        if KRB5_OPTION in options:
            raise KernelspecError(
                f"--krb5-conf and --conf {DRIVER_JAVA_OPTIONS} with {KRB5_OPTION}: give one"
            )
        conf[DRIVER_JAVA_OPTIONS] = f"{options} {KRB5_OPTION}{path}".strip()
    return conf


def install(kernels, name, spec):
    """Write ``spec`` as ``kernels/name/kernel.json``: ``(path, wrote|replaced|unchanged)``."""
    data = (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()
    directory = os.path.join(kernels, name)
    path = os.path.join(directory, "kernel.json")
    try:
        make_dirs(directory)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise KernelspecError(f"cannot make the kernel's directory {directory}: {e}") from None
    try:
        os.fchmod(dir_fd, 0o755)
        old = read_existing(dir_fd, path)
        if old == (data, 0o644):
            return path, "unchanged"
        if old is not None and not is_ours(old[0]):
            raise KernelspecError(
                f"{path} is a kernel kerbauth did not write: choose another --name,"
                " or remove that kernel first"
            )
        write(dir_fd, data, path)
        return path, "wrote" if old is None else "replaced"
    finally:
        os.close(dir_fd)


def make_dirs(directory):
    """``directory`` and its missing parents, each new one 0755 whatever the umask."""
    parent = os.path.dirname(directory)
    if not os.path.isdir(parent):
        make_dirs(parent)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    # The mode on the directory just made, by descriptor (a link put there since
    # is not followed: the open fails).
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o755)  # noqa: S103 (a kernel is read by every user)
    finally:
        os.close(fd)


def read_existing(dir_fd, path):
    """``(bytes, mode)`` of the kernel.json there; None when there is none, and
    ``(b"", 0)`` when it is no regular file (a symlink is not followed)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open("kernel.json", flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return (b"", 0)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return (b"", 0)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(1 << 20), stat.S_IMODE(mode)
    except OSError as e:
        raise KernelspecError(f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def is_ours(data):
    try:
        return json.loads(data).get("metadata") == MARKER
    except (ValueError, AttributeError):
        return False


def write(dir_fd, data, path):
    """``data`` at kernel.json in ``dir_fd``: a new file, mode 0644, renamed over it
    (kerbauth's one atomic write, :func:`kerbauth.core.atomic_write.atomic_write`)."""
    try:
        atomic_write(
            dir_fd, "kernel.json", data, directory=os.path.dirname(path), mode=0o644, what="kernel"
        )
    except CcacheError as e:
        raise KernelspecError(str(e)) from None
