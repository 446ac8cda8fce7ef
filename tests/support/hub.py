"""A real JupyterHub for the tests: its own process, configurable-http-proxy, LocalProcessSpawner.

``hub_factory(config, env=...)`` writes ``config`` (the text of a
jupyterhub_config.py, usually an example from examples/ plus a few test
lines) followed by the lines that make the hub a test's own: free loopback
ports, a database, cookie secret and pid files in a fresh directory, and an
API token of a service with the admin role. It starts ``jupyterhub -f`` in a
session of its own, waits until ``/hub/health`` answers through the proxy,
and at teardown stops it (SIGTERM: the hub stops its servers and its proxy),
then kills whatever is left of it, proxy included.
"""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest
import requests

BIN = os.path.dirname(sys.executable)
SERVICE = "kerbauth-tests"


@dataclass
class Hub:
    process: subprocess.Popen
    port: int
    workdir: str
    token: str
    log_path: str
    config_path: str = ""
    env: dict = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def health(self, timeout=10):
        return requests.get(f"{self.url}/hub/health", timeout=timeout)

    def login_session(self, username, password, timeout=60):
        """Log in through the real form (GET for the ``_xsrf`` cookie, then POST).

        Returns the session and the POST's response (redirects not followed:
        302 is a login, 403 a refusal).
        """
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=timeout).raise_for_status()
        response = session.post(
            f"{self.url}/hub/login",
            data={"username": username, "password": password, "_xsrf": session.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=timeout,
        )
        return session, response

    def login(self, username, password, timeout=60):
        session, response = self.login_session(username, password, timeout)
        session.close()
        return response

    def api(self, method, path, timeout=60, **kwargs):
        return requests.request(
            method,
            f"{self.url}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=timeout,
            **kwargs,
        )

    def server(self, name):
        """The user's default server model, or None."""
        model = self.api("GET", f"/users/{name}").json()
        return model.get("servers", {}).get("")

    def request_server(self, name):
        """POST the server start through the REST API; the response (201, 202 or an error)."""
        return self.api("POST", f"/users/{name}/server")

    def start_server(self, name, deadline=90):
        """Start the user's server through the REST API and wait until it is ready."""
        response = self.request_server(name)
        assert response.status_code in (201, 202), (response.status_code, response.text)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            server = self.server(name)
            if server and server.get("ready"):
                return server
            if not server and response.status_code == 202:
                # pending and then gone: the spawn failed.
                raise AssertionError(f"the server of {name} failed:\n{self.log_text()[-6000:]}")
            time.sleep(0.2)
        raise AssertionError(f"the server of {name} never became ready:\n{self.log_text()[-6000:]}")

    def restart(self, deadline=60, while_stopped=None):
        """Stop the hub process (SIGTERM) and start it again on the same config and database.

        With ``c.JupyterHub.cleanup_servers = False`` in the config, the
        users' servers keep running meanwhile, as in a hub upgrade.
        ``while_stopped()``, when given, runs between the two, the old process gone.
        """
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        if while_stopped is not None:
            while_stopped()
        self.process = _launch(self.config_path, self.workdir, self.env, self.log_path)
        _wait_ready(self, deadline)

    def stop_server(self, name, deadline=60):
        response = self.api("DELETE", f"/users/{name}/server")
        assert response.status_code in (202, 204), (response.status_code, response.text)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.server(name) is None:
                return
            time.sleep(0.2)
        raise AssertionError(f"the server of {name} did not stop:\n{self.log_text()[-6000:]}")


def _free_port():
    from .ports import free_port  # loaded as a plugin before support.ports

    return free_port()


def _infrastructure(workdir, port, token):
    join = os.path.join
    return f"""
# --- the test's own hub (tests/support/hub.py) ---
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {_free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{_free_port()}"
c.ConfigurableHTTPProxy.pid_file = {join(workdir, "proxy.pid")!r}
c.JupyterHub.pid_file = {join(workdir, "jupyterhub.pid")!r}
c.JupyterHub.db_url = {"sqlite:///" + join(workdir, "jupyterhub.sqlite")!r}
c.JupyterHub.cookie_secret_file = {join(workdir, "cookie_secret")!r}
c.JupyterHub.services = [{{"name": {SERVICE!r}, "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": [{SERVICE!r}]}}]
c.JupyterHub.log_level = "DEBUG"
c.Spawner.cmd = [{join(BIN, "jupyterhub-singleuser")!r}]
c.Spawner.start_timeout = 60
"""


def _stop(process, workdir):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # The proxy runs in a session of its own; the hub normally stops it.
    try:
        with open(os.path.join(workdir, "proxy.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"configurable-http-proxy" in f.read():
                os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _launch(path, workdir, env, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [os.path.join(BIN, "jupyterhub"), "-f", path],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(hub, deadline):
    """Poll ``/hub/health`` through the proxy until it answers 200; stop the hub on failure."""
    end = time.monotonic() + deadline
    try:
        while True:
            if hub.process.poll() is not None:
                raise AssertionError(
                    f"the hub exited with {hub.process.returncode}:\n{hub.log_text()[-6000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                if hub.health(timeout=2).status_code == 200:
                    return
            if time.monotonic() > end:
                raise AssertionError(f"the hub never answered:\n{hub.log_text()[-6000:]}")
            time.sleep(0.1)
    except BaseException:
        _stop(hub.process, hub.workdir)
        raise


def start_hub(config, workdir, env=None, deadline=60, after=""):
    """A started :class:`Hub` for ``config`` (text), working in ``workdir``; ``after`` is
    config that must come after the test's own lines (a database of the test's own, say)."""
    port = _free_port()
    token = secrets.token_hex(16)
    path = os.path.join(workdir, "jupyterhub_config.py")
    with open(path, "w") as f:
        f.write(config + "\n" + _infrastructure(workdir, port, token) + "\n" + after)
    hub_env = {
        k: v
        for k, v in os.environ.items()
        if k != "KRB5CCNAME" and not k.startswith("JUPYTERHUB_") and not k.startswith("PYTEST")
    }
    hub_env["PATH"] = f"{BIN}:{hub_env.get('PATH', '/usr/bin:/bin')}"
    hub_env.update(env or {})
    log_path = os.path.join(workdir, "jupyterhub.log")
    process = _launch(path, workdir, hub_env, log_path)
    hub = Hub(process, port, workdir, token, log_path, path, hub_env)
    _wait_ready(hub, deadline)
    return hub


@pytest.fixture
def hub_factory(ccache_dir):
    """``hub_factory(config, env=None, after="")``: a running :class:`Hub`; all are stopped
    at teardown.

    It asks for ``ccache_dir`` so that a test's cache directory is removed only
    after its hubs have stopped: a hub still renewing would make it again.
    """
    started = []

    def factory(config, env=None, after=""):
        workdir = tempfile.mkdtemp(prefix="kerbauth-hub-")
        started.append(workdir)
        hub = start_hub(config, workdir, env=env, after=after)
        # By its place, not [-1]: hubs started on two threads at once must not swap entries.
        started[started.index(workdir)] = (workdir, hub)
        return hub

    try:
        yield factory
    finally:
        for item in started:
            workdir, hub = item if isinstance(item, tuple) else (item, None)
            if hub is not None:
                _stop(hub.process, workdir)
                # Shown by pytest for a failing test only.
                print(f"--- the end of {hub.log_path} ---\n{hub.log_text()[-8000:]}")
            shutil.rmtree(workdir, ignore_errors=True)
