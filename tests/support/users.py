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
# parallel): a group the tests make gets a gid in this range, and whoever finds
# it without members at teardown removes it. A host's own group of that name
# (another gid) is used and never removed.
TEST_GIDS = range(61000, 62000)


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


def _free_test_gid():
    taken = {g.gr_gid for g in grp.getgrall()}
    return next(gid for gid in TEST_GIDS if gid not in taken)


def _remove_if_unused(group):
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return
    primary = any(p.pw_gid == entry.gr_gid for p in pwd.getpwall())
    if entry.gr_gid in TEST_GIDS and not entry.gr_mem and not primary:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture
def make_user():
    """``make_user(groups=())``: a new local account with a random password."""
    made, groups_used = [], set()

    def ensure_group(group):
        """Make ``group`` if the host has none of that name (removed when unused)."""
        with _groups_locked():
            _ensure_group(group)

    def _ensure_group(group):
        groups_used.add(group)
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
        with _groups_locked():
            for group in sorted(groups_used):
                _remove_if_unused(group)


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
