"""Both backends against the real test realm, run as the user the ticket is for.

Each request returns the bytes of a FILE cache; the process that parses the
keytab or the cache (kinit, a krb5 worker) runs as ``run_as`` with no
supplementary groups, sees a minimal environment, and leaves nothing behind.
"""

import base64
import contextlib
import glob
import grp
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kerbauth.core import tickets
from kerbauth.core.backends.children import child_environment
from kerbauth.core.backends.scratch import remove_stale_scratch
from kerbauth.core.ccache import parse_ccache
from kerbauth.core.errors import TicketError, cause_from_code
from kerbauth.core.keytab import open_keytab
from support.ports import free_port_block
from support.realm import add_principal

BACKENDS = ["krb5", "kinit"]
PASSWORD = "Correct-Horse-7-Battery"


def own_scratch():
    """Scratch directories of this test process (the "hub") left in the temporary directory."""
    return glob.glob(os.path.join(tempfile.gettempdir(), f"kerbauth-{os.getpid()}-*"))


# A kinit that records who it runs as (/proc/self/status) and its environment,
# then becomes the real kinit: the same process, uid and groups.
RECORDING_KINIT = """#!/bin/sh
grep -E '^(Uid|Gid|Groups):' /proc/self/status > {record}.status
env -0 > {record}.env
exec kinit "$@"
"""


