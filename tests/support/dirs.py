"""Directories that spawned servers and test users can reach."""

import os
import shutil
import tempfile

import pytest


@pytest.fixture
def ccache_dir():
    """A fresh root-owned cache directory (0711) outside pytest's 0700 tmp tree.

    Processes running as a test user must reach the cache file inside it, so
    it cannot live under /tmp/pytest-of-root, which only root may enter.
    """
    path = tempfile.mkdtemp(prefix="kerbauth-cc-")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o711)
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
