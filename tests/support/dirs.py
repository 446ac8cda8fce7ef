"""Directories that spawned servers and test users can reach."""

import os
import shutil
import tempfile

import pytest


@pytest.fixture
def ccache_dir():
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
    try:
        yield path
    finally:
        shutil.rmtree(base, ignore_errors=True)
