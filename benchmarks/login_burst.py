"""Login burst: does a slow directory freeze the hub?

A real JupyterHub (with configurable-http-proxy) gets a burst of concurrent
logins through its login form while another process asks ``/hub/health``
every 10 ms. Reported per authenticator: login latency (p50, p99) and
``/hub/health`` latency (p99, max) while the burst runs. A hub whose
authenticator blocks its event loop answers nothing else until the
authenticator is done: ``/hub/health`` max shows it.

Measured in one run, against the same throwaway slapd (StartTLS with its
certificate verified, in front of it a proxy that delays every answer by
+0 ms or +50 ms):

- DummyAuthenticator: no directory at all, the hub's own floor;
- kerbauth's ``kerberos-ldap``;
- jupyterhub-ldapauthenticator 2.0.2 (``pip install jupyterhub-ldapauthenticator==2.0.2``);
- and, for PAM, kerbauth's ``kerberos-pam`` against JupyterHub's
  PAMAuthenticator (local accounts made for the run, removed after).

Run it as root on Debian with slapd, ldap-utils and configurable-http-proxy
installed, from the repository root::

    /opt/kerbauth/venv/bin/python benchmarks/login_burst.py
    /opt/kerbauth/venv/bin/python benchmarks/login_burst.py --logins 50 --rounds 3 --delay-ms 50

It takes a few minutes and asserts nothing: it prints a table and the ratio
of each LDAP authenticator's ``/hub/health`` max at the slow directory to the
DummyAuthenticator floor.
"""

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from delay_proxy import start_delay_proxy  # noqa: E402

from support.ports import free_port  # noqa: E402
from support.slapd import default_people, running_slapd  # noqa: E402

PAM_USER_PREFIX = "kbbench-"


# --- a hub of its own for each authenticator ------------------------------------------


@dataclass
class Hub:
    directory: str
    process: subprocess.Popen
    public_url: str
    health_url: str

    def log_tail(self, chars=3000):
        with open(os.path.join(self.directory, "hub.log"), errors="replace") as f:
            return f.read()[-chars:]


def hub_config(directory, public_port, hub_port, api_port, authenticator_config):
    common = f"""
    c.JupyterHub.bind_url = "http://127.0.0.1:{public_port}"
    c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
    c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
    c.ConfigurableHTTPProxy.pid_file = "{directory}/proxy.pid"
    c.JupyterHub.db_url = "sqlite:///{directory}/jupyterhub.sqlite"
    c.JupyterHub.cookie_secret_file = "{directory}/cookie_secret"
    c.JupyterHub.pid_file = "{directory}/hub.pid"
    c.Authenticator.allow_all = True
    """
    return textwrap.dedent(common) + textwrap.dedent(authenticator_config)


