"""The demo, as a newcomer runs it: log in, get a server, see the ticket, Ctrl-C, nothing left.

The demo runs as a subprocess (``demo/run.py``, what ``make demo`` starts) on
a free port; readiness is polled on the hub's health page. A real user logs
in over HTTP, starts their server, and types ``klist`` into a real JupyterLab
terminal. Then SIGINT goes to the demo's process group, as Ctrl-C would, and
every process, account, file and PAM service it made must be gone.
"""

import glob
import os
import pwd
import socket
import subprocess
import sys

import pytest

from kerbauth.core.ccache import read_ccache
from support.demo import DEMO, PREFIX, alive, log_in, run_in_terminal, running_demo, start_server

KERBAUTH = os.path.join(os.path.dirname(sys.executable), "kerbauth")


def account_exists(name):
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


@pytest.mark.parametrize("mode", ["ldap", "pam"])
def test_demo_gives_each_user_their_ticket_and_ctrl_c_leaves_nothing(mode):
    with running_demo("--mode", mode) as demo:
        assert f"kerbauth demo ({mode.upper()} mode) is running: {demo.url}/" in demo.output
        assert sorted(demo.users) == ["kbdemo-alice", "kbdemo-bob"]
        assert all(account_exists(name) for name in demo.users)
        alice, bob = "kbdemo-alice", "kbdemo-bob"

        # A wrong password (bob's) does not let alice in.
        _, refused = log_in(demo, alice, demo.users[bob])
        assert refused.status_code == 403, refused.text[:500]

        session, response = log_in(demo, alice, demo.users[alice])
        assert response.status_code == 302, response.text[:500]
        lab = start_server(demo, session, alice)
        assert "JupyterLab" in lab.text

        # In the server's own terminal, klist finds alice's ticket in her cache.
        screen = run_in_terminal(
            demo,
            session,
            alice,
            "klist; echo KRB5CCNAME=$KRB5CCNAME; echo USER=$(id -un); echo END-$((6*7))",
            until="END-42",
        )
        cache = os.path.join(demo.workdir, "ccache", f"krb5cc_{alice}")
        assert f"Default principal: {alice}@{demo.realm}" in screen, screen
        assert f"krbtgt/{demo.realm}@{demo.realm}" in screen, screen
        assert f"KRB5CCNAME=FILE:{cache}" in screen, screen
        assert f"USER={alice}" in screen, screen
        st = os.stat(cache)
        assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam(alice).pw_uid, 0o600)
        assert read_ccache(cache).principal == f"{alice}@{demo.realm}"

        # The doctor command the banner prints passes on the demo's own setup.
        doctor = subprocess.run(
            [KERBAUTH, "doctor", "-f", demo.config, "--user", alice],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "problem" not in doctor.stdout

        processes = demo.processes()
        uids = demo.uids()
        # realm, directory (LDAP mode), hub, proxy, alice's server and more
        assert len(processes) >= (6 if mode == "ldap" else 5), processes
        status = demo.interrupt()

    assert status == 0, demo.output[-4000:]
    assert "stopped; the realm, the directory, the demo accounts" in demo.output
    assert alive(processes) == {}, demo.output[-4000:]
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid_of(pid) in uids]
    assert not any(account_exists(name) for name in demo.users)
    assert not os.path.exists(demo.workdir)
    assert glob.glob(f"/etc/pam.d/{PREFIX}*") == []
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", demo.port))  # nothing listens on the demo's port any more


def _uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def test_demo_refuses_a_busy_port_before_making_anything():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = set(glob.glob(f"/tmp/{PREFIX}*"))
        result = subprocess.run(
            [sys.executable, DEMO, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot start: port {port} is in use" in result.stderr
    assert set(glob.glob(f"/tmp/{PREFIX}*")) == before
    assert not account_exists("kbdemo-alice")


def test_demo_help_names_the_flags():
    result = subprocess.run(
        [sys.executable, DEMO, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "--mode {ldap,pam}" in result.stdout and "--port" in result.stdout
