"""The demo (demo/run.py) as the tests run it, and a logged-in user's way into it.

:func:`running_demo` starts the demo as a subprocess on a free port, in a
session of its own, waits for it by polling the hub's health page, and
stops it the way Ctrl-C does (SIGINT to its process group). If the demo
does not stop, it is killed and what it made is removed here, so a failing
test leaves nothing behind either.
"""

import asyncio
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "demo", "run.py")
PREFIX = "kbdemo-"


def process_table():
    """``{pid: (ppid, uid, start time)}`` of every process running now.

    Zombies are left out: they have exited, and reaping them is their new
    parent's business (init's, once the demo is gone).
    """
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            uid = os.stat(f"/proc/{entry}").st_uid
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), uid, int(fields[19]))
    return table


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(processes):
    """Those of ``processes`` (``{(pid, start time)}``) still running, with their command lines.

    A pid is only the same process if its start time is the same too.
    """
    table = process_table()
    return {
        (pid, start): command_line(pid)
        for pid, start in processes
        if table.get(pid, (0, 0, None))[2] == start
    }


@dataclass
class Demo:
    process: subprocess.Popen
    port: int
    lines: list = field(default_factory=list)
    users: dict = field(default_factory=dict)  # name -> password, from the banner
    workdir: str = ""
    config: str = ""
    realm: str = ""

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self):
        return "".join(self.lines)

    def uids(self):
        return {pwd.getpwnam(name).pw_uid for name in self.users}

    def processes(self):
        """``{(pid, start time)}`` of the demo, everything it started, and the demo users'."""
        table = process_table()
        uids = self.uids()
        found = {self.process.pid}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, uid, _) in table.items():
                if pid not in found and (ppid in found or uid in uids):
                    found.add(pid)
                    changed = True
        return {(pid, table[pid][2]) for pid in found if pid in table}

    def wait_for_output(self, text, deadline):
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"the demo never printed {text!r}:\n{self.output[-6000:]}")

    def interrupt(self, timeout=90):
        """What Ctrl-C in its terminal does: SIGINT to its process group; its exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)


def _read(process, lines):
    for line in process.stdout:
        lines.append(line)


def _wait_ready(demo, deadline):
    while time.monotonic() < deadline:
        if demo.process.poll() is not None:
            raise AssertionError(f"the demo exited early:\n{demo.output[-6000:]}")
        try:
            if requests.get(f"{demo.url}/hub/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the demo's hub never answered:\n{demo.output[-6000:]}")


def _parse_banner(demo):
    text = demo.output
    demo.users = dict(re.findall(r"^\s+(kbdemo-\S+)\s+password: (\S+)$", text, re.MULTILINE))
    demo.workdir = re.search(r"working in (\S+)", text).group(1)
    demo.config = re.search(r"doctor -f (\S+)", text).group(1)
    demo.realm = re.search(r"the ticket of \S+@(\S+),", text).group(1)


def _remove_leftovers(demo):
    """Last resort after a demo that had to be killed: what it would have removed."""
    uids = set()
    for name in demo.users or {}:
        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(name).pw_uid)
    for pid, (_, uid, _) in process_table().items():
        if uid in uids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for name in demo.users or {}:
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True, check=False)
    if demo.workdir.startswith(f"/tmp/{PREFIX}"):
        shutil.rmtree(demo.workdir, ignore_errors=True)
    for path in glob.glob(f"/etc/pam.d/{PREFIX}*"):
        with open(path) as f:
            if f.readline().startswith("# kerbauth demo"):
                os.unlink(path)


@contextlib.contextmanager
def running_demo(*args, deadline=120):
    """Start ``demo/run.py *args`` on a free port; yield a :class:`Demo` once it is ready."""
    # Imported here: this module is loaded as a plugin before support.ports is.
    from .ports import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, DEMO, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    demo = Demo(process, port)
    reader = threading.Thread(target=_read, args=(process, demo.lines), daemon=True)
    reader.start()
    try:
        end = time.monotonic() + deadline
        _wait_ready(demo, end)
        demo.wait_for_output("Ctrl-C stops the demo", end)
        _parse_banner(demo)
        yield demo
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                demo.interrupt()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _remove_leftovers(demo)
        reader.join(10)
        process.stdout.close()


# --- a user's way in ----------------------------------------------------------------------


def log_in(demo, name, password):
    """A requests session logged in to the hub (login form with its _xsrf field)."""
    session = requests.Session()
    session.get(f"{demo.url}/hub/login", timeout=10).raise_for_status()
    response = session.post(
        f"{demo.url}/hub/login",
        data={"username": name, "password": password, "_xsrf": session.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    )
    return session, response


def start_server(demo, session, name, deadline=90):
    """Ask the hub for the user's server, as the spawn page does; wait until it runs."""
    session.get(f"{demo.url}/hub/spawn", timeout=30).raise_for_status()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        model = session.get(f"{demo.url}/hub/api/users/{name}", timeout=10).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            # Opening JupyterLab runs the OAuth round trip that gives the server's cookie.
            lab = session.get(f"{demo.url}/user/{name}/lab", timeout=30)
            lab.raise_for_status()
            return lab
        time.sleep(0.3)
    raise AssertionError(f"the server of {name} never became ready:\n{demo.output[-6000:]}")


def run_in_terminal(demo, session, name, command, until, deadline=30):
    """Open a JupyterLab terminal of ``name``'s server, type ``command``, return the screen.

    Reads the terminal's websocket until ``until`` appears. Make ``until``
    something only the command's output shows, not its echo (``echo
    END-$((6*7))`` and ``END-42``).
    """
    base = f"{demo.url}/user/{name}"
    xsrf = session.cookies.get("_xsrf", path=f"/user/{name}/")
    created = session.post(f"{base}/api/terminals", headers={"X-XSRFToken": xsrf}, timeout=30)
    created.raise_for_status()
    terminal = created.json()["name"]
    cookies = "; ".join(
        f"{c.name}={c.value}" for c in session.cookies if c.path in ("/", f"/user/{name}/")
    )

    async def talk():
        url = f"ws://127.0.0.1:{demo.port}/user/{name}/terminals/websocket/{terminal}"
        ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookies}))
        try:
            await ws.write_message(json.dumps(["stdin", command + "\r"]))
            screen = ""
            end = time.monotonic() + deadline
            while until not in screen:
                message = await asyncio.wait_for(ws.read_message(), end - time.monotonic())
                if message is None:
                    break
                kind, *payload = json.loads(message)
                if kind == "stdout":
                    screen += payload[0]
            return screen
        finally:
            ws.close()

    try:
        return asyncio.run(talk())
    finally:
        session.delete(
            f"{base}/api/terminals/{terminal}", headers={"X-XSRFToken": xsrf}, timeout=30
        )
