"""Both backends against the real test realm: tickets, errors, and a KDC that never answers."""

import os
import socket
import subprocess
import threading
import time

import pytest

from kerbauth import tickets
from kerbauth.ccache import read_ccache
from kerbauth.errors import TicketError
from support.ports import free_port_block
from support.realm import add_principal, klist

BACKENDS = ["krb5", "kinit"]
UID, GID = 54321, 54322


@pytest.fixture(params=BACKENDS)
def backend(request, krb5_env):
    made = tickets.make_backend(request.param)
    yield made
    if hasattr(made, "close"):
        made.close()


@pytest.fixture
def cache_dir(tmp_path):
    path = tmp_path / "ccaches"
    path.mkdir(mode=0o711)
    return path


_counter = iter(range(10**6))


def user_with_keytab(realm, tmp_path, uid=UID):
    name = f"u{next(_counter)}"
    keytab = tmp_path / f"{name}.keytab"
    principal = add_principal(realm, name, str(keytab), uid=uid, gid=GID)
    return name, principal, keytab


def get(backend, principal, keytab, cache, timeout=10):
    tickets.keytab_ticket(
        backend,
        principal=principal,
        keytab=str(keytab),
        ccache=str(cache),
        uid=UID,
        gid=GID,
        timeout=timeout,
    )


def test_ticket_from_keytab(backend, realm, tmp_path, cache_dir):
    name, principal, keytab = user_with_keytab(realm, tmp_path)
    cache = cache_dir / f"krb5cc_{name}"
    get(backend, principal, keytab, cache)
    st = os.lstat(cache)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777, st.st_nlink) == (UID, GID, 0o600, 1)
    out = klist(f"FILE:{cache}", realm.env)
    assert out.returncode == 0
    assert f"Default principal: {principal}" in out.stdout
    assert f"krbtgt/{realm.realm}@{realm.realm}" in out.stdout
    assert os.listdir(cache_dir) == [cache.name]


def test_principal_unknown_to_the_kdc(backend, realm, tmp_path, cache_dir):
    _, _, keytab = user_with_keytab(realm, tmp_path)
    with pytest.raises(TicketError) as info:
        get(backend, f"nobody-here@{realm.realm}", keytab, cache_dir / "krb5cc_x")
    assert info.value.cause == "principal"
    assert os.listdir(cache_dir) == []


def test_keytab_of_another_principal_gives_no_ticket(backend, realm, tmp_path, cache_dir):
    # Bob's keytab at Alice's keytab path must not give Alice (or Bob) a ticket:
    # the principal comes from the username, never from the keytab.
    alice, alice_principal, _ = user_with_keytab(realm, tmp_path)
    _, _, bob_keytab = user_with_keytab(realm, tmp_path)
    with pytest.raises(TicketError) as info:
        get(backend, alice_principal, bob_keytab, cache_dir / f"krb5cc_{alice}")
    assert info.value.cause == "principal"


def test_failure_leaves_previous_cache_intact(backend, realm, tmp_path, cache_dir):
    name, principal, keytab = user_with_keytab(realm, tmp_path)
    cache = cache_dir / f"krb5cc_{name}"
    get(backend, principal, keytab, cache)
    before = cache.read_bytes()
    realm.run_kadminl(f"cpw -randkey {principal}")  # the keytab is now stale
    with pytest.raises(TicketError) as info:
        get(backend, principal, keytab, cache)
    assert info.value.cause == "keytab"
    assert str(keytab) in str(info.value)
    assert cache.read_bytes() == before
    assert os.listdir(cache_dir) == [cache.name]


def test_kdc_stopped_fails_fast_with_a_clear_cause(private_realm, tmp_path, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", private_realm.env["KRB5_CONFIG"])
    _, principal, keytab = user_with_keytab(private_realm, tmp_path)
    private_realm.stop_kdc()
    cache_dir = tmp_path / "cc"
    cache_dir.mkdir(mode=0o711)
    for backend_name in BACKENDS:
        backend = tickets.make_backend(backend_name)
        started = time.monotonic()
        with pytest.raises(TicketError) as info:
            try:
                get(backend, principal, keytab, cache_dir / "krb5cc_x", timeout=5)
            finally:
                getattr(backend, "close", lambda: None)()
        assert time.monotonic() - started < 5
        assert info.value.cause == "kdc_unreachable", (backend_name, str(info.value))
        assert "Cannot contact any KDC" in str(info.value)
        assert os.listdir(cache_dir) == []


@pytest.fixture
def hung_kdc(realm, tmp_path, monkeypatch):
    """A KDC address that takes requests (UDP and TCP) and never answers."""
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
    conf = tmp_path / "krb5-hung.conf"
    conf.write_text(
        "[libdefaults]\n"
        f" default_realm = {realm.realm}\n"
        " dns_lookup_kdc = false\n"
        "[realms]\n"
        f" {realm.realm} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
    )
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        udp.close()
        tcp.close()


def children(pattern):
    """Pids of this test process's children whose command line matches ``pattern``."""
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", pattern],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(out.stdout.split())


def worker_pids():
    return children("kerbauth.krb5_worker")


@pytest.mark.parametrize("name", BACKENDS)
def test_hung_kdc_request_ends_at_the_timeout(realm, tmp_path, name, request):
    _, principal, keytab = user_with_keytab(realm, tmp_path)
    request.getfixturevalue("hung_kdc")
    cache_dir = tmp_path / "cc"
    cache_dir.mkdir(mode=0o711)
    before = worker_pids()
    backend = tickets.make_backend(name)
    started = time.monotonic()
    with pytest.raises(TicketError) as info:
        try:
            get(backend, principal, keytab, cache_dir / "krb5cc_x", timeout=2)
        finally:
            getattr(backend, "close", lambda: None)()
    elapsed = time.monotonic() - started
    assert info.value.cause == "timeout"
    assert 2 <= elapsed < 4, elapsed
    # The request really ended: no worker or kinit left waiting on the KDC.
    assert worker_pids() <= before
    assert children(principal) == set()
    assert os.listdir(cache_dir) == []


def test_krb5_workers_are_reused_and_close(realm, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=2)
    name, principal, keytab = user_with_keytab(realm, tmp_path)
    before = worker_pids()
    for _ in range(5):
        get(backend, principal, keytab, cache_dir / f"krb5cc_{name}")
    assert len(worker_pids() - before) == 1
    backend.close()
    assert worker_pids() <= before
    assert read_ccache(str(cache_dir / f"krb5cc_{name}")).principal == principal


def test_krb5_worker_that_died_while_idle_is_replaced(realm, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("krb5", max_workers=1)
    name, principal, keytab = user_with_keytab(realm, tmp_path)
    get(backend, principal, keytab, cache_dir / f"krb5cc_{name}")
    (worker,) = backend._idle
    worker.proc.kill()
    get(backend, principal, keytab, cache_dir / f"krb5cc_{name}")
    (replacement,) = backend._idle
    assert replacement is not worker and replacement.proc.poll() is None
    backend.close()
