"""Unit tests of the kinit backend with a fake kinit that records how it was called."""

import json
import os
import stat
import sys
import time

import pytest

from kerbauth import tickets
from kerbauth.errors import TicketError
from kerbauth.kinit_backend import KinitBackend

UID, GID = 54321, 54322
KEYTAB_BYTES = b"\x05\x02fake keytab"

FAKE_KINIT = """#!{python}
import json, os, sys, time
record = {{"argv": sys.argv[1:], "env": sorted(os.environ)}}
args = sys.argv[1:]
keytab = args[args.index("-t") + 1].removeprefix("FILE:")
with open(keytab, "rb") as f:
    record["keytab"] = f.read().decode("latin-1")
with open({record!r}, "w") as f:
    json.dump(record, f)
mode = {mode!r}
if mode == "hang":
    print(os.getpid(), file=open({record!r} + ".pid", "w"), flush=True)
    time.sleep(3600)
if mode == "skew":
    sys.stderr.write("kinit: Clock skew too great while getting initial credentials\\n")
    sys.exit(1)
cache = args[args.index("-c") + 1].removeprefix("FILE:")
with open(cache, "xb") as f:
    f.write(b"fake-cache")
"""


@pytest.fixture
def fake_kinit(tmp_path):
    def make(mode="ok"):
        path = tmp_path / f"kinit-{mode}"
        record = tmp_path / f"record-{mode}.json"
        path.write_text(FAKE_KINIT.format(python=sys.executable, record=str(record), mode=mode))
        path.chmod(0o755)
        return str(path), record

    return make


@pytest.fixture
def keytab(tmp_path):
    path = tmp_path / "alice.keytab"
    path.write_bytes(KEYTAB_BYTES)
    os.chown(path, UID, GID)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def cache(tmp_path):
    directory = tmp_path / "cc"
    directory.mkdir(mode=0o711)
    return directory / "krb5cc_alice"


def run(kinit, keytab, cache, timeout=5):
    tickets.keytab_ticket(
        KinitBackend(kinit),
        principal="alice/pg-dmp-workbench2@XX.COM",
        keytab=str(keytab),
        ccache=str(cache),
        uid=UID,
        gid=GID,
        timeout=timeout,
    )


def test_kinit_is_called_with_the_checked_keytab_and_a_private_cache(
    fake_kinit, keytab, cache, monkeypatch
):
    monkeypatch.setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_0")
    kinit, record = fake_kinit()
    run(kinit, keytab, cache)
    called = json.loads(record.read_text())
    argv = called["argv"]
    assert argv[:2] == ["-k", "-t"]
    assert argv[2].startswith("FILE:/dev/fd/")
    assert called["keytab"] == KEYTAB_BYTES.decode("latin-1"), "kinit read the checked file"
    assert argv[3] == "-c"
    private = os.path.dirname(argv[4].removeprefix("FILE:"))
    assert os.path.dirname(private) == str(cache.parent)
    assert os.path.basename(private).startswith(".kerbauth-")
    assert argv[5:] == ["--", "alice/pg-dmp-workbench2@XX.COM"]
    assert "KRB5CCNAME" not in called["env"]
    # The fake's cache became the user's cache; the private directory is gone.
    assert cache.read_bytes() == b"fake-cache"
    st = os.lstat(cache)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o600)
    assert os.listdir(cache.parent) == [cache.name]


def test_kinit_error_text_gives_the_cause(fake_kinit, keytab, cache):
    kinit, _ = fake_kinit("skew")
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, cache)
    assert info.value.cause == "clock_skew"
    assert "Clock skew too great" in str(info.value)
    assert "clocks" in info.value.jupyterhub_message
    assert os.listdir(cache.parent) == []


def test_hung_kinit_is_killed_at_the_timeout(fake_kinit, keytab, cache, tmp_path):
    kinit, record = fake_kinit("hang")
    started = time.monotonic()
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, cache, timeout=1)
    assert info.value.cause == "timeout"
    assert time.monotonic() - started < 3
    pid = int((tmp_path / "record-hang.json.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert os.listdir(cache.parent) == []


def test_missing_kinit_program(keytab, cache):
    with pytest.raises(TicketError) as info:
        run("/nonexistent/kinit", keytab, cache)
    assert info.value.cause == "config"
    assert "/nonexistent/kinit" in str(info.value)


def test_unsafe_keytab_never_reaches_kinit(fake_kinit, keytab, cache):
    kinit, record = fake_kinit()
    os.chmod(keytab, 0o644)
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, cache)
    assert info.value.cause == "keytab"
    assert not record.exists()
