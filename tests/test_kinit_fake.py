"""Unit tests of the kinit backend with a fake kinit that records how it was called.

The fake runs as a real test user (``run_as``), as the real kinit would: it
records its argv, its environment (/proc/self/environ, as exec'd), its uid,
gid and groups, what it read from the keytab, the scratch directory it was
given, and what came on stdin; some modes then behave as a hostile user's
process could (a symlink or hardlink instead of the cache, a huge cache).
"""

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import pytest

from kerbauth.core.backends.children import child_environment
from kerbauth.core.backends.kinit import KinitBackend
from kerbauth.core.errors import KeytabError, TicketError
from kerbauth.core.keytab import open_keytab

PRINCIPAL = "alice/pg-dmp-workbench2@XX.COM"
KEYTAB_BYTES = b"\x05\x02fake keytab"

FAKE_KINIT = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open("/proc/self/environ", "rb") as f:
    env = dict(i.decode().split("=", 1) for i in f.read().split(b"\\0") if i)
record = {{"argv": args, "env": env, "uid": os.getuid(), "gid": os.getgid(),
          "groups": os.getgroups(), "stdin": sys.stdin.read()}}
cache = args[args.index("-c") + 1].removeprefix("FILE:")
scratch = os.path.dirname(cache)
st = os.stat(scratch)
record["scratch"] = [scratch, st.st_uid, st.st_gid, st.st_mode & 0o7777]
if "-t" in args:
    with open(args[args.index("-t") + 1].removeprefix("FILE:"), "rb") as f:
        record["keytab"] = f.read().decode("latin-1")
if "-R" in args:
    with open(cache, "rb") as f:
        record["renewing"] = f.read().decode("latin-1")
    st = os.stat(cache)
    record["renewing_owner"] = [st.st_uid, st.st_gid, st.st_mode & 0o777]
with open({record!r}, "w") as f:
    json.dump(record, f)
mode = {mode!r}
if mode == "hang":
    print(os.getpid(), file=open({record!r} + ".pid", "w"), flush=True)
    time.sleep(3600)
if mode == "flood":
    sys.stdout.write("y" * (20 * 1024 * 1024))
    sys.stderr.write("kinit: " + "x" * (20 * 1024 * 1024))
    sys.exit(1)
if mode == "skew":
    sys.stderr.write("kinit: Clock skew too great while getting initial credentials\\n")
    sys.exit(1)
if mode == "symlink":
    os.symlink("/etc/shadow", cache)
elif mode == "hardlink":
    with open(cache + ".mine", "wb") as f:
        f.write(b"mine")
    os.link(cache + ".mine", cache)
elif mode == "huge":
    with open(cache, "wb") as f:
        f.truncate(5 * 1024 * 1024)
else:
    tmp = cache + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"renewed-cache" if "-R" in args else b"fake-cache")
    os.rename(tmp, cache)
"""


@pytest.fixture
def shared_dir():
    """A directory the test user's kinit can run from (0755) and record into (a 1777 subdir)."""
    path = tempfile.mkdtemp(prefix="kbt-fake-")
    os.chmod(path, 0o755)
    os.mkdir(os.path.join(path, "records"), 0o1777)
    os.chmod(os.path.join(path, "records"), 0o1777)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--", path], check=True)


@pytest.fixture
def fake_kinit(shared_dir):
    def make(mode="ok"):
        path = os.path.join(shared_dir, f"kinit-{mode}")
        record = os.path.join(shared_dir, "records", f"record-{mode}.json")
        with open(path, "w") as f:
            f.write(FAKE_KINIT.format(python=sys.executable, record=record, mode=mode))
        os.chmod(path, 0o755)

        def read():
            with open(record) as f:
                return json.load(f)

        return path, read

    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def keytab(user):
    path = os.path.join(user.home, "alice.keytab")
    with open(path, "wb") as f:
        f.write(KEYTAB_BYTES)
    os.chown(path, 0, 0)  # root's: the user could not open it by path, nor via /dev/fd
    os.chmod(path, 0o600)
    return path


