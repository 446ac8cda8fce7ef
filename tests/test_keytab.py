import os
import stat
import sys
import time

import pytest

from kerbauth.core.errors import KeytabError
from kerbauth.core.keytab import MAX_KEYTAB_ENTRIES, open_keytab, read_keytab_bytes

USER_UID = 54321


@pytest.fixture
def keytab(tmp_path):
    path = tmp_path / "alice.keytab"
    path.write_bytes(b"\x05\x02keytab-bytes")
    os.chown(path, USER_UID, USER_UID)
    os.chmod(path, 0o600)
    return path


def refused(path, uid=USER_UID):
    with pytest.raises(KeytabError) as info:
        open_keytab(str(path), uid)
    assert str(path) in str(info.value), "the message names the file"
    return info.value.reason


def test_a_safe_keytab_opens_and_reads_through_its_descriptor(keytab):
    fd = open_keytab(str(keytab), USER_UID)
    try:
        # Replacing the path after the check changes nothing: kerbauth reads the checked file.
        keytab.unlink()
        keytab.write_bytes(b"swapped")
        assert read_keytab_bytes(fd, str(keytab)) == b"\x05\x02keytab-bytes"
    finally:
        os.close(fd)


def test_root_owned_keytab_is_accepted(keytab):
    os.chown(keytab, 0, 0)
    os.close(open_keytab(str(keytab), USER_UID))


def test_missing_keytab(tmp_path):
    assert refused(tmp_path / "nothing.keytab") == "does not exist"


def test_symlink_is_refused_even_to_a_good_keytab(keytab, tmp_path):
    link = tmp_path / "link.keytab"
    link.symlink_to(keytab)
    assert "symbolic link" in refused(link)


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "fifo.keytab"
    os.mkfifo(fifo, 0o600)
    os.chown(fifo, USER_UID, USER_UID)
    assert "FIFO" in refused(fifo)


def test_device_is_refused(tmp_path):
    device = tmp_path / "null.keytab"
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert "character device" in refused(device)


def test_directory_is_refused(tmp_path):
    directory = tmp_path / "dir.keytab"
    directory.mkdir(mode=0o700)
    assert "directory" in refused(directory)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_group_or_other_access_is_refused(keytab, mode):
    os.chmod(keytab, mode)
    assert f"mode {mode:04o}" in refused(keytab)


def test_keytab_of_another_user_is_refused(keytab):
    os.chown(keytab, USER_UID + 1, USER_UID + 1)
    assert f"owned by uid {USER_UID + 1}" in refused(keytab)


def user_keytab(account, data=b"", size=None):
    """A keytab in a real user's home, owned by them, mode 0600."""
    path = os.path.join(account.home, "big.keytab")
    with open(path, "wb") as f:
        f.write(data)
        if size is not None:
            f.truncate(size)  # sparse: 100 MB that take no disk
    os.chown(path, account.uid, account.gid)
    os.chmod(path, 0o600)
    return path


def test_a_100_mb_keytab_is_refused_at_once_naming_the_real_cause(make_user):
    # Before the cap, such a keytab held a ticket request until its timeout and
    # the log blamed the KDC.
    account = make_user()
    path = user_keytab(account, b"\x05\x02", size=100 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(KeytabError) as info:
        open_keytab(path, account.uid)
    assert time.monotonic() - started < 0.5  # the ticket timeout is 10 s
    assert str(info.value) == (
        f"keytab: keytab {path}: is 104857600 bytes; more than the 1 MiB a keytab can"
        " sensibly be (a keytab holds a few keys: a few hundred bytes to a few KB)"
    )
    assert "KDC" not in str(info.value)
    assert info.value.cause == "keytab"


def records(count, size=1, version=2):
    order = "big" if version == 2 else sys.byteorder
    record = size.to_bytes(4, order, signed=True) + b"x" * abs(size)
    return bytes([5, version]) + record * count


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("size", [1, -1])  # entries, or holes left by removed entries
def test_a_keytab_of_too_many_entries_is_refused(make_user, version, size):
    account = make_user()
    path = user_keytab(account, records(MAX_KEYTAB_ENTRIES + 1, size, version))
    with pytest.raises(KeytabError) as info:
        open_keytab(path, account.uid)
    assert f"has more than {MAX_KEYTAB_ENTRIES} entries" in info.value.reason
    # As many as the cap, then the end marker (a zero length) and trailing bytes: fine.
    path = user_keytab(account, records(MAX_KEYTAB_ENTRIES, size, version) + bytes(4) + b"z" * 99)
    os.close(open_keytab(path, account.uid))


@pytest.mark.parametrize("data", [b"", b"\x05", b"hello world", b"\x05\x03rest"])
def test_something_that_is_not_a_keytab_is_refused(keytab, data):
    keytab.write_bytes(data)
    assert "is not a keytab" in refused(keytab)


def test_a_keytab_that_grows_after_the_check_is_refused_when_read(keytab):
    fd = open_keytab(str(keytab), USER_UID)
    try:
        with open(keytab, "ab") as f:
            f.write(b"x" * (1024 * 1024))
        with pytest.raises(KeytabError) as info:
            read_keytab_bytes(fd, str(keytab))
        assert "more than the 1 MiB" in info.value.reason
    finally:
        os.close(fd)