@pytest.fixture
def recording_kinit():
    """``(kinit_path, read)``: read() gives ``{"Uid": [...], "Gid": [...], "Groups": [...]}``."""
    directory = tempfile.mkdtemp(prefix="kbt-kinit-")
    os.chmod(directory, 0o1777)  # the user's kinit writes its record here
    record = os.path.join(directory, "record")
    path = os.path.join(directory, "kinit")
    with open(path, "w") as f:
        f.write(RECORDING_KINIT.format(record=record))
    os.chmod(path, 0o755)

    def read():
        with open(record + ".status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        os.unlink(record + ".status")
        with open(record + ".env", "rb") as f:
            env = dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)
        os.unlink(record + ".env")
        return {k: v.split() for k, v in status.items()}, env

    try:
        yield path, read
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def worker_status(backend):
    """Uid, Gid and Groups of each idle krb5 worker, read from /proc as root."""
    found = []
    for workers in backend._idle.values():
        for worker in workers:
            with open(f"/proc/{worker.pid}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines())
            found.append({k: status[k].split() for k in ("Uid", "Gid", "Groups")})
    return found


@pytest.fixture(params=["krb5", "krb5-without-fork-server", "kinit"])
def backend_as(request, krb5_env, recording_kinit):
    """``(backend, ran_as)``: ``ran_as()`` gives (uids, gids, groups) of the last child."""
    if request.param.startswith("krb5"):
        made = tickets.make_backend("krb5", max_workers=2)
        # Where the fork server cannot work (a kernel without pidfds), each
        # worker is a process of its own.
        made._forking_failed = request.param == "krb5-without-fork-server"

        def ran_as():
            (status,) = worker_status(made)
            return status["Uid"], status["Gid"], status["Groups"]

    else:
        made = tickets.make_backend("kinit", kinit_path=recording_kinit[0])

        def ran_as():
            status, _ = recording_kinit[1]()
            return status["Uid"], status["Gid"], status["Groups"]

    try:
        yield made, ran_as
    finally:
        getattr(made, "close", lambda: None)()


@pytest.fixture
def user(make_user):
    return make_user()


def keytab_for(realm, account, owner="user"):
    """A keytab of the account's principal in its home, owned by the user (or root), 0600."""
    path = os.path.join(account.home, f"{account.name}.keytab")
    uid, gid = (account.uid, account.gid) if owner == "user" else (0, 0)
    principal = add_principal(realm, account.name, path, uid=uid, gid=gid)
    return principal, path


def keytab_ticket(backend, principal, keytab, account, timeout=10, run_as="user"):
    fd = open_keytab(keytab, account.uid)
    try:
        run_as = (account.uid, account.gid) if run_as == "user" else run_as
        return backend.keytab_ticket(principal, fd, timeout, run_as=run_as)
    finally:
        os.close(fd)


def as_user(account):
    return ([str(account.uid)] * 4, [str(account.gid)] * 4, [])


@pytest.fixture
def hub_groups(make_test_group):
    """The test process (the "hub") holds a supplementary group a child must not keep."""
    group = grp.getgrnam(make_test_group()).gr_gid
    before = os.getgroups()
    os.setgroups([group])
    try:
        yield group
    finally:
        os.setgroups(before)


@pytest.mark.parametrize("owner", ["user", "root"])
def test_keytab_ticket_is_made_as_the_user(backend_as, realm, user, owner, hub_groups):
    # A root-owned keytab too: the child (as the user) could not reopen it by
    # path or /dev/fd; it gets the checked bytes.
    backend, ran_as = backend_as
    principal, keytab = keytab_for(realm, user, owner)
    data = keytab_ticket(backend, principal, keytab, user)
    ticket = parse_ccache(data)
    assert ticket.principal == principal
    assert ticket.end > time.time()
    assert ran_as() == as_user(user)
    assert own_scratch() == []


def test_password_ticket_and_its_renewal_are_made_as_the_user(backend_as, realm, user):
    backend, ran_as = backend_as
    principal = f"{user.name}@{realm.realm}"
    realm.addprinc(principal, PASSWORD)
    run_as = (user.uid, user.gid)
    data = backend.password_ticket(principal, PASSWORD, 2 * 86400, 10, run_as=run_as)
    ticket = parse_ccache(data)
    assert ticket.principal == principal
    assert ticket.renew_till > ticket.end
    assert ran_as() == as_user(user)
    time.sleep(1.1)  # a renewed ticket starts at a later second than the first
    renewed = parse_ccache(backend.renew_ticket(data, 10, run_as=run_as))
    assert renewed.principal == principal
    assert renewed.start > ticket.start and renewed.end > ticket.end
    assert ran_as() == as_user(user)
    assert own_scratch() == []


def test_wrong_password_and_unrenewable_ticket(backend_as, realm, user):
    backend, _ = backend_as
    principal = f"{user.name}@{realm.realm}"
    realm.addprinc(principal, PASSWORD)
    run_as = (user.uid, user.gid)
    with pytest.raises(TicketError) as info:
        backend.password_ticket(principal, "wrong", 0, 10, run_as=run_as)
    assert info.value.cause == "password"
    data = backend.password_ticket(principal, PASSWORD, 0, 10, run_as=run_as)
    assert parse_ccache(data).renew_till == 0
    with pytest.raises(TicketError) as info:
        backend.renew_ticket(data, 10, run_as=run_as)
    assert "fulfill requested option" in str(info.value)
    assert info.value.cause == "expired"  # the user must log in again
    assert own_scratch() == []


def test_a_ticket_past_its_renewable_life_is_expired(backend_as, realm, user):
    backend, _ = backend_as
    principal = f"{user.name}@{realm.realm}"
    realm.addprinc(principal, PASSWORD)
    realm.run_kadminl(f"modprinc -maxlife 2s -maxrenewlife 3s {principal}")
    run_as = (user.uid, user.gid)
    data = backend.password_ticket(principal, PASSWORD, 86400, 10, run_as=run_as)
    ticket = parse_ccache(data)
    assert ticket.end < ticket.renew_till <= ticket.start + 3
    while time.time() <= ticket.renew_till + 1:  # the KDC's clock, in whole seconds
        time.sleep(0.2)
    with pytest.raises(TicketError) as info:
        backend.renew_ticket(data, 10, run_as=run_as)
    assert info.value.cause == "expired", str(info.value)
    assert "log in again" in info.value.jupyterhub_message  # what the user can do
    assert own_scratch() == []


# The MIT error codes kerbauth knows, by their names in krb5.h, and the cause each means.
CODE_CAUSES = {
    "KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN": "principal",
    "KRB5_KT_NOTFOUND": "principal",
    "KRB5_KT_KVNONOTFOUND": "principal",
    "KRB5_KDC_UNREACH": "kdc_unreachable",
    "KRB5_REALM_UNKNOWN": "kdc_unreachable",
    "KRB5_REALM_CANT_RESOLVE": "kdc_unreachable",
    "KRB5KRB_AP_ERR_SKEW": "clock_skew",
    "KRB5_KDCREP_SKEW": "clock_skew",
    "KRB5KDC_ERR_PREAUTH_FAILED": "password",
    "KRB5_PREAUTH_FAILED": "password",
    "KRB5KRB_AP_ERR_BAD_INTEGRITY": "password",
    "KRB5KRB_AP_ERR_TKT_EXPIRED": "expired",
    "KRB5_KT_BADNAME": "keytab",
    "KRB5_KT_IOERR": "keytab",
    "KRB5_KT_FORMAT": "keytab",
    "KRB5_CONFIG_CANTOPEN": "config",
    "KRB5_CONFIG_NODEFREALM": "config",
    "KRB5KDC_ERR_BADOPTION": "other",  # "expired" only when renewing
    "KRB5KDC_ERR_POLICY": "other",
}


def test_error_codes_are_those_of_the_installed_mit_krb5():
    flags = subprocess.run(["krb5-config", "--cflags"], capture_output=True, text=True, check=True)
    words = flags.stdout.split()
    directories = [b for a, b in zip(words, words[1:], strict=False) if a == "-isystem"]
    directories += [w[2:] for w in words if w.startswith("-I")] + ["/usr/include"]
    header = next(p for d in directories if (p := Path(d, "krb5", "krb5.h")).exists())
    codes = dict(re.findall(r"#define (KRB5\w+)\s+\((-?\d+)L\)", header.read_text()))
    for name, cause in CODE_CAUSES.items():
        assert cause_from_code(int(codes[name])) == cause, name
    assert cause_from_code(int(codes["KRB5KDC_ERR_BADOPTION"]), renewing=True) == "expired"
    assert cause_from_code(None) == "other"


@pytest.mark.parametrize("name", BACKENDS)
def test_a_password_beyond_ascii_works_under_lc_all_c(name, realm, user, monkeypatch):
    # The children run under LC_ALL=C: the password's UTF-8 bytes still reach the KDC as they are.
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    principal = f"{user.name}@{realm.realm}"
    password = "Grüße-Kennwort-7-ÄÖÜ"
    realm.addprinc(principal)
    # On stdin: kadmin.local's -q parser does not keep such a password intact.
    realm.run([realm.kadmin_local, "-q", f"cpw {principal}"], input=f"{password}\n{password}\n")
    backend = tickets.make_backend(name, max_workers=1)
    try:
        data = backend.password_ticket(principal, password, 0, 10, run_as=(user.uid, user.gid))
    finally:
        backend.close()
    assert parse_ccache(data).principal == principal


GERMAN = {
    "LANG": "de_DE.UTF-8",
    "LC_ALL": "de_DE.UTF-8",
    "LC_MESSAGES": "de_DE.UTF-8",
    "LANGUAGE": "de",
}


@pytest.mark.parametrize("name", BACKENDS)
def test_a_german_speaking_hub_gets_the_same_causes(name, realm, user, monkeypatch):
    principal = f"{user.name}@{realm.realm}"
    realm.addprinc(principal, PASSWORD)
    # The host really speaks German: kinit, run in the hub's own locale, says so.
    german = subprocess.run(
        ["kinit", "--", f"nobody-here@{realm.realm}"],
        env={**os.environ, **GERMAN, "KRB5_CONFIG": realm.env["KRB5_CONFIG"]},
        input="x\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Kerberos-Datenbank" in german.stderr and "not found" not in german.stderr
    for variable, value in GERMAN.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend(name, max_workers=1)
    run_as = (user.uid, user.gid)
    try:
        with pytest.raises(TicketError) as unknown:
            backend.password_ticket(f"nobody-here@{realm.realm}", "x", 0, 10, run_as=run_as)
        with pytest.raises(TicketError) as wrong:
            backend.password_ticket(principal, "wrong", 0, 10, run_as=run_as)
        data = backend.password_ticket(principal, PASSWORD, 0, 10, run_as=run_as)
        with pytest.raises(TicketError) as unrenewable:
            backend.renew_ticket(data, 10, run_as=run_as)
    finally:
        getattr(backend, "close", lambda: None)()
    assert unknown.value.cause == "principal", str(unknown.value)
    assert wrong.value.cause == "password", str(wrong.value)
    assert unrenewable.value.cause == "expired", str(unrenewable.value)
    assert own_scratch() == []


def test_principal_unknown_to_the_kdc(backend_as, realm, user):
    backend, _ = backend_as
    _, keytab = keytab_for(realm, user)
    with pytest.raises(TicketError) as info:
        keytab_ticket(backend, f"nobody-here@{realm.realm}", keytab, user)
    assert info.value.cause == "principal"
    assert own_scratch() == []


def test_keytab_of_another_principal_gives_no_ticket(backend_as, realm, user, make_user):
    # Bob's keytab at Alice's keytab path must not give Alice (or Bob) a ticket:
    # the principal comes from the username, never from the keytab.
    backend, _ = backend_as
    bob = make_user()
    _, bob_keytab = keytab_for(realm, bob)
    alice_principal = add_principal(realm, user.name)
    os.chown(bob_keytab, user.uid, user.gid)
    with pytest.raises(TicketError) as info:
        keytab_ticket(backend, alice_principal, bob_keytab, user)
    assert info.value.cause == "principal"


def test_stale_keytab_is_a_key_the_kdc_refuses(backend_as, realm, user):
    backend, _ = backend_as
    principal, keytab = keytab_for(realm, user)
    keytab_ticket(backend, principal, keytab, user)
    realm.run_kadminl(f"cpw -randkey {principal}")  # the keytab is now stale
    with pytest.raises(TicketError) as info:
        keytab_ticket(backend, principal, keytab, user)
    # tickets.keytab_ticket turns this into cause "keytab", naming the file.
    assert info.value.cause == "password", str(info.value)


def python_as(user, realm, code, *args):
    """Run ``code`` in this venv's Python as ``user`` (a hub without root), in the realm."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": os.environ["PATH"], "KRB5_CONFIG": realm.env["KRB5_CONFIG"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", BACKENDS)
def test_hub_without_root(name, realm, user):
    """run_as=None: the hub's own uid (here a real user running the backend itself)."""
    principal, keytab = keytab_for(realm, user)
    code = f"""
import base64, os, sys
from kerbauth.core import tickets
from kerbauth.core.keytab import open_keytab
backend = tickets.make_backend({name!r})
fd = open_keytab({keytab!r}, os.getuid())
data = backend.keytab_ticket({principal!r}, fd, 10)
print(base64.b64encode(data).decode())
try:
    backend.keytab_ticket({principal!r}, fd, 10, run_as=(0, 0))
except Exception as e:
    print(type(e).__name__, e.cause, e)
getattr(backend, "close", lambda: None)()
"""
    out = python_as(user, realm, code)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert parse_ccache(base64.b64decode(first)).principal == principal
    # A hub without root cannot run the child as another uid, and says why.
    assert second.startswith("TicketError config ")
    assert "the hub is not root" in second


def test_kdc_stopped_fails_fast_with_a_clear_cause(private_realm, make_user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", private_realm.env["KRB5_CONFIG"])
    account = make_user()
    principal, keytab = keytab_for(private_realm, account)
    private_realm.stop_kdc()
    for backend_name in BACKENDS:
        backend = tickets.make_backend(backend_name)
        started = time.monotonic()
        with pytest.raises(TicketError) as info:
            try:
                keytab_ticket(backend, principal, keytab, account, timeout=5)
            finally:
                getattr(backend, "close", lambda: None)()
        assert time.monotonic() - started < 5
        assert info.value.cause == "kdc_unreachable", (backend_name, str(info.value))
        assert "Cannot contact any KDC" in str(info.value)
    assert own_scratch() == []


@pytest.fixture
def readable_dir():
    """A directory (0755) whose files the user's child can read, removed afterwards."""
    path = tempfile.mkdtemp(prefix="kbt-conf-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--", path], check=True)


@pytest.fixture
def hung_kdc_conf(realm, readable_dir):
    """A krb5.conf whose KDC address takes requests (UDP and TCP) and never answers."""
    port = free_port_block(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", port))
    tcp.listen(64)
    accepted = []
    stop = threading.Event()

    def accept():
        tcp.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(tcp.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    conf = Path(readable_dir) / "krb5-hung.conf"
    conf.write_text(
        "[libdefaults]\n"
        f" default_realm = {realm.realm}\n"
        " dns_lookup_kdc = false\n"
        "[realms]\n"
        f" {realm.realm} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
    )
    conf.chmod(0o644)
    try:
        yield str(conf)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        udp.close()
        tcp.close()


def children(pattern):
    """Pids of this process's children whose command line matches ``pattern``."""
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", pattern],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(out.stdout.split())


def descendants(pid=None):
    """Pids of all descendants of ``pid`` (this process), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid or os.getpid()}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def worker_pids():
    """Pids of the krb5 workers this test process started (directly or by its fork server)."""
    pids = set()
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "kerbauth-worker":
                    pids.add(pid)
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("name", BACKENDS)
def test_hung_kdc_request_ends_at_the_timeout(realm, user, name, hung_kdc_conf, monkeypatch):
    principal, keytab = keytab_for(realm, user)
    monkeypatch.setenv("KRB5_CONFIG", hung_kdc_conf)
    before = worker_pids()
    backend = tickets.make_backend(name)
    started = time.monotonic()
    with pytest.raises(TicketError) as info:
        try:
            keytab_ticket(backend, principal, keytab, user, timeout=2)
        finally:
            getattr(backend, "close", lambda: None)()
    elapsed = time.monotonic() - started
    assert info.value.cause == "timeout"
    assert 2 <= elapsed < 4, elapsed
    # The request really ended: no worker or kinit left waiting on the KDC,
    # and the scratch directory of the killed child is gone.
    assert worker_pids() <= before
    assert children(principal) == set()
    assert own_scratch() == []


def test_krb5_workers_are_reused_and_close(realm, user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=2)
    principal, keytab = keytab_for(realm, user)
    before = worker_pids()
    for _ in range(5):
        keytab_ticket(backend, principal, keytab, user)
    assert len(worker_pids() - before) == 1
    backend.close()
    assert worker_pids() <= before


def test_krb5_pool_serves_each_uid_with_its_own_workers_within_max_workers(
    realm, make_user, monkeypatch
):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=2)
    accounts = [make_user() for _ in range(3)]
    keytabs = [keytab_for(realm, account) for account in accounts]
    before = worker_pids()
    try:
        for account, (principal, keytab) in zip(accounts * 2, keytabs * 2, strict=True):
            assert parse_ccache(keytab_ticket(backend, principal, keytab, account)).principal == (
                principal
            )
            # Never more than max_workers processes; the idle ones run as their uid.
            assert len(worker_pids() - before) <= 2
            running = worker_status(backend)
            assert as_user(account)[:2] in [(s["Uid"], s["Gid"]) for s in running]
            for status in running:
                assert status["Groups"] == []
        keys = {key for key, workers in backend._idle.items() if workers}
        assert keys <= {(a.uid, a.gid) for a in accounts} and len(keys) == 2
    finally:
        backend.close()
    assert worker_pids() <= before


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_warm_starts_the_fork_server_the_first_worker_is_forked_from(realm, user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=2)
    principal, keytab = keytab_for(realm, user)
    try:
        assert backend._fork_server is None  # making the backend starts nothing
        backend.warm()
        server = backend._fork_server
        assert server is not None and server.alive()
        backend.warm()
        assert backend._fork_server is server and backend._processes == 0
        keytab_ticket(backend, principal, keytab, user)
        (worker,) = backend._idle[(user.uid, user.gid)]
        assert parent_pid(worker.pid) == server.proc.pid
        assert backend._fork_server is server
    finally:
        backend.close()
    assert not server.alive()


WARM_HUB = """
import json, os, sys
from kerbauth.core import tickets
from kerbauth.core.keytab import open_keytab
backend = tickets.make_backend(sys.argv[1])
idle = lambda: [w.pid for ws in getattr(backend, "_idle", {}).values() for w in ws]
backend.warm()
backend.warm()
warmed = idle()
fd = open_keytab(sys.argv[3], os.getuid())
backend.keytab_ticket(sys.argv[2], fd, 10)
print(json.dumps([warmed, idle()]))
getattr(backend, "close", lambda: None)()
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_warm_in_a_hub_without_root(name, realm, user):
    # krb5: one worker of the hub's own uid waits in the pool and serves the
    # first request; kinit: nothing to start.
    principal, keytab = keytab_for(realm, user)
    out = python_as(user, realm, WARM_HUB, name, principal, keytab)
    assert out.returncode == 0, out.stderr
    warmed, served = json.loads(out.stdout)
    if name == "krb5":
        assert len(warmed) == 1 and served == warmed
    else:
        assert warmed == served == []


def test_krb5_worker_that_died_while_idle_is_replaced(realm, user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=1)
    principal, keytab = keytab_for(realm, user)
    keytab_ticket(backend, principal, keytab, user)
    (worker,) = backend._idle[(user.uid, user.gid)]
    os.kill(worker.pid, signal.SIGKILL)
    keytab_ticket(backend, principal, keytab, user)
    (replacement,) = backend._idle[(user.uid, user.gid)]
    assert replacement is not worker and replacement.alive()
    backend.close()


def test_krb5_worker_sees_only_the_minimal_environment(realm, user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-token")
    monkeypatch.setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_0")
    monkeypatch.setenv("KRB5_CLIENT_KTNAME", "FILE:/etc/krb5.keytab")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    backend = tickets.make_backend("krb5", max_workers=1)
    principal, keytab = keytab_for(realm, user)
    try:
        keytab_ticket(backend, principal, keytab, user)
        (worker,) = backend._idle[(user.uid, user.gid)]
        with open(f"/proc/{worker.pid}/environ", "rb") as f:
            environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
    finally:
        backend.close()
    expected = child_environment(python=True)
    assert {k.decode(): v.decode() for k, v in environ.items()} == expected
    assert set(expected) <= {"PATH", "KRB5_CONFIG", "LC_ALL", "TZ", "LANG"} | {
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONHOME",
        "KRB5_TRACE",
        "KRB5RCACHEDIR",
        "KRB5RCACHETYPE",
        "KRB5RCACHENAME",
        "KRB5_KDC_PROFILE",
    }
    assert expected["LC_ALL"] == "C" and "LANGUAGE" not in expected
    assert expected["KRB5_CONFIG"] == realm.env["KRB5_CONFIG"]


# A "hub" that asks for a renewal through a KDC that never answers: the TGT to
# renew sits in the child's scratch directory while it waits.
HUB = """
import base64, sys
from kerbauth.core import tickets
backend = tickets.make_backend(sys.argv[1])
data = base64.b64decode(sys.argv[2])
print("asking", flush=True)
backend.renew_ticket(data, 600, run_as=(int(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_kill_9_mid_request_leaves_no_ticket_once_stale_scratch_is_removed(
    name, realm, user, hung_kdc_conf, monkeypatch
):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    principal, keytab = keytab_for(realm, user)
    tgt = keytab_ticket(tickets.make_backend("kinit"), principal, keytab, user)
    monkeypatch.setenv("KRB5_CONFIG", hung_kdc_conf)
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB, name, base64.b64encode(tgt).decode(), str(user.uid)]
        + [str(user.gid)],
        stdout=subprocess.PIPE,
        text=True,
    )
    pattern = os.path.join(tempfile.gettempdir(), f"kerbauth-{hub.pid}-*")
    live = tempfile.mkdtemp(prefix=f"kerbauth-{os.getpid()}-", dir=tempfile.gettempdir())
    os.rename(live, live := live.rsplit("-", 1)[0] + "-" + "0" * 16)
    try:
        assert hub.stdout.readline() == "asking\n"
        deadline = time.monotonic() + 20
        held = []
        while time.monotonic() < deadline and not held:
            for directory in glob.glob(pattern):
                for entry in os.listdir(directory):
                    with open(os.path.join(directory, entry), "rb") as f:
                        if f.read() == tgt:
                            held.append(directory)
        assert held, "the child holds the ticket in its scratch directory"
        below = set()  # kinit, or the fork server and its worker, once started
        while time.monotonic() < deadline and len(below) < (1 if name == "kinit" else 2):
            below = descendants(hub.pid)
        assert below
        hub.kill()
        hub.wait()
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert glob.glob(pattern) == held  # the TGT stays after the kill ...
        removed = remove_stale_scratch()
        assert held[0] in removed
        assert glob.glob(pattern) == []  # ... until the next start-up removes it
        assert os.path.isdir(live), "a live hub's scratch directory is kept"
    finally:
        hub.kill()
        hub.wait()
        hub.stdout.close()
        os.rmdir(live)
        for directory in glob.glob(pattern):
            subprocess.run(["rm", "-rf", "--", directory], check=False)


def test_child_environment_keeps_only_what_kerberos_and_python_need():
    environ = {
        "PATH": "/usr/bin",
        "LANG": "de_DE.UTF-8",
        "LANGUAGE": "de",
        "LC_ALL": "de_DE.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "LC_SECRET": "x",
        "TZ": "UTC",
        "KRB5_CONFIG": "/etc/krb5.conf",
        "KRB5_TRACE": "/dev/stderr",
        "KRB5CCNAME": "FILE:/tmp/krb5cc_0",
        "KRB5_KTNAME": "FILE:/etc/krb5.keytab",
        "KRB5_CLIENT_KTNAME": "FILE:/etc/krb5.keytab",
        "JUPYTERHUB_CRYPT_KEY": "k",
        "JUPYTERHUB_API_TOKEN": "t",
        "CONFIGPROXY_AUTH_TOKEN": "t",
        "HOME": "/root",
        "PYTHONPATH": "/opt/site",
    }
    kinit = child_environment(environ)
    assert kinit == {
        "PATH": "/usr/bin",
        "LANG": "de_DE.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "KRB5_CONFIG": "/etc/krb5.conf",
        "KRB5_TRACE": "/dev/stderr",
    }
    assert child_environment(environ, python=True) == {**kinit, "PYTHONPATH": "/opt/site"}
    assert json.dumps(child_environment({}))  # PATH at least


def test_other_processes_of_the_user_cannot_look_into_a_worker(realm, user, monkeypatch):
    # The worker runs as the user and holds the user's keys and tickets while it
    # works; it makes itself non-dumpable, so the user's own processes cannot
    # read its memory, environment or descriptors (a keytab memfd, say).
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=1)
    principal, keytab = keytab_for(realm, user)
    try:
        keytab_ticket(backend, principal, keytab, user)
        (worker,) = backend._idle[(user.uid, user.gid)]
        pid = worker.pid
        for argv in (["cat", f"/proc/{pid}/environ"], ["ls", f"/proc/{pid}/fd"]):
            out = subprocess.run(
                argv, user=user.uid, group=user.gid, capture_output=True, text=True, check=False
            )
            assert out.returncode != 0 and "Permission denied" in out.stderr, (argv, out)
        # ... while a process of the user that did not do so is open to them.
        plain = subprocess.Popen(["sleep", "30"], user=user.uid, group=user.gid)
        try:
            out = subprocess.run(
                ["ls", f"/proc/{plain.pid}/fd"], user=user.uid, group=user.gid, check=False
            )
            assert out.returncode == 0
        finally:
            plain.kill()
            plain.wait()
    finally:
        backend.close()


def test_remove_stale_scratch_follows_no_link_and_spares_what_is_not_stale(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    stale = tmp_path / f"kerbauth-{dead.pid}-{'a' * 16}"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "ccache").write_bytes(b"tgt")
    (stale / "link").symlink_to(victim)
    link = tmp_path / f"kerbauth-{dead.pid}-{'b' * 16}"
    link.symlink_to(victim)
    live = tmp_path / f"kerbauth-{os.getpid()}-{'c' * 16}"
    live.mkdir()
    odd = [tmp_path / f"kerbauth-0-{'d' * 16}", tmp_path / f"kerbauth-99999999-{'e' * 16}"]
    for path in odd:
        path.mkdir()
    old_legacy = tmp_path / "kerbauth-pw-abcd1234"
    new_legacy = tmp_path / "kerbauth-pw-efgh5678"
    for path in (old_legacy, new_legacy):
        path.mkdir()
        (path / "ccache").write_bytes(b"tgt")
    os.utime(old_legacy, (time.time() - 7200, time.time() - 7200))
    other = tmp_path / "kerbauth-cc-12345678"
    other.mkdir()
    removed = remove_stale_scratch(str(tmp_path))
    assert sorted(removed) == sorted([str(stale), str(old_legacy)])
    assert not stale.exists() and not old_legacy.exists()
    assert (victim / "keep").read_text() == "x", "nothing is followed"
    assert link.is_symlink()
    assert live.is_dir() and new_legacy.is_dir() and other.is_dir()
    assert all(path.is_dir() for path in odd)


def test_remove_stale_scratch_leaves_what_no_scratch_directory_holds(tmp_path, caplog):
    # Anyone can make directories of such names in /tmp: one holding more than a
    # cache or two (or a deep tree) is left with a warning, at no cost to the hub.
    dead = subprocess.Popen(["true"])
    dead.wait()
    full = tmp_path / f"kerbauth-{dead.pid}-{'f' * 16}"
    full.mkdir()
    for i in range(1000):
        (full / str(i)).write_bytes(b"")
    deep = tmp_path / f"kerbauth-{dead.pid}-{'e' * 16}"
    (deep / "a" / "b" / "c" / "d").mkdir(parents=True)
    log = logging.getLogger("test-scratch")
    with caplog.at_level(logging.WARNING, logger="test-scratch"):
        assert remove_stale_scratch(str(tmp_path), log=log) == []
    assert len(os.listdir(full)) == 1000 and deep.is_dir()
    assert "not a kerbauth scratch directory" in caplog.text


@pytest.mark.parametrize("name", BACKENDS)
def test_a_hub_with_descriptors_above_1024(name, realm, user, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    principal, keytab = keytab_for(realm, user)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    backend = tickets.make_backend(name)
    try:
        assert parse_ccache(keytab_ticket(backend, principal, keytab, user)).principal == principal
    finally:
        getattr(backend, "close", lambda: None)()
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_full_temporary_directory_is_a_ticket_error_in_the_worker(
    realm, user, monkeypatch, full_tmp
):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5")
    try:
        with pytest.raises(TicketError) as info:
            backend.renew_ticket(b"c" * 100000, 10, run_as=(user.uid, user.gid))
        assert info.value.cause == "ccache"
        assert "No space left on device" in str(info.value)
        assert os.listdir(full_tmp) == ["filler"]
    finally:
        backend.close()