def run(kinit, keytab, user, timeout=5):
    fd = open_keytab(keytab, user.uid)
    try:
        return KinitBackend(kinit).keytab_ticket(
            PRINCIPAL, fd, timeout, run_as=(user.uid, user.gid)
        )
    finally:
        os.close(fd)


def own_scratch():
    return [
        name
        for name in os.listdir(tempfile.gettempdir())
        if name.startswith(f"kerbauth-{os.getpid()}-")
    ]


SCRATCH = re.compile(rf"{re.escape(tempfile.gettempdir())}/kerbauth-{os.getpid()}-[0-9a-f]{{16}}")


def test_kinit_runs_as_the_user_with_the_checked_keytab_and_a_private_scratch(
    fake_kinit, keytab, user, monkeypatch
):
    monkeypatch.setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_0")
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "0" * 64)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-secret")
    kinit, read = fake_kinit()
    assert run(kinit, keytab, user) == b"fake-cache"
    called = read()
    argv = called["argv"]
    assert argv[:2] == ["-k", "-t"]
    assert re.fullmatch(r"FILE:/dev/fd/[0-9]+", argv[2])
    assert called["keytab"] == KEYTAB_BYTES.decode("latin-1"), "kinit read the checked bytes"
    assert argv[3] == "-c"
    scratch, owner, group, mode = called["scratch"]
    assert argv[4] == f"FILE:{scratch}/ccache"
    assert SCRATCH.fullmatch(scratch), "kerbauth-<hub pid>-<random> in the temporary directory"
    assert (owner, group, mode) == (user.uid, user.gid, 0o700)
    assert argv[5:] == ["--", PRINCIPAL]
    assert (called["uid"], called["gid"], called["groups"]) == (user.uid, user.gid, [])
    # Exactly the minimal environment: no KRB5CCNAME, nothing of JupyterHub's.
    assert called["env"] == child_environment()
    assert "JUPYTERHUB_CRYPT_KEY" not in called["env"] and "KRB5CCNAME" not in called["env"]
    assert called["stdin"] == ""
    assert own_scratch() == [], "the scratch directory is removed"


def test_password_goes_on_stdin_only(fake_kinit, user, monkeypatch):
    kinit, read = fake_kinit()
    data = KinitBackend(kinit).password_ticket(
        PRINCIPAL, "s3cret pass", 7200, 5, run_as=(user.uid, user.gid)
    )
    assert data == b"fake-cache"
    called = read()
    assert called["stdin"] == "s3cret pass\n"
    assert "s3cret" not in json.dumps(called["argv"]) + json.dumps(called["env"])
    assert called["argv"][-4:] == ["-r", "7200s", "--", PRINCIPAL]
    assert (called["uid"], called["groups"]) == (user.uid, [])
    assert own_scratch() == []


def test_renewal_gives_the_user_a_copy_of_the_hubs_bytes(fake_kinit, user):
    kinit, read = fake_kinit()
    data = KinitBackend(kinit).renew_ticket(b"old-cache", 5, run_as=(user.uid, user.gid))
    assert data == b"renewed-cache"
    called = read()
    assert called["argv"][:2] == ["-R", "-c"]
    assert called["renewing"] == "old-cache"
    assert called["renewing_owner"] == [user.uid, user.gid, 0o600]
    assert called["uid"] == user.uid
    assert own_scratch() == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("symlink", "cannot be opened"),
        ("hardlink", "not a regular file with one link"),
        ("huge", "larger than 4194304 bytes"),
    ],
)
def test_what_a_hostile_kinit_leaves_is_not_read(fake_kinit, keytab, user, mode, reason):
    # kinit runs as the user: the user's own processes could put anything at
    # the cache's name. The hub reads it back without following links, one
    # link only, at most 4 MiB.
    kinit, _ = fake_kinit(mode)
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user)
    assert reason in str(info.value)
    assert own_scratch() == []


