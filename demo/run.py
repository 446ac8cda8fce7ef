"""kerbauth's demo: JupyterHub with kerbauth at http://127.0.0.1:8000, on a throwaway setup.

Run as root on Debian 12, through ``make demo`` (which installs what is
needed first), or ``python demo/run.py [--mode ldap|pam] [--port 8000]``.

It makes a throwaway MIT Kerberos realm, local accounts named ``kbdemo-*``
with their keytabs, an OpenLDAP directory holding their passwords (LDAP mode)
or local passwords and a PAM service of its own (PAM mode), and starts
JupyterHub in the foreground. Ctrl-C (or SIGTERM, SIGHUP) stops the hub and
removes everything it made: processes, realm, directory, accounts, files.
The realm and directory helpers are the test suite's own (tests/support).
"""

import argparse
import contextlib
import http.client
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.ports import free_port  # noqa: E402
from support.realm import add_principal, start_realm  # noqa: E402

PREFIX = "kbdemo-"
USERS = ("alice", "bob")
REALM = "KBDEMO.TEST"
ACCOUNT_COMMENT = "kerbauth demo user (removed when the demo stops)"
BIN = os.path.dirname(sys.executable)


class Stopped(Exception):
    """A signal asked the demo to stop."""


class Signals:
    """SIGINT, SIGTERM and SIGHUP ask the demo to stop, once.

    While things are being set up, the request is only noted and acted on at
    the next :meth:`checkpoint`, so no step is cut in half. While the hub
    runs, it interrupts the wait at once. Signals that arrive while cleaning
    up are ignored: cleaning up must finish.
    """

    NAMES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.received = None
        self.interruptible = False

    def install(self):
        for signum in self.NAMES:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.received is not None:
            print("kerbauth demo: still cleaning up, please wait", file=sys.stderr, flush=True)
            return
        self.received = signum
        if self.interruptible:
            self.interruptible = False
            raise Stopped(signum)

    def checkpoint(self):
        if self.received is not None:
            raise Stopped(self.received)

    @contextlib.contextmanager
    def waiting(self):
        """A block the signal may interrupt at once."""
        self.checkpoint()
        self.interruptible = True
        try:
            yield
        finally:
            self.interruptible = False


def say(text):
    print(f"kerbauth demo: {text}", flush=True)


# --- preconditions ---------------------------------------------------------------------------


def check_can_start(port):
    """Refuse early, before anything is made, when the demo cannot run here."""
    problems = []
    if os.geteuid() != 0:
        problems.append("run it as root (it creates local accounts and runs servers as them)")
    existing = [e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(PREFIX)]
    if existing:
        problems.append(
            f"demo accounts exist already ({', '.join(existing)}): another demo is running,"
            f" or one was killed; remove them with: userdel -r {' && userdel -r '.join(existing)}"
        )
    with socket.socket() as s:
        # As the proxy binds: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            problems.append(
                f"port {port} is in use; pick another: make demo DEMO_ARGS='--port 8001'"
            )
    for program in ("configurable-http-proxy", "slapd", "krb5kdc"):
        if not shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            problems.append(f"{program} is not installed; run scripts/install-deps (or make demo)")
    return problems


# --- what the demo makes, each undone by the ExitStack ----------------------------------------


@contextlib.contextmanager
def work_directory():
    """/tmp/kbdemo-XXXX (0711); every temporary directory of this process goes inside it."""
    path = tempfile.mkdtemp(prefix=PREFIX)
    previous = tempfile.tempdir
    try:
        os.chmod(path, 0o711)  # noqa: S103 (users reach their homes and caches inside)
        os.mkdir(os.path.join(path, "home"), 0o755)
        tempfile.tempdir = path  # the realm's and the directory's go here too
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


