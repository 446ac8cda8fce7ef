"""Directories that spawned servers and test users can reach."""

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile

import pytest

from kerbauth.hub.tickets import KerberosTickets


@pytest.fixture
def ccache_dir(monkeypatch):
    """A fresh root-owned cache directory (0711) outside pytest's 0700 tmp tree.

    Processes running as a test user must reach the cache file inside it, so
    it cannot live under /tmp/pytest-of-root, which only root may enter; and
    kerbauth refuses a cache directory right inside /tmp (anyone could take
    its name), so it is ``cc`` inside a root-owned 0711 directory of its own.
    """
    base = tempfile.mkdtemp(prefix="kerbauth-cc-")
    path = os.path.join(base, "cc")
    os.mkdir(path)
    for directory in (base, path):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o711)
        finally:
            os.close(fd)
    # Every KerberosTickets the test starts is stopped before the directory goes:
    # a renewal still running on a ticket thread would otherwise make the
    # directory again (kerbauth remakes a removed cache directory) and leave it.
    started = []
    start = KerberosTickets.start

    def recording_start(tickets):
        if tickets not in started:
            started.append(tickets)
        return start(tickets)

    monkeypatch.setattr(KerberosTickets, "start", recording_start)
    try:
        yield path
    finally:
        for tickets in started:
            with contextlib.suppress(Exception):
                if tickets._executor is not None:
                    tickets._executor.shutdown(wait=True, cancel_futures=True)
                tickets.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def small_tmpfs(path, mode=0o711):
    """The existing directory ``path`` on a 64 KiB tmpfs (mode ``mode``) until the end
    of the block; unmounted lazily, since what was tested may still hold it open."""
    options = f"size=64k,mode={mode:o}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "kerbauth-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill_up(path):
    """Fill the file system of ``path`` with a file ``filler`` until it has no space left."""
    fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


@pytest.fixture
def full_tmp(monkeypatch):
    """The temporary directory (``tempfile.gettempdir()``) is a small tmpfs, full."""
    path = tempfile.mkdtemp(prefix="kbt-full-")
    try:
        with small_tmpfs(path, mode=0o1777):
            fill_up(path)
            monkeypatch.setattr(tempfile, "tempdir", path)
            yield path
    finally:
        os.rmdir(path)
