import os
import stat

import pytest

from kerbauth.errors import KeytabError
from kerbauth.keytab import keytab_path_for_fd, open_keytab

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
        name = keytab_path_for_fd(fd)
        with open(name.removeprefix("FILE:"), "rb") as f:
            assert f.read() == b"\x05\x02keytab-bytes"
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