def remove_account(name):
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def create_account(name, home):
    subprocess.run(
        [
            "useradd",
            "--create-home",
            "--home-dir",
            home,
            "--shell",
            "/bin/bash",
            "--comment",
            ACCOUNT_COMMENT,
            name,
        ],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def set_local_password(name, password):
    # chpasswd reads "name:password" on stdin: the password never reaches argv.
    subprocess.run(
        ["chpasswd"], input=f"{name}:{password}\n".encode(), check=True, capture_output=True
    )


def stop_processes_of(uids, deadline=10):
    """End every process running as one of ``uids`` (servers, terminals, kernels)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processes_of(uids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + deadline
        while processes_of(uids) and time.monotonic() < end:
            time.sleep(0.1)
        if not processes_of(uids):
            return


def processes_of(uids):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    pids.append(int(entry))
            except FileNotFoundError:
                pass
    return pids


@contextlib.contextmanager
def pam_service(name):
    """/etc/pam.d/<name>: password checked by pam_unix against the local accounts."""
    path = f"/etc/pam.d/{name}"
    try:
        with open(path, "x") as f:
            f.write(
                "# kerbauth demo (removed when the demo stops)\n"
                "auth     required pam_unix.so\n"
                "account  required pam_unix.so\n"
            )
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def private_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def hub_config(work, port, hub_port, mode, users, k5, slapd=None, pam=None):
    """The jupyterhub_config.py of the demo; ``kerbauth doctor -f`` reads it as the hub does."""
    names = sorted(users)
    keytabs = os.path.join(work, "home", "{username}", "{username}.keytab")
    lines = [
        "# The kerbauth demo's hub (written by demo/run.py, removed when it stops).",
        "import os",
        "",
        f"os.environ['KRB5_CONFIG'] = {k5.env['KRB5_CONFIG']!r}",
        f"c.JupyterHub.authenticator_class = {'kerberos-' + mode!r}",
        "c.JupyterHub.ip = '127.0.0.1'",
        f"c.JupyterHub.port = {port}",
        "c.JupyterHub.hub_ip = '127.0.0.1'",
        f"c.JupyterHub.hub_port = {hub_port}",
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'",
        f"c.ConfigurableHTTPProxy.pid_file = {os.path.join(work, 'proxy.pid')!r}",
        f"c.JupyterHub.pid_file = {os.path.join(work, 'jupyterhub.pid')!r}",
        f"c.JupyterHub.db_url = {'sqlite:///' + os.path.join(work, 'jupyterhub.sqlite')!r}",
        f"c.JupyterHub.cookie_secret_file = {os.path.join(work, 'cookie_secret')!r}",
        f"c.Authenticator.allowed_users = {set(names)!r}",
        f"c.Spawner.cmd = [{os.path.join(BIN, 'jupyterhub-singleuser')!r}]",
        "c.Spawner.default_url = '/lab'",
        "# No news pop-up in JupyterLab: it would try to fetch the news from the internet.",
        "c.Spawner.args = ['--LabApp.news_url=None']",
        "",
        "# Tickets: each user's keytab in their home, caches in a root-owned 0711 directory.",
        f"c.KerberosTickets.keytab_template = {keytabs!r}",
        f"c.KerberosTickets.ccache_dir = {os.path.join(work, 'ccache')!r}",
    ]
    if mode == "ldap":
        template = f"uid={{username}},{slapd.people_dn}"
        password_file = private_file(
            os.path.join(work, "ldap-service-password"), slapd.service_password
        )
        lines += [
            "",
            "# The directory: StartTLS, certificate checked against the demo's CA.",
            f"c.KerberosLDAPAuthenticator.server_address = ['127.0.0.1:{slapd.ldap_port}']",
            "c.KerberosLDAPAuthenticator.tls_strategy = 'starttls'",
            f"c.KerberosLDAPAuthenticator.tls_ca_file = {slapd.ca_file!r}",
            f"c.KerberosLDAPAuthenticator.bind_dn_template = [{template!r}]",
            f"c.KerberosLDAPAuthenticator.search_bind_dn = {slapd.service_dn!r}",
            f"with open({password_file!r}) as f:",
            "    c.KerberosLDAPAuthenticator.search_bind_password = f.read()",
        ]
    else:
        lines += ["", f"c.PAMAuthenticator.service = {pam!r}"]
    return private_file(os.path.join(work, "jupyterhub_config.py"), "\n".join(lines) + "\n")


@contextlib.contextmanager
def running_hub(config, work):
    """JupyterHub in a session of its own, its log on this console; stopped with SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k not in ("KRB5CCNAME", "JUPYTERHUB_API_TOKEN")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    hub = subprocess.Popen(
        [os.path.join(BIN, "jupyterhub"), "-f", config],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield hub
    finally:
        if hub.poll() is None:
            say("stopping the hub")
            hub.terminate()
            try:
                hub.wait(30)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the hub left behind (it was killed, say): its session, and the
        # proxy, which runs in a session of its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hub.pid, signal.SIGKILL)
        hub.wait()
        stop_proxy(os.path.join(work, "proxy.pid"))


def stop_proxy(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"configurable-http-proxy" not in f.read():
                return
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until_ready(hub, ports, signals, deadline=90):
    """Poll the health page on each of ``ports`` in turn until it answers 200.

    The hub's own port first, then the proxy's: a proxy asked before the hub
    listens fills the console with connection errors.
    """
    end = time.monotonic() + deadline
    for port in ports:
        while not _healthy(port):
            signals.checkpoint()
            if hub.poll() is not None:
                raise RuntimeError(
                    f"the hub exited with status {hub.returncode} before it was ready"
                )
            if time.monotonic() > end:
                raise RuntimeError(f"the hub did not answer on port {port} within {deadline} s")
            time.sleep(0.2)


def _healthy(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/hub/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def banner(url, mode, users, realm, config):
    width = max(len(n) for n in users)
    logins = "\n".join(
        f"    {name:<{width}}  password: {password}" for name, password in sorted(users.items())
    )
    first = sorted(users)[0]
    return f"""
==============================================================================
 kerbauth demo ({mode.upper()} mode) is running: {url}

 Log in as one of (throwaway demo accounts):
{logins}

 In JupyterLab, open a Terminal and run:  klist
 It shows the ticket of {first}@{realm}, in the cache named by $KRB5CCNAME.

 Check this setup piece by piece:
    {os.path.join(BIN, "kerbauth")} doctor -f {config} --user {first}

 Ctrl-C stops the demo and removes the realm, the directory, the demo
 accounts and every file it made.
==============================================================================
""".strip("\n")


# --- the demo ------------------------------------------------------------------------------------


def run(mode, port, signals):
    url = f"http://127.0.0.1:{port}/"
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(work_directory())
        say(f"working in {work}")

        say(f"starting a throwaway Kerberos realm {REALM}")
        k5 = start_realm(REALM)
        stack.callback(k5.stop)
        signals.checkpoint()

        users, uids = {}, set()
        os.mkdir(os.path.join(work, "ccache"), 0o711)
        os.chmod(os.path.join(work, "ccache"), 0o711)  # noqa: S103 (as KerberosTickets wants)
        for short in USERS:
            name = PREFIX + short
            password = secrets.token_urlsafe(9)
            home = os.path.join(work, "home", name)
            stack.callback(remove_account, name)  # registered first: undone even if useradd fails
            uid, gid = create_account(name, home)
            uids.add(uid)
            add_principal(k5, name, os.path.join(home, f"{name}.keytab"), uid=uid, gid=gid)
            users[name] = password
            signals.checkpoint()
        say(f"made the demo accounts {', '.join(users)} with their keytabs")
        # Undone before the accounts are removed: userdel refuses while they run anything.
        stack.callback(stop_processes_of, uids)

        slapd = pam = None
        if mode == "ldap":
            from support.slapd import Person, running_slapd

            people = {}
            for name in users:
                entry = pwd.getpwnam(name)
                people[name] = Person(name, users[name], entry.pw_uid, entry.pw_gid)
            say("starting a throwaway OpenLDAP directory (StartTLS, its own CA)")
            slapd = stack.enter_context(running_slapd(people=people, groups={}))
        else:
            for name, password in users.items():
                set_local_password(name, password)
            pam = stack.enter_context(pam_service(f"{PREFIX}{secrets.token_hex(3)}"))
            say(f"set the demo passwords and the PAM service /etc/pam.d/{pam}")
        signals.checkpoint()

        hub_port = free_port()
        config = hub_config(work, port, hub_port, mode, users, k5, slapd=slapd, pam=pam)
        say(f"starting JupyterHub with {config}")
        hub = stack.enter_context(running_hub(config, work))
        wait_until_ready(hub, (hub_port, port), signals)
        print(banner(url, mode, users, REALM, config), flush=True)
        with signals.waiting():
            status = hub.wait()
        say(f"the hub exited with status {status}; cleaning up")
        return 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="make demo DEMO_ARGS=...",
        description="JupyterHub with kerbauth on a throwaway realm, directory and demo users.",
    )
    parser.add_argument(
        "--mode",
        choices=("ldap", "pam"),
        default="ldap",
        help="how passwords are checked: an OpenLDAP directory (default) or PAM",
    )
    parser.add_argument("--port", type=int, default=8000, help="the hub's port (default 8000)")
    args = parser.parse_args(argv)
    problems = check_can_start(args.port)
    if problems:
        for problem in problems:
            print(f"kerbauth demo: cannot start: {problem}", file=sys.stderr)
        return 2
    signals = Signals()
    signals.install()
    try:
        return run(args.mode, args.port, signals)
    except Stopped:
        return 0
    except Exception as e:
        print(f"kerbauth demo: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        # Stop is acknowledged; everything it made has been removed by now.
        say("stopped; the realm, the directory, the demo accounts and their files are gone")


if __name__ == "__main__":
    sys.exit(main())