def test_kinit_error_text_gives_the_cause(fake_kinit, keytab, user):
    kinit, _ = fake_kinit("skew")
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user)
    assert info.value.cause == "clock_skew"
    assert "Clock skew too great" in str(info.value)
    assert "clocks" in info.value.jupyterhub_message
    assert own_scratch() == []


def test_hung_kinit_is_killed_at_the_timeout(fake_kinit, keytab, user, shared_dir):
    kinit, _ = fake_kinit("hang")
    started = time.monotonic()
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user, timeout=1)
    assert info.value.cause == "timeout"
    assert time.monotonic() - started < 3
    with open(os.path.join(shared_dir, "records", "record-hang.json.pid")) as f:
        pid = int(f.read())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert own_scratch() == []


def test_missing_kinit_program(keytab, user):
    with pytest.raises(TicketError) as info:
        run("/nonexistent/kinit", keytab, user)
    assert info.value.cause == "config"
    assert "/nonexistent/kinit" in str(info.value)
    assert own_scratch() == []


def test_kinit_the_user_cannot_execute_is_a_config_error(fake_kinit, keytab, user):
    kinit, _ = fake_kinit()
    os.chmod(kinit, 0o700)
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user)
    assert info.value.cause == "config"
    assert f"must be readable and executable by uid {user.uid}" in str(info.value)


def test_unsafe_keytab_never_reaches_kinit(fake_kinit, keytab, user):
    kinit, read = fake_kinit()
    os.chmod(keytab, 0o644)
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user)
    assert info.value.cause == "keytab"
    with pytest.raises(FileNotFoundError):
        read()


def test_keytab_grown_after_the_check_never_reaches_kinit(fake_kinit, keytab, user):
    # The user owns the file (here) and appends to it after it was checked:
    # the backend reads the descriptor with the cap again.
    os.chown(keytab, user.uid, user.gid)
    kinit, read = fake_kinit()
    fd = open_keytab(keytab, user.uid)
    try:
        with open(keytab, "ab") as f:
            f.truncate(2 * 1024 * 1024)
        with pytest.raises(KeytabError) as info:
            KinitBackend(kinit).keytab_ticket(PRINCIPAL, fd, 5, run_as=(user.uid, user.gid))
    finally:
        os.close(fd)
    assert "2097152 bytes; more than the 1 MiB" in str(info.value)
    with pytest.raises(FileNotFoundError):
        read()


def test_what_kinit_writes_costs_the_hub_at_most_64_kib(fake_kinit, keytab, user):
    # The user's own processes can trace their kinit and make it write without end.
    kinit, _ = fake_kinit("flood")
    with pytest.raises(TicketError) as info:
        run(kinit, keytab, user)
    assert info.value.detail.endswith("x" * 1000)
    assert len(info.value.detail) < 65 * 1024


@pytest.fixture
def many_descriptors():
    """The test process holds descriptors above 1024, as a busy hub does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_kinit_works_for_a_hub_with_descriptors_above_1024(
    fake_kinit, keytab, user, many_descriptors
):
    kinit, _ = fake_kinit()
    assert run(kinit, keytab, user) == b"fake-cache"
    assert KinitBackend(kinit).password_ticket(PRINCIPAL, "pw", 0, 5, run_as=(user.uid, user.gid))


def test_a_full_temporary_directory_is_a_ticket_error(fake_kinit, user, full_tmp):
    kinit, read = fake_kinit()
    with pytest.raises(TicketError) as info:
        KinitBackend(kinit).renew_ticket(b"c" * 100000, 5, run_as=(user.uid, user.gid))
    assert info.value.cause == "ccache"
    assert "No space left on device" in str(info.value)
    assert os.listdir(full_tmp) == ["filler"]
    with pytest.raises(FileNotFoundError):
        read()