@contextlib.contextmanager
def running_hub(authenticator_config):
    directory = tempfile.mkdtemp(prefix="kerbauth-bench-hub-")
    public_port, hub_port, api_port = free_port(), free_port(), free_port()
    config = os.path.join(directory, "jupyterhub_config.py")
    with open(config, "w") as f:
        f.write(hub_config(directory, public_port, hub_port, api_port, authenticator_config))
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
    env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
    process = None
    try:
        with open(os.path.join(directory, "hub.log"), "wb") as log:
            process = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "jupyterhub"), "-f", config],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        hub = Hub(
            directory,
            process,
            f"http://127.0.0.1:{public_port}",
            f"http://127.0.0.1:{hub_port}/hub/health",
        )
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the hub exited:\n{hub.log_tail()}")
            try:
                if requests.get(f"{hub.public_url}/hub/login", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not come up:\n{hub.log_tail()}")
            time.sleep(0.1)
        yield hub
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _stop_leftover_proxy(os.path.join(directory, "proxy.pid"))
        shutil.rmtree(directory, ignore_errors=True)


def _stop_leftover_proxy(pid_file):
    """The hub stops its proxy on a clean exit; after a kill it may be left running."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)


# --- the burst ---------------------------------------------------------------------------------


def _poll_health(url, stop, results):
    """In a process of its own: GET ``url`` every 10 ms; send (start, seconds) pairs."""
    samples = []
    with requests.Session() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = session.get(url, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            samples.append((started, time.monotonic() - started, ok))
            time.sleep(0.01)
    results.put(samples)


def _login_session(hub):
    session = requests.Session()
    page = session.get(f"{hub.public_url}/hub/login", timeout=30)
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    if not match:
        raise RuntimeError("no _xsrf field in the login form")
    return session, match.group(1)


def burst(hub, users):
    """Log ``users`` (name, password) in at once; return (login seconds, health samples)."""
    sessions = [_login_session(hub) for _ in users]
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    poller = multiprocessing.Process(target=_poll_health, args=(hub.health_url, stop, results))
    poller.start()
    # Let the poller take a few samples of the idle hub first.
    time.sleep(0.2)
    gate = threading.Barrier(len(users) + 1)
    logins = [None] * len(users)

    def login(i):
        session, xsrf = sessions[i]
        name, password = users[i]
        gate.wait()
        started = time.monotonic()
        response = session.post(
            f"{hub.public_url}/hub/login",
            data={"username": name, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=300,
        )
        logins[i] = (time.monotonic() - started, response.status_code)

    threads = [threading.Thread(target=login, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    gate.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    end = time.monotonic()
    stop.set()
    samples = results.get(timeout=120)
    poller.join(10)
    for session, _ in sessions:
        session.close()
    failed = [code for _, code in logins if code != 302]
    if failed:
        raise RuntimeError(f"{len(failed)} logins failed (HTTP {sorted(set(failed))})")
    # Health requests that overlapped the burst.
    during = [s for s in samples if s[0] <= end and s[0] + s[1] >= start]
    if not all(ok for _, _, ok in during):
        raise RuntimeError("/hub/health failed during the burst")
    return [seconds for seconds, _ in logins], [seconds for _, seconds, _ in during]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Result:
    label: str
    delay: str
    logins: list = field(default_factory=list)
    health: list = field(default_factory=list)

    @property
    def health_max(self):
        return max(self.health)


def measure(label, delay, authenticator_config, users, rounds):
    result = Result(label, delay)
    with running_hub(authenticator_config) as hub:
        burst(hub, users[:1])  # warm up: imports, thread pools, the first DB writes
        for _ in range(rounds):
            logins, health = burst(hub, users)
            result.logins += logins
            result.health += health
    print(
        f"  {label:<22} {delay:>7}: login p50 {percentile(result.logins, 50):.3f} s,"
        f" health max {result.health_max:.3f} s",
        flush=True,
    )
    return result


# --- the authenticators ------------------------------------------------------------------------


def kerbauth_ldap(slapd, port):
    return f"""
    c.JupyterHub.authenticator_class = "kerberos-ldap"
    c.KerberosTickets.required = False
    c.KerberosLDAPAuthenticator.server_address = ["127.0.0.1:{port}"]
    c.KerberosLDAPAuthenticator.tls_strategy = "starttls"
    c.KerberosLDAPAuthenticator.tls_ca_file = "{slapd.ca_file}"
    c.KerberosLDAPAuthenticator.bind_dn_template = ["uid={{username}},{slapd.people_dn}"]
    """


def ldapauthenticator(slapd, port):
    return f"""
    import ssl
    c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
    c.LDAPAuthenticator.server_address = "127.0.0.1"
    c.LDAPAuthenticator.server_port = {port}
    c.LDAPAuthenticator.tls_strategy = "before_bind"
    c.LDAPAuthenticator.tls_kwargs = {{"ca_certs_file": "{slapd.ca_file}",
                                      "validate": ssl.CERT_REQUIRED}}
    c.LDAPAuthenticator.bind_dn_template = ["uid={{username}},{slapd.people_dn}"]
    """


DUMMY = """
c.JupyterHub.authenticator_class = "dummy"
"""

KERBEROS_PAM = """
c.JupyterHub.authenticator_class = "kerberos-pam"
c.KerberosTickets.required = False
"""

PAM = """
c.JupyterHub.authenticator_class = "pam"
"""


@contextlib.contextmanager
def local_accounts(count):
    """``count`` local accounts with random passwords, for PAM; removed after."""
    users = [(f"{PAM_USER_PREFIX}{n}", secrets.token_urlsafe(12)) for n in range(count)]
    made = []
    try:
        for name, _ in users:
            subprocess.run(
                ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
            made.append(name)
        subprocess.run(
            ["chpasswd"],
            input="".join(f"{name}:{password}\n" for name, password in users).encode(),
            check=True,
            capture_output=True,
        )
        yield users
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


def package_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=50, help="concurrent logins (50)")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per hub (2)")
    parser.add_argument("--delay-ms", type=float, default=50, help="the slow directory (50)")
    parser.add_argument("--skip-pam", action="store_true", help="LDAP and dummy only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: slapd, PAM accounts and the hubs need it")
    if package_version("jupyterhub-ldapauthenticator") != "2.0.2":
        sys.exit("pip install jupyterhub-ldapauthenticator==2.0.2 first")
    print(
        f"{args.logins} concurrent logins x {args.rounds} rounds per hub;"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" jupyterhub {package_version('jupyterhub')}, ldap3 {package_version('ldap3')},"
        f" jupyterhub-ldapauthenticator {package_version('jupyterhub-ldapauthenticator')}",
        flush=True,
    )
    slow = f"+{args.delay_ms:g} ms"
    results = []
    people = default_people(bench_users=args.logins)
    ldap_users = [(p.uid, p.password) for p in people.values() if p.uid.startswith("bench-")]
    with running_slapd(people=people, log_level="0") as slapd:
        target = ("127.0.0.1", slapd.ldap_port)
        with (
            start_delay_proxy(target, 0, free_port()) as fast,
            start_delay_proxy(target, args.delay_ms / 1000, free_port()) as slow_proxy,
        ):
            results.append(measure("DummyAuthenticator", "-", DUMMY, ldap_users, args.rounds))
            for delay, (_, port) in (("+0 ms", fast), (slow, slow_proxy)):
                results.append(
                    measure(
                        "kerbauth kerberos-ldap",
                        delay,
                        kerbauth_ldap(slapd, port),
                        ldap_users,
                        args.rounds,
                    )
                )
                results.append(
                    measure(
                        "ldapauthenticator 2.0.2",
                        delay,
                        ldapauthenticator(slapd, port),
                        ldap_users,
                        args.rounds,
                    )
                )
    if not args.skip_pam:
        with local_accounts(args.logins) as pam_users:
            results.append(measure("kerbauth kerberos-pam", "-", KERBEROS_PAM, pam_users, 1))
            results.append(measure("PAMAuthenticator", "-", PAM, pam_users, 1))
    report(results, slow)


def report(results, slow):
    floor = results[0].health_max
    print()
    print(
        f"{'authenticator':<24} {'LDAP':>7} {'login p50':>10} {'login p99':>10}"
        f" {'health p99':>11} {'health max':>11} {'max/floor':>10}"
    )
    for r in results:
        print(
            f"{r.label:<24} {r.delay:>7} {percentile(r.logins, 50):>9.3f}s"
            f" {percentile(r.logins, 99):>9.3f}s {percentile(r.health, 99):>10.3f}s"
            f" {r.health_max:>10.3f}s {r.health_max / floor:>9.1f}x"
        )
    print()
    for label in ("kerbauth kerberos-ldap", "ldapauthenticator 2.0.2"):
        (r,) = [r for r in results if r.label == label and r.delay == slow]
        print(
            f"{label}: /hub/health max at {slow} = {r.health_max:.3f} s,"
            f" {r.health_max / floor:.1f}x the DummyAuthenticator floor ({floor:.3f} s)"
        )


if __name__ == "__main__":
    main()
