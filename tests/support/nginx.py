"""A real nginx (Debian's /usr/sbin/nginx) serving one site file, in a private prefix.

``nginx_factory(site)`` writes ``site`` (the text of a site file, as it goes
into /etc/nginx/sites-enabled/) into a fresh prefix directory with a main
configuration of the test's own around it: one worker, the error log, access
log, pid file and temp directories in the prefix, the site included inside
``http {}`` as Debian's nginx.conf includes sites-enabled. It checks the
configuration with ``nginx -t`` first (the :class:`Nginx` keeps that output),
then runs nginx in the foreground as root (its worker drops to nobody), and
waits until every ``listen`` address of the site accepts connections. At
teardown each nginx is stopped (SIGTERM, then SIGKILL of its process group)
and its prefix removed, whatever the test did.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

NGINX = "/usr/sbin/nginx"

MAIN = """\
worker_processes 1;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen
    prefix: str
    conf: str
    check_output: str  # what ``nginx -t`` said

    def log_text(self):
        parts = []
        for name in ("error.log", "access.log"):
            with contextlib.suppress(OSError), open(os.path.join(self.prefix, name)) as f:
                parts.append(f"--- {name} ---\n{f.read()[-6000:]}")
        return "\n".join(parts)


def _argv(prefix, conf, directives):
    return [NGINX, "-p", prefix + "/", "-e", os.path.join(prefix, "error.log"), "-c", conf,
            "-g", directives]  # fmt: skip


def listen_addresses(site):
    """The ``host:port`` of each ``listen`` line of ``site``."""
    return sorted(set(re.findall(r"\blisten\s+([\d.]+:\d+)", site)))


def _accepts(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # fast shutdown
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a worker left behind
    process.wait()


def start_nginx(site, prefix, deadline=20):
    """nginx serving ``site`` from ``prefix``, checked and accepting on its addresses."""
    # The worker (nobody) must reach its temp directories, which nginx makes and
    # hands to it; it reads nothing else here (the master reads the key and logs).
    os.chmod(prefix, 0o711)
    with open(os.path.join(prefix, "site.conf"), "w") as f:
        f.write(site)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(MAIN.format(prefix=prefix))
    addresses = listen_addresses(site)
    assert addresses, f"the site listens nowhere on loopback:\n{site}"
    pid = os.path.join(prefix, "nginx.pid")
    check = subprocess.run(
        _argv(prefix, conf, f"pid {pid};") + ["-t"], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, f"nginx -t refused the site:\n{check.stderr}\n{site}"
    with open(os.path.join(prefix, "stderr.log"), "wb") as log:
        process = subprocess.Popen(
            _argv(prefix, conf, f"daemon off; pid {pid};"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Nginx(process, prefix, conf, check.stderr)
    end = time.monotonic() + deadline
    try:
        while not all(_accepts(a) for a in addresses):
            if process.poll() is not None:
                raise AssertionError(
                    f"nginx exited with {process.returncode}:\n{server.log_text()}"
                )
            if time.monotonic() > end:
                raise AssertionError(f"nginx never listened on {addresses}:\n{server.log_text()}")
            time.sleep(0.05)
    except BaseException:
        _stop(process)
        raise
    return server


@pytest.fixture
def nginx_factory():
    """``nginx_factory(site)``: a running :class:`Nginx`; all stopped and removed at teardown."""
    started = []

    def factory(site):
        prefix = tempfile.mkdtemp(prefix="kerbauth-nginx-")
        entry = [prefix, None]
        started.append(entry)
        entry[1] = start_nginx(site, prefix)
        return entry[1]

    try:
        yield factory
    finally:
        for prefix, server in started:
            if server is not None:
                _stop(server.process)
                print(f"--- nginx in {prefix} ---\n{server.log_text()}")
            shutil.rmtree(prefix, ignore_errors=True)
