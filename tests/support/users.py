"""Real local accounts and PAM services of the tests' own.

Accounts are named ``kbt-`` plus random hex, get a home and a password (set
through chpasswd's stdin, never argv), and are removed with their home and
processes at teardown. PAM service files go to /etc/pam.d under a random
``kbt-`` name and are removed at teardown, so the tests never depend on, nor
change, the host's own PAM stack.
"""

import contextlib
import fcntl
import grp
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass

import pytest

PREFIX = "kbt-"
PAM_DIR = "/etc/pam.d"


@dataclass
class Account:
    name: str
    password: str
    uid: int
    gid: int
    home: str


def _run(*argv, stdin=None):
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


# The groups the examples name (hub-users, hub-admins) are shared by every test,
# and by test runs that overlap on one host (the suite and tox's runs in
# parallel). A group the tests make gets a gid in this range. Whoever uses one
# holds a shared flock on GROUPS_IN_USE until its teardown; the teardown that
# then gets the lock exclusively is the last user on the host and removes every
# test group left without members. (Counting members is not enough: a hub whose
# admin_groups names a group uses it with no member in it.) A host's own group
# of that name (another gid) is used and never removed.
TEST_GIDS = range(61000, 62000)
# /run/lock is the host's place for lock files (a tmpfs); the file stays, as a
# lock file must (unlinking it would let a late opener lock a different inode).
GROUPS_IN_USE = "/run/lock/kerbauth-tests-groups"


@contextlib.contextmanager
def _groups_locked():
    """Hold the tests' lock on the host's groups (an flock on /etc, machine-wide),
    so one run never removes a group between another's check and its useradd."""
    fd = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_in_use():
    os.makedirs(os.path.dirname(GROUPS_IN_USE), exist_ok=True)
    return os.open(GROUPS_IN_USE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _free_test_gid():
    taken = {g.gr_gid for g in grp.getgrall()}
    return next(gid for gid in TEST_GIDS if gid not in taken)


def _remove_unused_test_groups():
    """Remove the test groups nobody uses; call with the groups lock held."""
    fd = _open_in_use()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test still uses them: the last one out removes them
        primaries = {p.pw_gid for p in pwd.getpwall()}
        for entry in grp.getgrall():
            if entry.gr_gid in TEST_GIDS and not entry.gr_mem and entry.gr_gid not in primaries:
                subprocess.run(["groupdel", entry.gr_name], check=False, capture_output=True)
    finally:
        os.close(fd)


@pytest.fixture
def make_user():
    """``make_user(groups=())``: a new local account with a random password."""
    made, in_use = [], []

    def ensure_group(group):
        """Make ``group`` if the host has none of that name (removed when unused)."""
        with _groups_locked():
            _ensure_group(group)

    def _ensure_group(group):
        if not in_use:
            fd = _open_in_use()
            fcntl.flock(fd, fcntl.LOCK_SH)
            in_use.append(fd)
        try:
            grp.getgrnam(group)
        except KeyError:
            _run("groupadd", "--gid", str(_free_test_gid()), group)

    def factory(groups=()):
        name = f"{PREFIX}{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        argv = ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group"]
        if groups:
            argv += ["--groups", ",".join(groups)]
        with _groups_locked():
            for group in groups:
                _ensure_group(group)
            _run(*argv, name)
        made.append(name)
        _run("chpasswd", stdin=f"{name}:{password}\n")
        entry = pwd.getpwnam(name)
        return Account(name, password, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    factory.ensure_group = ensure_group
    try:
        yield factory
    finally:
        for name in made:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(
                ["userdel", "--remove", "--force", name], check=False, capture_output=True
            )
            # A JVM the user ran (a client, a pyspark kernel) leaves its perf data
            # there; rmtree refuses a symlink at the top and follows none below.
            shutil.rmtree(f"/tmp/hsperfdata_{name}", ignore_errors=True)
        if in_use:
            with _groups_locked():
                os.close(in_use.pop())
                _remove_unused_test_groups()


@pytest.fixture
def make_test_group():
    """A random group name (``kbt-...``) for ``make_user(groups=...)``; removed afterwards."""
    names = []

    def factory():
        name = f"{PREFIX}{secrets.token_hex(4)}"
        _run("groupadd", name)
        names.append(name)
        return name

    try:
        yield factory
    finally:
        for name in names:
            subprocess.run(["groupdel", name], check=False, capture_output=True)


# pam_unix alone: the tests' logins do not depend on the host's common-* files.
# nodelay: a wrong password is refused without the 2 s fail delay.
UNIX_SERVICE = """\
auth     required  pam_unix.so nodelay
account  required  pam_unix.so
session  required  pam_unix.so
"""


@pytest.fixture
def pam_service():
    """``pam_service(text=UNIX_SERVICE)``: the name of a new /etc/pam.d service."""
    names = []

    def factory(text=UNIX_SERVICE):
        name = f"{PREFIX}{secrets.token_hex(4)}"
        path = os.path.join(PAM_DIR, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        names.append(path)
        with os.fdopen(fd, "w") as f:
            f.write("# kerbauth tests (removed after the test)\n" + text)
        return name

    try:
        yield factory
    finally:
        for path in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
